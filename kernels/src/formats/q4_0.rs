//! llama.cpp's Q4_0: 32 weights as 4-bit codes with an f16 block scale (18 bytes, 4.5 bits per weight).
//!
//! d = m / -8 where m is the block's value of largest magnitude (the first one
//! on ties); code = min(15, trunc(w / d + 8.5)); the weight is (code - 8) * d.
//! Layout: `d` then `qs[16]`; byte j holds element j in the low nibble and
//! element j + 16 in the high nibble. GGUF type id 2.

use super::{read_f16, BlockMatrix, DenseMatrix, PackedBlock};
use half::f16;

/// Weights per block.
pub const BLOCK_LEN: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; BLOCK_LEN / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == BLOCK_BYTES);

impl BlockQ4_0 {
    pub fn quantize(x: &[f32]) -> Self {
        assert_eq!(x.len(), BLOCK_LEN);
        let mut max = 0.0f32;
        for &v in x {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        let d = max / -8.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        let code = |v: f32| ((v * inv + 8.5) as i8).min(15) as u8;
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs: std::array::from_fn(|j| code(x[j]) | (code(x[j + 16]) << 4)),
        }
    }

    /// The 4-bit code (0..=15) of element `i`; the weight is (code - 8) * d.
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        if i < 16 {
            self.qs[i] & 0x0f
        } else {
            self.qs[i - 16] >> 4
        }
    }
}

impl PackedBlock for BlockQ4_0 {
    const FORMAT: &'static str = "q4_0";
    const LEN: usize = BLOCK_LEN;
    const BYTES: usize = BLOCK_BYTES;

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend_from_slice(&self.qs);
    }

    fn read_bytes(bytes: &[u8]) -> Result<Self, String> {
        let d = read_f16(bytes, 0);
        if !d.is_finite() {
            return Err(format!("scale d = {d} is not finite"));
        }
        Ok(BlockQ4_0 {
            d,
            qs: bytes[2..18].try_into().expect("16 bytes"),
        })
    }
}

pub type Q4_0Matrix = BlockMatrix<BlockQ4_0>;

impl Q4_0Matrix {
    pub fn pack_dense(w: &DenseMatrix) -> Self {
        BlockMatrix::pack(w.rows(), w.cols(), w.values(), BlockQ4_0::quantize)
    }

    /// The dequantized weights, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.unpack(|b: &BlockQ4_0, out: &mut [f32]| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (b.code(i) as f32 - 8.0) * b.d.to_f32();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::q8_0::tests::golden_input;

    #[test]
    fn golden_bytes_match_llama_cpp() {
        // Expected bytes from the `gguf` Python package's Q4_0 quantizer.
        let mut bytes = Vec::new();
        BlockQ4_0::quantize(&golden_input()).write_bytes(&mut bytes);
        let got: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, "8035c06af49e37d17b04af48e17c15bf49f2");
        // By hand: the largest magnitude is x_0 = -2.75, d = 2.75 / 8 = 0.34375 = f16 0x3580;
        // x_0 -> trunc(-8 + 8.5) = 0 (low nibble of byte 0), x_16 = 1.5 -> trunc(4.36 + 8.5) = 12.
        assert_eq!(&bytes[..3], &[0x80, 0x35, 0xc0]);
    }

    #[test]
    fn round_trip_error_is_within_one_step() {
        let values: Vec<f32> = (0..2 * 40).map(|i| ((i * 7) % 15) as f32 - 7.0).collect();
        let w = DenseMatrix::new(2, 40, values.clone()).unwrap();
        let m = Q4_0Matrix::pack_dense(&w);
        let back = m.dequantize();
        assert_eq!(
            Q4_0Matrix::from_bytes(2, 40, &m.to_bytes())
                .unwrap()
                .dequantize(),
            back
        );
        for (i, (&v, &b)) in values.iter().zip(&back).enumerate() {
            let d = m.row(i / 40)[(i % 40) / BLOCK_LEN].d.to_f32().abs();
            assert!((v - b).abs() <= d * 1.01, "{v} vs {b}");
        }
    }
}
