//! llama.cpp's Q8_0: 32 weights as int8 with an f16 block scale (34 bytes, 8.5 bits per weight).
//!
//! d = absmax / 127, q = round(w / d). Layout: `d` then `qs[32]`. GGUF type id 8.
//! The same block is the activation format of the q8_0 and q4_0 kernels.

use super::{read_f16, BlockMatrix, DenseMatrix, PackedBlock};
use crate::quant::quantize_block_absmax_q8;
use half::f16;

/// Weights per block.
pub const BLOCK_LEN: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 34;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; BLOCK_LEN],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == BLOCK_BYTES);

impl BlockQ8_0 {
    pub fn quantize(x: &[f32]) -> Self {
        let mut qs = [0i8; BLOCK_LEN];
        let d = quantize_block_absmax_q8(x, &mut qs);
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        }
    }
}

impl PackedBlock for BlockQ8_0 {
    const FORMAT: &'static str = "q8_0";
    const LEN: usize = BLOCK_LEN;
    const BYTES: usize = BLOCK_BYTES;

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend(self.qs.iter().map(|&q| q as u8));
    }

    fn read_bytes(bytes: &[u8]) -> Result<Self, String> {
        let d = read_f16(bytes, 0);
        if !d.is_finite() {
            return Err(format!("scale d = {d} is not finite"));
        }
        Ok(BlockQ8_0 {
            d,
            qs: std::array::from_fn(|i| bytes[2 + i] as i8),
        })
    }
}

pub type Q8_0Matrix = BlockMatrix<BlockQ8_0>;

impl Q8_0Matrix {
    pub fn pack_dense(w: &DenseMatrix) -> Self {
        BlockMatrix::pack(w.rows(), w.cols(), w.values(), BlockQ8_0::quantize)
    }

    /// The dequantized weights, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.unpack(|b: &BlockQ8_0, out: &mut [f32]| {
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = q as f32 * b.d.to_f32();
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The hand-made block of the golden tests: x_i = ((37 i) mod 23 - 11) / 4.
    pub(crate) fn golden_input() -> Vec<f32> {
        (0..32)
            .map(|i| ((i * 37) % 23) as f32 / 4.0 - 2.75)
            .collect()
    }

    #[test]
    fn golden_bytes_match_llama_cpp() {
        // Expected bytes from the `gguf` Python package's Q8_0 quantizer.
        let mut bytes = Vec::new();
        BlockQ8_0::quantize(&golden_input()).write_bytes(&mut bytes);
        let got: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            got,
            "8b258123bb5cf48d2ec66800983ad2730ca445dd7f17af51e98123bb5cf48d2ec668"
        );
        // By hand: d = 2.75 / 127 -> f16 0x258b; x_0 = -2.75 -> -127 = 0x81.
        assert_eq!(&bytes[..3], &[0x8b, 0x25, 0x81]);
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let values: Vec<f32> = (0..3 * 45).map(|i| ((i * 13) % 17) as f32 - 8.0).collect();
        let w = DenseMatrix::new(3, 45, values.clone()).unwrap();
        let m = Q8_0Matrix::pack_dense(&w);
        let back = m.dequantize();
        let again = Q8_0Matrix::from_bytes(3, 45, &m.to_bytes()).unwrap();
        assert_eq!(again.dequantize(), back);
        for (r, row) in values.chunks(45).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let d = m.row(r)[c / BLOCK_LEN].d.to_f32();
                assert!((back[r * 45 + c] - v).abs() <= 0.5 * d * 1.01 + 1e-6);
            }
        }
    }
}
