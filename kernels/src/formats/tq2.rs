//! llama.cpp's TQ2_0: 256 ternary weights in 64 bytes of 2-bit codes plus an
//! f16 block scale (66 bytes, 2.0625 bits per weight).
//!
//! Codes are w + 1 (0, 1, 2). The 64 code bytes are two 32-byte chunks of 128
//! weights; inside a chunk, byte m holds elements m, m+32, m+64, m+96 at bit
//! offsets 0, 2, 4, 6. The block scale d is f16; for weights that come from a
//! BitNet per-tensor scale every block carries that scale. GGUF type id 35.

use super::{read_f16, BlockMatrix, PackedBlock, TernaryMatrix};
use half::f16;

/// Weights per block.
pub const BLOCK_LEN: usize = 256;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 66;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockTq2 {
    pub qs: [u8; 64],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockTq2>() == BLOCK_BYTES);

impl BlockTq2 {
    pub fn pack(values: &[i8], d: f16) -> Self {
        assert_eq!(values.len(), BLOCK_LEN);
        let mut qs = [0u8; 64];
        for (i, &v) in values.iter().enumerate() {
            let (chunk, within) = (i / 128, i % 128);
            qs[chunk * 32 + within % 32] |= ((v + 1) as u8) << (2 * (within / 32));
        }
        BlockTq2 { qs, d }
    }

    /// The 2-bit code (w + 1) of element `i`.
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        let (chunk, within) = (i / 128, i % 128);
        (self.qs[chunk * 32 + within % 32] >> (2 * (within / 32))) & 3
    }

    pub fn unpack(&self, out: &mut [i8]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.code(i) as i8 - 1;
        }
    }
}

impl PackedBlock for BlockTq2 {
    const FORMAT: &'static str = "tq2";
    const LEN: usize = BLOCK_LEN;
    const BYTES: usize = BLOCK_BYTES;

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.qs);
        out.extend_from_slice(&self.d.to_le_bytes());
    }

    fn read_bytes(bytes: &[u8]) -> Result<Self, String> {
        let qs: [u8; 64] = bytes[..64].try_into().expect("64 bytes");
        if let Some(j) = qs
            .iter()
            .position(|&b| (0..4).any(|k| (b >> (2 * k)) & 3 == 3))
        {
            return Err(format!(
                "byte {j} holds code 0b11; expected codes 0, 1 or 2"
            ));
        }
        let d = read_f16(bytes, 64);
        if !d.is_finite() {
            return Err(format!("scale d = {d} is not finite"));
        }
        Ok(BlockTq2 { qs, d })
    }
}

pub type Tq2Matrix = BlockMatrix<BlockTq2>;

impl Tq2Matrix {
    /// Packs a ternary matrix; every block carries the tensor scale as f16.
    pub fn pack_ternary(w: &TernaryMatrix) -> Self {
        let d = f16::from_f32(w.scale());
        BlockMatrix::pack(w.rows(), w.cols(), w.values(), |v| BlockTq2::pack(v, d))
    }

    /// The ternary values, row-major (block scales are in the blocks).
    pub fn ternary_values(&self) -> Vec<i8> {
        self.unpack(|b: &BlockTq2, out: &mut [i8]| b.unpack(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_match_llama_cpp() {
        // Element i = (i % 3) - 1, d = 1.0. Expected bytes produced by the
        // `gguf` Python package's TQ2_0 quantizer (an implementation independent of this one).
        let values: Vec<i8> = (0..256).map(|i| (i % 3) as i8 - 1).collect();
        let block = BlockTq2::pack(&values, f16::ONE);
        let mut bytes = Vec::new();
        block.write_bytes(&mut bytes);
        let expected = format!("{}003c", "186186".repeat(21) + "18");
        assert_eq!(hex(&bytes), expected);
        // By hand: byte 0 holds elements 0, 32, 64, 96 (codes 0, 2, 1, 0) at bits 0, 2, 4, 6
        // -> 0b00_01_10_00 = 0x18.
        assert_eq!(bytes[0], 0x18);
    }

    #[test]
    fn round_trip_with_padding() {
        for cols in [1, 255, 256, 257, 600] {
            let values: Vec<i8> = (0..2 * cols).map(|i| ((i * 5 + 1) % 3) as i8 - 1).collect();
            let w = TernaryMatrix::new(2, cols, values.clone(), 0.75).unwrap();
            let m = Tq2Matrix::pack_ternary(&w);
            assert_eq!(m.blocks_per_row, cols.div_ceil(BLOCK_LEN));
            assert_eq!(m.ternary_values(), values);
            let again = Tq2Matrix::from_bytes(2, cols, &m.to_bytes()).unwrap();
            assert_eq!(again.ternary_values(), values);
            assert!(again.blocks.iter().all(|b| b.d == f16::from_f32(0.75)));
        }
    }

    #[test]
    fn rejects_code_three_and_bad_length() {
        let mut bytes = vec![0x55u8; BLOCK_BYTES];
        bytes[64..].copy_from_slice(&f16::ONE.to_le_bytes());
        assert!(Tq2Matrix::from_bytes(1, 256, &bytes).is_ok());
        assert!(Tq2Matrix::from_bytes(1, 257, &bytes).is_err());
        bytes[10] = 0xff;
        let err = Tq2Matrix::from_bytes(1, 256, &bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("block 0: byte 10"), "{err}");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
