//! IEEE half-precision weights: the fp16 baseline every speedup is measured against.
//!
//! Rows are stored with a stride padded to [`ROW_ALIGN`] elements (zeros in
//! the padding), so SIMD kernels read whole vectors without a tail loop and
//! every row starts on a 64-byte boundary. On disk (GGUF F16) rows are not padded.

use super::{aligned_from_iter, padded_len, AlignedVec, DenseMatrix, FormatError};
use half::f16;

/// Row stride granularity in elements (64 bytes).
pub const ROW_ALIGN: usize = 32;

#[derive(Clone, Debug)]
pub struct F16Matrix {
    pub rows: usize,
    pub cols: usize,
    /// Elements between the starts of consecutive rows.
    pub stride: usize,
    pub data: AlignedVec<f16>,
}

impl F16Matrix {
    pub fn pack(w: &DenseMatrix) -> Self {
        Self::from_rows(
            w.rows(),
            w.cols(),
            w.values().iter().map(|&v| f16::from_f32(v)),
        )
    }

    fn from_rows(rows: usize, cols: usize, values: impl Iterator<Item = f16>) -> Self {
        let stride = padded_len(cols, ROW_ALIGN);
        let mut values = values;
        let data = aligned_from_iter((0..rows).flat_map(|_| {
            let row: Vec<f16> = values.by_ref().take(cols).collect();
            row.into_iter()
                .chain(std::iter::repeat_n(f16::ZERO, stride - cols))
        }));
        F16Matrix {
            rows,
            cols,
            stride,
            data,
        }
    }

    /// Row `r` including its zero padding (`stride` elements).
    pub fn row(&self, r: usize) -> &[f16] {
        &self.data[r * self.stride..(r + 1) * self.stride]
    }

    pub fn unpack(&self) -> DenseMatrix {
        let values = (0..self.rows)
            .flat_map(|r| self.row(r)[..self.cols].iter().map(|v| v.to_f32()))
            .collect();
        DenseMatrix::new(self.rows, self.cols, values).expect("shape is consistent")
    }

    /// Bytes of weights a matrix-vector product reads (padding included).
    pub fn weight_bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// The on-disk tensor bytes: rows x cols little-endian f16, unpadded.
    pub fn to_bytes(&self) -> Vec<u8> {
        (0..self.rows)
            .flat_map(|r| {
                self.row(r)[..self.cols]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
            })
            .collect()
    }

    pub fn from_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, FormatError> {
        if rows == 0 || cols == 0 {
            return Err(FormatError::EmptyShape { rows, cols });
        }
        if rows.checked_mul(cols).and_then(|n| n.checked_mul(2)) != Some(bytes.len()) {
            return Err(FormatError::BadBytes {
                format: "f16",
                what: format!(
                    "{rows}x{cols} needs {} bytes, got {}",
                    rows.saturating_mul(cols).saturating_mul(2),
                    bytes.len()
                ),
            });
        }
        let values = bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]));
        Ok(Self::from_rows(rows, cols, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_are_little_endian_ieee_half() {
        let w = DenseMatrix::new(1, 3, vec![1.0, -2.0, 0.5]).unwrap();
        // 1.0 = 0x3c00, -2.0 = 0xc000, 0.5 = 0x3800.
        assert_eq!(
            F16Matrix::pack(&w).to_bytes(),
            [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38]
        );
    }

    #[test]
    fn rows_are_padded_and_round_trip() {
        let values: Vec<f32> = (0..2 * 33).map(|i| i as f32 * 0.25).collect();
        let w = DenseMatrix::new(2, 33, values).unwrap();
        let m = F16Matrix::pack(&w);
        assert_eq!(m.stride, 64);
        assert!(m.row(0)[33..].iter().all(|v| *v == f16::ZERO));
        assert_eq!(m.unpack(), w);
        let again = F16Matrix::from_bytes(2, 33, &m.to_bytes()).unwrap();
        assert_eq!(again.unpack(), w);
        assert!(F16Matrix::from_bytes(2, 33, &[0; 10]).is_err());
    }
}
