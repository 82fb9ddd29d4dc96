//! x86-64 compute-roof probes (see [`crate::peak`]): `vpdpbusd` on 512-bit
//! registers and f32 FMA for the AVX-512 kernels, `vpmaddubsw` accumulated in
//! 16-bit lanes (`vpaddw`) and f32 FMA for the AVX2 kernels, AMX `tdpbusd`
//! on tiles already loaded for the AMX kernels (their loop also loads a
//! tile per `tdpbusd`, so it cannot reach this roof).
//!
//! The AVX2 probe leaves out the `vpmaddwd` that widens 16-bit sums to 32
//! bits: kernels amortise it over several blocks, and on cores with one
//! vector multiplier (Zen 1: 2 cycles per 256-bit multiply) counting it would
//! halve the roof and put good kernels above 100%.
//!
//! Each body keeps `CHAINS` independent accumulators, more than latency x
//! throughput of the instruction on current cores (VNNI and FMA: 4-5 cycles,
//! 2 per cycle), so the loop is bound by issue width, as a kernel's inner
//! loop at best is.

use crate::cpu::CpuFeature;
use crate::kernel::Isa;
use crate::peak::{PeakKind, PeakProbe};
use core::arch::x86_64::*;
use std::hint::black_box;

const CHAINS: usize = 12;

const AVX2: &[CpuFeature] = &[CpuFeature::Avx2, CpuFeature::Fma];
const AVX512: &[CpuFeature] = &[
    CpuFeature::Avx512f,
    CpuFeature::Avx512bw,
    CpuFeature::Avx512vnni,
];

pub(crate) static PROBES: &[PeakProbe] = &[
    // 32 u8 x s8 products per vpmaddubsw (+ one vpaddw): 64 ops.
    PeakProbe::new(
        "vpmaddubsw-ymm",
        Isa::Avx2,
        PeakKind::Int8Dot,
        AVX2,
        CHAINS as u64 * 64,
        maddubs_ymm,
    ),
    // 8 f32 FMAs per instruction: 16 ops.
    PeakProbe::new(
        "vfmadd-ymm",
        Isa::Avx2,
        PeakKind::F32Fma,
        AVX2,
        CHAINS as u64 * 16,
        fma_ymm,
    ),
    // 64 u8 x s8 products per vpdpbusd: 128 ops.
    PeakProbe::new(
        "vpdpbusd-zmm",
        Isa::Avx512,
        PeakKind::Int8Dot,
        AVX512,
        CHAINS as u64 * 128,
        dpbusd_zmm,
    ),
    // 16 f32 FMAs per instruction: 32 ops.
    PeakProbe::new(
        "vfmadd-zmm",
        Isa::Avx512,
        PeakKind::F32Fma,
        AVX512,
        CHAINS as u64 * 32,
        fma_zmm,
    ),
    // 16 x 16 x 64 u8 x s8 products per tdpbusd, 4 per round: 131072 ops.
    PeakProbe::new(
        "tdpbusd-tmm",
        Isa::Amx,
        PeakKind::Int8Dot,
        &[CpuFeature::AmxInt8],
        4 * 16 * 16 * 64 * 2,
        tdpbusd_tmm,
    ),
];

fn maddubs_ymm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX2 and FMA.
    unsafe { maddubs_ymm_avx2(iters) }
}

#[target_feature(enable = "avx2,fma")]
fn maddubs_ymm_avx2(iters: u64) -> u64 {
    // The accumulator's bytes are the unsigned operand, so the products are
    // not loop-invariant (the compiler would hoist them); wrap-around does
    // not change the speed.
    let b = black_box(_mm256_set1_epi8(-3));
    let mut acc = [black_box(_mm256_set1_epi8(2)); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm256_add_epi16(*c, _mm256_maddubs_epi16(*c, b));
        }
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_si256(), |s, &c| _mm256_add_epi32(s, c));
    _mm256_extract_epi32::<0>(s) as u32 as u64
}

fn fma_ymm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX2 and FMA.
    unsafe { fma_ymm_avx2(iters) }
}

#[target_feature(enable = "avx2,fma")]
fn fma_ymm_avx2(iters: u64) -> u64 {
    // acc = acc * m + k converges (|m| < 1): no overflow, no denormals.
    let m = black_box(_mm256_set1_ps(0.999));
    let k = black_box(_mm256_set1_ps(0.5));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm256_fmadd_ps(*c, m, k);
        }
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &c| _mm256_add_ps(s, c));
    _mm256_cvtss_f32(s).to_bits() as u64
}

fn dpbusd_zmm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX-512F/BW/VNNI.
    unsafe { dpbusd_zmm_avx512(iters) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn dpbusd_zmm_avx512(iters: u64) -> u64 {
    let a = black_box(_mm512_set1_epi8(2));
    let b = black_box(_mm512_set1_epi8(-3));
    let mut acc = [_mm512_setzero_si512(); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm512_dpbusd_epi32(*c, a, b);
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_si512(), |s, &c| _mm512_add_epi32(s, c));
    _mm512_reduce_add_epi32(s) as u32 as u64
}

fn fma_zmm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX-512F.
    unsafe { fma_zmm_avx512(iters) }
}

#[target_feature(enable = "avx512f")]
fn fma_zmm_avx512(iters: u64) -> u64 {
    let m = black_box(_mm512_set1_ps(0.999));
    let k = black_box(_mm512_set1_ps(0.5));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm512_fmadd_ps(*c, m, k);
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &c| _mm512_add_ps(s, c));
    _mm512_reduce_add_ps(s).to_bits() as u64
}

fn tdpbusd_tmm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AMX-INT8
    // (detected with the tile permission granted).
    unsafe { crate::x86_64::amx::tdpbusd_rounds(iters) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_the_arithmetic() {
        // The AVX2 chain feeds back into itself: check it is deterministic
        // and does work (one trip from bytes of 2: each i16 lane of a chain
        // becomes 0x0202 plus 2 products of 2 * -3, i.e. 502; lane 0 of the
        // i32 sum holds two of them).
        let p = &PROBES[0];
        if let Some(sum) = p.run(1) {
            assert_eq!(sum as u32 as i32, CHAINS as i32 * (502 + (502 << 16)));
            assert_eq!(p.run(7), p.run(7));
        }
        let p = &PROBES[2];
        if let Some(sum) = p.run(10) {
            // vpdpbusd: each of 16 lanes gains 4 products (-24); 16 lanes summed.
            assert_eq!(sum as u32 as i32, -24 * 16 * CHAINS as i32 * 10);
        }
        let p = &PROBES[4];
        if let Some(sum) = p.run(10) {
            // tdpbusd: element 0 of each of 4 tiles gains 64 products (-384).
            assert_eq!(sum as i64, -384 * 4 * 10);
        }
    }
}
