//! bitnet.cpp's I2_S layout (x86): 2 bits per weight, one f32 scale per tensor.
//!
//! Each weight is stored as the code w + 1 (-1 -> 0b00, 0 -> 0b01, +1 -> 0b10).
//! A block is 128 consecutive weights of a row in 32 bytes: byte j holds
//! element j in bits 7:6, element 32+j in bits 5:4, element 64+j in bits 3:2
//! and element 96+j in bits 1:0. With this interleave one 32-byte load and
//! four shift-and-mask steps give four vectors of 32 codes that line up with
//! four consecutive 32-byte runs of activations.
//!
//! On disk (GGUF of the bitnet.cpp fork) the blocks of all rows are followed
//! by a 32-byte tail whose first 4 bytes are the f32 scale.
//!
//! Rows whose length is not a multiple of 128 are padded with zero weights
//! (code 0b01); bitnet.cpp refuses such shapes.

use super::{BlockMatrix, FormatError, PackedBlock, TernaryMatrix};

/// Weights per block.
pub const BLOCK_LEN: usize = 128;
/// Bytes of the per-tensor tail holding the f32 scale.
pub const TAIL_BYTES: usize = 32;

/// 128 ternary weights as 2-bit codes in bitnet.cpp's interleaved order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockI2s {
    pub qs: [u8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockI2s>() == 32);

impl BlockI2s {
    /// Packs 128 ternary values.
    pub fn pack(values: &[i8; BLOCK_LEN]) -> Self {
        let mut qs = [0u8; 32];
        for (j, byte) in qs.iter_mut().enumerate() {
            for group in 0..4 {
                let code = (values[group * 32 + j] + 1) as u8;
                *byte |= code << (6 - 2 * group);
            }
        }
        BlockI2s { qs }
    }

    /// The 2-bit code (w + 1) of element `i`.
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        let (group, j) = (i / 32, i % 32);
        (self.qs[j] >> (6 - 2 * group)) & 3
    }

    pub fn unpack(&self) -> [i8; BLOCK_LEN] {
        std::array::from_fn(|i| self.code(i) as i8 - 1)
    }
}

impl PackedBlock for BlockI2s {
    const FORMAT: &'static str = "i2s";
    const LEN: usize = BLOCK_LEN;
    const BYTES: usize = 32;

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.qs);
    }

    fn read_bytes(bytes: &[u8]) -> Result<Self, String> {
        let qs: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "expected 32 bytes".to_string())?;
        if let Some(j) = qs
            .iter()
            .position(|&b| (0..4).any(|k| (b >> (2 * k)) & 3 == 3))
        {
            return Err(format!(
                "byte {j} holds code 0b11; expected codes 0, 1 or 2"
            ));
        }
        Ok(BlockI2s { qs })
    }
}

/// A matrix in I2_S: the packed blocks plus the per-tensor scale.
#[derive(Clone, Debug)]
pub struct I2sMatrix {
    pub packed: BlockMatrix<BlockI2s>,
    pub scale: f32,
}

impl I2sMatrix {
    pub fn pack(w: &TernaryMatrix) -> Self {
        let packed = BlockMatrix::pack(w.rows(), w.cols(), w.values(), |v: &[i8]| {
            BlockI2s::pack(v.try_into().expect("one block of values"))
        });
        I2sMatrix {
            packed,
            scale: w.scale(),
        }
    }

    pub fn unpack(&self) -> TernaryMatrix {
        let values = self
            .packed
            .unpack(|b: &BlockI2s, out: &mut [i8]| out.copy_from_slice(&b.unpack()));
        TernaryMatrix::new(self.packed.rows, self.packed.cols, values, self.scale)
            .expect("codes of a packed block are always ternary")
    }

    /// The on-disk tensor bytes: all blocks, then the 32-byte tail with the scale.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.packed.to_bytes();
        let mut tail = [0u8; TAIL_BYTES];
        tail[..4].copy_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&tail);
        out
    }

    /// Reads the on-disk tensor bytes of a `rows x cols` matrix.
    pub fn from_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, FormatError> {
        let Some(body_len) = bytes.len().checked_sub(TAIL_BYTES) else {
            return Err(FormatError::BadBytes {
                format: "i2s",
                what: format!(
                    "{} bytes is shorter than the {TAIL_BYTES}-byte scale tail",
                    bytes.len()
                ),
            });
        };
        let (body, tail) = bytes.split_at(body_len);
        let packed = BlockMatrix::from_bytes(rows, cols, body)?;
        let scale = f32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
        if !scale.is_finite() {
            return Err(FormatError::BadScale(scale));
        }
        Ok(I2sMatrix { packed, scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made block: element i is -1, 0, +1 by i % 3, so codes cycle 0, 1, 2.
    fn cyclic_block() -> [i8; BLOCK_LEN] {
        std::array::from_fn(|i| (i % 3) as i8 - 1)
    }

    #[test]
    fn golden_bytes_follow_the_published_interleave() {
        let block = BlockI2s::pack(&cyclic_block());
        // Byte j = code(j) << 6 | code(32+j) << 4 | code(64+j) << 2 | code(96+j),
        // code(i) = i % 3. Byte 0: codes 0, 2, 1, 0 -> 0b00_10_01_00 = 0x24.
        // Byte 1: codes 1, 0, 2, 1 -> 0b01_00_10_01 = 0x49.
        // Byte 2: codes 2, 1, 0, 2 -> 0b10_01_00_10 = 0x92. Then the pattern repeats.
        let expected: [u8; 32] = std::array::from_fn(|j| [0x24, 0x49, 0x92][j % 3]);
        assert_eq!(block.qs, expected);
    }

    #[test]
    fn golden_tensor_bytes_end_with_the_scale_tail() {
        let w = TernaryMatrix::new(1, BLOCK_LEN, cyclic_block().to_vec(), 0.5).unwrap();
        let bytes = I2sMatrix::pack(&w).to_bytes();
        assert_eq!(bytes.len(), 32 + TAIL_BYTES);
        assert_eq!(&bytes[..3], &[0x24, 0x49, 0x92]);
        assert_eq!(&bytes[32..36], &0.5f32.to_le_bytes());
        assert!(bytes[36..].iter().all(|&b| b == 0));
    }

    #[test]
    fn all_zero_weights_are_code_one() {
        let block = BlockI2s::pack(&[0; BLOCK_LEN]);
        assert_eq!(block.qs, [0x55; 32]);
    }

    #[test]
    fn pack_unpack_round_trip_with_tail() {
        for cols in [1, 127, 128, 129, 300] {
            let values: Vec<i8> = (0..3 * cols).map(|i| ((i * 7 + 3) % 3) as i8 - 1).collect();
            let w = TernaryMatrix::new(3, cols, values, 0.25).unwrap();
            let packed = I2sMatrix::pack(&w);
            assert_eq!(packed.packed.blocks_per_row, cols.div_ceil(BLOCK_LEN));
            assert_eq!(packed.unpack(), w);
            let again = I2sMatrix::from_bytes(3, cols, &packed.to_bytes()).unwrap();
            assert_eq!(again.unpack(), w);
        }
    }

    #[test]
    fn from_bytes_rejects_bad_length_and_code_three() {
        assert!(I2sMatrix::from_bytes(1, 128, &[0; 63]).is_err());
        let mut bytes = vec![0x55u8; 32 + TAIL_BYTES];
        bytes[32..36].copy_from_slice(&1.0f32.to_le_bytes());
        assert!(I2sMatrix::from_bytes(1, 128, &bytes).is_ok());
        bytes[5] = 0x57;
        let err = I2sMatrix::from_bytes(1, 128, &bytes).unwrap_err();
        assert!(err.to_string().contains("block 0: byte 5"), "{err}");
    }
}
