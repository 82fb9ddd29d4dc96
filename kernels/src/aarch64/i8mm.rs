//! Armv8.6 int8 matrix-multiply kernels: `smmla` multiplies a 2x8 int8 matrix
//! by the transpose of another 2x8 and adds the 2x2 int32 result, i.e. 32
//! multiply-adds per instruction against sdot's 16, with each decoded weight
//! vector used for two batch items. These are the GEMM (prompt-processing)
//! kernels.
//!
//! Tiling: 4 rows (two row pairs) by 2 batch items. For one 32-weight chunk,
//! the decoded 16-weight vectors of a row pair are interleaved 8 bytes at a
//! time (`zip1`/`zip2` on 64-bit lanes: `[row0 k0..8 | row1 k0..8]`) and so are
//! the two batch items' activations; one `smmla` then yields
//! `[r0.b0, r0.b1, r1.b0, r1.b1]` partial sums. An odd batch item is paired with
//! itself and the duplicate lanes dropped, so batch 1 works (at half the
//! instruction's throughput; the dotprod kernel suits batch 1 better).
//!
//! The float step is the scalar reference's, lane by lane, so outputs are
//! bit-identical to it (see `bodies.rs`).

use super::bodies::{self, chunk, load_i8, ActLayout, WeightLayout, ROW_TILE};
use super::{aarch64_kernel, require};
use crate::activations::{BlockActivations, TokenQ8};
use crate::cpu::{self, CpuFeature};
use crate::formats::i2s::I2sMatrix;
use crate::formats::q4_0::Q4_0Matrix;
use crate::formats::q8_0::Q8_0Matrix;
use crate::formats::tq1::Tq1Matrix;
use crate::formats::tq2::Tq2Matrix;
use crate::formats::{BlockMatrix, Format};
use crate::kernel::{Isa, KernelInfo, OutputTile};
use core::arch::aarch64::*;
use core::arch::asm;

const REQUIRES: &[CpuFeature] = &[CpuFeature::Neon, CpuFeature::I8mm];

const fn info(name: &'static str, format: Format) -> KernelInfo {
    KernelInfo {
        name,
        format,
        isa: Isa::I8mm,
        exact: true,
        requires: REQUIRES,
        row_tile: ROW_TILE,
    }
}

/// Proof that the CPU has NEON and the int8 matrix-multiply extension.
#[derive(Clone, Copy, Debug)]
pub struct I8mm(());

impl I8mm {
    pub fn new() -> Option<Self> {
        let f = cpu::features();
        (f.has(CpuFeature::Neon) && f.has(CpuFeature::I8mm)).then_some(I8mm(()))
    }

    /// The token for `info`'s kernel; panics clearly if a required feature is missing.
    #[track_caller]
    pub(crate) fn for_kernel(info: &KernelInfo) -> Self {
        require(info);
        I8mm::new().expect("the kernel requires neon and i8mm")
    }

    /// `smmla acc.4s, a.16b, b.16b`: with a and b read as 2x8 row-major int8
    /// matrices, `acc[2i + j] += sum over k of a[i][k] * b[j][k]`.
    #[inline(always)]
    pub fn smmla(self, acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: `self` proves the CPU implements FEAT_I8MM. The instruction
        // reads and writes only the three vector registers given (no memory,
        // no flags, no stack). `.arch_extension` lets the assembler accept it
        // in a function not compiled with the feature (e.g. at opt-level 0).
        unsafe {
            asm!(
                ".arch_extension i8mm",
                "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }
}

/// `[x k0..8 | y k0..8]` and `[x k8..16 | y k8..16]`: two 16-wide rows as the
/// 2x8 operands of two `smmla`.
#[target_feature(enable = "neon")]
#[inline]
fn pair(x: int8x16_t, y: int8x16_t) -> [int8x16_t; 2] {
    let (x, y) = (vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y));
    [
        vreinterpretq_s8_s64(vzip1q_s64(x, y)),
        vreinterpretq_s8_s64(vzip2q_s64(x, y)),
    ]
}

/// Integer sums of one block for 4 rows by 2 batch items: element p holds
/// `[r(2p).b0, r(2p).b1, r(2p+1).b0, r(2p+1).b1]`.
#[target_feature(enable = "neon")]
#[inline]
fn tile_block<W: WeightLayout>(t: I8mm, w: [&W; ROW_TILE], a: [&[i8]; 2]) -> [int32x4_t; 2] {
    let mut acc = [vdupq_n_s32(0); 2];
    for c in 0..W::CHUNKS {
        // The activations of both batch items, interleaved once for both row pairs.
        let act: [[int8x16_t; 2]; 2] = std::array::from_fn(|h| {
            pair(
                load_i8(a[0], 32 * c + 16 * h),
                load_i8(a[1], 32 * c + 16 * h),
            )
        });
        for p in 0..2 {
            let (w0, w1) = (chunk(w[2 * p], c), chunk(w[2 * p + 1], c));
            for h in 0..2 {
                let wz = pair(w0[h], w1[h]);
                acc[p] = t.smmla(acc[p], wz[0], act[h][0]);
                acc[p] = t.smmla(acc[p], wz[1], act[h][1]);
            }
        }
    }
    acc
}

/// The batch items of one pass starting at `b0` (the last one doubled when odd).
fn batch_pair(b0: usize, batch: usize) -> [usize; 2] {
    [b0, (b0 + 1).min(batch - 1)]
}

/// Stores the lanes of one pass ([r.b0, r.b1, r'.b0, r'.b1] per row pair)
/// into y, dropping lanes of repeated rows and a repeated batch item.
fn store_tile(out: &mut OutputTile<'_>, bb: [usize; 2], r0: usize, lanes: [[f32; 4]; 2]) {
    let n_b = if bb[1] == bb[0] { 1 } else { 2 };
    for (j, &b) in bb.iter().enumerate().take(n_b) {
        let y = std::array::from_fn(|i| lanes[i / 2][2 * (i % 2) + j]);
        bodies::store_rows(out, b, r0, y);
    }
}

#[target_feature(enable = "neon,i8mm")]
fn i2s_entry(t: I8mm, m: &I2sMatrix, act: &TokenQ8, out: &mut OutputTile<'_>) {
    let rows = out.rows();
    let nb = m.packed.blocks_per_row;
    let batch = out.batch();
    for b0 in (0..batch).step_by(2) {
        let bb = batch_pair(b0, batch);
        let a = bb.map(|b| &act.row(b)[..nb * 128]);
        let [s0, s1] = bb.map(|b| act.sum[b]);
        let sum = vcombine_s32(vcreate_s32_pair(s0, s1), vcreate_s32_pair(s0, s1));
        let [f0, f1] = bb.map(|b| act.output_factor(b, m.scale));
        let factor = vcombine_f32(vcreate_f32_pair(f0, f1), vcreate_f32_pair(f0, f1));
        for r0 in rows.clone().step_by(ROW_TILE) {
            let w = bodies::row_tile(r0, rows.end).map(|r| m.packed.row(r));
            let mut acc = [vdupq_n_s32(0); 2];
            for k in 0..nb {
                let blocks = std::array::from_fn(|i| &w[i][k]);
                let part = tile_block(t, blocks, a.map(|a| &a[128 * k..128 * (k + 1)]));
                acc = [vaddq_s32(acc[0], part[0]), vaddq_s32(acc[1], part[1])];
            }
            // (acc - sum(a)) as f32 * factor, per lane as in the scalar kernel.
            let y =
                acc.map(|v| bodies::lanes_f32(vmulq_f32(vcvtq_f32_s32(vsubq_s32(v, sum)), factor)));
            store_tile(out, bb, r0, y);
        }
    }
}

#[target_feature(enable = "neon,i8mm")]
fn blocks_entry<W: WeightLayout, A: ActLayout>(
    t: I8mm,
    m: &BlockMatrix<W>,
    act: &BlockActivations<A>,
    out: &mut OutputTile<'_>,
) {
    let rows = out.rows();
    let nb = m.blocks_per_row;
    assert_eq!(
        act.blocks_per_row, nb,
        "weight and activation blocks pair 1:1"
    );
    let batch = out.batch();
    for b0 in (0..batch).step_by(2) {
        let bb = batch_pair(b0, batch);
        let a_rows = bb.map(|b| act.row(b));
        for r0 in rows.clone().step_by(ROW_TILE) {
            let w = bodies::row_tile(r0, rows.end).map(|r| m.row(r));
            let mut y = [vdupq_n_f32(0.0); 2];
            for k in 0..nb {
                let blocks = std::array::from_fn(|i| &w[i][k]);
                let ab = a_rows.map(|r| &r[k]);
                let mut isum = tile_block(t, blocks, ab.map(|a| a.qs()));
                if W::OFFSET {
                    let [s0, s1] = ab.map(|a| a.sum());
                    let sum = vcombine_s32(vcreate_s32_pair(s0, s1), vcreate_s32_pair(s0, s1));
                    isum = isum.map(|v| vsubq_s32(v, sum));
                }
                // Lane [r.b] scale = d_w(r) * d_a(b), as the scalar kernel computes it.
                let dw = bodies::f16x4_to_f32(blocks.map(|blk| blk.scale_bits()));
                let [da0, da1] = ab.map(|a| a.scale());
                let da = vcombine_f32(vcreate_f32_pair(da0, da1), vcreate_f32_pair(da0, da1));
                let dw_pairs = [vzip1q_f32(dw, dw), vzip2q_f32(dw, dw)];
                for p in 0..2 {
                    let scale = vmulq_f32(dw_pairs[p], da);
                    y[p] = vaddq_f32(y[p], vmulq_f32(vcvtq_f32_s32(isum[p]), scale));
                }
            }
            store_tile(out, bb, r0, y.map(|v| bodies::lanes_f32(v)));
        }
    }
}

/// [x, y] as an int32x2.
#[target_feature(enable = "neon")]
#[inline]
fn vcreate_s32_pair(x: i32, y: i32) -> int32x2_t {
    vset_lane_s32::<1>(y, vdup_n_s32(x))
}

/// [x, y] as a float32x2.
#[target_feature(enable = "neon")]
#[inline]
fn vcreate_f32_pair(x: f32, y: f32) -> float32x2_t {
    vset_lane_f32::<1>(y, vdup_n_f32(x))
}

aarch64_kernel!(I2s: "i2s-i8mm", I2s, I8mm, i2s_entry, I2sMatrix, token_q8);
aarch64_kernel!(Tq2: "tq2-i8mm", Tq2, I8mm, blocks_entry, Tq2Matrix, q8k);
aarch64_kernel!(Tq1: "tq1-i8mm", Tq1, I8mm, blocks_entry, Tq1Matrix, q8k);
aarch64_kernel!(Q8_0: "q8_0-i8mm", Q8_0, I8mm, blocks_entry, Q8_0Matrix, q8_0);
aarch64_kernel!(Q4_0: "q4_0-i8mm", Q4_0, I8mm, blocks_entry, Q4_0Matrix, q8_0);
