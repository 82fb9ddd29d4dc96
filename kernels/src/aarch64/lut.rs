//! TL1, TL2 and T-MAC LUT kernels on Armv8.0 NEON: `tbl` (`vqtbl1q_u8`)
//! looks up 16 table entries per instruction, lossless (int16 entries as a
//! low-byte and a high-byte table, recombined with `zip1`/`zip2`).
//!
//! A chunk's 32 index bytes are two 16-byte vectors: bytes 0..16 hold set A
//! (low nibbles rows 0..16, high nibbles rows 16..32), bytes 16..32 set B
//! (layout in [`crate::formats::lut`]), so the four nibble vectors are index
//! positions 0..16, 16..32, 32..48 and 48..64 and look up the A, B, A, B
//! tables of the chunk. TL2's sign bits for each 16 positions become a byte
//! mask (`cmtst`) that selects the lookup in the negated tables (`bsl`).
//! int16 sums are widened to int32 every 32 chunks (32 * 512 < 2^15).
//!
//! The `-lossy` kernels ([`crate::lossy`]) look up int8 codes: one `tbl` per
//! nibble vector in the chunk's [codes A | codes B] tables, widened into int16
//! lanes by `saddw`/`saddw2`; TL2 negates a code where its sign bit is set as
//! (q xor m) - m (|q| <= 127, so -q fits). Each int16 lane gets one code per
//! chunk: 256 chunks sum to at most 256 * 127 = 32512 < 2^15, so the int16
//! sums are widened every 256 chunks.
//!
//! Same driver, tables and scaling as the x86 LUT kernels
//! ([`crate::lut::LutKernel`]), so outputs are bit-identical to the scalar
//! reference.

// Accumulators are indexed by (nibble vector, row half) in nested loops;
// iterator chains over two-dimensional register arrays read worse.
#![allow(clippy::needless_range_loop)]

use crate::cpu::CpuFeature;
use crate::formats::Format;
use crate::kernel::{Isa, KernelInfo};
use crate::lut::{Ahead, LutKernel, Part};
use core::arch::aarch64::*;
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
        isa: Isa::Neon,
        exact,
        requires: &[CpuFeature::Neon],
        row_tile: 32,
    }
}

static TL1_INFO: KernelInfo = info("tl1-neon", Format::Tl1, true);
static TL2_INFO: KernelInfo = info("tl2-neon", Format::Tl2, true);
static TMAC_INFO: KernelInfo = info("tmac-neon", Format::Tmac, true);
static TL1_LOSSY_INFO: KernelInfo = info("tl1-neon-lossy", Format::Tl1, false);
static TL2_LOSSY_INFO: KernelInfo = info("tl2-neon-lossy", Format::Tl2, false);
static TMAC_LOSSY_INFO: KernelInfo = info("tmac-neon-lossy", Format::Tmac, false);

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
/// The CPU must have NEON; `idx` and `tbl` must cover the chunks of `range`.
unsafe fn sums(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
    _ahead: Ahead,
) -> [i32; 32] {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (p.signed, p.b_shift) {
            (true, _) => tile_sums::<true, 0>(p, idx, tbl, range),
            (false, 1) => tile_sums::<false, 1>(p, idx, tbl, range),
            _ => tile_sums::<false, 0>(p, idx, tbl, range),
        }
    }
}

/// # Safety
/// As [`sums`].
unsafe fn lossy_sums(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
    _ahead: Ahead,
) -> [i32; 32] {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (p.signed, p.b_shift) {
            (true, _) => lossy_tile_sums::<true, 0>(p, idx, tbl, range),
            (false, 1) => lossy_tile_sums::<false, 1>(p, idx, tbl, range),
            _ => lossy_tile_sums::<false, 0>(p, idx, tbl, range),
        }
    }
}

/// A byte mask from 16 bits: byte j is 0xFF where bit j of `bits` is set.
#[inline]
#[target_feature(enable = "neon")]
fn expand_bits(bits: u16) -> uint8x16_t {
    const SEL: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let v = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    // SAFETY: SEL holds 16 bytes.
    let sel = unsafe { vld1q_u8(SEL.as_ptr()) };
    vtstq_u8(v, sel)
}

/// The 32 row sums of one tile over `range` (see the module docs).
///
/// # Safety
/// As [`sums`].
#[target_feature(enable = "neon")]
unsafe fn tile_sums<const SIGNED: bool, const SHIFT: i32>(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
) -> [i32; 32] {
    let mask = vdupq_n_u8(0x0F);
    let mut acc32 = [vdupq_n_s32(0); 8];
    let mut k = range.start;
    while k < range.end {
        let end = (k + FLUSH).min(range.end);
        // acc16[q][h]: nibble vector q (positions 16q..16q+16), rows 8h..8h+8 of its 16.
        let mut acc16 = [[vdupq_n_s16(0); 2]; 4];
        for c in k..end {
            // SAFETY: chunk c exists in the tile and in the tables (caller);
            // a chunk's tables are 64 (128 when signed) bytes.
            let (x0, x1, t) = unsafe {
                let at = idx.add(c * p.idx_chunk_bytes);
                (
                    vld1q_u8(at),
                    vld1q_u8(at.add(16)),
                    tbl.add(c * p.tbl_chunk_bytes),
                )
            };
            let v = [
                vandq_u8(x0, mask),
                vandq_u8(x1, mask),
                vshrq_n_u8::<4>(x0),
                vshrq_n_u8::<4>(x1),
            ];
            // SAFETY: as above: [lo A, lo B, hi A, hi B] at 0, 16, 32, 48.
            let (lo_t, hi_t) = unsafe {
                (
                    [vld1q_u8(t), vld1q_u8(t.add(16))],
                    [vld1q_u8(t.add(32)), vld1q_u8(t.add(48))],
                )
            };
            let signs = if SIGNED {
                // SAFETY: a signed chunk has 8 sign bytes after its 32 index bytes.
                unsafe {
                    std::ptr::read_unaligned(idx.add(c * p.idx_chunk_bytes + 32) as *const u64)
                }
            } else {
                0
            };
            for q in 0..4 {
                let set = q % 2;
                let mut lo = vqtbl1q_u8(lo_t[set], v[q]);
                let mut hi = vqtbl1q_u8(hi_t[set], v[q]);
                if SIGNED {
                    // SAFETY: signed chunks have negated tables at +64.
                    let (nlo, nhi) = unsafe {
                        (
                            vld1q_u8(t.add(64 + 16 * set)),
                            vld1q_u8(t.add(96 + 16 * set)),
                        )
                    };
                    let m = expand_bits((signs >> (16 * q)) as u16);
                    lo = vbslq_u8(m, vqtbl1q_u8(nlo, v[q]), lo);
                    hi = vbslq_u8(m, vqtbl1q_u8(nhi, v[q]), hi);
                }
                let e0 = vreinterpretq_s16_u8(vzip1q_u8(lo, hi));
                let e1 = vreinterpretq_s16_u8(vzip2q_u8(lo, hi));
                acc16[q][0] = vaddq_s16(acc16[q][0], e0);
                acc16[q][1] = vaddq_s16(acc16[q][1], e1);
            }
        }
        for q in 0..4 {
            let (set, half) = (q % 2, q / 2);
            for h in 0..2 {
                let a = acc16[q][h];
                let mut lo = vmovl_s16(vget_low_s16(a));
                let mut hi = vmovl_high_s16(a);
                if set == 1 {
                    lo = vshlq_n_s32::<SHIFT>(lo);
                    hi = vshlq_n_s32::<SHIFT>(hi);
                }
                let r = (16 * half + 8 * h) / 4;
                acc32[r] = vaddq_s32(acc32[r], lo);
                acc32[r + 1] = vaddq_s32(acc32[r + 1], hi);
            }
        }
        k = end;
    }
    let mut out = [0i32; 32];
    for (i, a) in acc32.iter().enumerate() {
        // SAFETY: `out` holds 4 i32 at 4i.
        unsafe { vst1q_s32(out.as_mut_ptr().add(4 * i), *a) };
    }
    out
}

/// The 32 row sums of int8 codes of one tile over `range` (see the module docs).
///
/// # Safety
/// As [`sums`].
#[target_feature(enable = "neon")]
unsafe fn lossy_tile_sums<const SIGNED: bool, const SHIFT: i32>(
    p: &Part,
    idx: *const u8,
    tbl: *const u8,
    range: Range<usize>,
) -> [i32; 32] {
    let mask = vdupq_n_u8(0x0F);
    let mut acc32 = [vdupq_n_s32(0); 8];
    let mut k = range.start;
    while k < range.end {
        let end = (k + LOSSY_FLUSH).min(range.end);
        // acc16[q][h]: nibble vector q (positions 16q..16q+16), rows 8h..8h+8 of its 16.
        let mut acc16 = [[vdupq_n_s16(0); 2]; 4];
        for c in k..end {
            // SAFETY: chunk c exists in the tile and in the tables (caller);
            // a chunk's lossy tables are 32 bytes: [codes A | codes B].
            let (x0, x1, t) = unsafe {
                let at = idx.add(c * p.idx_chunk_bytes);
                let t = tbl.add(c * p.tbl_chunk_bytes);
                (
                    vld1q_u8(at),
                    vld1q_u8(at.add(16)),
                    [vld1q_s8(t as *const i8), vld1q_s8(t.add(16) as *const i8)],
                )
            };
            let v = [
                vandq_u8(x0, mask),
                vandq_u8(x1, mask),
                vshrq_n_u8::<4>(x0),
                vshrq_n_u8::<4>(x1),
            ];
            let signs = if SIGNED {
                // SAFETY: a signed chunk has 8 sign bytes after its 32 index bytes.
                unsafe {
                    std::ptr::read_unaligned(idx.add(c * p.idx_chunk_bytes + 32) as *const u64)
                }
            } else {
                0
            };
            for q in 0..4 {
                let mut e = vqtbl1q_s8(t[q % 2], v[q]);
                if SIGNED {
                    let m = vreinterpretq_s8_u8(expand_bits((signs >> (16 * q)) as u16));
                    e = vsubq_s8(veorq_s8(e, m), m);
                }
                acc16[q][0] = vaddw_s8(acc16[q][0], vget_low_s8(e));
                acc16[q][1] = vaddw_high_s8(acc16[q][1], e);
            }
        }
        for q in 0..4 {
            let (set, half) = (q % 2, q / 2);
            for h in 0..2 {
                let a = acc16[q][h];
                let mut lo = vmovl_s16(vget_low_s16(a));
                let mut hi = vmovl_high_s16(a);
                if set == 1 {
                    lo = vshlq_n_s32::<SHIFT>(lo);
                    hi = vshlq_n_s32::<SHIFT>(hi);
                }
                let r = (16 * half + 8 * h) / 4;
                acc32[r] = vaddq_s32(acc32[r], lo);
                acc32[r + 1] = vaddq_s32(acc32[r + 1], hi);
            }
        }
        k = end;
    }
    let mut out = [0i32; 32];
    for (i, a) in acc32.iter().enumerate() {
        // SAFETY: `out` holds 4 i32 at 4i.
        unsafe { vst1q_s32(out.as_mut_ptr().add(4 * i), *a) };
    }
    out
}
