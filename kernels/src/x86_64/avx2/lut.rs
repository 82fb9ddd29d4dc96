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
//!
//! With the first token, each chunk also prefetches the same chunk of the
//! (tile, block) segment 2 on into L2 ([`Ahead`]): one instruction per chunk,
//! +2-4% instructions (valgrind, 64x6912); prefetching in address order with
//! `InOrderPrefetch` per 16 chunks cost +15-20%, and per chunk +50%, which
//! slowed the cache-hot GEMV. From DRAM at 6912x2560 on Zen 4 the GEMV gets
//! ~2x faster (tl1-avx2, 1 thread 820-1035 -> 283-463 us, 2 threads 427-506
//! -> 192-286 us).
//!
//! The `-lossy` kernels ([`crate::lossy`]) look up int8 codes: one 32-byte
//! table load [codes A | codes B] and one shuffle per nibble vector. Their
//! codes are widened without a shuffle-port instruction: `vpmaddubsw` with
//! the bytes [1, 0, 1, 0, ..] sign-extends the even bytes into int16 lanes
//! and `vpsraw` by 8 the odd ones, so even and odd rows accumulate in
//! separate int16 vectors (re-interleaved once per call). TL2 negates a code
//! where its sign bit is set as (q xor m) - m with m = 0xFF there
//! (|q| <= 127, so -q fits). Each int16 lane gets one code per chunk, so
//! 256 chunks sum to at most 256 * 127 = 32512 < 2^15: the int16 sums are
//! widened every 256 chunks.

use crate::cpu::CpuFeature;
use crate::formats::Format;
use crate::kernel::{Isa, KernelInfo};
use crate::lut::{Ahead, LutKernel, Part};
use core::arch::x86_64::*;
use std::ops::Range;

/// Chunks summed in int16 before widening.
const FLUSH: usize = 32;
/// The same for the lossy kernels (see the module docs).
const LOSSY_FLUSH: usize = 256;
const _: () = assert!(LOSSY_FLUSH as i32 * crate::lossy::MAX_CODE <= i16::MAX as i32);

const fn info(name: &'static str, format: Format, exact: bool) -> KernelInfo {
    KernelInfo {
        name,
        format,
        isa: Isa::Avx2,
        exact,
        requires: &[CpuFeature::Avx2],
        row_tile: 32,
    }
}

static TL1_INFO: KernelInfo = info("tl1-avx2", Format::Tl1, true);
static TL2_INFO: KernelInfo = info("tl2-avx2", Format::Tl2, true);
static TMAC_INFO: KernelInfo = info("tmac-avx2", Format::Tmac, true);
static TL1_LOSSY_INFO: KernelInfo = info("tl1-avx2-lossy", Format::Tl1, false);
static TL2_LOSSY_INFO: KernelInfo = info("tl2-avx2-lossy", Format::Tl2, false);
static TMAC_LOSSY_INFO: KernelInfo = info("tmac-avx2-lossy", Format::Tmac, false);

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
pub static TL1_LOSSY: LutKernel = LutKernel {
    info: &TL1_LOSSY_INFO,
    sums: lossy_sums,
};
pub static TL2_LOSSY: LutKernel = LutKernel {
    info: &TL2_LOSSY_INFO,
    sums: lossy_sums,
};
pub static TMAC_LOSSY: LutKernel = LutKernel {
    info: &TMAC_LOSSY_INFO,
    sums: lossy_sums,
};

/// # Safety
/// The CPU must have AVX2; `idx` and `tbl` must cover the chunks of `range`.
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

/// # Safety
/// As [`sums`].
unsafe fn lossy_sums(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
    ahead: Ahead,
) -> [i32; 32] {
    // SAFETY: forwarded from the caller.
    unsafe { crate::lut::dispatch_tile!(lossy_tile_sums(p, idx, tbl, range, ahead)) }
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
unsafe fn tile_sums<const SIGNED: bool, const SHIFT: i32, const PREFETCH: bool>(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
    ahead: Ahead,
) -> [i32; 32] {
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc32 = [_mm256_setzero_si256(); 4];
    // The prefetch address of chunk c: chunk c - range.start of the segment ahead.
    let ahead_offset =
        (ahead.at as usize).wrapping_sub(idx as usize + range.start * p.idx_chunk_bytes);
    let mut k = range.start;
    while k < range.end {
        let end = (k + FLUSH).min(range.end);
        let mut acc16 = [_mm256_setzero_si256(); 4];
        for c in k..end {
            if PREFETCH {
                let at = idx.wrapping_add(c * p.idx_chunk_bytes + ahead_offset);
                // Into L2 (T0 was slower: the lines displaced the tables
                // from L1). A prefetch never faults, whatever the address.
                _mm_prefetch::<_MM_HINT_T1>(at as *const i8);
            }
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
    if PREFETCH {
        // The segment's last line, which may hold no chunk's first byte.
        let last = ahead.at.wrapping_add(ahead.bytes - 1);
        _mm_prefetch::<_MM_HINT_T1>(last as *const i8);
    }
    let mut out = [0i32; 32];
    for i in 0..4 {
        // SAFETY: `out` holds 8 i32 at 8i.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * i) as *mut __m256i, acc32[i]) };
    }
    out
}

/// The 32 row sums of int8 codes of one tile over `range` (see the module docs).
///
/// # Safety
/// As [`sums`].
#[target_feature(enable = "avx2")]
unsafe fn lossy_tile_sums<const SIGNED: bool, const SHIFT: i32, const PREFETCH: bool>(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
    ahead: Ahead,
) -> [i32; 32] {
    let mask = _mm256_set1_epi8(0x0F);
    let even_bytes = _mm256_set1_epi16(1);
    // [even|odd][h]: int32 sums; lane i is row 16 h + 2 i (+ 1 for odd).
    let mut acc32 = [[_mm256_setzero_si256(); 2]; 2];
    // The prefetch address of chunk c: chunk c - range.start of the segment ahead.
    let ahead_offset =
        (ahead.at as usize).wrapping_sub(idx as usize + range.start * p.idx_chunk_bytes);
    let mut k = range.start;
    while k < range.end {
        let end = (k + LOSSY_FLUSH).min(range.end);
        // [even|odd][h]: int16 lane i < 8 is set A, lane 8 + i set B, of
        // row 16 h + 2 i (+ 1 for odd).
        let mut acc16 = [[_mm256_setzero_si256(); 2]; 2];
        for c in k..end {
            if PREFETCH {
                let at = idx.wrapping_add(c * p.idx_chunk_bytes + ahead_offset);
                // Into L2 (T0 was slower: the lines displaced the tables
                // from L1). A prefetch never faults, whatever the address.
                _mm_prefetch::<_MM_HINT_T1>(at as *const i8);
            }
            // SAFETY: chunk c exists in the tile and in the tables (caller);
            // a chunk's lossy tables are 32 bytes.
            let (x, t) = unsafe {
                (
                    _mm256_loadu_si256(idx.add(c * p.idx_chunk_bytes) as *const __m256i),
                    _mm256_loadu_si256(tbl.add(c * p.tbl_chunk_bytes) as *const __m256i),
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
                let mut q = _mm256_shuffle_epi8(t, v[h]);
                if SIGNED {
                    let m = expand_bits((signs >> (32 * h)) as u32);
                    q = _mm256_sub_epi8(_mm256_xor_si256(q, m), m);
                }
                // Unsigned 1 x even byte + 0 x odd byte: the even byte, sign-extended.
                let even = _mm256_maddubs_epi16(even_bytes, q);
                let odd = _mm256_srai_epi16::<8>(q);
                acc16[0][h] = _mm256_add_epi16(acc16[0][h], even);
                acc16[1][h] = _mm256_add_epi16(acc16[1][h], odd);
            }
        }
        for e in 0..2 {
            for h in 0..2 {
                let a = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc16[e][h]));
                let b = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(acc16[e][h]));
                let rows = _mm256_add_epi32(a, _mm256_slli_epi32::<SHIFT>(b));
                acc32[e][h] = _mm256_add_epi32(acc32[e][h], rows);
            }
        }
        k = end;
    }
    if PREFETCH {
        // The segment's last line, which may hold no chunk's first byte.
        let last = ahead.at.wrapping_add(ahead.bytes - 1);
        _mm_prefetch::<_MM_HINT_T1>(last as *const i8);
    }
    let mut out = [0i32; 32];
    for h in 0..2 {
        let (even, odd) = (acc32[0][h], acc32[1][h]);
        // [e0 o0 e1 o1 | e4 o4 e5 o5] and [e2 o2 e3 o3 | e6 o6 e7 o7].
        let lo = _mm256_unpacklo_epi32(even, odd);
        let hi = _mm256_unpackhi_epi32(even, odd);
        let first = _mm256_permute2x128_si256::<0x20>(lo, hi);
        let second = _mm256_permute2x128_si256::<0x31>(lo, hi);
        // SAFETY: `out` holds 16 i32 at 16 h.
        unsafe {
            _mm256_storeu_si256(out.as_mut_ptr().add(16 * h) as *mut __m256i, first);
            _mm256_storeu_si256(out.as_mut_ptr().add(16 * h + 8) as *mut __m256i, second);
        }
    }
    out
}
