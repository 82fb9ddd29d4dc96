//! AArch64 compute-roof probes (see [`crate::peak`]): `sdot` for the dotprod
//! (and i8mm) kernels and f32 `fmla` for the NEON f16 kernel. Under qemu
//! these only prove the code runs; emulated rates mean nothing.

use super::dotprod::Dotprod;
use crate::cpu::CpuFeature;
use crate::kernel::Isa;
use crate::peak::{PeakKind, PeakProbe};
use core::arch::aarch64::*;
use std::hint::black_box;

/// Independent accumulators: sdot and fmla have 3-4 cycle latency and up to
/// 4 per cycle on wide cores.
const CHAINS: usize = 16;

pub(crate) static PROBES: &[PeakProbe] = &[
    // 16 int8 products per sdot: 32 ops.
    PeakProbe::new(
        "sdot",
        Isa::Dotprod,
        PeakKind::Int8Dot,
        &[CpuFeature::Neon, CpuFeature::Dotprod],
        CHAINS as u64 * 32,
        sdot,
    ),
    // 4 f32 FMAs per fmla: 8 ops.
    PeakProbe::new(
        "fmla-4s",
        Isa::Neon,
        PeakKind::F32Fma,
        &[CpuFeature::Neon],
        CHAINS as u64 * 8,
        fmla,
    ),
];

fn sdot(iters: u64) -> u64 {
    let token = Dotprod::new().expect("PeakProbe::run checked neon and dotprod");
    // SAFETY: PeakProbe::run checked NEON and dotprod; the token proves dotprod.
    unsafe { sdot_dotprod(token, iters) }
}

#[target_feature(enable = "neon,dotprod")]
fn sdot_dotprod(token: Dotprod, iters: u64) -> u64 {
    let a = black_box(vdupq_n_s8(2));
    let b = black_box(vdupq_n_s8(-3));
    let mut acc = [vdupq_n_s32(0); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = token.sdot(*c, a, b);
        }
    }
    let s = acc.iter().fold(vdupq_n_s32(0), |s, &c| vaddq_s32(s, c));
    vaddvq_s32(s) as u32 as u64
}

fn fmla(iters: u64) -> u64 {
    // SAFETY: PeakProbe::run checked NEON.
    unsafe { fmla_neon(iters) }
}

#[target_feature(enable = "neon")]
fn fmla_neon(iters: u64) -> u64 {
    let m = black_box(vdupq_n_f32(0.999));
    let k = black_box(vdupq_n_f32(0.5));
    let mut acc = [vdupq_n_f32(0.0); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = vfmaq_f32(k, *c, m);
        }
    }
    let s = acc.iter().fold(vdupq_n_f32(0.0), |s, &c| vaddq_f32(s, c));
    vaddvq_f32(s).to_bits() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdot_checksum_matches_the_arithmetic() {
        if let Some(sum) = PROBES[0].run(10) {
            // Each of 4 lanes gains 4 products of 2 * -3 per trip and chain.
            assert_eq!(sum as u32 as i32, -24 * 4 * CHAINS as i32 * 10);
        }
    }
}
