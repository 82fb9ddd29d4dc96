//! T-MAC-style bit-serial format: each weight's 2-bit code w + 1 is split
//! into two one-bit planes; each group of 4 weights gives one 4-bit index per
//! plane (bit i of the index is bit p of weight i's code). 2 bits per weight,
//! one f32 scale per tensor.
//!
//! A kernel builds, per group of 4 activations, the 16-entry table
//! T[b] = sum of the activations whose bit is set in b (|T| <= 512: int16),
//! and computes sum((w + 1) a) = sum over groups of T[plane0] + 2 T[plane1];
//! subtracting sum(a) (per token) gives the dot product, as for i2s.
//!
//! Layout ([`super::lut`]): tiles of 32 rows; chunk k of a tile covers
//! columns 4k..4k+4, set A is plane 0 (the low code bit), set B plane 1.
//! Columns past the last multiple of 4 and rows past the last multiple of 32
//! are zero weights (code 1: plane 0 set, plane 1 clear).

use super::lut::{push_tail, split_tail, weight_at, IndexChunk, Tiles, TILE_ROWS};
use super::{FormatError, TernaryMatrix};

/// Columns per chunk (weights per group).
pub const CHUNK_COLS: usize = 4;

/// The (plane 0, plane 1) indices of a group of 4 weights.
#[inline]
pub fn plane_indices(w: [i8; 4]) -> (u8, u8) {
    let mut p = (0u8, 0u8);
    for (i, &wi) in w.iter().enumerate() {
        let code = (wi + 1) as u8;
        p.0 |= (code & 1) << i;
        p.1 |= (code >> 1) << i;
    }
    p
}

/// The weights of a group from its plane indices (which never share a bit).
#[inline]
pub fn group_weights(p0: u8, p1: u8) -> [i8; 4] {
    std::array::from_fn(|i| (((p0 >> i) & 1) + 2 * ((p1 >> i) & 1)) as i8 - 1)
}

/// The lookup table of activations `a`: entry b is the sum of the a[i] with bit i of b set.
#[inline]
pub fn table(a: [i8; 4]) -> [i16; 16] {
    let mut t = [0i16; 16];
    for (b, e) in t.iter_mut().enumerate() {
        *e = (0..4)
            .filter(|i| (b >> i) & 1 == 1)
            .map(|i| a[i] as i16)
            .sum();
    }
    t
}

/// A matrix in the bit-serial format.
#[derive(Clone, Debug)]
pub struct TmacMatrix {
    pub rows: usize,
    pub cols: usize,
    pub scale: f32,
    /// Chunks per tile: ceil(cols / 4).
    pub chunks_per_tile: usize,
    pub tiles: Tiles<IndexChunk>,
}

impl TmacMatrix {
    pub fn pack(w: &TernaryMatrix) -> Self {
        let (rows, cols, v) = (w.rows(), w.cols(), w.values());
        let per_tile = cols.div_ceil(CHUNK_COLS);
        let tiles = Tiles::build(rows, per_tile, |t, k| {
            IndexChunk::from_fn(|r, s| {
                let row = t * TILE_ROWS + r;
                let group = std::array::from_fn(|i| weight_at(v, rows, cols, row, 4 * k + i));
                let (p0, p1) = plane_indices(group);
                if s == 0 {
                    p0
                } else {
                    p1
                }
            })
        });
        TmacMatrix {
            rows,
            cols,
            scale: w.scale(),
            chunks_per_tile: per_tile,
            tiles,
        }
    }

    /// Weight (row, col), decoded from the two planes.
    pub fn weight(&self, row: usize, col: usize) -> i8 {
        let c = &self.tiles.tile(row / TILE_ROWS)[col / CHUNK_COLS];
        let r = row % TILE_ROWS;
        group_weights(c.index(r, 0), c.index(r, 1))[col % CHUNK_COLS]
    }

    pub fn unpack(&self) -> TernaryMatrix {
        let values = (0..self.rows * self.cols)
            .map(|i| self.weight(i / self.cols, i % self.cols))
            .collect();
        TernaryMatrix::new(self.rows, self.cols, values, self.scale)
            .expect("planes that never share a bit decode to ternary values")
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

    /// Reads the on-disk bytes of a `rows x cols` tensor, rejecting code 0b11
    /// (a weight with both plane bits set).
    pub fn from_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, FormatError> {
        if rows == 0 || cols == 0 {
            return Err(FormatError::EmptyShape { rows, cols });
        }
        let per_tile = cols.div_ceil(CHUNK_COLS);
        let n = rows.div_ceil(TILE_ROWS) * per_tile;
        let (body, scale) = split_tail("tmac", bytes, n * 32)?;
        let chunk = |i: usize| IndexChunk {
            qs: body[32 * i..32 * i + 32].try_into().expect("32 bytes"),
        };
        for i in 0..n {
            let c = chunk(i);
            if let Some(r) = (0..TILE_ROWS).find(|&r| c.index(r, 0) & c.index(r, 1) != 0) {
                return Err(FormatError::BadBytes {
                    format: "tmac",
                    what: format!("chunk {i}, row {r}: a weight has code 0b11; expected 0, 1 or 2"),
                });
            }
        }
        Ok(TmacMatrix {
            rows,
            cols,
            scale,
            chunks_per_tile: per_tile,
            tiles: Tiles::build(rows, per_tile, |t, k| chunk(t * per_tile + k)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_and_tables_reproduce_the_dot_product() {
        let a = [-128i8, 127, 5, -7];
        let t = table(a);
        assert_eq!(t[15], -3);
        assert_eq!(t[0b0011], -1);
        let sum_a: i16 = a.iter().map(|&v| v as i16).sum();
        for n in 0..81 {
            let w: [i8; 4] = std::array::from_fn(|i| ((n / 3usize.pow(i as u32)) % 3) as i8 - 1);
            let (p0, p1) = plane_indices(w);
            assert_eq!(p0 & p1, 0);
            assert_eq!(group_weights(p0, p1), w);
            let dot: i16 = (0..4).map(|i| w[i] as i16 * a[i] as i16).sum();
            assert_eq!(t[p0 as usize] + 2 * t[p1 as usize] - sum_a, dot);
        }
    }

    #[test]
    fn golden_bytes_of_a_hand_made_tile() {
        // 32 x 4: even rows (-1, 0, 1, 1), odd rows (0, 0, 0, 0).
        // Codes (0, 1, 2, 2): plane 0 = 0b0010, plane 1 = 0b1100; zeros: plane 0 = 0b1111, plane 1 = 0.
        let values: Vec<i8> = (0..32)
            .flat_map(|r| if r % 2 == 0 { [-1, 0, 1, 1] } else { [0; 4] })
            .collect();
        let m = TmacMatrix::pack(&TernaryMatrix::new(32, 4, values, 1.5).unwrap());
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), 64);
        for j in 0..16 {
            let (p0, p1) = if j % 2 == 0 {
                (0x2u8, 0xCu8)
            } else {
                (0xF, 0x0)
            };
            assert_eq!(bytes[j], p0 | p0 << 4);
            assert_eq!(bytes[16 + j], p1 | p1 << 4);
        }
        assert_eq!(&bytes[32..36], &1.5f32.to_le_bytes());
    }

    #[test]
    fn any_shape_round_trips() {
        for (rows, cols) in [(1, 1), (3, 5), (33, 7), (32, 4), (65, 130)] {
            let values: Vec<i8> = (0..rows * cols)
                .map(|i| ((i * 11 + 1) % 3) as i8 - 1)
                .collect();
            let w = TernaryMatrix::new(rows, cols, values, 0.5).unwrap();
            let m = TmacMatrix::pack(&w);
            assert_eq!(m.unpack(), w);
            let again = TmacMatrix::from_bytes(rows, cols, &m.to_bytes()).unwrap();
            assert_eq!(again.unpack(), w);
        }
    }

    #[test]
    fn from_bytes_rejects_code_three() {
        let w = TernaryMatrix::new(1, 4, vec![0; 4], 1.0).unwrap();
        let mut bytes = TmacMatrix::pack(&w).to_bytes();
        assert!(TmacMatrix::from_bytes(1, 4, &bytes[..40]).is_err());
        bytes[16] = 0x01; // row 0, plane 1, bit 0: weight 0 has code 0b11
        let err = TmacMatrix::from_bytes(1, 4, &bytes).unwrap_err();
        assert!(err.to_string().contains("row 0"), "{err}");
    }
}
