//! The kernel bodies shared by the NEON and dotprod kernels, generic over the
//! instruction that multiplies 16 int8 pairs ([`Dot`]), plus the weight
//! decoding every AArch64 kernel (i8mm included) uses.
//!
//! Shape of every body:
//! - a weight block is decoded 32 weights at a time ([`chunk`]) into two
//!   int8x16 vectors that line up with 32 consecutive activations, so one
//!   loop serves every format (i2s, tq2, tq1, q8_0, q4_0);
//! - rows are taken 4 at a time (`ROW_TILE`); their integer sums are reduced
//!   into one int32x4 with one lane per row (per block for the block formats,
//!   once per row for i2s), and the float step runs on those lanes. Per lane it is exactly the scalar reference's sequence
//!   (i2s: `(acc - sum) as f32 * factor`; block formats: `sum += isum as f32 *
//!   (d_w * d_a)` in block order, multiply then add, no FMA), so these kernels
//!   are bit-identical to the scalar ones, not merely within the float bound;
//! - a row range whose length is not a multiple of 4 repeats its last row in
//!   the spare lanes and drops them on store;
//! - q6_k has its own body ([`q6k`]): a scale per 16 weights does not fit
//!   the one-sum-per-block loop;
//! - i2s and tq2 codes stay unsigned (w + 1) and the activation sum is
//!   subtracted once per row (i2s) or block (tq2, from Q8_K's `bsums`), which
//!   saves a subtract per 16 weights; tq1 digits come out of two byte
//!   comparisons as signed weights directly (see [`trits`]).
//!
//! Tile shapes (4 rows, one batch item per pass for NEON/dotprod) are a
//! conventional GEMV choice, not tuned: this code has only run under qemu,
//! which says nothing about speed.
//!
//! Bodies are `#[target_feature(enable = "neon")]` functions rather than
//! `#[inline(always)]` ones: rustc rejects `inline(always)` together with
//! `target_feature`, and NEON intrinsics are only safe to call in a function
//! that enables NEON. The thin per-ISA entry points enable a superset of NEON,
//! so LLVM inlines the bodies into them.

use crate::activations::{BlockActivations, BlockQ8K, TokenQ8};
use crate::formats::i2s::{BlockI2s, I2sMatrix};
use crate::formats::q4_0::BlockQ4_0;
use crate::formats::q6_k::{BlockQ6K, Q6KMatrix};
use crate::formats::q8_0::BlockQ8_0;
use crate::formats::tq1::{BlockTq1, POW3};
use crate::formats::tq2::BlockTq2;
use crate::formats::{BlockMatrix, PackedBlock};
use crate::kernel::OutputTile;
use core::arch::aarch64::*;

/// Rows per pass of every AArch64 kernel: one float lane per row.
pub(super) const ROW_TILE: usize = 4;

/// A signed 8-bit dot-product instruction sequence, as a capability token:
/// holding a value proves the CPU can execute it (see the `new` constructors).
///
/// Products are added in runs: `start` opens a run on top of int32 lanes,
/// `dot` adds 16 products to it, `end` folds it back into int32 lanes. NEON
/// keeps a run in int16 lanes (`smlal`, two products per lane per `dot`) and
/// widens once per run (`sadalp`); sdot accumulates in int32 directly, so its
/// runs cost nothing. Callers keep every int16 lane of a run within range:
/// `2 * dots * max|w * a| <= i16::MAX` (see [`WeightLayout::MAX_PRODUCT`]).
pub(super) trait Dot: Copy {
    type Run: Copy;
    fn start(self, acc: int32x4_t) -> Self::Run;
    fn dot(self, run: Self::Run, w: int8x16_t, a: int8x16_t) -> Self::Run;
    fn end(self, acc: int32x4_t, run: Self::Run) -> int32x4_t;
}

/// Which packed layout a [`WeightLayout`] block has (decoding dispatches on it;
/// the match folds away per instantiation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    I2s,
    Tq2,
    Tq1,
    Q8_0,
    Q4_0,
}

/// A packed weight block that [`chunk`] can decode.
///
/// # Safety
/// The type has no padding bytes (its size equals the sum of its fields, which
/// each format asserts at compile time), so it can be read as
/// `size_of::<Self>()` initialised bytes.
pub(super) unsafe trait WeightLayout: PackedBlock {
    const KIND: Kind;
    /// 32-weight chunks per block.
    const CHUNKS: usize;
    /// Codes are w + 1 in 0..=2 (i2s, tq2): the body subtracts sum(a).
    const OFFSET: bool;
    /// Largest |code * a| over the format's codes and activation range; it
    /// decides how long a NEON int16 run may be.
    const MAX_PRODUCT: i32;
    /// One int16 run covers a whole block (else one run per `dot`).
    const BLOCK_RUN: bool = 2 * (2 * Self::CHUNKS as i32) * Self::MAX_PRODUCT <= i16::MAX as i32;
    /// The block's f16 scale, as bits (i2s has a per-tensor scale instead).
    fn scale_bits(&self) -> u16;

    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        // SAFETY: the trait's contract: no padding, so all size_of bytes are initialised.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Self).cast::<u8>(),
                std::mem::size_of::<Self>(),
            )
        }
    }
}

// SAFETY (all five): the blocks are #[repr(C)] arrays of bytes plus at most one
// f16 at an even offset, and each format asserts size_of == the sum of its fields.
unsafe impl WeightLayout for BlockI2s {
    const KIND: Kind = Kind::I2s;
    const CHUNKS: usize = 4;
    const OFFSET: bool = true;
    // codes 0..=2 times TokenQ8 activations in [-128, 127]
    const MAX_PRODUCT: i32 = 2 * 128;
    fn scale_bits(&self) -> u16 {
        unreachable!("i2s has one per-tensor scale")
    }
}
// SAFETY: see above.
unsafe impl WeightLayout for BlockTq2 {
    const KIND: Kind = Kind::Tq2;
    const CHUNKS: usize = 8;
    const OFFSET: bool = true;
    const MAX_PRODUCT: i32 = 2 * 128;
    fn scale_bits(&self) -> u16 {
        self.d.to_bits()
    }
}
// SAFETY: see above.
unsafe impl WeightLayout for BlockTq1 {
    const KIND: Kind = Kind::Tq1;
    const CHUNKS: usize = 8;
    const OFFSET: bool = false;
    const MAX_PRODUCT: i32 = 128;
    fn scale_bits(&self) -> u16 {
        self.d.to_bits()
    }
}
// SAFETY: see above.
unsafe impl WeightLayout for BlockQ8_0 {
    const KIND: Kind = Kind::Q8_0;
    const CHUNKS: usize = 1;
    const OFFSET: bool = false;
    // weights may be -128 (read from a file); Q8_0 activations are in [-127, 127]
    const MAX_PRODUCT: i32 = 128 * 127;
    fn scale_bits(&self) -> u16 {
        self.d.to_bits()
    }
}
// SAFETY: see above.
unsafe impl WeightLayout for BlockQ4_0 {
    const KIND: Kind = Kind::Q4_0;
    const CHUNKS: usize = 1;
    const OFFSET: bool = false;
    const MAX_PRODUCT: i32 = 8 * 128;
    fn scale_bits(&self) -> u16 {
        self.d.to_bits()
    }
}

/// One block of quantized activations paired 1:1 with a weight block.
pub(super) trait ActLayout: Sync {
    fn qs(&self) -> &[i8];
    fn scale(&self) -> f32;
    /// sum(qs), for weights stored with a +1 offset.
    fn sum(&self) -> i32;
}

impl ActLayout for BlockQ8K {
    #[inline(always)]
    fn qs(&self) -> &[i8] {
        &self.qs
    }
    #[inline(always)]
    fn scale(&self) -> f32 {
        self.d
    }
    #[inline(always)]
    fn sum(&self) -> i32 {
        self.bsums.iter().map(|&s| s as i32).sum()
    }
}

impl ActLayout for BlockQ8_0 {
    #[inline(always)]
    fn qs(&self) -> &[i8] {
        &self.qs
    }
    #[inline(always)]
    fn scale(&self) -> f32 {
        self.d.to_f32()
    }
    #[inline(always)]
    fn sum(&self) -> i32 {
        self.qs.iter().map(|&q| q as i32).sum()
    }
}

/// 16 bytes of `s` from `at` (bounds-checked; the offsets are constants after
/// inlining, so the checks fold away).
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn load_u8(s: &[u8], at: usize) -> uint8x16_t {
    let s = &s[at..at + 16];
    // SAFETY: `s` holds 16 readable bytes; ld1 has no alignment requirement.
    unsafe { vld1q_u8(s.as_ptr()) }
}

/// 16 int8 of `s` from `at` (bounds-checked like [`load_u8`]).
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn load_i8(s: &[i8], at: usize) -> int8x16_t {
    let s = &s[at..at + 16];
    // SAFETY: `s` holds 16 readable int8; ld1 has no alignment requirement.
    unsafe { vld1q_s8(s.as_ptr()) }
}

/// The 2-bit fields at bit offset `shift` of every byte: codes 0..=3.
#[target_feature(enable = "neon")]
#[inline]
fn crumbs(v: uint8x16_t, shift: usize) -> int8x16_t {
    // A right shift by a register amount (negative left shift); with the
    // loops unrolled LLVM turns it into an immediate `ushr`.
    let shifted = vshlq_u8(v, vdupq_n_s8(-(shift as i8)));
    vreinterpretq_s8_u8(vandq_u8(shifted, vdupq_n_u8(3)))
}

/// TQ1_0 digit at the top of `q` (= byte * 3^n mod 256) as a ternary weight.
/// The digit is (3 q) >> 8, which is 0 for q < 86, 1 for 86..=170 and 2 above,
/// so `w = digit - 1 = (q >= 171) - (q < 86)`; comparisons give -1 for true.
#[target_feature(enable = "neon")]
#[inline]
fn trits(q: uint8x16_t) -> int8x16_t {
    let low = vreinterpretq_s8_u8(vcltq_u8(q, vdupq_n_u8(86)));
    let high = vreinterpretq_s8_u8(vcgtq_u8(q, vdupq_n_u8(170)));
    vsubq_s8(low, high)
}

/// Weights 32c..32c+32 of a block as two int8x16 vectors in element order:
/// codes (w + 1) for the offset formats, signed weights for the others.
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn chunk<W: WeightLayout>(w: &W, c: usize) -> [int8x16_t; 2] {
    let b = w.bytes();
    match W::KIND {
        // Byte j: element j at bits 7:6, 32+j at 5:4, 64+j at 3:2, 96+j at 1:0.
        Kind::I2s => {
            let shift = 6 - 2 * c;
            [crumbs(load_u8(b, 0), shift), crumbs(load_u8(b, 16), shift)]
        }
        // Two 32-byte halves of 128 weights; byte m of a half holds elements
        // m, m+32, m+64, m+96 at bit offsets 0, 2, 4, 6.
        Kind::Tq2 => {
            let (half, shift) = (32 * (c / 4), 2 * (c % 4));
            [
                crumbs(load_u8(b, half), shift),
                crumbs(load_u8(b, half + 16), shift),
            ]
        }
        // qs[0..32] digit n: element 32n + m; qs[32..48] digit n: element
        // 160 + 16n + m; qh[m] digit n: element 240 + 4n + m.
        Kind::Tq1 => match c {
            0..5 => {
                let p = vdupq_n_u8(POW3[c]);
                [
                    trits(vmulq_u8(load_u8(b, 0), p)),
                    trits(vmulq_u8(load_u8(b, 16), p)),
                ]
            }
            5 | 6 => {
                let n = 2 * (c - 5);
                let v = load_u8(b, 32);
                [
                    trits(vmulq_u8(v, vdupq_n_u8(POW3[n]))),
                    trits(vmulq_u8(v, vdupq_n_u8(POW3[n + 1]))),
                ]
            }
            _ => {
                let v = load_u8(b, 32);
                // qh[0..4] in every 32-bit lane; byte lane 4n + m times 3^n.
                let qh = u32::from_le_bytes(b[48..52].try_into().expect("4 bytes"));
                let qh = vreinterpretq_u8_u32(vdupq_n_u32(qh));
                let pow = vreinterpretq_u8_u32(const_u32x4([
                    0x0101_0101,
                    0x0303_0303,
                    0x0909_0909,
                    0x1b1b_1b1b,
                ]));
                [
                    trits(vmulq_u8(v, vdupq_n_u8(POW3[4]))),
                    trits(vmulq_u8(qh, pow)),
                ]
            }
        },
        // d (2 bytes), then 32 int8.
        Kind::Q8_0 => [
            vreinterpretq_s8_u8(load_u8(b, 2)),
            vreinterpretq_s8_u8(load_u8(b, 18)),
        ],
        // d, then byte j: element j in the low nibble, j + 16 in the high one.
        Kind::Q4_0 => {
            let v = load_u8(b, 2);
            let eight = vdupq_n_s8(8);
            [
                vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), eight),
                vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), eight),
            ]
        }
    }
}

/// A constant uint32x4 (a load from a stack array the compiler folds).
#[target_feature(enable = "neon")]
#[inline]
fn const_u32x4(v: [u32; 4]) -> uint32x4_t {
    // SAFETY: `v` is 4 readable u32, naturally aligned.
    unsafe { vld1q_u32(v.as_ptr()) }
}

/// Four f16 bit patterns as f32 (exact; `fcvtl`, see [`fcvtl`]).
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn f16x4_to_f32(bits: [u16; 4]) -> float32x4_t {
    // SAFETY: `bits` is 4 readable, naturally aligned u16.
    let v = unsafe { vld1q_u16([bits[0], bits[1], bits[2], bits[3], 0, 0, 0, 0].as_ptr()) };
    fcvtl(v)
}

/// `fcvtl`: the low four f16 lanes of `h` widened to f32 (exact).
///
/// The f16 intrinsics (`vcvt_f32_f16`, `float16x4_t`) are stable only since
/// Rust 1.94, above this workspace's MSRV, so the conversion is one `asm!`
/// instruction. It is Armv8.0 Advanced SIMD (no FEAT_FP16 needed).
#[inline(always)]
pub(super) fn fcvtl(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: FP/ASIMD is part of the baseline of every AArch64 target Rust
    // supports; the instruction reads and writes only the two registers
    // given (no memory, no flags, no stack) and FPCR only decides NaN
    // propagation details here (f16 -> f32 is exact).
    unsafe {
        core::arch::asm!(
            "fcvtl {out:v}.4s, {h:v}.4h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// `fcvtl2`: the high four f16 lanes of `h` widened to f32 (exact).
#[inline(always)]
pub(super) fn fcvtl2(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: as for `fcvtl`.
    unsafe {
        core::arch::asm!(
            "fcvtl2 {out:v}.4s, {h:v}.8h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    out
}

/// The lanes of `v` as an array.
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn lanes_f32(v: float32x4_t) -> [f32; 4] {
    let mut out = [0.0f32; 4];
    // SAFETY: `out` has room for 4 f32.
    unsafe { vst1q_f32(out.as_mut_ptr(), v) };
    out
}

/// Horizontal sums of four int32x4: lane i = sum of `v[i]`.
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn reduce4(v: [int32x4_t; 4]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]))
}

/// The rows of one pass starting at `r0`: the last row of `rows` fills the
/// lanes past its end.
#[inline]
pub(super) fn row_tile(r0: usize, end: usize) -> [usize; ROW_TILE] {
    std::array::from_fn(|i| (r0 + i).min(end - 1))
}

/// Stores the lanes of one pass into `y[b][r0..]`, dropping the spare lanes.
#[inline]
pub(super) fn store_rows(out: &mut OutputTile<'_>, b: usize, r0: usize, y: [f32; ROW_TILE]) {
    let rows = out.rows();
    let n = (rows.end - r0).min(ROW_TILE);
    out.row_mut(b)[r0 - rows.start..][..n].copy_from_slice(&y[..n]);
}

/// Adds the products of four rows' blocks with the 32 * CHUNKS activations
/// `a` to `acc` (one int32x4 per row, lanes to be summed by the caller).
#[target_feature(enable = "neon")]
#[inline]
fn block_dots<D: Dot, W: WeightLayout>(
    d: D,
    mut acc: [int32x4_t; ROW_TILE],
    w: [&W; ROW_TILE],
    a: &[i8],
) -> [int32x4_t; ROW_TILE] {
    const { assert!(2 * W::MAX_PRODUCT <= i16::MAX as i32) };
    if W::BLOCK_RUN {
        let mut run = acc.map(|acc| d.start(acc));
        for c in 0..W::CHUNKS {
            let (a0, a1) = (load_i8(a, 32 * c), load_i8(a, 32 * c + 16));
            for r in 0..ROW_TILE {
                let [w0, w1] = chunk(w[r], c);
                run[r] = d.dot(d.dot(run[r], w0, a0), w1, a1);
            }
        }
        for r in 0..ROW_TILE {
            acc[r] = d.end(acc[r], run[r]);
        }
    } else {
        for c in 0..W::CHUNKS {
            let (a0, a1) = (load_i8(a, 32 * c), load_i8(a, 32 * c + 16));
            for r in 0..ROW_TILE {
                let [w0, w1] = chunk(w[r], c);
                acc[r] = d.end(acc[r], d.dot(d.start(acc[r]), w0, a0));
                acc[r] = d.end(acc[r], d.dot(d.start(acc[r]), w1, a1));
            }
        }
    }
    acc
}

/// I2_S: integer sums over the whole row, one float step per output.
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn i2s<D: Dot>(d: D, m: &I2sMatrix, act: &TokenQ8, out: &mut OutputTile<'_>) {
    let rows = out.rows();
    let nb = m.packed.blocks_per_row;
    for b in 0..out.batch() {
        let a = &act.row(b)[..nb * 128];
        let factor = act.output_factor(b, m.scale);
        let sum = vdupq_n_s32(act.sum[b]);
        for r0 in rows.clone().step_by(ROW_TILE) {
            let w = row_tile(r0, rows.end).map(|r| m.packed.row(r));
            // Integer sums run over the whole row; lanes are reduced once at the end.
            let mut acc = [vdupq_n_s32(0); ROW_TILE];
            for k in 0..nb {
                let blocks = std::array::from_fn(|i| &w[i][k]);
                acc = block_dots(d, acc, blocks, &a[128 * k..128 * (k + 1)]);
            }
            // Codes are w + 1: subtract sum(a); then (acc - sum) as f32 * factor.
            let y = vmulq_n_f32(vcvtq_f32_s32(vsubq_s32(reduce4(acc), sum)), factor);
            store_rows(out, b, r0, lanes_f32(y));
        }
    }
}

/// Block formats (tq2, tq1, q8_0, q4_0): per block, isum as f32 * (d_w * d_a)
/// added in block order, one lane per row.
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn blocks<D: Dot, W: WeightLayout, A: ActLayout>(
    d: D,
    m: &BlockMatrix<W>,
    act: &BlockActivations<A>,
    out: &mut OutputTile<'_>,
) {
    block_rows(m, act, out, W::scale_bits, |blocks, ab: &A| {
        let zero = [vdupq_n_s32(0); ROW_TILE];
        let isum = reduce4(block_dots(d, zero, blocks, ab.qs()));
        if W::OFFSET {
            vsubq_s32(isum, vdupq_n_s32(ab.sum()))
        } else {
            isum
        }
    })
}

/// The block formats' loop: for each row tile and block, `isum` gives the
/// rows' integer sums (a lane each), and `isum as f32 * (d_w * d_a)` is
/// added in block order, as the scalar kernels do.
#[target_feature(enable = "neon")]
#[inline]
fn block_rows<W: PackedBlock, A: ActLayout>(
    m: &BlockMatrix<W>,
    act: &BlockActivations<A>,
    out: &mut OutputTile<'_>,
    scale_bits: impl Fn(&W) -> u16,
    isum: impl Fn([&W; ROW_TILE], &A) -> int32x4_t,
) {
    let rows = out.rows();
    assert_eq!(
        act.blocks_per_row, m.blocks_per_row,
        "weight and activation blocks pair 1:1"
    );
    for b in 0..out.batch() {
        let a_row = act.row(b);
        for r0 in rows.clone().step_by(ROW_TILE) {
            let w = row_tile(r0, rows.end).map(|r| m.row(r));
            let mut y = vdupq_n_f32(0.0);
            for (k, ab) in a_row.iter().enumerate() {
                let blocks = std::array::from_fn(|i| &w[i][k]);
                let dw = f16x4_to_f32(blocks.map(&scale_bits));
                let scale = vmulq_n_f32(dw, ab.scale());
                y = vaddq_f32(y, vmulq_f32(vcvtq_f32_s32(isum(blocks, ab)), scale));
            }
            store_rows(out, b, r0, lanes_f32(y));
        }
    }
}

/// The 16 signed weights (code - 32) of elements 128h + 32k + l0 .. +16 of a
/// Q6_K block (l0 = 0 or 16): `ql[64h + 32(k & 1) + l0..]` holds their low 4
/// bits (low nibbles for k < 2, high ones above), `qh[32h + l0..]` their high
/// 2 bits at bit 2k.
#[target_feature(enable = "neon")]
#[inline]
fn q6k_weights(b: &BlockQ6K, h: usize, k: usize, l0: usize) -> int8x16_t {
    let ql = load_u8(&b.ql, 64 * h + 32 * (k & 1) + l0);
    let low = if k < 2 {
        vandq_u8(ql, vdupq_n_u8(0x0F))
    } else {
        vshrq_n_u8::<4>(ql)
    };
    let qh = vshlq_u8(load_u8(&b.qh, 32 * h + l0), vdupq_n_s8(-(2 * k as i8)));
    let high = vshlq_n_u8::<4>(vandq_u8(qh, vdupq_n_u8(3)));
    vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, high)), vdupq_n_s8(32))
}

/// Q6_K with Q8_K activations. Per block and row: each 16-weight sub-block's
/// `dot` (lanes summing to sum((code - 32) a), at most 16 * 32 * 128 in
/// magnitude, so a NEON int16 run of one `dot` cannot overflow) is multiplied
/// lane-wise by the sub-block's scale and added into int32 lanes, whose sum is
/// the scalar kernel's block integer (at most 2^27); then the block formats'
/// float step (`isum as f32 * (d_w * d_a)` in block order).
#[target_feature(enable = "neon")]
#[inline]
pub(super) fn q6k<D: Dot>(
    d: D,
    m: &Q6KMatrix,
    act: &BlockActivations<BlockQ8K>,
    out: &mut OutputTile<'_>,
) {
    let scale_bits = |b: &BlockQ6K| b.d.to_bits();
    block_rows(m, act, out, scale_bits, |blocks, ab| {
        let mut acc = [vdupq_n_s32(0); ROW_TILE];
        for h in 0..2 {
            for k in 0..4 {
                for l0 in [0, 16] {
                    let a = load_i8(&ab.qs, 128 * h + 32 * k + l0);
                    let j = 8 * h + 2 * k + l0 / 16;
                    for r in 0..ROW_TILE {
                        let wv = q6k_weights(blocks[r], h, k, l0);
                        let zero = vdupq_n_s32(0);
                        let sub = d.end(zero, d.dot(d.start(zero), wv, a));
                        acc[r] = vmlaq_n_s32(acc[r], sub, blocks[r].scales[j] as i32);
                    }
                }
            }
        }
        reduce4(acc)
    })
}
