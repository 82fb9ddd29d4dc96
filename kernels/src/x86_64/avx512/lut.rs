//! TL1, TL2 and T-MAC LUT kernels on AVX-512 (F, BW): `vpshufb` on 64-byte
//! vectors looks up 64 table entries per instruction, lossless (int16
//! entries as a low-byte and a high-byte table).
//!
//! A chunk's 32 index bytes become one 64-byte index vector
//! [A rows 0..16 | B rows 0..16 | A rows 16..32 | B rows 16..32] (the
//! low nibbles, then the high nibbles: lane position p is index position p of
//! [`crate::formats::lut`]); the chunk's [A | B] tables are broadcast to
//! [A | B | A | B]. Per chunk: 2 shuffles, 2 unpacks, 2 int16 adds for 64
//! lookups. TL2's 64 sign bits are exactly a `__mmask64` over those
//! positions: a masked shuffle of the negated tables replaces the looked-up
//! bytes where the sign is set (2 more shuffles, no blends). int16 sums are
//! widened every 32 chunks (32 * 512 < 2^15). Each chunk prefetches the same
//! chunk of a later segment, as on AVX2.

use crate::formats::Format;
use crate::kernel::{Isa, KernelInfo};
use crate::lut::{Ahead, LutKernel, Part};
use crate::x86_64::avx512::BASE_FEATURES;
use core::arch::x86_64::*;
use std::ops::Range;

/// Chunks summed in int16 before widening.
const FLUSH: usize = 32;

const fn info(name: &'static str, format: Format) -> KernelInfo {
    KernelInfo {
        name,
        format,
        isa: Isa::Avx512,
        exact: true,
        requires: BASE_FEATURES,
        row_tile: 32,
    }
}

static TL1_INFO: KernelInfo = info("tl1-avx512", Format::Tl1);
static TL2_INFO: KernelInfo = info("tl2-avx512", Format::Tl2);
static TMAC_INFO: KernelInfo = info("tmac-avx512", Format::Tmac);

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
/// The CPU must have [`BASE_FEATURES`]; `idx` and `tbl` must cover the chunks of `range`.
unsafe fn sums(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
    ahead: Ahead,
) -> [i32; 32] {
    // SAFETY: forwarded from the caller.
    unsafe { crate::lut::dispatch_tile!(tile_sums(p, idx, tbl, range, ahead)) }
}

/// The 32 row sums of one tile over `range` (see the module docs).
///
/// # Safety
/// As [`sums`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_sums<const SIGNED: bool, const SHIFT: i32, const PREFETCH: bool>(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
    ahead: Ahead,
) -> [i32; 32] {
    let mask = _mm512_set1_epi8(0x0F);
    let mut acc32 = [_mm512_setzero_si512(); 4];
    // The prefetch address of chunk c: chunk c - range.start of the segment ahead.
    let ahead_offset =
        (ahead.at as usize).wrapping_sub(idx as usize + range.start * p.idx_chunk_bytes);
    let mut k = range.start;
    while k < range.end {
        let end = (k + FLUSH).min(range.end);
        let mut acc16 = [_mm512_setzero_si512(); 2];
        for c in k..end {
            if PREFETCH {
                let at = idx.wrapping_add(c * p.idx_chunk_bytes + ahead_offset);
                // Into L2 (T0 was slower: the lines displaced the tables
                // from L1). A prefetch never faults, whatever the address.
                _mm_prefetch::<_MM_HINT_T1>(at as *const i8);
            }
            // SAFETY: chunk c exists in the tile and in the tables (caller);
            // a chunk's tables are 64 (128 when signed) bytes.
            let (x, t) = unsafe {
                (
                    _mm256_loadu_si256(idx.add(c * p.idx_chunk_bytes) as *const __m256i),
                    tbl.add(c * p.tbl_chunk_bytes),
                )
            };
            let v = _mm512_and_si512(
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x), _mm256_srli_epi16::<4>(x)),
                mask,
            );
            // SAFETY: as above.
            let (tlo, thi) = unsafe {
                (
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(t as *const __m256i)),
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(t.add(32) as *const __m256i)),
                )
            };
            let mut lo = _mm512_shuffle_epi8(tlo, v);
            let mut hi = _mm512_shuffle_epi8(thi, v);
            if SIGNED {
                // SAFETY: a signed chunk has 8 sign bytes after its 32 index
                // bytes and negated tables at +64 and +96.
                let (signs, nlo, nhi) = unsafe {
                    (
                        std::ptr::read_unaligned(idx.add(c * p.idx_chunk_bytes + 32) as *const u64),
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(t.add(64) as *const __m256i)),
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(t.add(96) as *const __m256i)),
                    )
                };
                lo = _mm512_mask_shuffle_epi8(lo, signs, nlo, v);
                hi = _mm512_mask_shuffle_epi8(hi, signs, nhi, v);
            }
            acc16[0] = _mm512_add_epi16(acc16[0], _mm512_unpacklo_epi8(lo, hi));
            acc16[1] = _mm512_add_epi16(acc16[1], _mm512_unpackhi_epi8(lo, hi));
        }
        // acc16[0] lanes: [A r0-8 | B r0-8 | A r16-24 | B r16-24], acc16[1] the next 8 rows.
        for i in 0..2 {
            let lo = _mm512_cvtepi16_epi32(_mm512_castsi512_si256(acc16[i]));
            let hi = _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<1>(acc16[i]));
            acc32[2 * i] = _mm512_add_epi32(acc32[2 * i], lo);
            acc32[2 * i + 1] = _mm512_add_epi32(acc32[2 * i + 1], hi);
        }
        k = end;
    }
    if PREFETCH {
        // The segment's last line, which may hold no chunk's first byte.
        let last = ahead.at.wrapping_add(ahead.bytes - 1);
        _mm_prefetch::<_MM_HINT_T1>(last as *const i8);
    }
    // acc32[0]: rows 0-8 (A | B), [1]: rows 16-24, [2]: rows 8-16, [3]: rows 24-32.
    let mut out = [0i32; 32];
    for (i, first) in [0usize, 16, 8, 24].into_iter().enumerate() {
        let a = _mm512_castsi512_si256(acc32[i]);
        let b = _mm512_extracti64x4_epi64::<1>(acc32[i]);
        let rows = _mm256_add_epi32(a, _mm256_slli_epi32::<SHIFT>(b));
        // SAFETY: `out` holds 8 i32 at `first`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(first) as *mut __m256i, rows) };
    }
    out
}
