//! The driver shared by the AVX2 kernels of block formats with one f16 scale
//! per block (TQ2_0, TQ1_0, Q6_K, Q8_0, Q4_0), and by their AVX-512 kernels
//! (whose `dot` uses 512- or 256-bit `vpdpbusd`): everything but turning one
//! packed block into vectors of codes and multiplying them with activations.
//!
//! Both paths give each (row, token) the exact integer sum of each block,
//! isum = sum(code a) - offset * sum(a), and add `isum as f32 * (d_w * d_a)`
//! in block order, as the scalar kernels do: outputs are bit-identical to them.
//! - GEMV ([`tq_gemv`]): `R` rows (the kernel's `row_tile`) share each
//!   block's activations; per block, the rows' 8-lane dot products are
//!   reduced together ([`hsum4_epi32`]). The next rows are prefetched
//!   into L2 in address order ([`InOrderPrefetch`]; into L1 instead, the
//!   2B4T lm_head from DRAM took 27.3 ms instead of 20.8-21.1 at 1 thread on
//!   a Sapphire-Rapids-class Xeon, q6_k and tq2 at 2560x6912 15-22% longer;
//!   on Zen 4 the two were within noise).
//! - GEMM ([`tq_gemm`]): per row and block, the codes are unpacked once and
//!   multiplied with 4 tokens' activations, whose sums are reduced together.
//!
//! The AVX2 kernels' codes are unsigned (below 3 for the ternary formats)
//! and multiplied with `vpmaddubsw`: a pair is at most 2 * 2 * 128 = 512 in magnitude, so up to
//! 63 vectors add up in 16 bits before one `vpmaddwd` widens them.

use super::hsum4_epi32;
use crate::formats::{BlockMatrix, PackedBlock};
use crate::kernel::{OutputTile, PreparedInput};
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use crate::x86_64::InOrderPrefetch;
use core::arch::x86_64::*;

/// Where a row-major matrix of packed 256-weight blocks lies.
pub(crate) struct BlockRows {
    pub base: *const u8,
    pub block_bytes: usize,
    /// Offset of the f16 scale inside a block.
    pub d_offset: usize,
    pub blocks_per_row: usize,
}

impl BlockRows {
    /// The rows of `m` (f16 scale at `d_offset` in each block) and the
    /// input's Q8_K rows in `layout` (derived here if another kernel prepared
    /// `x`), checked against each other and `out`: every read [`tq_matmul`]
    /// makes of the matrix and of the activation values lies inside them.
    pub(crate) fn checked<'a, B: PackedBlock>(
        m: &BlockMatrix<B>,
        d_offset: usize,
        x: &'a PreparedInput,
        layout: Q8kLayout,
        owned: &'a mut Option<Q8kRows>,
        out: &OutputTile<'_>,
    ) -> (BlockRows, &'a Q8kRows) {
        let act = Q8kRows::prepared(x, layout, owned);
        assert_eq!(act.blocks_per_row, m.blocks_per_row);
        assert!(act.q.len() >= out.batch() * act.blocks_per_row * layout.block_bytes());
        assert!(out.rows().end <= m.rows);
        assert!(d_offset + 2 <= B::BYTES);
        let rows = BlockRows {
            base: m.blocks.as_ptr() as *const u8,
            block_bytes: B::BYTES,
            d_offset,
            blocks_per_row: m.blocks_per_row,
        };
        (rows, act)
    }
}

/// sum(code * a) of one block as 8 lanes, for unsigned codes below 3.
///
/// # Safety
/// `a` must point at `N * 32` readable activations; N <= 63.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn block_dot<const N: usize>(codes: &[__m256i; N], a: *const i8) -> __m256i {
    let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for (k, c) in codes.iter().enumerate() {
        // SAFETY: vector k is readable (caller).
        let av = unsafe { _mm256_loadu_si256(a.add(k * 32) as *const _) };
        if k % 2 == 0 {
            s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(*c, av));
        } else {
            s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(*c, av));
        }
    }
    _mm256_madd_epi16(_mm256_add_epi16(s0, s1), _mm256_set1_epi16(1))
}

/// y for `out`'s rows and every token: per block, isum = sum(dot(codes, a))
/// - offset * sum(a) (the codes' offset from the real weights).
///
/// # Safety
/// The CPU must have AVX2 and F16C (and what `unpack` and `dot` use); `w`
/// must describe a matrix holding every row of `out`, `act` must have
/// `w.blocks_per_row` blocks per token in the layout `dot` reads, `unpack`
/// must read only the block it is given and `dot` only that block's
/// activations (its third argument is the block's index into `act.d`,
/// `act.sum`, `act.bsums`). The codes `unpack` returns (`C`) are whatever
/// `dot` takes: 256-bit vectors for AVX2, 512-bit ones for AVX-512.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn tq_matmul<C, const R: usize>(
    w: &BlockRows,
    act: &Q8kRows,
    out: &mut OutputTile<'_>,
    unpack: impl Fn(*const u8) -> C,
    dot: impl Fn(&C, *const i8, usize) -> __m256i,
    offset: i32,
) {
    if out.batch() == 1 {
        // SAFETY: forwarded from the caller.
        return unsafe { tq_gemv::<C, R>(w, act, out, unpack, dot, offset) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { tq_gemm(w, act, out, unpack, dot, offset) }
}

/// [`tq_matmul`] for one token, `R` (at most 4) rows per pass.
///
/// # Safety
/// As [`tq_matmul`], with `out.batch() == 1`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn tq_gemv<C, const R: usize>(
    w: &BlockRows,
    act: &Q8kRows,
    out: &mut OutputTile<'_>,
    unpack: impl Fn(*const u8) -> C,
    dot: impl Fn(&C, *const i8, usize) -> __m256i,
    offset: i32,
) {
    const { assert!(R >= 1 && R <= 4, "one 4-lane reduction per block") };
    let (nb, bytes) = (w.blocks_per_row, w.block_bytes);
    let row_bytes = nb * bytes;
    let a_bytes = act.layout.block_bytes();
    let a = act.q.as_ptr();
    let rows = out.rows();
    let last = rows.end - 1;
    let y = out.row_mut(0);
    let mut r = rows.start;
    while r < rows.end {
        let n = (rows.end - r).min(R);
        // A short tile repeats its last row; the extra results are dropped.
        // SAFETY: every row index is at most `last`, inside the matrix (caller).
        let row: [*const u8; R] =
            core::array::from_fn(|i| unsafe { w.base.add((r + i).min(last) * row_bytes) });
        // Prefetch the next tile's rows (contiguous, R rows on) where they exist.
        let mut next = (r + 2 * R <= rows.end)
            .then(|| InOrderPrefetch::new(row[0].wrapping_add(R * row_bytes)));
        let mut acc = _mm_setzero_ps();
        for b in 0..nb {
            // SAFETY: block b of token 0 is readable (caller).
            let ab = unsafe { a.add(b * a_bytes) };
            if let Some(pf) = next.as_mut() {
                pf.upto::<_MM_HINT_T1>((b + 1) * R * bytes);
            }
            let s: [__m256i; R] = core::array::from_fn(|i| {
                // SAFETY: block b of each row lies in the matrix (caller).
                dot(&unpack(unsafe { row[i].add(b * bytes) }), ab, b)
            });
            // SAFETY: the scale of block b lies in each row (caller).
            let dw = unsafe {
                let d = |i: usize| {
                    let p = row[i.min(R - 1)].add(b * bytes + w.d_offset);
                    (p as *const u16).read_unaligned() as i16
                };
                _mm_cvtph_ps(_mm_setr_epi16(d(0), d(1), d(2), d(3), 0, 0, 0, 0))
            };
            let four = core::array::from_fn(|i| if i < R { s[i] } else { s[0] });
            let isum = _mm_sub_epi32(hsum4_epi32(four), _mm_set1_epi32(offset * act.sum[b]));
            acc = _mm_add_ps(
                acc,
                _mm_mul_ps(_mm_cvtepi32_ps(isum), _mm_mul_ps(dw, _mm_set1_ps(act.d[b]))),
            );
        }
        let mut vals = [0.0f32; 4];
        // SAFETY: `vals` holds 4 floats.
        unsafe { _mm_storeu_ps(vals.as_mut_ptr(), acc) };
        y[r - rows.start..r - rows.start + n].copy_from_slice(&vals[..n]);
        r += n;
    }
}

/// Tokens per reduction in the GEMM.
const TOKENS: usize = 4;

/// [`tq_matmul`] for several tokens: per row and block, the codes are
/// unpacked once and multiplied with every token's activations, [`TOKENS`]
/// tokens at a time, whose 8-lane sums are reduced together
/// ([`hsum4_epi32`]); each (row, token) gets the scalar kernel's float step in
/// block order, in an accumulator per token.
///
/// # Safety
/// As [`tq_matmul`].
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn tq_gemm<C>(
    w: &BlockRows,
    act: &Q8kRows,
    out: &mut OutputTile<'_>,
    unpack: impl Fn(*const u8) -> C,
    dot: impl Fn(&C, *const i8, usize) -> __m256i,
    offset: i32,
) {
    let (nb, bytes) = (w.blocks_per_row, w.block_bytes);
    let a_bytes = act.layout.block_bytes();
    let a = act.q.as_ptr();
    let batch = out.batch();
    let groups = batch.div_ceil(TOKENS);
    let rows = out.rows();
    // A short last group repeats the last token; its extra sums are dropped.
    let token_at = |t: usize| t.min(batch - 1) * act.blocks_per_row;
    let mut acc = vec![0.0f32; groups * TOKENS];
    for r in rows.clone() {
        acc.fill(0.0);
        // SAFETY: row r lies in the matrix (caller).
        let row = unsafe { w.base.add(r * nb * bytes) };
        for b in 0..nb {
            // SAFETY: block b of row r lies in the matrix (caller).
            let blk = unsafe { row.add(b * bytes) };
            let codes = unpack(blk);
            // SAFETY: the scale of block b lies in the row (caller).
            let dw = unsafe { (blk.add(w.d_offset) as *const u16).read_unaligned() };
            let dw = _mm_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(dw as i32))));
            for (g, acc) in acc.chunks_exact_mut(TOKENS).enumerate() {
                let at: [usize; TOKENS] = core::array::from_fn(|j| token_at(g * TOKENS + j) + b);
                // SAFETY: block b of each token is readable (caller).
                let s = at.map(|at| dot(&codes, unsafe { a.add(at * a_bytes) }, at));
                let sum_a = at.map(|at| act.sum[at]);
                let da = at.map(|at| act.d[at]);
                // SAFETY: `sum_a`, `da` and `acc` hold 4 values each.
                unsafe {
                    let offsets = _mm_mullo_epi32(
                        _mm_loadu_si128(sum_a.as_ptr() as *const _),
                        _mm_set1_epi32(offset),
                    );
                    let isum = _mm_sub_epi32(hsum4_epi32(s), offsets);
                    let scale = _mm_mul_ps(dw, _mm_loadu_ps(da.as_ptr()));
                    let sum = _mm_add_ps(
                        _mm_loadu_ps(acc.as_ptr()),
                        _mm_mul_ps(_mm_cvtepi32_ps(isum), scale),
                    );
                    _mm_storeu_ps(acc.as_mut_ptr(), sum);
                }
            }
        }
        for (t, &v) in acc.iter().enumerate().take(batch) {
            out.row_mut(t)[r - rows.start] = v;
        }
    }
}
