//! TL2 (bitnet.cpp's x86 LUT format, generalized to any shape): weights in
//! triples, each stored as a sign bit and a 4-bit magnitude index, 5 bits per
//! 3 weights (1.67 bits per weight), one f32 scale per tensor.
//!
//! A triple (w0, w1, w2) has the value v = 9 w0 + 3 w1 + w2 in -13..13 (a
//! bijection); it is stored as |v| (0..13) and the sign bit v < 0. A kernel
//! builds, per activation triple, the 14-entry table T[m] = the dot product
//! of the triple of value m with the activations (|T| <= 384: int16), looks
//! up T[|v|] and negates it where the sign bit is set.
//!
//! Layout ([`super::lut`]): tiles of 32 rows. The first 6 floor(cols / 6)
//! columns form TL2 chunks ([`BlockTl2`], 40 bytes): chunk k's set A is the
//! triple at columns 6k..6k+3, set B the triple at 6k+3..6k+6, plus 64 sign
//! bits (bit p of the little-endian u64 `signs` belongs to index position p).
//! The 0..5 columns left over use the 2-weight scheme of [`super::tl1`]:
//! ceil(rem / 4) TL1 chunks, zero-padded. Rows past the last multiple of 32
//! are zero weights. On disk each tile is its TL2 chunks then its TL1
//! chunks; after the last tile comes the 32-byte scale tail.

use super::lut::{position, push_tail, split_tail, weight_at, IndexChunk, Tiles, TILE_ROWS};
use super::tl1;
use super::{FormatError, TernaryMatrix};

/// Columns per TL2 chunk.
pub const CHUNK_COLS: usize = 6;
/// Bytes per TL2 chunk.
pub const BLOCK_BYTES: usize = 40;

/// 64 sign-and-magnitude triples: sets A and B for 32 rows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockTl2 {
    /// Magnitude indices, laid out like [`IndexChunk::qs`].
    pub qs: [u8; 32],
    /// Bit p (of the little-endian u64) is the sign of index position p.
    pub signs: [u8; 8],
}
const _: () = assert!(std::mem::size_of::<BlockTl2>() == BLOCK_BYTES);

impl BlockTl2 {
    /// The magnitude indices as a plain index chunk.
    #[inline]
    pub fn indices(&self) -> IndexChunk {
        IndexChunk { qs: self.qs }
    }

    /// The sign bits as one u64 (bit p: position p).
    #[inline]
    pub fn sign_bits(&self) -> u64 {
        u64::from_le_bytes(self.signs)
    }

    /// (magnitude, negative) of `row` (0..32) in `set` (0..2).
    #[inline]
    pub fn entry(&self, row: usize, set: usize) -> (u8, bool) {
        let p = position(row, set);
        (self.indices().at(p), (self.sign_bits() >> p) & 1 == 1)
    }
}

/// The value 9 w0 + 3 w1 + w2 of a triple.
#[inline]
pub fn triple_value(w: [i8; 3]) -> i8 {
    9 * w[0] + 3 * w[1] + w[2]
}

/// The triple of a value in -13..13.
#[inline]
pub fn triple_weights(v: i8) -> [i8; 3] {
    let c = v + 13;
    [c / 9 - 1, (c / 3) % 3 - 1, c % 3 - 1]
}

/// The lookup table of activations `a`: entry m (0..14) is the dot product of
/// `triple_weights(m)` with them; entries 14, 15 are 0.
#[inline]
pub fn table(a: [i8; 3]) -> [i16; 16] {
    let mut t = [0i16; 16];
    for (m, e) in t.iter_mut().take(14).enumerate() {
        let w = triple_weights(m as i8);
        *e = (0..3).map(|i| w[i] as i16 * a[i] as i16).sum();
    }
    t
}

/// (TL2 chunks, leftover TL1 chunks) per tile for rows of `cols` columns.
pub fn chunk_counts(cols: usize) -> (usize, usize) {
    let n3 = cols / CHUNK_COLS;
    (n3, (cols - CHUNK_COLS * n3).div_ceil(tl1::CHUNK_COLS))
}

/// A matrix in TL2.
#[derive(Clone, Debug)]
pub struct Tl2Matrix {
    pub rows: usize,
    pub cols: usize,
    pub scale: f32,
    /// TL2 chunks per tile: floor(cols / 6).
    pub tl2_per_tile: usize,
    /// TL1 chunks per tile for the leftover columns: ceil((cols mod 6) / 4).
    pub tl1_per_tile: usize,
    pub tl2: Tiles<BlockTl2>,
    pub tl1: Tiles<IndexChunk>,
}

impl Tl2Matrix {
    /// First column of the TL1 part.
    pub fn tl1_start(&self) -> usize {
        CHUNK_COLS * self.tl2_per_tile
    }

    pub fn pack(w: &TernaryMatrix) -> Self {
        let (rows, cols, v) = (w.rows(), w.cols(), w.values());
        let (n3, n2) = chunk_counts(cols);
        let at = |row, col| weight_at(v, rows, cols, row, col);
        let tl2 = Tiles::build(rows, n3, |t, k| {
            let mut b = BlockTl2::default();
            let mut signs = 0u64;
            let idx = IndexChunk::from_fn(|r, s| {
                let (row, col) = (t * TILE_ROWS + r, CHUNK_COLS * k + 3 * s);
                let value = triple_value([at(row, col), at(row, col + 1), at(row, col + 2)]);
                if value < 0 {
                    signs |= 1 << position(r, s);
                }
                value.unsigned_abs()
            });
            b.qs = idx.qs;
            b.signs = signs.to_le_bytes();
            b
        });
        let start = CHUNK_COLS * n3;
        let tl1 = Tiles::build(rows, n2, |t, k| {
            IndexChunk::from_fn(|r, s| {
                let (row, col) = (t * TILE_ROWS + r, start + tl1::CHUNK_COLS * k + 2 * s);
                tl1::pair_index(at(row, col), at(row, col + 1))
            })
        });
        Tl2Matrix {
            rows,
            cols,
            scale: w.scale(),
            tl2_per_tile: n3,
            tl1_per_tile: n2,
            tl2,
            tl1,
        }
    }

    /// Weight (row, col), decoded from the packed bits.
    pub fn weight(&self, row: usize, col: usize) -> i8 {
        let (t, r) = (row / TILE_ROWS, row % TILE_ROWS);
        if col < self.tl1_start() {
            let b = &self.tl2.tile(t)[col / CHUNK_COLS];
            let (m, neg) = b.entry(r, (col % CHUNK_COLS) / 3);
            let v = if neg { -(m as i8) } else { m as i8 };
            triple_weights(v)[col % 3]
        } else {
            let c = col - self.tl1_start();
            let chunk = &self.tl1.tile(t)[c / tl1::CHUNK_COLS];
            let (w0, w1) = tl1::pair_weights(chunk.index(r, (c % 4) / 2));
            if c.is_multiple_of(2) {
                w0
            } else {
                w1
            }
        }
    }

    pub fn unpack(&self) -> TernaryMatrix {
        let values = (0..self.rows * self.cols)
            .map(|i| self.weight(i / self.cols, i % self.cols))
            .collect();
        TernaryMatrix::new(self.rows, self.cols, values, self.scale)
            .expect("packed triples always decode to ternary values")
    }

    /// Bytes of packed weights (padding included).
    pub fn weight_bytes(&self) -> usize {
        self.tl2.chunks.len() * BLOCK_BYTES + self.tl1.chunks.len() * 32
    }

    /// The on-disk tensor bytes: per tile its TL2 then its TL1 chunks, then the scale tail.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight_bytes() + 32);
        for t in 0..self.tl2.tiles {
            for b in self.tl2.tile(t) {
                out.extend_from_slice(&b.qs);
                out.extend_from_slice(&b.signs);
            }
            for c in self.tl1.tile(t) {
                out.extend_from_slice(&c.qs);
            }
        }
        push_tail(&mut out, self.scale);
        out
    }

    /// Reads the on-disk bytes of a `rows x cols` tensor, rejecting
    /// magnitudes above 13, negative zeros and TL1 indices above 8.
    pub fn from_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, FormatError> {
        if rows == 0 || cols == 0 {
            return Err(FormatError::EmptyShape { rows, cols });
        }
        let (n3, n2) = chunk_counts(cols);
        let tiles = rows.div_ceil(TILE_ROWS);
        let tile_bytes = n3 * BLOCK_BYTES + n2 * 32;
        let (body, scale) = split_tail("tl2", bytes, tiles * tile_bytes)?;
        let bad = |what: String| FormatError::BadBytes {
            format: "tl2",
            what,
        };
        let mut blocks = Vec::with_capacity(tiles * n3);
        let mut chunks = Vec::with_capacity(tiles * n2);
        for t in 0..tiles {
            let tile = &body[t * tile_bytes..(t + 1) * tile_bytes];
            for k in 0..n3 {
                let raw = &tile[k * BLOCK_BYTES..(k + 1) * BLOCK_BYTES];
                let b = BlockTl2 {
                    qs: raw[..32].try_into().expect("32 bytes"),
                    signs: raw[32..].try_into().expect("8 bytes"),
                };
                for p in 0..64 {
                    let m = b.indices().at(p);
                    let neg = (b.sign_bits() >> p) & 1 == 1;
                    if m > 13 || (m == 0 && neg) {
                        return Err(bad(format!(
                            "tile {t}, chunk {k}, position {p}: magnitude {m}{}; expected 0..=13, zero without a sign",
                            if neg { " with sign" } else { "" }
                        )));
                    }
                }
                blocks.push(b);
            }
            for k in 0..n2 {
                let at = n3 * BLOCK_BYTES + 32 * k;
                let c = IndexChunk {
                    qs: tile[at..at + 32].try_into().expect("32 bytes"),
                };
                if let Some(p) = (0..64).find(|&p| c.at(p) > 8) {
                    return Err(bad(format!(
                        "tile {t}, leftover chunk {k}, position {p}: index {}; expected 0..=8",
                        c.at(p)
                    )));
                }
                chunks.push(c);
            }
        }
        Ok(Tl2Matrix {
            rows,
            cols,
            scale,
            tl2_per_tile: n3,
            tl1_per_tile: n2,
            tl2: Tiles::build(rows, n3, |t, k| blocks[t * n3 + k]),
            tl1: Tiles::build(rows, n2, |t, k| chunks[t * n2 + k]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_are_a_bijection_onto_minus_13_to_13() {
        let mut seen = [false; 27];
        for w0 in -1..=1i8 {
            for w1 in -1..=1i8 {
                for w2 in -1..=1i8 {
                    let v = triple_value([w0, w1, w2]);
                    assert!(!seen[(v + 13) as usize]);
                    seen[(v + 13) as usize] = true;
                    assert_eq!(triple_weights(v), [w0, w1, w2]);
                    // The sign mirror: -v is the negated triple.
                    assert_eq!(triple_weights(-v), [-w0, -w1, -w2]);
                }
            }
        }
        let t = table([-128, -128, -128]);
        assert_eq!(t[13], -384);
        assert_eq!(t[0], 0);
        assert_eq!(t[1], -128); // (0, 0, 1)
        assert_eq!(t[3], -128); // (0, 1, 0)
        assert_eq!(t[14], 0);
    }

    #[test]
    fn golden_bytes_of_a_hand_made_tile() {
        // 32 x 8: even rows (1,0,-1, 0,0,0, 1,-1), odd rows (-1,-1,-1, 0,1,1, 0,0).
        // Triples: (1,0,-1) = 8, (0,0,0) = 0, (-1,-1,-1) = -13, (0,1,1) = 4.
        // Leftover columns 6, 7 (TL1 pairs): (1,-1) = 6 and (0,0) = 4; pair B is padding (4).
        let values: Vec<i8> = (0..32)
            .flat_map(|r| {
                if r % 2 == 0 {
                    [1, 0, -1, 0, 0, 0, 1, -1]
                } else {
                    [-1, -1, -1, 0, 1, 1, 0, 0]
                }
            })
            .collect();
        let w = TernaryMatrix::new(32, 8, values, 1.0).unwrap();
        let m = Tl2Matrix::pack(&w);
        assert_eq!((m.tl2_per_tile, m.tl1_per_tile), (1, 1));
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), 40 + 32 + 32);
        for j in 0..16 {
            let (a, b) = if j % 2 == 0 { (8u8, 0u8) } else { (13, 4) };
            assert_eq!(bytes[j], a | a << 4, "byte {j}");
            assert_eq!(bytes[16 + j], b | b << 4, "byte {}", 16 + j);
        }
        // Only odd rows' set A is negative: positions 1, 3, .., 15 and 33, 35, .., 47.
        assert_eq!(&bytes[32..40], &[0xAA, 0xAA, 0, 0, 0xAA, 0xAA, 0, 0]);
        for j in 0..16 {
            let a = if j % 2 == 0 { 6u8 } else { 4 };
            assert_eq!(bytes[40 + j], a | a << 4);
            assert_eq!(bytes[56 + j], 0x44);
        }
        assert_eq!(&bytes[72..76], &1.0f32.to_le_bytes());
    }

    #[test]
    fn any_shape_round_trips() {
        for (rows, cols) in [
            (1, 1),
            (2, 5),
            (33, 6),
            (3, 7),
            (40, 11),
            (5, 12),
            (64, 200),
        ] {
            let values: Vec<i8> = (0..rows * cols)
                .map(|i| ((i * 5 + 2) % 3) as i8 - 1)
                .collect();
            let w = TernaryMatrix::new(rows, cols, values, 0.25).unwrap();
            let m = Tl2Matrix::pack(&w);
            assert_eq!(m.tl2_per_tile, cols / 6);
            assert_eq!(m.unpack(), w, "{rows}x{cols}");
            let again = Tl2Matrix::from_bytes(rows, cols, &m.to_bytes()).unwrap();
            assert_eq!(again.unpack(), w);
        }
    }

    #[test]
    fn from_bytes_rejects_bad_bytes() {
        let w = TernaryMatrix::new(1, 6, vec![0; 6], 1.0).unwrap();
        let good = Tl2Matrix::pack(&w).to_bytes();
        assert!(Tl2Matrix::from_bytes(1, 6, &good[..good.len() - 1]).is_err());
        let mut bytes = good.clone();
        bytes[0] = 0x0E;
        let err = Tl2Matrix::from_bytes(1, 6, &bytes).unwrap_err();
        assert!(err.to_string().contains("magnitude 14"), "{err}");
        let mut bytes = good;
        bytes[32] = 1; // a sign on magnitude 0
        assert!(Tl2Matrix::from_bytes(1, 6, &bytes).is_err());
    }

    #[test]
    fn bits_per_weight_is_five_thirds() {
        assert_eq!(BLOCK_BYTES * 8 * 3, 5 * TILE_ROWS * CHUNK_COLS);
    }
}
