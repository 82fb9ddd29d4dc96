//! Weight formats: the logical matrices kernels start from and every packed
//! layout the project compares.
//!
//! A [`TernaryMatrix`] holds rows x cols values in {-1, 0, +1} and one
//! per-tensor scale (BitNet b1.58's absmean beta); a [`DenseMatrix`] holds real
//! weights for the 16/8/4-bit baselines. Each submodule is one packed layout
//! with `pack` and `unpack`, `#[repr(C)]` blocks whose sizes are asserted at
//! compile time, and the on-disk byte order of the format it reproduces.
//!
//! Row lengths that are not a multiple of a format's block are padded with
//! zero weights (which add nothing to any dot product), so every shape works,
//! including the 1bitLLM 3B model's 3200 x 8640.

pub mod f16;
pub mod i2s;
pub mod lut;
pub mod q4_0;
pub mod q6_k;
pub mod q8_0;
pub mod tl1;
pub mod tl2;
pub mod tmac;
pub mod tq1;
pub mod tq2;

use aligned_vec::{AVec, ConstAlign};
use std::fmt;

/// Storage for packed weights and activations: 64-byte aligned so SIMD loads
/// of a block start never straddle a cache line.
pub type AlignedVec<T> = AVec<T, ConstAlign<64>>;

/// Collects into an [`AlignedVec`].
pub fn aligned_from_iter<T>(iter: impl IntoIterator<Item = T>) -> AlignedVec<T> {
    AlignedVec::from_iter(64, iter)
}

/// An [`AlignedVec`] of `len` copies of `value`. Faster than collecting an
/// iterator (which stores byte by byte, re-reading the length after each
/// store): activation buffers are allocated once per linear layer and call.
pub fn aligned_filled<T: Copy>(len: usize, value: T) -> AlignedVec<T> {
    let mut v = AlignedVec::<T>::with_capacity(64, len);
    let p: *mut T = v.as_mut_ptr();
    // SAFETY: the capacity holds `len` elements, each written before the
    // length covers it; T is Copy, so nothing needs dropping.
    unsafe {
        for i in 0..len {
            p.add(i).write(value);
        }
        v.set_len(len);
    }
    v
}

/// Errors from building or packing weight matrices.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("matrix shape {rows}x{cols} is empty; both dimensions must be at least 1")]
    EmptyShape { rows: usize, cols: usize },
    #[error("matrix shape {rows}x{cols} needs {expected} values, got {got}")]
    LengthMismatch {
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error("ternary value {value} at row {row}, column {col}; expected -1, 0 or +1")]
    NotTernary { row: usize, col: usize, value: i8 },
    #[error("weight scale {0} is not a finite number")]
    BadScale(f32),
    #[error("{format}: {what}")]
    BadBytes { format: &'static str, what: String },
}

/// Every weight format the project knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// bitnet.cpp I2_S: 2-bit codes, 128-weight blocks, one f32 per-tensor scale.
    I2s,
    /// llama.cpp TQ2_0: 2-bit codes, 256-weight blocks with an f16 scale.
    Tq2,
    /// llama.cpp TQ1_0: base-3 packing, 256-weight blocks with an f16 scale.
    Tq1,
    /// IEEE half precision, the baseline the published speedups are measured against.
    F16,
    /// 8-bit, 32-weight blocks with an f16 scale (llama.cpp Q8_0).
    Q8_0,
    /// 4-bit, 32-weight blocks with an f16 scale (llama.cpp Q4_0).
    Q4_0,
    /// 6-bit, 256-weight super-blocks with int8 scales per 16 and an f16 scale (llama.cpp Q6_K).
    Q6K,
    /// bitnet.cpp TL1 (LUT): 4-bit index per weight pair, 32-row tiles, per-tensor scale.
    Tl1,
    /// bitnet.cpp TL2 (LUT): sign + 4-bit index per weight triple (1.67 bits), per-tensor scale.
    Tl2,
    /// T-MAC-style bit-serial LUT: two 1-bit planes, 4-weight groups, per-tensor scale.
    Tmac,
}

/// How a format's kernels quantize their input activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationScheme {
    /// BitNet b1.58: int8 per token, absmax scale (i2s).
    TokenQ8,
    /// llama.cpp Q8_K: int8 per 256-element block with an f32 scale and 16 partial sums (tq1, tq2, q6_k).
    Q8K,
    /// llama.cpp Q8_0: int8 per 32-element block with an f16 scale (q8_0, q4_0).
    Q8_0,
    /// Unquantized f32 (the f16 baseline).
    F32,
}

impl Format {
    pub const ALL: [Format; 10] = [
        Format::I2s,
        Format::Tq2,
        Format::Tq1,
        Format::F16,
        Format::Q8_0,
        Format::Q4_0,
        Format::Q6K,
        Format::Tl1,
        Format::Tl2,
        Format::Tmac,
    ];

    /// The name used in kernel names and output rows (`i2s`, `q8_0`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::I2s => "i2s",
            Format::Tq2 => "tq2",
            Format::Tq1 => "tq1",
            Format::F16 => "f16",
            Format::Q8_0 => "q8_0",
            Format::Q4_0 => "q4_0",
            Format::Q6K => "q6_k",
            Format::Tl1 => "tl1",
            Format::Tl2 => "tl2",
            Format::Tmac => "tmac",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Weights per block along a row; rows are padded to a multiple of it.
    pub fn block_len(self) -> usize {
        match self {
            Format::I2s => i2s::BLOCK_LEN,
            Format::Tq2 => tq2::BLOCK_LEN,
            Format::Tq1 => tq1::BLOCK_LEN,
            Format::F16 => f16::ROW_ALIGN,
            Format::Q8_0 => q8_0::BLOCK_LEN,
            Format::Q4_0 => q4_0::BLOCK_LEN,
            Format::Q6K => q6_k::BLOCK_LEN,
            Format::Tl1 => tl1::CHUNK_COLS,
            Format::Tl2 => tl2::CHUNK_COLS,
            Format::Tmac => tmac::CHUNK_COLS,
        }
    }

    /// Storage bits per weight for full blocks (the per-tensor tails of i2s and
    /// the LUT formats are not counted).
    pub fn bits_per_weight(self) -> f64 {
        match self {
            Format::I2s => 2.0,
            Format::Tq2 => tq2::BLOCK_BYTES as f64 * 8.0 / tq2::BLOCK_LEN as f64,
            Format::Tq1 => tq1::BLOCK_BYTES as f64 * 8.0 / tq1::BLOCK_LEN as f64,
            Format::F16 => 16.0,
            Format::Q8_0 => q8_0::BLOCK_BYTES as f64 * 8.0 / q8_0::BLOCK_LEN as f64,
            Format::Q4_0 => q4_0::BLOCK_BYTES as f64 * 8.0 / q4_0::BLOCK_LEN as f64,
            Format::Q6K => q6_k::BLOCK_BYTES as f64 * 8.0 / q6_k::BLOCK_LEN as f64,
            Format::Tl1 | Format::Tmac => 2.0,
            Format::Tl2 => {
                tl2::BLOCK_BYTES as f64 * 8.0 / (lut::TILE_ROWS * tl2::CHUNK_COLS) as f64
            }
        }
    }

    /// The multiple the number of columns (K) must be, for formats that
    /// refuse to pad rows (Q6_K: whole super-blocks, as in ggml).
    pub fn required_col_multiple(self) -> Option<usize> {
        match self {
            Format::Q6K => Some(q6_k::BLOCK_LEN),
            _ => None,
        }
    }

    /// True when a matrix with `cols` columns can be packed in this format.
    pub fn accepts_cols(self, cols: usize) -> bool {
        self.required_col_multiple()
            .is_none_or(|m| cols.is_multiple_of(m))
    }

    /// True for the formats whose weights are ternary.
    pub fn is_ternary(self) -> bool {
        matches!(
            self,
            Format::I2s | Format::Tq2 | Format::Tq1 | Format::Tl1 | Format::Tl2 | Format::Tmac
        )
    }

    /// True for the table-lookup formats (`tl1`, `tl2`, `tmac`).
    pub fn is_lut(self) -> bool {
        matches!(self, Format::Tl1 | Format::Tl2 | Format::Tmac)
    }

    pub fn activation_scheme(self) -> ActivationScheme {
        match self {
            Format::I2s | Format::Tl1 | Format::Tl2 | Format::Tmac => ActivationScheme::TokenQ8,
            Format::Tq2 | Format::Tq1 | Format::Q6K => ActivationScheme::Q8K,
            Format::Q8_0 | Format::Q4_0 => ActivationScheme::Q8_0,
            Format::F16 => ActivationScheme::F32,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn check_shape(rows: usize, cols: usize, len: usize) -> Result<(), FormatError> {
    if rows == 0 || cols == 0 {
        return Err(FormatError::EmptyShape { rows, cols });
    }
    let expected = rows
        .checked_mul(cols)
        .ok_or(FormatError::EmptyShape { rows, cols })?;
    if len != expected {
        return Err(FormatError::LengthMismatch {
            rows,
            cols,
            expected,
            got: len,
        });
    }
    Ok(())
}

/// A ternary weight matrix: row-major values in {-1, 0, +1} and one per-tensor scale.
#[derive(Clone, Debug, PartialEq)]
pub struct TernaryMatrix {
    rows: usize,
    cols: usize,
    values: Vec<i8>,
    scale: f32,
}

impl TernaryMatrix {
    /// Checks that `values` has rows*cols entries, each -1, 0 or +1.
    pub fn new(rows: usize, cols: usize, values: Vec<i8>, scale: f32) -> Result<Self, FormatError> {
        check_shape(rows, cols, values.len())?;
        if !scale.is_finite() {
            return Err(FormatError::BadScale(scale));
        }
        if let Some(i) = values.iter().position(|v| !(-1..=1).contains(v)) {
            return Err(FormatError::NotTernary {
                row: i / cols,
                col: i % cols,
                value: values[i],
            });
        }
        Ok(TernaryMatrix {
            rows,
            cols,
            values,
            scale,
        })
    }

    /// Ternarizes real weights with BitNet b1.58's absmean rule.
    pub fn from_absmean(w: &DenseMatrix) -> Self {
        let (values, scale) = crate::quant::absmean_ternarize(&w.values);
        TernaryMatrix {
            rows: w.rows,
            cols: w.cols,
            values,
            scale,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn scale(&self) -> f32 {
        self.scale
    }
    pub fn values(&self) -> &[i8] {
        &self.values
    }
    pub fn row(&self, r: usize) -> &[i8] {
        &self.values[r * self.cols..(r + 1) * self.cols]
    }

    /// The real-valued matrix this one stands for: value x scale.
    pub fn dequantized(&self) -> DenseMatrix {
        DenseMatrix {
            rows: self.rows,
            cols: self.cols,
            values: self.values.iter().map(|&v| v as f32 * self.scale).collect(),
        }
    }
}

/// A real-valued weight matrix, row-major (the input of the f16/q8_0/q4_0 baselines).
#[derive(Clone, Debug, PartialEq)]
pub struct DenseMatrix {
    rows: usize,
    cols: usize,
    values: Vec<f32>,
}

impl DenseMatrix {
    pub fn new(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self, FormatError> {
        check_shape(rows, cols, values.len())?;
        Ok(DenseMatrix { rows, cols, values })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn values(&self) -> &[f32] {
        &self.values
    }
    pub fn row(&self, r: usize) -> &[f32] {
        &self.values[r * self.cols..(r + 1) * self.cols]
    }
}

/// The weights a kernel packs: ternary for the ternary formats; real values
/// (or a ternary matrix, dequantized) for the baselines.
#[derive(Clone, Debug)]
pub enum Weights {
    Ternary(TernaryMatrix),
    Dense(DenseMatrix),
}

impl Weights {
    pub fn rows(&self) -> usize {
        match self {
            Weights::Ternary(t) => t.rows,
            Weights::Dense(d) => d.rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Weights::Ternary(t) => t.cols,
            Weights::Dense(d) => d.cols,
        }
    }
}

/// Rounds `n` up to a multiple of `block`.
pub fn padded_len(n: usize, block: usize) -> usize {
    n.div_ceil(block) * block
}

/// A fixed-size packed block of one format, as it lies in memory and on disk.
pub trait PackedBlock: Copy + Send + Sync + 'static {
    /// Format name, for error messages.
    const FORMAT: &'static str;
    /// Weights per block.
    const LEN: usize;
    /// Bytes per block on disk (equal to its in-memory size; asserted per format).
    const BYTES: usize;
    /// Appends the on-disk bytes (little-endian) of this block.
    fn write_bytes(&self, out: &mut Vec<u8>);
    /// Reads one block from exactly `BYTES` bytes, rejecting invalid contents.
    fn read_bytes(bytes: &[u8]) -> Result<Self, String>;
}

/// A matrix stored as `rows * blocks_per_row` packed blocks, row-major.
/// Each row is padded with zero weights to a whole number of blocks.
#[derive(Clone, Debug)]
pub struct BlockMatrix<B> {
    pub rows: usize,
    pub cols: usize,
    pub blocks_per_row: usize,
    pub blocks: AlignedVec<B>,
}

impl<B: PackedBlock> BlockMatrix<B> {
    /// Packs row-major `values` (rows x cols); `pack` gets each block's
    /// `B::LEN` values, the last block of a row padded with `T::default()`.
    pub fn pack<T: Copy + Default>(
        rows: usize,
        cols: usize,
        values: &[T],
        mut pack: impl FnMut(&[T]) -> B,
    ) -> Self {
        assert_eq!(values.len(), rows * cols);
        let blocks_per_row = cols.div_ceil(B::LEN);
        let mut buf = vec![T::default(); B::LEN];
        let mut blocks = AlignedVec::with_capacity(64, rows * blocks_per_row);
        for row in values.chunks_exact(cols) {
            for piece in row.chunks(B::LEN) {
                buf[..piece.len()].copy_from_slice(piece);
                buf[piece.len()..].fill(T::default());
                blocks.push(pack(&buf));
            }
        }
        BlockMatrix {
            rows,
            cols,
            blocks_per_row,
            blocks,
        }
    }

    /// The row-major values (padding dropped); `unpack` writes one block's `B::LEN` values.
    pub fn unpack<T: Copy + Default>(&self, mut unpack: impl FnMut(&B, &mut [T])) -> Vec<T> {
        let mut buf = vec![T::default(); B::LEN];
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            for (i, block) in self.row(r).iter().enumerate() {
                unpack(block, &mut buf);
                let n = (self.cols - i * B::LEN).min(B::LEN);
                out.extend_from_slice(&buf[..n]);
            }
        }
        out
    }

    pub fn row(&self, r: usize) -> &[B] {
        &self.blocks[r * self.blocks_per_row..(r + 1) * self.blocks_per_row]
    }

    /// Bytes of packed weights a matrix-vector product reads.
    pub fn weight_bytes(&self) -> usize {
        self.blocks.len() * B::BYTES
    }

    /// The on-disk tensor bytes: every block in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.weight_bytes());
        for b in self.blocks.iter() {
            b.write_bytes(&mut out);
        }
        out
    }

    /// Reads the on-disk bytes of a `rows x cols` tensor.
    pub fn from_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, FormatError> {
        if rows == 0 || cols == 0 {
            return Err(FormatError::EmptyShape { rows, cols });
        }
        let blocks_per_row = cols.div_ceil(B::LEN);
        let expected = rows.checked_mul(blocks_per_row * B::BYTES);
        if expected != Some(bytes.len()) {
            return Err(FormatError::BadBytes {
                format: B::FORMAT,
                what: format!(
                    "{rows}x{cols} needs {} bytes ({} blocks of {} bytes), got {}",
                    expected.map_or("an overflowing number of".to_string(), |n| n.to_string()),
                    rows.saturating_mul(blocks_per_row),
                    B::BYTES,
                    bytes.len()
                ),
            });
        }
        let mut blocks = AlignedVec::with_capacity(64, rows * blocks_per_row);
        for (i, chunk) in bytes.chunks_exact(B::BYTES).enumerate() {
            let block = B::read_bytes(chunk).map_err(|what| FormatError::BadBytes {
                format: B::FORMAT,
                what: format!("block {i}: {what}"),
            })?;
            blocks.push(block);
        }
        Ok(BlockMatrix {
            rows,
            cols,
            blocks_per_row,
            blocks,
        })
    }
}

/// Reads a little-endian f16 at `bytes[at..at + 2]`.
pub(crate) fn read_f16(bytes: &[u8], at: usize) -> half::f16 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ternary_matrix_rejects_bad_input() {
        assert_eq!(
            TernaryMatrix::new(0, 3, vec![], 1.0),
            Err(FormatError::EmptyShape { rows: 0, cols: 3 })
        );
        assert!(matches!(
            TernaryMatrix::new(2, 2, vec![0; 3], 1.0),
            Err(FormatError::LengthMismatch {
                expected: 4,
                got: 3,
                ..
            })
        ));
        assert_eq!(
            TernaryMatrix::new(2, 2, vec![0, 1, 2, -1], 1.0),
            Err(FormatError::NotTernary {
                row: 1,
                col: 0,
                value: 2
            })
        );
        assert!(TernaryMatrix::new(1, 1, vec![0], f32::NAN).is_err());
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
        }
        assert_eq!(Format::from_name("q5_k"), None);
    }

    #[test]
    fn bits_per_weight_match_the_published_layouts() {
        assert_eq!(Format::Tq2.bits_per_weight(), 2.0625);
        assert_eq!(Format::Tq1.bits_per_weight(), 1.6875);
        assert_eq!(Format::Q8_0.bits_per_weight(), 8.5);
        assert_eq!(Format::Q4_0.bits_per_weight(), 4.5);
        assert_eq!(Format::Q6K.bits_per_weight(), 6.5625);
        assert!(Format::Q6K.accepts_cols(2560) && !Format::Q6K.accepts_cols(2561));
        assert!(Format::Q4_0.accepts_cols(33));
        assert_eq!(Format::Tl1.bits_per_weight(), 2.0);
        assert!((Format::Tl2.bits_per_weight() - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(Format::Tmac.bits_per_weight(), 2.0);
    }
}
