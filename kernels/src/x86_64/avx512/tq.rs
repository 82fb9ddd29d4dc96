//! The driver shared by the TQ2_0 and TQ1_0 kernels on AVX-512: everything
//! but turning one packed block into vectors of codes.
//!
//! Both formats have 256-weight blocks with an f16 scale each, against Q8_K
//! activation blocks with an f32 scale each, so every block needs its own
//! exact integer sum before it is scaled. Per tile of 4 rows and group of 8
//! blocks:
//! 1. each block of each row is unpacked once into `N` 64-byte code vectors
//!    (0..2) in a small L1 buffer, so a batch of tokens reuses the unpacking;
//! 2. per token and row, `vpdpbusd` multiplies the codes with activations
//!    prepared in the matching order ([`Q8kRows`]); the 8 block sums come out
//!    of one transposing reduction ([`hsum8_epi32`]), lane i = block i;
//! 3. isum_i = sum(code a) - sum(a) is exact; the float step per block is the
//!    scalar kernel's `isum as f32 * (d_w * d_a)`, added in 8 lanes, so only
//!    the order of the float additions differs from it.

use crate::kernel::OutputTile;
use crate::x86_64::avx2::{hsum8_epi32, hsum_ps};
use crate::x86_64::prep::{Q8kRows, BLOCK_GROUP};
use core::arch::x86_64::*;

/// Rows per tile.
pub(crate) const ROWS: usize = 4;

/// Where a row-major matrix of packed 256-weight blocks lies.
pub(crate) struct BlockRows {
    pub base: *const u8,
    pub block_bytes: usize,
    /// Offset of the f16 scale inside a block (at least 2).
    pub d_offset: usize,
    pub blocks_per_row: usize,
}

/// Scales of blocks first..first+valid of a row (0 after them).
///
/// # Safety
/// `row` must point at block `first` of a row holding at least `first + valid` blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn block_scales(w: &BlockRows, row: *const u8, valid: usize) -> __m256 {
    let mut d = [0u16; BLOCK_GROUP];
    for (j, dj) in d.iter_mut().enumerate().take(valid) {
        // SAFETY: the scale of block j < valid lies in the row (caller).
        *dj = unsafe { (row.add(j * w.block_bytes + w.d_offset) as *const u16).read_unaligned() };
    }
    // SAFETY: `d` holds 8 f16 values.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(d.as_ptr() as *const _) })
}

/// sum(code * a) of one block as 8 lanes.
///
/// # Safety
/// `a` must point at `N * 64` readable activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn block_dot<const N: usize>(codes: &[__m512i; N], a: *const i8) -> __m256i {
    let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for (k, c) in codes.iter().enumerate() {
        // SAFETY: vector k of the block is readable (caller).
        let av = unsafe { _mm512_loadu_si512(a.add(k * 64) as *const _) };
        if k % 2 == 0 {
            acc0 = _mm512_dpbusd_epi32(acc0, *c, av);
        } else {
            acc1 = _mm512_dpbusd_epi32(acc1, *c, av);
        }
    }
    let acc = _mm512_add_epi32(acc0, acc1);
    _mm256_add_epi32(
        _mm512_castsi512_si256(acc),
        _mm512_extracti64x4_epi64::<1>(acc),
    )
}

/// Batch 1: codes go straight from the unpacking to `vpdpbusd`, one row at a
/// time (the activations stay in L1).
///
/// # Safety
/// As [`tq_matmul`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tq_gemv<const N: usize>(
    w: &BlockRows,
    act: &Q8kRows,
    out: &mut OutputTile<'_>,
    unpack: impl Fn(*const u8) -> [__m512i; N],
) {
    let nb = w.blocks_per_row;
    let rows = out.rows();
    let y = out.row_mut(0);
    for r in rows.clone() {
        let mut accf = _mm256_setzero_ps();
        for g in 0..nb.div_ceil(BLOCK_GROUP) {
            let first = g * BLOCK_GROUP;
            let valid = (nb - first).min(BLOCK_GROUP);
            // SAFETY: row r exists (caller); blocks first..first+valid lie in it.
            let row = unsafe { w.base.add((r * nb + first) * w.block_bytes) };
            let a = act.block_ptr(0, first);
            let mut s = [_mm256_setzero_si256(); BLOCK_GROUP];
            for (j, sj) in s.iter_mut().enumerate().take(valid) {
                // SAFETY: block j < valid exists; token 0 holds it (caller).
                *sj = unsafe { block_dot(&unpack(row.add(j * w.block_bytes)), a.add(j * N * 64)) };
            }
            // SAFETY: padded_blocks is a multiple of 8, so 8 entries exist.
            let (sum_a, da) = unsafe {
                (
                    _mm256_loadu_si256(act.sum.as_ptr().add(first) as *const _),
                    _mm256_loadu_ps(act.d.as_ptr().add(first)),
                )
            };
            // SAFETY: as above.
            let dw = unsafe { block_scales(w, row, valid) };
            let isum = _mm256_sub_epi32(hsum8_epi32(s), sum_a);
            accf = _mm256_add_ps(
                accf,
                _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da)),
            );
        }
        y[r - rows.start] = hsum_ps(accf);
    }
}

/// y for `out`'s rows and every token.
///
/// # Safety
/// The CPU must have AVX-512F/BW/VL/VNNI (and what `unpack` uses); `w` must
/// describe a matrix holding every row of `out`, `act` must have
/// `w.blocks_per_row` blocks per token in a layout of `N * 64` bytes per block,
/// and `unpack` must read only the block it is given.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn tq_matmul<const N: usize>(
    w: &BlockRows,
    act: &Q8kRows,
    out: &mut OutputTile<'_>,
    unpack: impl Fn(*const u8) -> [__m512i; N],
) {
    let nb = w.blocks_per_row;
    let batch = out.batch();
    let rows = out.rows();
    if batch == 1 {
        // SAFETY: forwarded from the caller.
        unsafe { tq_gemv(w, act, out, unpack) };
        return;
    }
    let mut codes = [[[_mm512_setzero_si512(); N]; BLOCK_GROUP]; ROWS];
    let mut accf = vec![_mm256_setzero_ps(); ROWS * batch];
    let mut r = rows.start;
    while r < rows.end {
        let nr = (rows.end - r).min(ROWS);
        accf.fill(_mm256_setzero_ps());
        for g in 0..nb.div_ceil(BLOCK_GROUP) {
            let first = g * BLOCK_GROUP;
            let valid = (nb - first).min(BLOCK_GROUP);
            let mut dw = [_mm256_setzero_ps(); ROWS];
            for i in 0..nr {
                // SAFETY: row r+i exists (caller); blocks first..first+valid lie in it.
                let row = unsafe { w.base.add(((r + i) * nb + first) * w.block_bytes) };
                for (j, c) in codes[i].iter_mut().enumerate() {
                    // SAFETY: block j < valid of this row exists.
                    *c = if j < valid {
                        unpack(unsafe { row.add(j * w.block_bytes) })
                    } else {
                        [_mm512_setzero_si512(); N]
                    };
                }
                // SAFETY: the scales of the `valid` blocks lie in the row.
                dw[i] = unsafe { block_scales(w, row, valid) };
            }
            for t in 0..batch {
                let at = t * act.padded_blocks + first;
                // SAFETY: padded_blocks is a multiple of 8, so 8 entries exist.
                let (sum_a, da) = unsafe {
                    (
                        _mm256_loadu_si256(act.sum.as_ptr().add(at) as *const _),
                        _mm256_loadu_ps(act.d.as_ptr().add(at)),
                    )
                };
                let a = act.block_ptr(t, first);
                for i in 0..nr {
                    let mut s = [_mm256_setzero_si256(); BLOCK_GROUP];
                    for (j, sj) in s.iter_mut().enumerate().take(valid) {
                        // SAFETY: block first+j of token t holds N vectors (caller).
                        *sj = unsafe { block_dot(&codes[i][j], a.add(j * N * 64)) };
                    }
                    let isum = _mm256_sub_epi32(hsum8_epi32(s), sum_a);
                    let term = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw[i], da));
                    accf[i * batch + t] = _mm256_add_ps(accf[i * batch + t], term);
                }
            }
        }
        for t in 0..batch {
            let y = out.row_mut(t);
            for i in 0..nr {
                y[r - rows.start + i] = hsum_ps(accf[i * batch + t]);
            }
        }
        r += nr;
    }
}
