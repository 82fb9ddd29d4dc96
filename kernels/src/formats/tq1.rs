//! llama.cpp's TQ1_0: 256 ternary weights in base 3 (54 bytes, 1.6875 bits per weight).
//!
//! Layout of a block: `qs[48]` then `qh[4]` then an f16 scale `d`. Digits are
//! w + 1 in {0, 1, 2}. A byte holds 5 digits (4 in `qh`) as the number
//! sum(digit_n * 3^(4-n)), most significant digit first, rescaled to a byte by
//! ceil(value * 256 / 243). Multiplying the byte by 3^n (mod 256) moves digit n
//! to the top, and (byte * 3) >> 8 reads it: SIMD can do this with 8/16-bit
//! multiplies. Element order:
//! - elements 0..160: `qs[m]`, m < 32, digit n is element n*32 + m;
//! - elements 160..240: `qs[32 + m]`, m < 16, digit n is element 160 + n*16 + m;
//! - elements 240..256: `qh[m]`, m < 4, digit n (n < 4) is element 240 + n*4 + m.
//!
//! GGUF type id 34.

use super::{read_f16, BlockMatrix, PackedBlock, TernaryMatrix};
use half::f16;

/// Weights per block.
pub const BLOCK_LEN: usize = 256;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 54;

/// 3^n for n = 0..5, the multipliers that bring digit n to the top of a byte.
pub const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockTq1 {
    pub qs: [u8; 48],
    pub qh: [u8; 4],
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockTq1>() == BLOCK_BYTES);

/// Where element `i` of a block lives: (byte index in qs ++ qh, digit n).
#[inline]
pub fn position(i: usize) -> (usize, usize) {
    match i {
        0..160 => (i % 32, i / 32),
        160..240 => (32 + (i - 160) % 16, (i - 160) / 16),
        _ => (48 + (i - 240) % 4, (i - 240) / 4),
    }
}

/// Digit `n` of a packed byte.
#[inline]
pub fn digit(byte: u8, n: usize) -> u8 {
    ((byte.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as u8
}

impl BlockTq1 {
    pub fn pack(values: &[i8], d: f16) -> Self {
        assert_eq!(values.len(), BLOCK_LEN);
        // Base-3 numbers before rescaling: 52 bytes of 5 (or 4) digits.
        let mut num = [0u16; 52];
        for (i, &v) in values.iter().enumerate() {
            let (byte, n) = position(i);
            let digits = if byte < 48 { 5 } else { 4 };
            num[byte] += (v + 1) as u16 * 3u16.pow((digits - 1 - n) as u32);
        }
        // A 4-digit byte is shifted up one digit so its first digit is the top one.
        let bytes: [u8; 52] = std::array::from_fn(|b| {
            let value = if b < 48 { num[b] } else { num[b] * 3 };
            ((value * 256).div_ceil(243)) as u8
        });
        BlockTq1 {
            qs: bytes[..48].try_into().expect("48 bytes"),
            qh: bytes[48..].try_into().expect("4 bytes"),
            d,
        }
    }

    /// The digit (w + 1) of element `i`.
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        let (byte, n) = position(i);
        let b = if byte < 48 {
            self.qs[byte]
        } else {
            self.qh[byte - 48]
        };
        digit(b, n)
    }

    pub fn unpack(&self, out: &mut [i8]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.code(i) as i8 - 1;
        }
    }
}

impl PackedBlock for BlockTq1 {
    const FORMAT: &'static str = "tq1";
    const LEN: usize = BLOCK_LEN;
    const BYTES: usize = BLOCK_BYTES;

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.qs);
        out.extend_from_slice(&self.qh);
        out.extend_from_slice(&self.d.to_le_bytes());
    }

    fn read_bytes(bytes: &[u8]) -> Result<Self, String> {
        let block = BlockTq1 {
            qs: bytes[..48].try_into().expect("48 bytes"),
            qh: bytes[48..52].try_into().expect("4 bytes"),
            d: read_f16(bytes, 52),
        };
        if !block.d.is_finite() {
            return Err(format!("scale d = {} is not finite", block.d));
        }
        // Every byte decodes to some digits in 0..=2, so no byte value is invalid.
        Ok(block)
    }
}

pub type Tq1Matrix = BlockMatrix<BlockTq1>;

impl Tq1Matrix {
    /// Packs a ternary matrix; every block carries the tensor scale as f16.
    pub fn pack_ternary(w: &TernaryMatrix) -> Self {
        let d = f16::from_f32(w.scale());
        BlockMatrix::pack(w.rows(), w.cols(), w.values(), |v| BlockTq1::pack(v, d))
    }

    /// The ternary values, row-major (block scales are in the blocks).
    pub fn ternary_values(&self) -> Vec<i8> {
        self.unpack(|b: &BlockTq1, out: &mut [i8]| b.unpack(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_match_llama_cpp() {
        // Element i = (i % 3) - 1, d = 1.0. Expected bytes produced by the
        // `gguf` Python package's TQ1_0 quantizer (independent of this code).
        let values: Vec<i8> = (0..256).map(|i| (i % 3) as i8 - 1).collect();
        let mut bytes = Vec::new();
        BlockTq1::pack(&values, f16::ONE).write_bytes(&mut bytes);
        let expected = concat!(
            "456ccf456ccf456ccf456ccf456ccf456ccf456ccf456ccf456ccf456ccf456c",
            "94bb3194bb3194bb3194bb3194bb31943092bb30003c"
        );
        let got: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expected);
        // By hand, byte 0: elements 0, 32, 64, 96, 128 have digits 0, 2, 1, 0, 2:
        // 0*81 + 2*27 + 1*9 + 0*3 + 2 = 65; ceil(65 * 256 / 243) = 69 = 0x45.
        assert_eq!(bytes[0], 0x45);
    }

    #[test]
    fn every_digit_pattern_decodes() {
        // All 243 five-digit numbers survive the byte rescaling.
        for num in 0..243u16 {
            let byte = ((num * 256).div_ceil(243)) as u8;
            let digits: Vec<u8> = (0..5).map(|n| digit(byte, n)).collect();
            let back = digits.iter().fold(0u16, |acc, &d| acc * 3 + d as u16);
            assert_eq!(back, num, "byte {byte:#x}");
        }
    }

    #[test]
    fn round_trip_with_padding() {
        for cols in [1, 159, 160, 241, 256, 257, 700] {
            let values: Vec<i8> = (0..3 * cols)
                .map(|i| ((i * 11 + 2) % 3) as i8 - 1)
                .collect();
            let w = TernaryMatrix::new(3, cols, values.clone(), 1.5).unwrap();
            let m = Tq1Matrix::pack_ternary(&w);
            assert_eq!(m.ternary_values(), values);
            let again = Tq1Matrix::from_bytes(3, cols, &m.to_bytes()).unwrap();
            assert_eq!(again.ternary_values(), values);
        }
    }

    #[test]
    fn rejects_non_finite_scale() {
        let mut bytes = vec![0u8; BLOCK_BYTES];
        bytes[52..].copy_from_slice(&f16::INFINITY.to_le_bytes());
        let err = Tq1Matrix::from_bytes(1, 256, &bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not finite"), "{err}");
    }
}
