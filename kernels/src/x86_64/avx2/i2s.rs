//! I2_S (bitnet.cpp, 2-bit codes w + 1, 128-weight blocks, per-tensor scale)
//! on AVX2, reading the standard layout.
//!
//! One 32-byte load is one block; shifting by 6, 4, 2, 0 and masking with 3
//! gives four vectors of codes (0..2) lined up with four consecutive 32-byte
//! runs of activations, so activations are read in their natural order.
//! `vpmaddubsw` multiplies codes (unsigned) with activations (signed) into
//! 16-bit pairs: |pair| <= 2 * 2 * 128 = 512, so it never saturates, even for
//! -128.
//!
//! - GEMV: the four group products of a block are added in 16 bits (<= 2048
//!   per block) for 8 blocks (<= 16384), then widened with one `vpmaddwd`:
//!   about 15 instructions per block and row. Four rows share each
//!   activation load; the next four rows are prefetched in address order
//!   ([`InOrderPrefetch`]).
//! - GEMM: codes are unpacked once per row and block and used for 4 tokens;
//!   2 rows x 4 tokens keep 8 accumulators (AVX2 has 16 registers).
//!
//! The integer result sum((w + 1) a) - sum(a) is scaled with the scalar
//! kernel's `output_factor`, so outputs are bit-identical to it.

use super::hsum4_epi32;
use crate::activations::TokenQ8;
use crate::cpu::CpuFeature;
use crate::formats::i2s::I2sMatrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::{ensure_features, InOrderPrefetch};
use core::arch::x86_64::*;

/// Rows per GEMV pass.
const ROWS: usize = 4;
/// Rows and tokens per GEMM tile.
const GEMM_ROWS: usize = 2;
const GEMM_TOKENS: usize = 4;
/// Blocks summed in 16 bits before widening (8 * 2048 <= 16384 < 2^15).
const I16_BLOCKS: usize = 8;
/// Extra accumulator round trips per 8 blocks in the slowed test variant.
#[cfg(feature = "slow-for-gate-test")]
const SLOW_FOR_GATE_TEST: usize = 2;

pub struct I2s;

static INFO: KernelInfo = KernelInfo {
    name: "i2s-avx2",
    format: Format::I2s,
    isa: Isa::Avx2,
    exact: true,
    requires: &[CpuFeature::Avx2],
    row_tile: ROWS,
};

impl Kernel for I2s {
    fn info(&self) -> &'static KernelInfo {
        &INFO
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        ensure_features(&INFO);
        let m = w.expect::<I2sMatrix>();
        let act = x.act.token_q8();
        assert!(act.stride >= m.packed.blocks_per_row * 128);
        assert!(out.rows().end <= m.packed.rows);
        // SAFETY: ensure_features checked AVX2; the asserts bound every read.
        unsafe { compute_avx2(m, act, out) }
    }
}

/// # Safety
/// The CPU must support AVX2; activation rows must cover `blocks_per_row *
/// 128` elements and `out.rows()` must lie inside the matrix.
#[target_feature(enable = "avx2")]
unsafe fn compute_avx2(m: &I2sMatrix, act: &TokenQ8, out: &mut OutputTile<'_>) {
    let nblocks = m.packed.blocks_per_row;
    let base = m.packed.blocks.as_ptr() as *const u8;
    let rows = out.rows();
    // SAFETY (for every use): rows passed are inside the matrix (caller).
    let row_ptr = |r: usize| unsafe { base.add(r * nblocks * 32) };
    if out.batch() == 1 {
        let a = act.row(0).as_ptr();
        let factor = act.output_factor(0, m.scale);
        let sum = act.sum[0];
        let y = out.row_mut(0);
        let mut r = rows.start;
        while r + ROWS <= rows.end {
            let w = [row_ptr(r), row_ptr(r + 1), row_ptr(r + 2), row_ptr(r + 3)];
            // Prefetch the next tile's rows only where they exist.
            let prefetch = r + 2 * ROWS <= m.packed.rows;
            // SAFETY: 4 rows inside the matrix, `a` covers them (caller).
            let acc = unsafe { gemv_rows::<ROWS>(w, a, nblocks, prefetch) };
            let s = hsum4_epi32(acc);
            let v = _mm_mul_ps(
                _mm_cvtepi32_ps(_mm_sub_epi32(s, _mm_set1_epi32(sum))),
                _mm_set1_ps(factor),
            );
            let o = &mut y[r - rows.start..r - rows.start + ROWS];
            // SAFETY: `o` holds exactly 4 floats.
            unsafe { _mm_storeu_ps(o.as_mut_ptr(), v) };
            r += ROWS;
        }
        for r in r..rows.end {
            // SAFETY: one row inside the matrix.
            let acc = unsafe { gemv_rows::<1>([row_ptr(r)], a, nblocks, false) };
            let coded = super::hsum_epi32(acc[0]);
            y[r - rows.start] = (coded - sum) as f32 * factor;
        }
        return;
    }
    let mut r = rows.start;
    while r < rows.end {
        let n = (rows.end - r).min(GEMM_ROWS);
        let mut t = 0;
        while t < out.batch() {
            let nt = (out.batch() - t).min(GEMM_TOKENS);
            // SAFETY: rows r..r+n and tokens t..t+nt exist (loop bounds).
            unsafe {
                match (n, nt) {
                    (2, 4) => gemm_tile::<2, 4>(m, act, out, r, t),
                    (2, 3) => gemm_tile::<2, 3>(m, act, out, r, t),
                    (2, 2) => gemm_tile::<2, 2>(m, act, out, r, t),
                    (2, _) => gemm_tile::<2, 1>(m, act, out, r, t),
                    (_, 4) => gemm_tile::<1, 4>(m, act, out, r, t),
                    (_, 3) => gemm_tile::<1, 3>(m, act, out, r, t),
                    (_, 2) => gemm_tile::<1, 2>(m, act, out, r, t),
                    _ => gemm_tile::<1, 1>(m, act, out, r, t),
                }
            }
            t += nt;
        }
        r += n;
    }
}

/// The four code vectors (0..2) of one block: group k = elements 32k..32k+32.
#[inline]
#[target_feature(enable = "avx2")]
fn unpack(wv: __m256i) -> [__m256i; 4] {
    let three = _mm256_set1_epi8(3);
    [
        _mm256_and_si256(_mm256_srli_epi16::<6>(wv), three),
        _mm256_and_si256(_mm256_srli_epi16::<4>(wv), three),
        _mm256_and_si256(_mm256_srli_epi16::<2>(wv), three),
        _mm256_and_si256(wv, three),
    ]
}

/// sum(code * a) over one block, in 16-bit lanes (each <= 2048 in magnitude).
///
/// # Safety
/// `a` must point at 128 readable activations.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_dot16(c: &[__m256i; 4], a: *const i8) -> __m256i {
    // SAFETY: 4 x 32 activations readable (caller).
    let av: [__m256i; 4] =
        core::array::from_fn(|k| unsafe { _mm256_loadu_si256(a.add(32 * k) as *const _) });
    let s01 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[0], av[0]),
        _mm256_maddubs_epi16(c[1], av[1]),
    );
    let s23 = _mm256_add_epi16(
        _mm256_maddubs_epi16(c[2], av[2]),
        _mm256_maddubs_epi16(c[3], av[3]),
    );
    _mm256_add_epi16(s01, s23)
}

/// sum(code * a) of `R` rows with one activation row, as vectors of 8 lanes.
/// With `prefetch`, the next `R` rows are prefetched in address order.
///
/// # Safety
/// AVX2; each `w[i]` points at `nblocks` blocks, `a` at `nblocks * 128` activations.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn gemv_rows<const R: usize>(
    w: [*const u8; R],
    a: *const i8,
    nblocks: usize,
    prefetch: bool,
) -> [__m256i; R] {
    let ones = _mm256_set1_epi16(1);
    // The rows are contiguous: the next tile starts R rows on.
    let mut next = prefetch.then(|| InOrderPrefetch::new(w[0].wrapping_add(R * nblocks * 32)));
    let mut acc = [_mm256_setzero_si256(); R];
    let mut blk = 0;
    while blk < nblocks {
        let end = (blk + I16_BLOCKS).min(nblocks);
        let mut acc16 = [_mm256_setzero_si256(); R];
        for b in blk..end {
            if let Some(pf) = next.as_mut() {
                pf.upto::<_MM_HINT_T0>((b + 1) * R * 32);
            }
            for i in 0..R {
                // SAFETY: block b of row i exists; activations b*128.. are readable.
                unsafe {
                    let c = unpack(_mm256_loadu_si256(w[i].add(32 * b) as *const _));
                    acc16[i] = _mm256_add_epi16(acc16[i], block_dot16(&c, a.add(128 * b)));
                }
            }
        }
        for i in 0..R {
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(acc16[i], ones));
        }
        // The deliberate slowdown of the gate's proof (tests/gate-proof.sh):
        // each black_box forces a spill and a reload of the accumulator.
        #[cfg(feature = "slow-for-gate-test")]
        for _ in 0..SLOW_FOR_GATE_TEST {
            for a in acc.iter_mut() {
                *a = core::hint::black_box(*a);
            }
        }
        blk = end;
    }
    acc
}

/// y for rows r..r+R and tokens t..t+T.
///
/// # Safety
/// AVX2; rows r..r+R and tokens t..t+T exist and activation rows cover the weights.
#[target_feature(enable = "avx2")]
unsafe fn gemm_tile<const R: usize, const T: usize>(
    m: &I2sMatrix,
    act: &TokenQ8,
    out: &mut OutputTile<'_>,
    r: usize,
    t: usize,
) {
    let nblocks = m.packed.blocks_per_row;
    let base = m.packed.blocks.as_ptr() as *const u8;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); T]; R];
    for b in 0..nblocks {
        for i in 0..R {
            // SAFETY: row r+i, block b exists (caller).
            let c = unpack(unsafe {
                _mm256_loadu_si256(base.add(((r + i) * nblocks + b) * 32) as *const _)
            });
            for j in 0..T {
                // SAFETY: token t+j's row covers block b (caller).
                let s = unsafe { block_dot16(&c, act.row(t + j).as_ptr().add(128 * b)) };
                acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(s, ones));
            }
        }
    }
    let rows0 = out.rows().start;
    for j in 0..T {
        let b = t + j;
        let four: [__m256i; 4] = core::array::from_fn(|i| {
            if i < R {
                acc[i][j]
            } else {
                _mm256_setzero_si256()
            }
        });
        let s = hsum4_epi32(four);
        let v = _mm_mul_ps(
            _mm_cvtepi32_ps(_mm_sub_epi32(s, _mm_set1_epi32(act.sum[b]))),
            _mm_set1_ps(act.output_factor(b, m.scale)),
        );
        let mut vals = [0.0f32; 4];
        // SAFETY: `vals` holds 4 floats.
        unsafe { _mm_storeu_ps(vals.as_mut_ptr(), v) };
        out.row_mut(b)[r - rows0..r - rows0 + R].copy_from_slice(&vals[..R]);
    }
}
