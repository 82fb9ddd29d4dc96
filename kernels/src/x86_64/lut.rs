//! The LUT kernels' x86 plumbing shared by AVX2 and AVX-512: one kernel type
//! for the three LUT formats whose only ISA-specific part is the function
//! that sums one 32-row tile over a run of chunks (see `avx2::lut`,
//! `avx512::lut`).
//!
//! `prepare_input` builds the byte-shuffle tables ([`SplitTables`]) once per
//! input; `compute` splits the packed matrix into [`Part`]s (TL2: its
//! sign-and-magnitude chunks, then its leftover TL1 chunks) and hands them to
//! [`crate::lut::drive`], which blocks columns for L1 and scales like i2s, so
//! equal integer sums give outputs bit-identical to the scalar reference.

use crate::activations::Activations;
use crate::formats::tl1::Tl1Matrix;
use crate::formats::tl2::Tl2Matrix;
use crate::formats::tmac::TmacMatrix;
use crate::formats::{tl1, tl2, tmac, Format};
use crate::kernel::{Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::lut::{
    describe_blocking, drive, Part, SplitTables, PLAIN_CHUNK_BYTES, SIGNED_CHUNK_BYTES,
};
use crate::x86_64::ensure_features;
use std::ops::Range;

/// Sums of one tile: (part, tile's index pointer, token's table pointer, chunks).
///
/// # Safety
/// The CPU must have the features of the kernel that holds it, and the
/// pointers must cover the chunks of `range` (see [`crate::lut::drive`]).
pub(crate) type SumsFn = unsafe fn(&Part, *const u8, *const u8, Range<usize>) -> [i32; 32];

/// A LUT kernel of one format on one ISA.
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

impl Kernel for LutKernel {
    fn info(&self) -> &'static KernelInfo {
        self.info
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let t = tables_for(self.info.format, &act);
        PreparedInput {
            act,
            derived: Some(Box::new(t)),
        }
    }

    fn variant(&self, w: &PreparedWeights, batch: usize) -> String {
        let (bytes, chunks, cols) = match self.info.format {
            Format::Tl2 => (
                SIGNED_CHUNK_BYTES,
                w.cols / tl2::CHUNK_COLS,
                tl2::CHUNK_COLS,
            ),
            _ => (PLAIN_CHUNK_BYTES, w.cols.div_ceil(4), 4),
        };
        describe_blocking(bytes, chunks, cols, batch)
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        ensure_features(self.info);
        let act = x.act.token_q8();
        // An input prepared by another kernel lacks the tables.
        let owned;
        let tables = match x
            .derived
            .as_ref()
            .and_then(|d| d.downcast_ref::<SplitTables>())
        {
            Some(t) => t,
            None => {
                owned = tables_for(self.info.format, &x.act);
                &owned
            }
        };
        let plain = |idx: *const u8, chunks: usize, tbl_offset: usize, b_shift: u32| Part {
            idx,
            idx_chunk_bytes: 32,
            chunks,
            tbl_offset,
            tbl_chunk_bytes: PLAIN_CHUNK_BYTES,
            signed: false,
            b_shift,
        };
        let (parts, scale, subtract_sum, rows, tiles) = match self.info.format {
            Format::Tl1 => {
                let m = w.expect::<Tl1Matrix>();
                let p = plain(m.tiles.chunks.as_ptr().cast(), m.chunks_per_tile, 0, 0);
                assert_eq!(tables.plain, m.chunks_per_tile);
                (vec![p], m.scale, false, m.rows, m.tiles.tiles)
            }
            Format::Tmac => {
                let m = w.expect::<TmacMatrix>();
                let p = plain(m.tiles.chunks.as_ptr().cast(), m.chunks_per_tile, 0, 1);
                assert_eq!(tables.plain, m.chunks_per_tile);
                (vec![p], m.scale, true, m.rows, m.tiles.tiles)
            }
            Format::Tl2 => {
                let m = w.expect::<Tl2Matrix>();
                let (n3, n2) = (m.tl2_per_tile, m.tl1_per_tile);
                assert_eq!((tables.signed, tables.plain), (n3, n2));
                let signed = Part {
                    idx: m.tl2.chunks.as_ptr().cast(),
                    idx_chunk_bytes: tl2::BLOCK_BYTES,
                    chunks: n3,
                    tbl_offset: 0,
                    tbl_chunk_bytes: SIGNED_CHUNK_BYTES,
                    signed: true,
                    b_shift: 0,
                };
                let rest = plain(m.tl1.chunks.as_ptr().cast(), n2, n3 * SIGNED_CHUNK_BYTES, 0);
                (vec![signed, rest], m.scale, false, m.rows, m.tl2.tiles)
            }
            other => unreachable!("{other} is not a LUT format"),
        };
        assert!(out.rows().end <= rows && rows.div_ceil(32) == tiles);
        assert_eq!(tables.bytes.len(), tables.stride * act.batch);
        assert!(act.batch == out.batch());
        let sums = self.sums;
        // SAFETY: ensure_features checked the CPU; the parts point at the
        // matrix's tiles (all of them exist: asserted) and the tables were
        // built for this format and shape (asserted chunk counts).
        unsafe {
            drive(
                &parts,
                act,
                tables,
                scale,
                subtract_sum,
                out,
                &|p, i, t, r| sums(p, i, t, r),
            )
        }
    }
}
