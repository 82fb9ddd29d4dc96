//! The layout the lookup-table formats (`tl1`, `tl2`, `tmac`) share: 4-bit
//! table indices stored tile-major, 32 rows per tile, so that one 32-byte
//! load gives the indices of one column group for 32 rows (LUT kernels
//! vectorize over rows: every lane of a byte shuffle looks up the same table).
//!
//! A chunk ([`IndexChunk`], 32 bytes) holds 64 indices: two index sets A and
//! B (two column groups, or two bit planes of one group for `tmac`) for the
//! 32 rows of a tile. Index position p in 0..64 is
//! `p = 32 * (row / 16) + 16 * set + row % 16`; positions 0..32 are the low
//! nibbles of bytes 0..32, positions 32..64 their high nibbles. So byte j < 16
//! holds (row j, A) | (row 16 + j, A) << 4 and byte 16 + j holds
//! (row j, B) | (row 16 + j, B) << 4: masking a 32-byte load with 0x0F gives
//! [A rows 0..16 | B rows 0..16], shifting by 4 first [A rows 16..32 | B rows
//! 16..32], which match 128-bit lanes holding the tables [A | B].
//!
//! Rows past the matrix (the last tile) and columns past the last group are
//! padded with zero weights. Like i2s, the formats carry one f32 scale per
//! tensor; on disk the chunks of every tile, tile after tile, are followed by
//! a 32-byte tail whose first 4 bytes are that scale.

use super::{aligned_from_iter, AlignedVec, FormatError};

/// Rows per tile.
pub const TILE_ROWS: usize = 32;
/// Bytes of the per-tensor tail holding the f32 scale.
pub const TAIL_BYTES: usize = 32;

/// 64 four-bit indices: sets A and B for the 32 rows of a tile.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IndexChunk {
    pub qs: [u8; 32],
}
const _: () = assert!(std::mem::size_of::<IndexChunk>() == 32);

/// The index position (0..64) of (`row` in 0..32, `set` in 0..2).
#[inline]
pub const fn position(row: usize, set: usize) -> usize {
    32 * (row / 16) + 16 * set + row % 16
}

impl IndexChunk {
    /// Builds a chunk from `index(row, set)` (each value below 16).
    pub fn from_fn(mut index: impl FnMut(usize, usize) -> u8) -> Self {
        let mut c = IndexChunk::default();
        for row in 0..TILE_ROWS {
            for set in 0..2 {
                let v = index(row, set);
                debug_assert!(v < 16);
                c.set_at(position(row, set), v);
            }
        }
        c
    }

    /// The index at position `p` (0..64).
    #[inline]
    pub fn at(&self, p: usize) -> u8 {
        let b = self.qs[p % 32];
        if p < 32 {
            b & 0x0F
        } else {
            b >> 4
        }
    }

    fn set_at(&mut self, p: usize, v: u8) {
        let b = &mut self.qs[p % 32];
        if p < 32 {
            *b = (*b & 0xF0) | v;
        } else {
            *b = (*b & 0x0F) | (v << 4);
        }
    }

    /// The index of `row` (0..32) in `set` (0..2).
    #[inline]
    pub fn index(&self, row: usize, set: usize) -> u8 {
        self.at(position(row, set))
    }
}

/// Tile-major chunks: tile t's `per_tile` chunks start at `t * per_tile`.
#[derive(Clone, Debug)]
pub struct Tiles<C> {
    pub tiles: usize,
    pub per_tile: usize,
    pub chunks: AlignedVec<C>,
}

impl<C: Copy> Tiles<C> {
    /// Packs `rows` rows: `make(tile, chunk)` builds chunk `chunk` of tile `tile`.
    pub fn build(rows: usize, per_tile: usize, mut make: impl FnMut(usize, usize) -> C) -> Self {
        let tiles = rows.div_ceil(TILE_ROWS);
        let chunks = aligned_from_iter(
            (0..tiles * per_tile).map(|i| make(i / per_tile.max(1), i % per_tile.max(1))),
        );
        Tiles {
            tiles,
            per_tile,
            chunks,
        }
    }

    pub fn tile(&self, t: usize) -> &[C] {
        &self.chunks[t * self.per_tile..(t + 1) * self.per_tile]
    }
}

/// Weight (row, col) of a row-major ternary matrix, 0 outside it.
#[inline]
pub(crate) fn weight_at(values: &[i8], rows: usize, cols: usize, row: usize, col: usize) -> i8 {
    if row < rows && col < cols {
        values[row * cols + col]
    } else {
        0
    }
}

/// Appends the scale tail.
pub(crate) fn push_tail(out: &mut Vec<u8>, scale: f32) {
    let mut tail = [0u8; TAIL_BYTES];
    tail[..4].copy_from_slice(&scale.to_le_bytes());
    out.extend_from_slice(&tail);
}

/// Splits on-disk bytes into (body of `body_len` bytes, scale).
pub(crate) fn split_tail<'a>(
    format: &'static str,
    bytes: &'a [u8],
    body_len: usize,
) -> Result<(&'a [u8], f32), FormatError> {
    if bytes.len() != body_len + TAIL_BYTES {
        return Err(FormatError::BadBytes {
            format,
            what: format!(
                "expected {} bytes ({body_len} of weights and a {TAIL_BYTES}-byte scale tail), got {}",
                body_len + TAIL_BYTES,
                bytes.len()
            ),
        });
    }
    let (body, tail) = bytes.split_at(body_len);
    let scale = f32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
    if !scale.is_finite() {
        return Err(FormatError::BadScale(scale));
    }
    Ok((body, scale))
}

/// An int16 table split into the low-byte and high-byte tables that byte
/// shuffles look up (value = lo | hi << 8, exactly).
pub fn split_table(t: &[i16; 16]) -> ([u8; 16], [u8; 16]) {
    (
        std::array::from_fn(|i| t[i] as u16 as u8),
        std::array::from_fn(|i| (t[i] as u16 >> 8) as u8),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_cover_every_nibble_once() {
        let mut seen = [false; 64];
        for row in 0..32 {
            for set in 0..2 {
                let p = position(row, set);
                assert!(!seen[p]);
                seen[p] = true;
            }
        }
        assert_eq!(position(0, 0), 0);
        assert_eq!(position(0, 1), 16);
        assert_eq!(position(16, 0), 32);
        assert_eq!(position(31, 1), 63);
    }

    #[test]
    fn chunk_nibbles_follow_the_documented_bytes() {
        // (row r, set s) -> index (r + 3 s) % 16.
        let c = IndexChunk::from_fn(|r, s| ((r + 3 * s) % 16) as u8);
        for j in 0..16 {
            assert_eq!(c.qs[j], (j % 16) as u8 | (((16 + j) % 16) as u8) << 4);
            assert_eq!(
                c.qs[16 + j],
                ((j + 3) % 16) as u8 | (((19 + j) % 16) as u8) << 4
            );
        }
        for r in 0..32 {
            for s in 0..2 {
                assert_eq!(c.index(r, s) as usize, (r + 3 * s) % 16);
            }
        }
    }

    #[test]
    fn split_tables_rebuild_int16() {
        let t: [i16; 16] = std::array::from_fn(|i| [-512, 508, -1, 0, 255, 256, -256, 383][i % 8]);
        let (lo, hi) = split_table(&t);
        for i in 0..16 {
            assert_eq!((lo[i] as u16 | (hi[i] as u16) << 8) as i16, t[i]);
        }
    }
}
