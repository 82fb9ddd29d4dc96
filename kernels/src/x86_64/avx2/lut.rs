//! TL1, TL2 and T-MAC LUT kernels on AVX2: `vpshufb` looks up 32 table
//! entries per instruction, lossless (int16 entries as a low-byte and a
//! high-byte table, recombined with `vpunpck{l,h}bw`).
//!
//! One 32-byte load holds the 4-bit indices of two column groups (sets A, B)
//! for 32 rows (layout in [`crate::formats::lut`]); masking gives
//! [A rows 0..16 | B rows 0..16], shifting by 4 first [A rows 16..32 | B rows
//! 16..32], and the 32-byte table load [A | B] matches both lane for lane.
//! Per chunk: 4 shuffles, 4 unpacks and 4 int16 adds for 64 lookups (TL2
//! adds 4 shuffles of the negated tables and 2 byte blends driven by its
//! sign bits). int16 sums are widened to int32 every 32 chunks (|entry| <=
//! 512, so 32 * 512 < 2^15: no overflow), weighting set B by 2 for T-MAC's
//! second bit plane.

use crate::cpu::CpuFeature;
use crate::formats::Format;
use crate::kernel::{Isa, KernelInfo};
use crate::lut::{LutKernel, Part};
use core::arch::x86_64::*;
use std::ops::Range;

/// Chunks summed in int16 before widening.
const FLUSH: usize = 32;

const fn info(name: &'static str, format: Format) -> KernelInfo {
    KernelInfo {
        name,
        format,
        isa: Isa::Avx2,
        exact: true,
        requires: &[CpuFeature::Avx2],
        row_tile: 32,
    }
}

static TL1_INFO: KernelInfo = info("tl1-avx2", Format::Tl1);
static TL2_INFO: KernelInfo = info("tl2-avx2", Format::Tl2);
static TMAC_INFO: KernelInfo = info("tmac-avx2", Format::Tmac);

pub static TL1: LutKernel = LutKernel {
    info: &TL1_INFO,
    sums,
};
pub static TL2: LutKernel = LutKernel {
    info: &TL2_INFO,
    sums,
};
pub static TMAC: LutKernel = LutKernel {
    info: &TMAC_INFO,
    sums,
};

/// # Safety
/// The CPU must have AVX2; `idx` and `tbl` must cover the chunks of `range`.
unsafe fn sums(p: &Part, idx: *const u8, tbl: *const u8, range: Range<usize>) -> [i32; 32] {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (p.signed, p.b_shift) {
            (true, _) => tile_sums::<true, 0>(p, idx, tbl, range),
            (false, 1) => tile_sums::<false, 1>(p, idx, tbl, range),
            _ => tile_sums::<false, 0>(p, idx, tbl, range),
        }
    }
}

/// A byte mask from 32 bits: byte j is 0xFF where bit j of `bits` is set.
#[inline]
#[target_feature(enable = "avx2")]
fn expand_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    let pick = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3,
        3, 3,
    );
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, pick), sel), sel)
}

/// The 32 row sums of one tile over `range` (see the module docs).
///
/// # Safety
/// As [`sums`].
#[target_feature(enable = "avx2")]
unsafe fn tile_sums<const SIGNED: bool, const SHIFT: i32>(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
) -> [i32; 32] {
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc32 = [_mm256_setzero_si256(); 4];
    let mut k = range.start;
    while k < range.end {
        let end = (k + FLUSH).min(range.end);
        let mut acc16 = [_mm256_setzero_si256(); 4];
        for c in k..end {
            // SAFETY: chunk c exists in the tile and in the tables (caller).
            let (x, t) = unsafe {
                (
                    _mm256_loadu_si256(idx.add(c * p.idx_chunk_bytes) as *const __m256i),
                    tbl.add(c * p.tbl_chunk_bytes),
                )
            };
            // SAFETY: a chunk's tables are 64 (128 when signed) bytes.
            let (tlo, thi) = unsafe {
                (
                    _mm256_loadu_si256(t as *const __m256i),
                    _mm256_loadu_si256(t.add(32) as *const __m256i),
                )
            };
            let v = [
                _mm256_and_si256(x, mask),
                _mm256_and_si256(_mm256_srli_epi16::<4>(x), mask),
            ];
            let signs = if SIGNED {
                // SAFETY: a signed chunk has 8 sign bytes after its 32 index bytes.
                unsafe {
                    std::ptr::read_unaligned(idx.add(c * p.idx_chunk_bytes + 32) as *const u64)
                }
            } else {
                0
            };
            for h in 0..2 {
                let mut lo = _mm256_shuffle_epi8(tlo, v[h]);
                let mut hi = _mm256_shuffle_epi8(thi, v[h]);
                if SIGNED {
                    // SAFETY: signed chunks have negated tables at +64 and +96.
                    let (nlo, nhi) = unsafe {
                        (
                            _mm256_loadu_si256(t.add(64) as *const __m256i),
                            _mm256_loadu_si256(t.add(96) as *const __m256i),
                        )
                    };
                    let m = expand_bits((signs >> (32 * h)) as u32);
                    lo = _mm256_blendv_epi8(lo, _mm256_shuffle_epi8(nlo, v[h]), m);
                    hi = _mm256_blendv_epi8(hi, _mm256_shuffle_epi8(nhi, v[h]), m);
                }
                acc16[2 * h] = _mm256_add_epi16(acc16[2 * h], _mm256_unpacklo_epi8(lo, hi));
                acc16[2 * h + 1] = _mm256_add_epi16(acc16[2 * h + 1], _mm256_unpackhi_epi8(lo, hi));
            }
        }
        // acc16[i] lanes: [A | B] of rows 8i..8i+8 (an unpack keeps lanes).
        for i in 0..4 {
            let a = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc16[i]));
            let b = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(acc16[i]));
            acc32[i] =
                _mm256_add_epi32(acc32[i], _mm256_add_epi32(a, _mm256_slli_epi32::<SHIFT>(b)));
        }
        k = end;
    }
    let mut out = [0i32; 32];
    for i in 0..4 {
        // SAFETY: `out` holds 8 i32 at 8i.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * i) as *mut __m256i, acc32[i]) };
    }
    out
}
