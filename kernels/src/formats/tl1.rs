//! TL1 (bitnet.cpp's ARM LUT format, generalized to any shape): weights in
//! pairs, each pair stored as the 4-bit index 3 w0 + w1 + 4 (0..8), 2 bits
//! per weight, one f32 scale per tensor.
//!
//! Layout ([`super::lut`]): tiles of 32 rows; chunk k of a tile covers
//! columns 4k..4k+4: set A is the pair (4k, 4k+1), set B the pair
//! (4k+2, 4k+3). Columns past the last multiple of 4 and rows past the last
//! multiple of 32 are zero weights (index 4), so no shape is refused.
//!
//! A kernel builds, per pair of activations (a0, a1), the 9-entry table
//! T[3 u + v] = (u - 1) a0 + (v - 1) a1 (|T| <= 256: int16) and looks up
//! T[index]; the dot product is the sum of the looked-up values.

use super::lut::{push_tail, split_tail, weight_at, IndexChunk, Tiles, TILE_ROWS};
use super::{FormatError, TernaryMatrix};

/// Columns per chunk.
pub const CHUNK_COLS: usize = 4;
/// Index of the pair (0, 0).
pub const ZERO_INDEX: u8 = 4;

/// The index of the weight pair (w0, w1).
#[inline]
pub fn pair_index(w0: i8, w1: i8) -> u8 {
    (3 * w0 + w1 + 4) as u8
}

/// The weight pair of an index (0..8).
#[inline]
pub fn pair_weights(index: u8) -> (i8, i8) {
    (index as i8 / 3 - 1, index as i8 % 3 - 1)
}

/// The lookup table of activations (a0, a1): entry i (0..9) is the dot
/// product of `pair_weights(i)` with them; entries 9..16 are 0.
#[inline]
pub fn table(a0: i8, a1: i8) -> [i16; 16] {
    let (a0, a1) = (a0 as i16, a1 as i16);
    let mut t = [0i16; 16];
    for (i, e) in t.iter_mut().take(9).enumerate() {
        *e = (i as i16 / 3 - 1) * a0 + (i as i16 % 3 - 1) * a1;
    }
    t
}

/// A matrix in TL1.
#[derive(Clone, Debug)]
pub struct Tl1Matrix {
    pub rows: usize,
    pub cols: usize,
    pub scale: f32,
    /// Chunks per tile: ceil(cols / 4).
    pub chunks_per_tile: usize,
    pub tiles: Tiles<IndexChunk>,
}

impl Tl1Matrix {
    pub fn pack(w: &TernaryMatrix) -> Self {
        let (rows, cols, v) = (w.rows(), w.cols(), w.values());
        let per_tile = cols.div_ceil(CHUNK_COLS);
        let tiles = Tiles::build(rows, per_tile, |t, k| {
            IndexChunk::from_fn(|r, s| {
                let row = t * TILE_ROWS + r;
                let col = CHUNK_COLS * k + 2 * s;
                pair_index(
                    weight_at(v, rows, cols, row, col),
                    weight_at(v, rows, cols, row, col + 1),
                )
            })
        });
        Tl1Matrix {
            rows,
            cols,
            scale: w.scale(),
            chunks_per_tile: per_tile,
            tiles,
        }
    }

    /// Weight (row, col), decoded from the packed index.
    pub fn weight(&self, row: usize, col: usize) -> i8 {
        let c = &self.tiles.tile(row / TILE_ROWS)[col / CHUNK_COLS];
        let (w0, w1) = pair_weights(c.index(row % TILE_ROWS, (col % 4) / 2));
        if col.is_multiple_of(2) {
            w0
        } else {
            w1
        }
    }

    pub fn unpack(&self) -> TernaryMatrix {
        let values = (0..self.rows * self.cols)
            .map(|i| self.weight(i / self.cols, i % self.cols))
            .collect();
        TernaryMatrix::new(self.rows, self.cols, values, self.scale)
            .expect("packed indices always decode to ternary values")
    }

    /// Bytes of packed weights (padding included).
    pub fn weight_bytes(&self) -> usize {
        self.tiles.chunks.len() * 32
    }

    /// The on-disk tensor bytes: every chunk of every tile, then the scale tail.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight_bytes() + 32);
        for c in self.tiles.chunks.iter() {
            out.extend_from_slice(&c.qs);
        }
        push_tail(&mut out, self.scale);
        out
    }

    /// Reads the on-disk bytes of a `rows x cols` tensor, rejecting indices above 8.
    pub fn from_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, FormatError> {
        if rows == 0 || cols == 0 {
            return Err(FormatError::EmptyShape { rows, cols });
        }
        let per_tile = cols.div_ceil(CHUNK_COLS);
        let n = rows.div_ceil(TILE_ROWS) * per_tile;
        let (body, scale) = split_tail("tl1", bytes, n * 32)?;
        let mut bad = None;
        let tiles = Tiles::build(rows, per_tile, |t, k| {
            let i = t * per_tile + k;
            let qs: [u8; 32] = body[32 * i..32 * i + 32].try_into().expect("32 bytes");
            let c = IndexChunk { qs };
            if bad.is_none() {
                bad = (0..64).find(|&p| c.at(p) > 8).map(|p| (i, p));
            }
            c
        });
        if let Some((i, p)) = bad {
            return Err(FormatError::BadBytes {
                format: "tl1",
                what: format!("chunk {i}: index {} at position {p}; expected 0..=8", {
                    let qs: [u8; 32] = body[32 * i..32 * i + 32].try_into().expect("32 bytes");
                    IndexChunk { qs }.at(p)
                }),
            });
        }
        Ok(Tl1Matrix {
            rows,
            cols,
            scale,
            chunks_per_tile: per_tile,
            tiles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_and_tables_follow_the_published_scheme() {
        for w0 in -1..=1i8 {
            for w1 in -1..=1i8 {
                let i = pair_index(w0, w1);
                assert_eq!(i as i8, 3 * w0 + w1 + 4);
                assert_eq!(pair_weights(i), (w0, w1));
                let t = table(-128, 127);
                assert_eq!(t[i as usize], -128 * w0 as i16 + 127 * w1 as i16);
            }
        }
        assert_eq!(pair_index(0, 0), ZERO_INDEX);
        assert_eq!(table(-128, -128)[0], 256);
    }

    #[test]
    fn golden_bytes_of_a_hand_made_tile() {
        // 32 x 4: row r has weights (1, -1, 0, 1) if r is even, (0, 0, -1, -1) if odd.
        let values: Vec<i8> = (0..32)
            .flat_map(|r| {
                if r % 2 == 0 {
                    [1, -1, 0, 1]
                } else {
                    [0, 0, -1, -1]
                }
            })
            .collect();
        let w = TernaryMatrix::new(32, 4, values, 2.0).unwrap();
        let m = Tl1Matrix::pack(&w);
        // Pair indices: (1,-1) = 6, (0,1) = 5, (0,0) = 4, (-1,-1) = 0.
        // Byte j < 16: (row j, A) | (row j+16, A) << 4; rows j and j+16 have the same parity.
        // Even j: A = 6 -> 0x66, B = 5 -> 0x55; odd j: A = 4 -> 0x44, B = 0 -> 0x00.
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), 32 + 32);
        let want: Vec<u8> = (0..32)
            .map(|b| match (b < 16, b % 2 == 0) {
                (true, true) => 0x66,
                (true, false) => 0x44,
                (false, true) => 0x55,
                (false, false) => 0x00,
            })
            .collect();
        assert_eq!(&bytes[..32], &want[..]);
        assert_eq!(&bytes[32..36], &2.0f32.to_le_bytes());
    }

    #[test]
    fn any_shape_round_trips() {
        for (rows, cols) in [(1, 1), (3, 5), (33, 7), (32, 4), (65, 129)] {
            let values: Vec<i8> = (0..rows * cols)
                .map(|i| ((i * 7 + 1) % 3) as i8 - 1)
                .collect();
            let w = TernaryMatrix::new(rows, cols, values, 0.5).unwrap();
            let m = Tl1Matrix::pack(&w);
            assert_eq!(m.tiles.tiles, rows.div_ceil(32));
            assert_eq!(m.unpack(), w);
            let again = Tl1Matrix::from_bytes(rows, cols, &m.to_bytes()).unwrap();
            assert_eq!(again.unpack(), w);
        }
    }

    #[test]
    fn from_bytes_rejects_bad_length_and_indices() {
        let w = TernaryMatrix::new(2, 4, vec![0; 8], 1.0).unwrap();
        let mut bytes = Tl1Matrix::pack(&w).to_bytes();
        assert!(Tl1Matrix::from_bytes(2, 4, &bytes[1..]).is_err());
        bytes[3] = 0x49;
        let err = Tl1Matrix::from_bytes(2, 4, &bytes).unwrap_err();
        assert!(err.to_string().contains("index 9 at position 3"), "{err}");
    }
}
