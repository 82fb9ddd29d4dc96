//! Per-input lookup tables of the LUT formats (`tl1`, `tl2`, `tmac`), built
//! once per input in `prepare_input` (so their cost is part of every timed
//! call), the column blocking, and [`LutKernel`]: the kernel type every SIMD
//! LUT kernel (AVX2, AVX-512, NEON) is, whose only ISA-specific part is a
//! function summing one 32-row tile over a run of chunks ([`drive`] does the
//! rest: column blocks, tiles, tokens and the i2s-style scaling).
//!
//! Two forms:
//! - [`PlainTables`]: one `[i16; 16]` per column group and token, read by the
//!   scalar reference kernels.
//! - [`SplitTables`]: the byte-shuffle form. Per chunk and token 64 bytes
//!   `[lo A | lo B | hi A | hi B]` (16 bytes each: low and high bytes of the
//!   int16 entries of set A's and set B's table, so value = lo | hi << 8
//!   exactly), and for TL2 chunks 64 more bytes holding the negated tables.
//!   A 32-byte load gives the `[A | B]` lanes that the index layout of
//!   [`crate::formats::lut`] expects.
//!
//! The `-lossy` kernels ([`crate::lossy`]) are the same [`LutKernel`] with
//! int8 [`LossyTables`] (32 bytes per chunk, one shuffle per lookup) and
//! their own tile function; [`drive`] is shared, only the final scaling
//! differs.
//!
//! Column blocking: a GEMV reads every table once per 32-row tile, so SIMD
//! kernels walk the columns in blocks whose tables fit in half of the L1 data
//! cache and sweep all tiles of their rows per block. The block length is a
//! runtime parameter: the default comes from the L1 size (Linux sysfs, else
//! 32 KiB) and the shape, `TERNBENCH_LUT_KC` (chunks per block) overrides it,
//! and the kernels report it in the `variant` column. The index bytes of a
//! (tile, block) are one contiguous segment, a tile's chunks apart from the
//! next tile's, which the hardware prefetchers of Zen 4 do not follow from
//! DRAM: the x86 tile functions prefetch the segment 2 on in address order
//! ([`Ahead`]; cold 6912x2560 GEMV ~2x faster).

use crate::activations::{Activations, TokenQ8};
use crate::formats::lut::split_table;
use crate::formats::tl1::Tl1Matrix;
use crate::formats::tl2::Tl2Matrix;
use crate::formats::tmac::TmacMatrix;
use crate::formats::{aligned_filled, tl1, tl2, tmac, AlignedVec, Format};
use crate::kernel::{Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::lossy::{self, LossyTables};
use std::ops::Range;
use std::sync::OnceLock;

/// Activation `col` of token `b`, 0 past the padded row.
#[inline]
fn act_at(act: &TokenQ8, b: usize, col: usize) -> i8 {
    if col < act.stride {
        act.q[b * act.stride + col]
    } else {
        0
    }
}

/// The TL1 table of the pair starting at `col`.
fn tl1_table(act: &TokenQ8, b: usize, col: usize) -> [i16; 16] {
    tl1::table(act_at(act, b, col), act_at(act, b, col + 1))
}

fn tl2_table(act: &TokenQ8, b: usize, col: usize) -> [i16; 16] {
    tl2::table(std::array::from_fn(|i| act_at(act, b, col + i)))
}

fn tmac_table(act: &TokenQ8, b: usize, col: usize) -> [i16; 16] {
    tmac::table(std::array::from_fn(|i| act_at(act, b, col + i)))
}

/// One int16 table per column group and token.
#[derive(Clone, Debug)]
pub struct PlainTables {
    /// Tables per token.
    pub groups: usize,
    pub t: Vec<[i16; 16]>,
}

impl PlainTables {
    pub fn token(&self, b: usize) -> &[[i16; 16]] {
        &self.t[b * self.groups..(b + 1) * self.groups]
    }

    fn build(act: &TokenQ8, groups: usize, table: impl Fn(usize, usize) -> [i16; 16]) -> Self {
        let t = (0..act.batch)
            .flat_map(|b| (0..groups).map(move |g| (b, g)))
            .map(|(b, g)| table(b, g))
            .collect();
        PlainTables { groups, t }
    }

    /// TL1: group g is the pair at columns 2g, 2g + 1 (`chunks` chunks of 4 columns).
    pub fn tl1(act: &TokenQ8, chunks: usize) -> Self {
        Self::build(act, 2 * chunks, |b, g| tl1_table(act, b, 2 * g))
    }

    /// TL2: the 2 n3 triples, then the 2 n2 pairs of the leftover columns.
    pub fn tl2(act: &TokenQ8) -> Self {
        let (n3, n2) = tl2::chunk_counts(act.cols);
        let start = tl2::CHUNK_COLS * n3;
        let n3 = 2 * n3;
        Self::build(act, n3 + 2 * n2, |b, g| {
            if g < n3 {
                tl2_table(act, b, 3 * g)
            } else {
                tl1_table(act, b, start + 2 * (g - n3))
            }
        })
    }

    /// T-MAC: group g is columns 4g..4g + 4.
    pub fn tmac(act: &TokenQ8, chunks: usize) -> Self {
        Self::build(act, chunks, |b, g| tmac_table(act, b, 4 * g))
    }
}

/// Bytes per chunk of split tables without and with negated tables.
pub const PLAIN_CHUNK_BYTES: usize = 64;
pub const SIGNED_CHUNK_BYTES: usize = 128;

/// Byte-shuffle tables: per token, `signed` chunks of 128 bytes then `plain`
/// chunks of 64 bytes (see the module docs).
#[derive(Clone, Debug)]
pub struct SplitTables {
    pub signed: usize,
    pub plain: usize,
    /// Bytes per token.
    pub stride: usize,
    pub bytes: AlignedVec<u8>,
}

impl SplitTables {
    fn build(
        act: &TokenQ8,
        signed: usize,
        plain: usize,
        table: impl Fn(usize, usize, usize) -> [i16; 16],
    ) -> Self {
        let stride = signed * SIGNED_CHUNK_BYTES + plain * PLAIN_CHUNK_BYTES;
        let mut bytes = aligned_filled(act.batch * stride, 0u8);
        for b in 0..act.batch {
            let tok = &mut bytes[b * stride..(b + 1) * stride];
            for k in 0..signed + plain {
                let at = if k < signed {
                    k * SIGNED_CHUNK_BYTES
                } else {
                    signed * SIGNED_CHUNK_BYTES + (k - signed) * PLAIN_CHUNK_BYTES
                };
                for set in 0..2 {
                    let t = table(b, k, set);
                    let (lo, hi) = split_table(&t);
                    tok[at + 16 * set..at + 16 * set + 16].copy_from_slice(&lo);
                    tok[at + 32 + 16 * set..at + 48 + 16 * set].copy_from_slice(&hi);
                    if k < signed {
                        let (nlo, nhi) = split_table(&t.map(|v| -v));
                        tok[at + 64 + 16 * set..at + 80 + 16 * set].copy_from_slice(&nlo);
                        tok[at + 96 + 16 * set..at + 112 + 16 * set].copy_from_slice(&nhi);
                    }
                }
            }
        }
        SplitTables {
            signed,
            plain,
            stride,
            bytes,
        }
    }

    /// Tables of token `b`.
    pub fn token(&self, b: usize) -> &[u8] {
        &self.bytes[b * self.stride..(b + 1) * self.stride]
    }

    /// TL1: chunk k's sets are the pairs at 4k and 4k + 2.
    pub fn tl1(act: &TokenQ8, chunks: usize) -> Self {
        Self::build(act, 0, chunks, |b, k, s| tl1_table(act, b, 4 * k + 2 * s))
    }

    /// TL2: the triples at 6k and 6k + 3 (with negated tables), then the leftover TL1 chunks.
    pub fn tl2(act: &TokenQ8) -> Self {
        let (n3, n2) = tl2::chunk_counts(act.cols);
        let start = tl2::CHUNK_COLS * n3;
        Self::build(act, n3, n2, |b, k, s| {
            if k < n3 {
                tl2_table(act, b, 6 * k + 3 * s)
            } else {
                tl1_table(act, b, start + 4 * (k - n3) + 2 * s)
            }
        })
    }

    /// T-MAC: both sets (bit planes) of chunk k use the table of columns 4k..4k + 4.
    pub fn tmac(act: &TokenQ8, chunks: usize) -> Self {
        Self::build(act, 0, chunks, |b, k, _| tmac_table(act, b, 4 * k))
    }
}

/// Bytes of L1 data cache of this CPU (Linux sysfs), or 32 KiB when unknown.
pub fn l1d_bytes() -> usize {
    static L1: OnceLock<usize> = OnceLock::new();
    *L1.get_or_init(|| {
        let read = |i: usize| -> Option<(String, String, usize)> {
            let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
            let level = std::fs::read_to_string(format!("{dir}/level")).ok()?;
            let kind = std::fs::read_to_string(format!("{dir}/type")).ok()?;
            let size = std::fs::read_to_string(format!("{dir}/size")).ok()?;
            let size = size.trim();
            let bytes = match size.strip_suffix('K') {
                Some(k) => k.parse::<usize>().ok()? * 1024,
                None => size.parse().ok()?,
            };
            Some((level.trim().to_string(), kind.trim().to_string(), bytes))
        };
        (0..8)
            .filter_map(read)
            .find(|(level, kind, _)| level == "1" && kind == "Data")
            .map_or(32 * 1024, |(_, _, b)| b)
    })
}

/// The override of the column block from `TERNBENCH_LUT_KC`, if set and valid.
fn kc_override() -> Option<usize> {
    static KC: OnceLock<Option<usize>> = OnceLock::new();
    *KC.get_or_init(|| {
        std::env::var("TERNBENCH_LUT_KC")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&v| v > 0)
    })
}

/// Chunks per column block for a kernel whose tables take `table_bytes`
/// bytes per chunk and token, over `chunks` chunks and `batch` tokens: as
/// many as fit in half the L1 data cache (at least 32), a multiple of 32 (the
/// int16 flush interval), or all of them if that is fewer.
pub fn column_block(table_bytes: usize, chunks: usize, batch: usize) -> usize {
    if let Some(kc) = kc_override() {
        return kc.min(chunks.max(1));
    }
    let fit = l1d_bytes() / 2 / (table_bytes * batch.clamp(1, 4)).max(1);
    let kc = (fit / 32 * 32).max(32);
    if kc >= chunks {
        chunks.max(1)
    } else {
        kc
    }
}

// ---- The SIMD LUT kernel type (x86 and AArch64 share it) ----

/// Sums of one tile: (part, tile's index pointer, token's table pointer,
/// chunks, segment to prefetch meanwhile).
///
/// # Safety
/// The CPU must have the features of the kernel that holds it, and the
/// pointers must cover the chunks of `range` (see [`crate::lut::drive`]).
pub(crate) type SumsFn = unsafe fn(&Part, *const u8, *const u8, Range<usize>, Ahead) -> [i32; 32];

/// A LUT kernel of one format on one ISA: lossless (int16 [`SplitTables`])
/// when `info.exact`, else lossy (int8 [`LossyTables`], `sums` then adds codes).
pub struct LutKernel {
    pub(crate) info: &'static KernelInfo,
    pub(crate) sums: SumsFn,
}

fn tables_for(format: Format, act: &Activations) -> SplitTables {
    let t = act.token_q8();
    match format {
        Format::Tl1 => SplitTables::tl1(t, t.cols.div_ceil(tl1::CHUNK_COLS)),
        Format::Tl2 => SplitTables::tl2(t),
        Format::Tmac => SplitTables::tmac(t, t.cols.div_ceil(tmac::CHUNK_COLS)),
        other => unreachable!("{other} is not a LUT format"),
    }
}

/// The tables one LUT kernel reads.
enum Tables<'a> {
    Split(&'a SplitTables),
    Lossy(&'a LossyTables),
}

impl Tables<'_> {
    fn token(&self, b: usize) -> &[u8] {
        match self {
            Tables::Split(t) => t.token(b),
            Tables::Lossy(t) => t.token(b),
        }
    }
}

impl LutKernel {
    fn lossy(&self) -> bool {
        !self.info.exact
    }

    /// Table bytes per chunk of (TL1/T-MAC or TL2 leftover, TL2) chunks.
    fn chunk_bytes(&self) -> (usize, usize) {
        if self.lossy() {
            (lossy::CHUNK_BYTES, lossy::CHUNK_BYTES)
        } else {
            (PLAIN_CHUNK_BYTES, SIGNED_CHUNK_BYTES)
        }
    }
}

impl Kernel for LutKernel {
    fn info(&self) -> &'static KernelInfo {
        self.info
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let derived: Box<dyn std::any::Any + Send + Sync> = if self.lossy() {
            Box::new(LossyTables::new(self.info.format, act.token_q8()))
        } else {
            Box::new(tables_for(self.info.format, &act))
        };
        PreparedInput {
            act,
            derived: Some(derived),
        }
    }

    fn variant(&self, w: &PreparedWeights, batch: usize) -> String {
        let (plain, signed) = self.chunk_bytes();
        let (bytes, chunks, cols) = match self.info.format {
            Format::Tl2 => (signed, w.cols / tl2::CHUNK_COLS, tl2::CHUNK_COLS),
            _ => (plain, w.cols.div_ceil(4), 4),
        };
        let tables = if self.lossy() { ",int8-tables" } else { "" };
        describe_blocking(bytes, chunks, cols, batch) + tables
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        if let Some(missing) = crate::cpu::features().first_missing(self.info.requires) {
            panic!(
                "kernel {} needs the CPU feature '{missing}', which this CPU does not have",
                self.info.name
            );
        }
        let act = x.act.token_q8();
        let format = self.info.format;
        let (split, lossy);
        let tables = if self.lossy() {
            lossy = x.derived_or(|| LossyTables::new(format, act));
            Tables::Lossy(&lossy)
        } else {
            split = x.derived_or(|| tables_for(format, &x.act));
            Tables::Split(&split)
        };
        let (plain_bytes, signed_bytes) = self.chunk_bytes();
        let plain = |idx: *const u8, chunks: usize, tbl_offset: usize, b_shift: u32| Part {
            idx,
            idx_chunk_bytes: 32,
            chunks,
            tbl_offset,
            tbl_chunk_bytes: plain_bytes,
            signed: false,
            b_shift,
        };
        let (parts, scale, subtract_sum, rows, tiles) = match format {
            Format::Tl1 => {
                let m = w.expect::<Tl1Matrix>();
                let p = plain(m.tiles.chunks.as_ptr().cast(), m.chunks_per_tile, 0, 0);
                (vec![p], m.scale, false, m.rows, m.tiles.tiles)
            }
            Format::Tmac => {
                let m = w.expect::<TmacMatrix>();
                let p = plain(m.tiles.chunks.as_ptr().cast(), m.chunks_per_tile, 0, 1);
                (vec![p], m.scale, true, m.rows, m.tiles.tiles)
            }
            Format::Tl2 => {
                let m = w.expect::<Tl2Matrix>();
                let (n3, n2) = (m.tl2_per_tile, m.tl1_per_tile);
                let signed = Part {
                    idx: m.tl2.chunks.as_ptr().cast(),
                    idx_chunk_bytes: tl2::BLOCK_BYTES,
                    chunks: n3,
                    tbl_offset: 0,
                    tbl_chunk_bytes: signed_bytes,
                    signed: true,
                    b_shift: 0,
                };
                let rest = plain(m.tl1.chunks.as_ptr().cast(), n2, n3 * signed_bytes, 0);
                (vec![signed, rest], m.scale, false, m.rows, m.tl2.tiles)
            }
            other => unreachable!("{other} is not a LUT format"),
        };
        // The tables were built for this format and shape: every token's
        // tables hold exactly the chunks of the parts.
        let table_bytes: usize = parts.iter().map(|p| p.chunks * p.tbl_chunk_bytes).sum();
        match &tables {
            Tables::Split(t) => {
                assert_eq!(t.stride, table_bytes);
                assert_eq!(t.bytes.len(), t.stride * act.batch);
            }
            Tables::Lossy(t) => {
                // (TL1 and T-MAC tables have the same size.)
                assert_eq!(t.format, format, "lossy tables of another format");
                assert_eq!(t.stride, table_bytes);
                assert_eq!(t.bytes.len(), t.stride * act.batch);
                assert_eq!(t.scale.len(), act.batch);
            }
        }
        assert!(out.rows().end <= rows && rows.div_ceil(32) == tiles);
        assert!(act.batch == out.batch());
        let sums = self.sums;
        // SAFETY: the CPU has the kernel's features (checked above); the
        // parts point at the matrix's tiles (all of them exist: asserted) and
        // every token's tables hold the parts' chunks (asserted sizes).
        let acc = unsafe {
            drive(
                &parts,
                out.rows(),
                out.batch(),
                &|b| tables.token(b).as_ptr(),
                &|p, i, t, r, a| sums(p, i, t, r, a),
            )
        };
        for b in 0..out.batch() {
            let factor = act.output_factor(b, scale);
            let offset = if subtract_sum { act.sum[b] } else { 0 };
            let (y, s) = (out.row_mut(b), acc.token(b));
            match &tables {
                Tables::Split(_) => {
                    for (y, &s) in y.iter_mut().zip(s) {
                        *y = (s - offset) as f32 * factor;
                    }
                }
                Tables::Lossy(t) => {
                    let ts = t.scale[b];
                    for (y, &s) in y.iter_mut().zip(s) {
                        *y = ts.output(s, offset, factor);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_tables_hold_the_plain_tables() {
        let q: Vec<i8> = (0..2 * 40).map(|i| (i * 37 % 256) as u8 as i8).collect();
        let act = TokenQ8::from_quantized(2, 40, &q, &[1.0, 2.0]);
        let plain = PlainTables::tl1(&act, 10);
        let split = SplitTables::tl1(&act, 10);
        for b in 0..2 {
            for k in 0..10 {
                for s in 0..2 {
                    let t = plain.token(b)[2 * k + s];
                    for (i, &want) in t.iter().enumerate() {
                        let at = 64 * k + 16 * s + i;
                        let tok = split.token(b);
                        let v = (tok[at] as u16 | (tok[at + 32] as u16) << 8) as i16;
                        assert_eq!(v, want);
                    }
                }
            }
        }
    }

    #[test]
    fn each_segment_prefetches_a_later_one() {
        let buf = [0u8; 1];
        for (chunk_bytes, chunks, kc) in [(32, 640, 256), (40, 426, 128), (32, 5, 5)] {
            let part = Part {
                idx: buf.as_ptr(),
                idx_chunk_bytes: chunk_bytes,
                chunks,
                tbl_offset: 0,
                tbl_chunk_bytes: 64,
                signed: false,
                b_shift: 0,
            };
            for tiles in [3..9, 4..5] {
                // Segments in drive's order: (block start, tile, first byte, bytes).
                let order: Vec<(usize, usize, usize, usize)> = (0..chunks)
                    .step_by(kc)
                    .flat_map(|s| tiles.clone().map(move |t| (s, t)))
                    .map(|(s, t)| {
                        let n = kc.min(chunks - s);
                        (s, t, (t * chunks + s) * chunk_bytes, n * chunk_bytes)
                    })
                    .collect();
                for (i, &(s, t, ..)) in order.iter().enumerate() {
                    let want =
                        order
                            .get(i + PREFETCH_SEGMENTS)
                            .map_or(Ahead::NONE, |&(.., at, bytes)| Ahead {
                                at: part.idx.wrapping_add(at),
                                bytes,
                            });
                    let got = part.ahead(kc, tiles.clone(), s, t);
                    assert_eq!(got, want, "segment {i} of {chunks}/{kc}, tiles {tiles:?}");
                    // Never longer than the segment being summed.
                    assert!(got.bytes <= kc.min(chunks - s) * chunk_bytes);
                }
            }
        }
    }

    #[test]
    fn column_blocks_are_flush_multiples() {
        assert_eq!(column_block(64, 10, 1), 10);
        let kc = column_block(128, 100_000, 1);
        assert!(kc >= 32 && kc.is_multiple_of(32));
        assert!(l1d_bytes() >= 1024);
    }
}

/// One run of chunks of a packed LUT matrix, as a SIMD tile kernel reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Part {
    /// First chunk of tile 0.
    pub idx: *const u8,
    /// Bytes per chunk (32, or 40 for TL2 chunks with sign bits).
    pub idx_chunk_bytes: usize,
    /// Chunks per tile.
    pub chunks: usize,
    /// Byte offset of this part's tables within a token's [`SplitTables`].
    pub tbl_offset: usize,
    /// Table bytes per chunk (64, or 128 with negated tables).
    pub tbl_chunk_bytes: usize,
    /// Whether the chunks carry sign bits (TL2).
    pub signed: bool,
    /// Set B counts 2^shift times set A (1 for the bit planes of `tmac`, else 0).
    pub b_shift: u32,
}

/// The index bytes of a later (tile, block) segment of the same part, which
/// the x86 tile functions prefetch while they sum the current one (NEON
/// ignores it): with chunk c they prefetch the first byte of the segment's
/// chunk c - range.start (one instruction per chunk; a 64-byte line holds the
/// first byte of at least one chunk of at most 64 bytes), and its last byte
/// at the end. A segment is never longer than the one being summed (blocks
/// only shrink, at the end); the prefetches past a shorter one's end are
/// harmless. `bytes` 0: none (the first token's call gets one, the others
/// read the same segment); `at` may be any address, a prefetch never faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ahead {
    pub at: *const u8,
    pub bytes: usize,
}

impl Ahead {
    pub const NONE: Ahead = Ahead {
        at: std::ptr::null(),
        bytes: 0,
    };
}

/// (Tile, block) segments the tile functions prefetch ahead of the one they
/// sum: 2 (5-16 KB on) covers a DRAM access at every segment size; from DRAM
/// at 6912x2560 on Zen 4, 1 and 4 were no faster.
const PREFETCH_SEGMENTS: usize = 2;

impl Part {
    /// The segment [`PREFETCH_SEGMENTS`] on from (block at chunk `start`,
    /// tile `t`) in [`drive`]'s order (tiles of `tiles`, then blocks of `kc`
    /// chunks), none past the part's last block.
    fn ahead(&self, kc: usize, tiles: Range<usize>, start: usize, t: usize) -> Ahead {
        let step = t - tiles.start + PREFETCH_SEGMENTS;
        let next = start + step / tiles.len() * kc;
        if next >= self.chunks {
            return Ahead::NONE;
        }
        let tile = tiles.start + step % tiles.len();
        let offset = (tile * self.chunks + next) * self.idx_chunk_bytes;
        Ahead {
            at: self.idx.wrapping_add(offset),
            bytes: kc.min(self.chunks - next) * self.idx_chunk_bytes,
        }
    }
}

/// Calls `$tile::<SIGNED, SHIFT, PREFETCH>` (an x86 tile function) for the
/// part's kind (TL2's signed chunks, T-MAC's second bit plane weighted by 2,
/// TL1) and whether `ahead` holds a segment to prefetch.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch_tile {
    ($tile:ident($p:ident, $idx:ident, $tbl:ident, $range:ident, $ahead:ident)) => {
        match ($p.signed, $p.b_shift, $ahead.bytes > 0) {
            (true, _, true) => $tile::<true, 0, true>($p, $idx, $tbl, $range, $ahead),
            (true, _, false) => $tile::<true, 0, false>($p, $idx, $tbl, $range, $ahead),
            (false, 1, true) => $tile::<false, 1, true>($p, $idx, $tbl, $range, $ahead),
            (false, 1, false) => $tile::<false, 1, false>($p, $idx, $tbl, $range, $ahead),
            (_, _, true) => $tile::<false, 0, true>($p, $idx, $tbl, $range, $ahead),
            _ => $tile::<false, 0, false>($p, $idx, $tbl, $range, $ahead),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use dispatch_tile;

/// The 32 row sums of one tile over chunks `range` of a part, given the
/// part's index pointer for that tile and table pointer for one token.
pub(crate) type TileSums<'a> =
    dyn Fn(&Part, *const u8, *const u8, std::ops::Range<usize>, Ahead) -> [i32; 32] + 'a;

/// The integer row sums of a LUT matrix multiply, per token.
pub(crate) struct RowSums {
    acc: Vec<i32>,
    /// Accumulators per token (whole tiles).
    span: usize,
    /// Offset of the first requested row within the first tile.
    first: usize,
    len: usize,
}

impl RowSums {
    /// The sums of the requested rows for token `b`.
    pub fn token(&self, b: usize) -> &[i32] {
        &self.acc[b * self.span + self.first..][..self.len]
    }
}

/// Sums a LUT matrix multiply over `rows`: column blocks of
/// [`column_block`] chunks outermost, then 32-row tiles, then tokens, so the
/// tables of a block stay in L1 while every tile of the range reads them.
/// The caller scales the sums (for the lossless tables
/// y = (sum - offset) * output_factor with offset = sum(a) when the codes are
/// w + 1, as for i2s; [`crate::lossy`] for the int8 tables).
///
/// # Safety
/// Every part's `idx` must point at `tiles * chunks` chunks of
/// `idx_chunk_bytes` bytes covering the tiles of `rows`, and `tables(b)` must
/// point at token b's tables, which hold the part's chunks at `tbl_offset`.
pub(crate) unsafe fn drive(
    parts: &[Part],
    rows: Range<usize>,
    batch: usize,
    tables: &dyn Fn(usize) -> *const u8,
    sums: &TileSums<'_>,
) -> RowSums {
    use crate::formats::lut::TILE_ROWS;
    let (t0, t1) = (rows.start / TILE_ROWS, rows.end.div_ceil(TILE_ROWS));
    let span = (t1 - t0) * TILE_ROWS;
    let mut acc = vec![0i32; batch * span];
    if !rows.is_empty() {
        for part in parts.iter().filter(|p| p.chunks > 0) {
            let kc = column_block(part.tbl_chunk_bytes, part.chunks, batch);
            for start in (0..part.chunks).step_by(kc) {
                let range = start..(start + kc).min(part.chunks);
                for t in t0..t1 {
                    // SAFETY: tile t lies inside the part (caller).
                    let idx = unsafe { part.idx.add(t * part.chunks * part.idx_chunk_bytes) };
                    let ahead = part.ahead(kc, t0..t1, start, t);
                    for b in 0..batch {
                        // SAFETY: the token's tables hold this part (caller).
                        let tbl = unsafe { tables(b).add(part.tbl_offset) };
                        let a = if b == 0 { ahead } else { Ahead::NONE };
                        let s = sums(part, idx, tbl, range.clone(), a);
                        let dst = &mut acc[b * span + (t - t0) * TILE_ROWS..][..TILE_ROWS];
                        for (d, v) in dst.iter_mut().zip(s) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
    RowSums {
        acc,
        span,
        first: rows.start - t0 * TILE_ROWS,
        len: rows.len(),
    }
}

/// The `variant` string of a SIMD LUT kernel: tile rows and column block.
pub fn describe_blocking(
    table_bytes: usize,
    chunks: usize,
    cols_per_chunk: usize,
    batch: usize,
) -> String {
    let kc = column_block(table_bytes, chunks, batch);
    format!(
        "tile={}rows,kc={kc}chunks({}cols)",
        crate::formats::lut::TILE_ROWS,
        kc * cols_per_chunk
    )
}
