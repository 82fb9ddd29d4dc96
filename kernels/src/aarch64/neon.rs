//! Armv8.0 NEON kernels: every format with nothing beyond Advanced SIMD.
//!
//! Integer formats multiply int8 pairs with `smull`/`smlal` into int16 lanes
//! (two products per lane per 16 weights) and widen into int32 with `sadalp`
//! once per run; `bodies.rs` bounds each run so no int16 lane overflows (a
//! whole block for the ternary formats and q4_0, every 16 weights for q8_0).
//! The f16 baseline widens half floats with `fcvtl`/`fcvtl2` (base Armv8.0, no
//! FEAT_FP16 needed) and accumulates with `fmla` in f32.

use super::bodies::{self, ActLayout, Dot, WeightLayout, ROW_TILE};
use super::{aarch64_kernel, require};
use crate::activations::{BlockActivations, BlockQ8K, F32Activations, TokenQ8};
use crate::cpu::{self, CpuFeature};
use crate::formats::f16::F16Matrix;
use crate::formats::i2s::I2sMatrix;
use crate::formats::q4_0::Q4_0Matrix;
use crate::formats::q6_k::Q6KMatrix;
use crate::formats::q8_0::Q8_0Matrix;
use crate::formats::tq1::Tq1Matrix;
use crate::formats::tq2::Tq2Matrix;
use crate::formats::{BlockMatrix, Format};
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use core::arch::aarch64::*;

const REQUIRES: &[CpuFeature] = &[CpuFeature::Neon];

const fn info(name: &'static str, format: Format) -> KernelInfo {
    KernelInfo {
        name,
        format,
        isa: Isa::Neon,
        exact: !matches!(format, Format::F16),
        requires: REQUIRES,
        row_tile: ROW_TILE,
    }
}

/// Proof that the CPU has NEON (every AArch64 Linux CPU does; checked anyway).
#[derive(Clone, Copy, Debug)]
pub struct Neon(());

impl Neon {
    pub fn new() -> Option<Self> {
        cpu::features().has(CpuFeature::Neon).then_some(Neon(()))
    }

    /// The token for `info`'s kernel; panics clearly if a required feature is missing.
    #[track_caller]
    pub(crate) fn for_kernel(info: &KernelInfo) -> Self {
        require(info);
        Neon::new().expect("the kernel requires neon")
    }
}

impl Dot for Neon {
    type Run = int16x8_t;

    #[inline(always)]
    fn start(self, _acc: int32x4_t) -> int16x8_t {
        // SAFETY: `self` proves NEON; no memory is touched.
        unsafe { vdupq_n_s16(0) }
    }

    #[inline(always)]
    fn dot(self, run: int16x8_t, w: int8x16_t, a: int8x16_t) -> int16x8_t {
        // SAFETY: `self` proves NEON; registers only. Lane i gets
        // w[i]*a[i] + w[8+i]*a[8+i]; the caller bounds the run (see `Dot`).
        unsafe { vmlal_high_s8(vmlal_s8(run, vget_low_s8(w), vget_low_s8(a)), w, a) }
    }

    #[inline(always)]
    fn end(self, acc: int32x4_t, run: int16x8_t) -> int32x4_t {
        // SAFETY: `self` proves NEON; registers only (pairwise widening add).
        unsafe { vpadalq_s16(acc, run) }
    }
}

#[target_feature(enable = "neon")]
fn i2s_entry(t: Neon, m: &I2sMatrix, act: &TokenQ8, out: &mut OutputTile<'_>) {
    bodies::i2s(t, m, act, out)
}

#[target_feature(enable = "neon")]
fn q6k_entry(t: Neon, m: &Q6KMatrix, act: &BlockActivations<BlockQ8K>, out: &mut OutputTile<'_>) {
    bodies::q6k(t, m, act, out)
}

#[target_feature(enable = "neon")]
fn blocks_entry<W: WeightLayout, A: ActLayout>(
    t: Neon,
    m: &BlockMatrix<W>,
    act: &BlockActivations<A>,
    out: &mut OutputTile<'_>,
) {
    bodies::blocks(t, m, act, out)
}

aarch64_kernel!(I2s: "i2s-neon", I2s, Neon, i2s_entry, I2sMatrix, token_q8);
aarch64_kernel!(Tq2: "tq2-neon", Tq2, Neon, blocks_entry, Tq2Matrix, q8k);
aarch64_kernel!(Tq1: "tq1-neon", Tq1, Neon, blocks_entry, Tq1Matrix, q8k);
aarch64_kernel!(Q8_0: "q8_0-neon", Q8_0, Neon, blocks_entry, Q8_0Matrix, q8_0);
aarch64_kernel!(Q4_0: "q4_0-neon", Q4_0, Neon, blocks_entry, Q4_0Matrix, q8_0);
aarch64_kernel!(Q6K: "q6_k-neon", Q6K, Neon, q6k_entry, Q6KMatrix, q8k);

/// The f16 baseline: f16 weights widened to f32, fused multiply-add with f32
/// activations. Not exact: its f32 sums run in another order than the scalar
/// kernel's (8 partial sums per row, then a horizontal add).
pub struct F16;
static F16_INFO: KernelInfo = info("f16-neon", Format::F16);

impl Kernel for F16 {
    fn info(&self) -> &'static KernelInfo {
        &F16_INFO
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        let t = Neon::for_kernel(&F16_INFO);
        // SAFETY: `t` proves NEON, the only feature `f16_entry` enables.
        unsafe { f16_entry(t, w.expect::<F16Matrix>(), x.act.f32(), out) }
    }
}

#[target_feature(enable = "neon")]
fn f16_entry(_t: Neon, m: &F16Matrix, act: &F32Activations, out: &mut OutputTile<'_>) {
    // Weight rows and activation rows are both zero-padded to a multiple of 32
    // elements, so whole vectors of 8 cover every row with no tail.
    assert_eq!(
        m.stride, act.stride,
        "f16 weights and f32 activations share the row padding"
    );
    assert_eq!(m.stride % 8, 0);
    let rows = out.rows();
    for b in 0..out.batch() {
        let x = act.row(b);
        for r0 in rows.clone().step_by(ROW_TILE) {
            let w = bodies::row_tile(r0, rows.end).map(|r| m.row(r));
            let mut acc = [[vdupq_n_f32(0.0); 2]; ROW_TILE];
            for j in (0..m.stride).step_by(8) {
                let xs = &x[j..j + 8];
                // SAFETY: `xs` holds 8 readable f32.
                let (x0, x1) = unsafe { (vld1q_f32(xs.as_ptr()), vld1q_f32(xs.as_ptr().add(4))) };
                for r in 0..ROW_TILE {
                    let ws = &w[r][j..j + 8];
                    // SAFETY: `ws` holds 8 readable f16, which are u16 bit patterns
                    // (half::f16 is repr(transparent) over u16), naturally aligned.
                    let h = unsafe { vld1q_u16(ws.as_ptr().cast::<u16>()) };
                    acc[r][0] = vfmaq_f32(acc[r][0], bodies::fcvtl(h), x0);
                    acc[r][1] = vfmaq_f32(acc[r][1], bodies::fcvtl2(h), x1);
                }
            }
            let y = acc.map(|a| vaddvq_f32(vaddq_f32(a[0], a[1])));
            bodies::store_rows(out, b, r0, y);
        }
    }
}
