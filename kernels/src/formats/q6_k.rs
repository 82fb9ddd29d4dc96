//! llama.cpp's Q6_K: 256 weights per super-block as 6-bit codes, one int8
//! scale per 16 weights and an f16 super-block scale (210 bytes, 6.5625 bits
//! per weight). llama.cpp's default type for the output matrix.
//!
//! Layout (ggml's `block_q6_K`, GGUF type id 14): `ql[128]`, `qh[64]`,
//! `scales[16]` (int8), `d` (f16). The weight is `d * scales[e / 16] * (code - 32)`
//! with code in 0..=63. The block is two halves of 128 elements; in half h,
//! element 128h + 32k + l (k = 0..4, l = 0..32) keeps its low 4 bits in
//! `ql[64h + 32(k & 1) + l]` (the low nibble for k < 2, the high nibble for
//! k >= 2) and its high 2 bits in bits 2k..2k+2 of `qh[32h + l]`.
//!
//! Quantizer (ours, simpler than ggml's rmse search; any encoder produces
//! valid Q6_K): per 16-weight sub-block j, s_j = m_j / -32 where m_j is its
//! value of largest magnitude (the first on ties), so m_j gets code 0 (-32);
//! d = S / -128 where S is the s_j of largest magnitude, rounded to f16;
//! scales[j] = s_j / d with its magnitude rounded up, clamped to -128..=127;
//! each weight x gets q = clamp(round(x / (d * scales[j])), -32, 31) (round
//! half to even), stored as q + 32. Rounding the scales up means the extreme
//! m_j never lands beyond -32, so the error is at most half a step of the
//! effective scale d * scales[j], except for values of the sign opposite to
//! m_j beyond 31 steps, which clamp at +31 (at most one step off), and a
//! sub-block whose scale clamps at +127 (a quarter step more).
//!
//! Rows must hold a whole number of super-blocks (K a multiple of 256, as in
//! ggml); [`Q6KMatrix::pack_dense`] refuses other shapes.

use super::{read_f16, BlockMatrix, DenseMatrix, FormatError, PackedBlock};
use crate::quant::round_even;
use half::f16;

/// Weights per super-block.
pub const BLOCK_LEN: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 210;
/// Weights per sub-block (one int8 scale each).
pub const SUB_LEN: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    /// Low 4 bits of the codes.
    pub ql: [u8; BLOCK_LEN / 2],
    /// High 2 bits of the codes.
    pub qh: [u8; BLOCK_LEN / 4],
    /// One scale per 16 weights.
    pub scales: [i8; BLOCK_LEN / SUB_LEN],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == BLOCK_BYTES);

/// Where element `e` of a block keeps its bits: (ql index, ql shift, qh index, qh shift).
#[inline]
fn position(e: usize) -> (usize, u32, usize, u32) {
    let (h, r) = (e / 128, e % 128);
    let (k, l) = (r / 32, r % 32);
    let ql = 64 * h + 32 * (k & 1) + l;
    let ql_shift = if k >= 2 { 4 } else { 0 };
    (ql, ql_shift, 32 * h + l, 2 * k as u32)
}

/// The value of largest magnitude (the first on ties), 0 for none.
fn largest(x: &[f32]) -> f32 {
    let mut m = 0.0f32;
    for &v in x {
        if v.abs() > m.abs() {
            m = v;
        }
    }
    m
}

impl BlockQ6K {
    /// The all-zero block: every weight 0 (code 32, scales 0, d 0).
    pub const ZERO: BlockQ6K = BlockQ6K {
        ql: [0; BLOCK_LEN / 2],
        qh: [0xAA; BLOCK_LEN / 4],
        scales: [0; BLOCK_LEN / SUB_LEN],
        d: f16::ZERO,
    };

    /// Quantizes 256 values with the rule in the module docs.
    pub fn quantize(x: &[f32]) -> Self {
        assert_eq!(x.len(), BLOCK_LEN);
        let s: [f32; 16] = std::array::from_fn(|j| largest(&x[j * SUB_LEN..][..SUB_LEN]) / -32.0);
        let mut d = f16::from_f32(largest(&s) / -128.0);
        if !d.is_finite() {
            // |x| beyond f16 range times 4096: saturate instead of storing inf.
            d = if d.is_sign_negative() {
                -f16::MAX
            } else {
                f16::MAX
            };
        }
        let df = d.to_f32();
        if df == 0.0 {
            return BlockQ6K::ZERO;
        }
        let inv = 1.0 / df;
        let scales: [i8; 16] = std::array::from_fn(|j| {
            // Round the magnitude up (less 2^-12 of slack for float noise), so
            // the effective step is never smaller than s_j and m_j never clamps.
            let r = s[j] * inv;
            let mag = (r.abs() * (1.0 - 1.0 / 4096.0)).ceil();
            (mag.copysign(r) as i32).clamp(-128, 127) as i8
        });
        let mut block = BlockQ6K {
            ql: [0; BLOCK_LEN / 2],
            qh: [0; BLOCK_LEN / 4],
            scales,
            d,
        };
        for (e, &v) in x.iter().enumerate() {
            let step = df * scales[e / SUB_LEN] as f32;
            let q = if step == 0.0 {
                0
            } else {
                round_even(v / step).clamp(-32, 31)
            };
            block.set_code(e, (q + 32) as u8);
        }
        block
    }

    /// The 6-bit code (0..=63) of element `e`; the weight is
    /// (code - 32) * scales[e / 16] * d.
    #[inline]
    pub fn code(&self, e: usize) -> u8 {
        let (ql, ql_shift, qh, qh_shift) = position(e);
        ((self.ql[ql] >> ql_shift) & 0x0F) | (((self.qh[qh] >> qh_shift) & 3) << 4)
    }

    fn set_code(&mut self, e: usize, code: u8) {
        debug_assert!(code < 64);
        let (ql, ql_shift, qh, qh_shift) = position(e);
        self.ql[ql] = (self.ql[ql] & !(0x0F << ql_shift)) | ((code & 0x0F) << ql_shift);
        self.qh[qh] = (self.qh[qh] & !(3 << qh_shift)) | ((code >> 4) << qh_shift);
    }
}

impl PackedBlock for BlockQ6K {
    const FORMAT: &'static str = "q6_k";
    const LEN: usize = BLOCK_LEN;
    const BYTES: usize = BLOCK_BYTES;

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ql);
        out.extend_from_slice(&self.qh);
        out.extend(self.scales.iter().map(|&s| s as u8));
        out.extend_from_slice(&self.d.to_le_bytes());
    }

    fn read_bytes(bytes: &[u8]) -> Result<Self, String> {
        let d = read_f16(bytes, 208);
        if !d.is_finite() {
            return Err(format!("scale d = {d} is not finite"));
        }
        Ok(BlockQ6K {
            ql: bytes[..128].try_into().expect("128 bytes"),
            qh: bytes[128..192].try_into().expect("64 bytes"),
            scales: std::array::from_fn(|i| bytes[192 + i] as i8),
            d,
        })
    }
}

pub type Q6KMatrix = BlockMatrix<BlockQ6K>;

/// Ok when a row of `cols` weights is a whole number of super-blocks.
pub fn check_cols(rows: usize, cols: usize) -> Result<(), FormatError> {
    if rows == 0 || cols == 0 {
        return Err(FormatError::EmptyShape { rows, cols });
    }
    if !cols.is_multiple_of(BLOCK_LEN) {
        return Err(FormatError::BadBytes {
            format: "q6_k",
            what: format!(
                "{rows}x{cols}: rows must hold a whole number of 256-weight super-blocks \
                 (K a multiple of 256, as in ggml); {cols} is not"
            ),
        });
    }
    Ok(())
}

impl Q6KMatrix {
    /// Quantizes every row; K (`w.cols()`) must be a multiple of 256.
    pub fn pack_dense(w: &DenseMatrix) -> Result<Self, FormatError> {
        check_cols(w.rows(), w.cols())?;
        Ok(BlockMatrix::pack(
            w.rows(),
            w.cols(),
            w.values(),
            BlockQ6K::quantize,
        ))
    }

    /// Reads GGUF tensor bytes, refusing rows that are not whole super-blocks.
    pub fn from_q6k_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, FormatError> {
        check_cols(rows, cols)?;
        BlockMatrix::from_bytes(rows, cols, bytes)
    }

    /// The dequantized weights, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.unpack(|b: &BlockQ6K, out: &mut [f32]| {
            let d = b.d.to_f32();
            for (e, o) in out.iter_mut().enumerate() {
                *o = d * b.scales[e / SUB_LEN] as f32 * (b.code(e) as f32 - 32.0);
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The golden input: x_i = ((37 i) mod 61 - 30) / 8, then sub-block j
    /// scaled by (j + 1) / 4 so every sub-block gets its own scale.
    pub(crate) fn golden_input() -> Vec<f32> {
        (0..256)
            .map(|i| (((i * 37) % 61) as f32 - 30.0) / 8.0 * ((i / 16) + 1) as f32 / 4.0)
            .collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn golden_bytes() {
        let block = BlockQ6K::quantize(&golden_input());
        let mut bytes = Vec::new();
        block.write_bytes(&mut bytes);
        assert_eq!(bytes.len(), BLOCK_BYTES);
        assert_eq!(hex(&bytes), GOLDEN_HEX.concat());
        // gguf-py's Q6_K dequantizer on these bytes starts with these values.
        let m = Q6KMatrix::from_q6k_bytes(1, 256, &bytes).unwrap();
        // (in 512ths: d * scales[0] = -0.003662109375 * -8 = 15/512)
        let want = [-480, 105, -270, 315, -60, -450, 150, -240].map(|n| n as f32 / 512.0);
        assert_eq!(m.dequantize()[..8], want);
        // By hand: sub-block 15 has the largest values, (r - 30) / 2 for
        // r = 37 i mod 61; its m is -15 at i = 244 (r = 0), so s_15 = -15 / -32
        // = 0.46875 and d = s_15 / -128 = -0.003662109375 = -1.875 * 2^-9 =
        // f16 0x9b80 (stored last, little-endian), scales[15] = -128.
        assert_eq!(&bytes[208..], &[0x80, 0x9b]);
        assert_eq!(bytes[192 + 15] as i8, -128);
        // Element 244 is the extreme: code 0 (q = -32). 244 = 128 + 3 * 32 + 20:
        // high nibble of ql[64 + 32 + 20], bits 6..8 of qh[32 + 20].
        assert_eq!(block.code(244), 0);
        assert_eq!(bytes[64 + 32 + 20] >> 4, 0);
        assert_eq!(bytes[128 + 32 + 20] >> 6, 0);
        // Round trip through the reader.
        assert_eq!(BlockQ6K::read_bytes(&bytes).unwrap(), block);
    }

    /// Our quantizer's bytes for [`golden_input`]. The `gguf` Python
    /// package (llama.cpp's gguf-py) dequantizes them to values within the
    /// documented bound of the input, its first eight being those checked in
    /// `golden_bytes`.
    const GOLDEN_HEX: [&str; 7] = [
        "60c71ea5fc92ea30c71eb40c52fa40d6e27c04ae27c05ae27c05ae37c05af37c",
        "db91c90fc60db3fb31e92fd51d530b41d73fa51d73fa51c73fa50c73ea50c72e",
        "2bde4bfe500db01dc033e093ffa205b25ae27c05ae37c05af37c15af37d15af3",
        "701cc03bdf43fe921db125d074ef940751c73fa50c73ea50c72ea50c72ea40c7",
        "34d248238d74d249279d74e28927de78d1ba14ed4bd1be04ed4b10be04e17b10",
        "22b8d76d842279d76e88137dc72e8813be04ed4b10be04e17b10be47e17b14ae",
        "f810e8e0da30cdc0c150b0a062707480809b",
    ];

    #[test]
    fn codes_land_where_ggml_puts_them() {
        // Every element with its own code: the accessor inverts set_code and
        // no two elements share bits.
        let mut b = BlockQ6K::ZERO;
        for e in 0..256 {
            b.set_code(e, ((e * 7 + 3) % 64) as u8);
        }
        for e in 0..256 {
            assert_eq!(b.code(e), ((e * 7 + 3) % 64) as u8, "element {e}");
        }
        // ggml's dequantizer, written out for element 128 + 64 + 5 (k = 2, l = 5):
        // low bits: ql[64 + 5] >> 4, high bits: (qh[32 + 5] >> 4) & 3.
        let e = 128 + 64 + 5;
        let want = (b.ql[64 + 5] >> 4) | (((b.qh[32 + 5] >> 4) & 3) << 4);
        assert_eq!(b.code(e), want);
        assert_eq!(BlockQ6K::ZERO.code(17), 32);
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let cols = 512;
        let values: Vec<f32> = (0..3 * cols)
            .map(|i| (((i * 13) % 17) as f32 - 8.0) * (1.0 + (i % 97) as f32 / 50.0))
            .collect();
        let w = DenseMatrix::new(3, cols, values.clone()).unwrap();
        let m = Q6KMatrix::pack_dense(&w).unwrap();
        let back = m.dequantize();
        let again = Q6KMatrix::from_q6k_bytes(3, cols, &m.to_bytes()).unwrap();
        assert_eq!(again.dequantize(), back);
        for (i, (&v, &b)) in values.iter().zip(&back).enumerate() {
            let blk = &m.row(i / cols)[(i % cols) / BLOCK_LEN];
            let step = (blk.d.to_f32() * blk.scales[(i % BLOCK_LEN) / SUB_LEN] as f32).abs();
            let bound = if v.abs() > 31.0 * step { 1.26 } else { 0.5 };
            assert!(
                (v - b).abs() <= bound * step * 1.01 + 1e-6,
                "{i}: {v} vs {b}"
            );
        }
    }

    #[test]
    fn zero_blocks_and_bad_shapes() {
        let w = DenseMatrix::new(2, 256, vec![0.0; 512]).unwrap();
        let m = Q6KMatrix::pack_dense(&w).unwrap();
        assert!(m.dequantize().iter().all(|&v| v == 0.0));
        let w = DenseMatrix::new(2, 300, vec![1.0; 600]).unwrap();
        let err = Q6KMatrix::pack_dense(&w).unwrap_err().to_string();
        assert!(err.contains("multiple of 256"), "{err}");
        assert!(Q6KMatrix::from_q6k_bytes(1, 100, &[0; 210]).is_err());
        // Truncated or non-finite scales are refused, not read.
        assert!(Q6KMatrix::from_q6k_bytes(1, 256, &[0; 209]).is_err());
        let mut bytes = vec![0u8; 210];
        bytes[208..].copy_from_slice(&f16::NAN.to_le_bytes());
        assert!(Q6KMatrix::from_q6k_bytes(1, 256, &bytes).is_err());
    }

    #[test]
    fn huge_values_saturate_the_scale() {
        let x: Vec<f32> = (0..256).map(|i| if i == 3 { 1e30 } else { 1.0 }).collect();
        let b = BlockQ6K::quantize(&x);
        assert!(b.d.is_finite());
        assert_eq!(b.code(3), 0);
    }
}
