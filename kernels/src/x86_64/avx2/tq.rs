//! The driver shared by the TQ2_0 and TQ1_0 kernels on AVX2: everything but
//! turning one packed block into vectors of codes.
//!
//! Per row and group of 8 blocks: each block is unpacked once into `N`
//! 32-byte code vectors (0..2) and multiplied with every token's activations
//! (prepared in the matching order by [`Q8kRows`]) with `vpmaddubsw`: a pair
//! is at most 2 * 2 * 128 = 512 in magnitude, so up to 63 vectors add up in
//! 16 bits before one `vpmaddwd` widens them to the block's 8 lanes. The 8
//! block sums of a group come out of one transposing reduction
//! ([`hsum8_epi32`]); isum = sum(code a) - sum(a) is exact and the float step
//! per block is the scalar kernel's `isum as f32 * (d_w * d_a)`, added in 8
//! lanes (only the order of the float additions differs from it).

use super::{hsum8_epi32, hsum_ps};
use crate::kernel::OutputTile;
use crate::x86_64::prep::{Q8kRows, BLOCK_GROUP};
use core::arch::x86_64::*;

/// Where a row-major matrix of packed 256-weight blocks lies.
pub(crate) struct BlockRows {
    pub base: *const u8,
    pub block_bytes: usize,
    /// Offset of the f16 scale inside a block.
    pub d_offset: usize,
    pub blocks_per_row: usize,
}

/// Scales of blocks first..first+valid of a row (0 after them).
///
/// # Safety
/// `row` must point at the first block of a group with `valid` blocks.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn block_scales(w: &BlockRows, row: *const u8, valid: usize) -> __m256 {
    let mut d = [0u16; BLOCK_GROUP];
    for (j, dj) in d.iter_mut().enumerate().take(valid) {
        // SAFETY: the scale of block j < valid lies in the row (caller).
        *dj = unsafe { (row.add(j * w.block_bytes + w.d_offset) as *const u16).read_unaligned() };
    }
    // SAFETY: `d` holds 8 f16 values.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(d.as_ptr() as *const _) })
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
/// `w.blocks_per_row` blocks per token of `N * 32` bytes each, `unpack` must
/// read only the block it is given and `dot` only `N * 32` activations.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(crate) unsafe fn tq_matmul<const N: usize>(
    w: &BlockRows,
    act: &Q8kRows,
    out: &mut OutputTile<'_>,
    unpack: impl Fn(*const u8) -> [__m256i; N],
    dot: impl Fn(&[__m256i; N], *const i8) -> __m256i,
    offset: i32,
) {
    let nb = w.blocks_per_row;
    let offset = _mm256_set1_epi32(offset);
    let batch = out.batch();
    let rows = out.rows();
    let mut sums = vec![[_mm256_setzero_si256(); BLOCK_GROUP]; batch];
    let mut accf = vec![_mm256_setzero_ps(); batch];
    for r in rows.clone() {
        accf.fill(_mm256_setzero_ps());
        for g in 0..nb.div_ceil(BLOCK_GROUP) {
            let first = g * BLOCK_GROUP;
            let valid = (nb - first).min(BLOCK_GROUP);
            // SAFETY: row r exists (caller); blocks first..first+valid lie in it.
            let row = unsafe { w.base.add((r * nb + first) * w.block_bytes) };
            for j in 0..BLOCK_GROUP {
                if j >= valid {
                    sums.iter_mut().for_each(|s| s[j] = _mm256_setzero_si256());
                    continue;
                }
                // SAFETY: block j < valid of the row exists.
                let codes = unpack(unsafe { row.add(j * w.block_bytes) });
                for (t, s) in sums.iter_mut().enumerate() {
                    // SAFETY: token t holds block first+j (caller).
                    s[j] = dot(&codes, act.block_ptr(t, first + j));
                }
            }
            // SAFETY: as above.
            let dw = unsafe { block_scales(w, row, valid) };
            for (t, (s, acc)) in sums.iter().zip(accf.iter_mut()).enumerate() {
                let at = t * act.padded_blocks + first;
                // SAFETY: padded_blocks is a multiple of 8, so 8 entries exist.
                let (sum_a, da) = unsafe {
                    (
                        _mm256_loadu_si256(act.sum.as_ptr().add(at) as *const _),
                        _mm256_loadu_ps(act.d.as_ptr().add(at)),
                    )
                };
                let isum = _mm256_sub_epi32(hsum8_epi32(*s), _mm256_mullo_epi32(sum_a, offset));
                *acc = _mm256_add_ps(
                    *acc,
                    _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, da)),
                );
            }
        }
        for (t, acc) in accf.iter().enumerate() {
            out.row_mut(t)[r - rows.start] = hsum_ps(*acc);
        }
    }
}
