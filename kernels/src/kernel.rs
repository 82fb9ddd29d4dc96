//! The kernel trait every matrix kernel implements, and the types passed
//! between its three phases.
//!
//! A kernel computes y = W x for one packed format on one instruction set:
//! 1. [`Kernel::prepare`] packs the weights once (timed separately);
//! 2. [`Kernel::prepare_input`] turns quantized activations into whatever the
//!    kernel reads (done once per input, before the threads start);
//! 3. [`Kernel::compute`] fills the outputs of a range of rows, so any
//!    parallel strategy can split the rows between threads.
//!
//! Batch 1 is a matrix-vector product (token generation), batch N a
//! matrix-matrix product (prompt processing); both go through `compute`.

use crate::activations::Activations;
use crate::cpu::CpuFeature;
use crate::formats::f16::F16Matrix;
use crate::formats::i2s::I2sMatrix;
use crate::formats::q4_0::Q4_0Matrix;
use crate::formats::q6_k::Q6KMatrix;
use crate::formats::q8_0::Q8_0Matrix;
use crate::formats::tl1::Tl1Matrix;
use crate::formats::tl2::Tl2Matrix;
use crate::formats::tmac::TmacMatrix;
use crate::formats::tq1::Tq1Matrix;
use crate::formats::tq2::Tq2Matrix;
use crate::formats::{Format, TernaryMatrix, Weights};
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

/// The instruction set a kernel is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512,
    Amx,
    Neon,
    Dotprod,
    I8mm,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
            Isa::Amx => "amx",
            Isa::Neon => "neon",
            Isa::Dotprod => "dotprod",
            Isa::I8mm => "i8mm",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a kernel is: the registry and every output row are built from this.
#[derive(Clone, Copy, Debug)]
pub struct KernelInfo {
    /// `<format>-<isa>`, e.g. `i2s-avx2`.
    pub name: &'static str,
    pub format: Format,
    pub isa: Isa,
    /// True when the output is reproducible bit for bit against the scalar
    /// reference of its format given the same inputs (integer accumulation).
    /// False for the f16 baseline (float sums) and for the `-lossy` LUT
    /// kernels (int8 tables, [`crate::lossy`]).
    pub exact: bool,
    /// CPU features the kernel needs; the registry refuses it without them.
    pub requires: &'static [CpuFeature],
    /// Rows the kernel handles per pass; parallel chunks are multiples of it.
    pub row_tile: usize,
}

impl KernelInfo {
    pub fn bits_per_weight(&self) -> f64 {
        self.format.bits_per_weight()
    }

    /// True for the lossy LUT kernels (`<format>-<isa>-lossy`): a LUT format
    /// that is not exact. Their output is checked against the error bound of
    /// [`crate::lossy`], and `auto` never picks them.
    pub fn is_lossy(&self) -> bool {
        self.format.is_lut() && !self.exact
    }
}

/// Errors a kernel or the matrix-multiply driver reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error("kernel {kernel} packs {format} weights, which must be ternary; got real-valued weights (ternarize them with absmean first)")]
    NeedsTernary {
        kernel: &'static str,
        format: Format,
    },
    #[error("kernel {kernel} reads {expected} weights, but they were prepared as {got}")]
    WrongFormat {
        kernel: &'static str,
        expected: Format,
        got: Format,
    },
    #[error("kernel {kernel} needs {expected:?} activations, got {got:?}")]
    WrongActivations {
        kernel: &'static str,
        expected: crate::formats::ActivationScheme,
        got: crate::formats::ActivationScheme,
    },
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
}

/// Packed weights, owned by whichever kernel of the format packed them.
pub struct PreparedWeights {
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
    /// Bytes a matrix-vector product reads (for GB/s and roofline figures).
    pub weight_bytes: usize,
    packed: Box<dyn Any + Send + Sync>,
}

impl PreparedWeights {
    pub fn new<T: Any + Send + Sync>(
        format: Format,
        rows: usize,
        cols: usize,
        weight_bytes: usize,
        packed: T,
    ) -> Self {
        PreparedWeights {
            format,
            rows,
            cols,
            weight_bytes,
            packed: Box::new(packed),
        }
    }

    /// The packed matrix as type `T`, if that is what it holds.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.packed.downcast_ref()
    }

    /// The packed matrix as `T`; the driver checks formats before `compute`
    /// runs, so a mismatch here is a bug in a kernel.
    pub fn expect<T: Any>(&self) -> &T {
        self.get().unwrap_or_else(|| {
            panic!(
                "{} weights do not hold a {}",
                self.format,
                std::any::type_name::<T>()
            )
        })
    }
}

impl fmt::Debug for PreparedWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedWeights")
            .field("format", &self.format)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("weight_bytes", &self.weight_bytes)
            .finish_non_exhaustive()
    }
}

/// Quantized activations plus anything a kernel derives from them once per
/// input (lookup tables, reordered copies).
pub struct PreparedInput {
    pub act: Activations,
    pub derived: Option<Box<dyn Any + Send + Sync>>,
}

impl PreparedInput {
    pub fn batch(&self) -> usize {
        self.act.batch()
    }
    pub fn cols(&self) -> usize {
        self.act.cols()
    }

    /// The derived form of the input a kernel's `prepare_input` stored, or,
    /// for an input another kernel prepared, `build()`'s (for this call only).
    pub fn derived_or<T: Clone + 'static>(&self, build: impl FnOnce() -> T) -> Cow<'_, T> {
        match self.derived.as_ref().and_then(|d| d.downcast_ref::<T>()) {
            Some(d) => Cow::Borrowed(d),
            None => Cow::Owned(build()),
        }
    }
}

/// The standard packing of a format, shared by all its kernels unless one
/// needs a layout of its own.
pub fn pack_standard(
    kernel: &'static str,
    format: Format,
    w: &Weights,
) -> Result<PreparedWeights, KernelError> {
    let ternary = || -> Result<&TernaryMatrix, KernelError> {
        match w {
            Weights::Ternary(t) => Ok(t),
            Weights::Dense(_) => Err(KernelError::NeedsTernary { kernel, format }),
        }
    };
    let dense = || match w {
        Weights::Ternary(t) => std::borrow::Cow::Owned(t.dequantized()),
        Weights::Dense(d) => std::borrow::Cow::Borrowed(d),
    };
    let (rows, cols) = (w.rows(), w.cols());
    Ok(match format {
        Format::I2s => {
            let m = I2sMatrix::pack(ternary()?);
            PreparedWeights::new(format, rows, cols, m.packed.weight_bytes(), m)
        }
        Format::Tq2 => {
            let m = Tq2Matrix::pack_ternary(ternary()?);
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::Tq1 => {
            let m = Tq1Matrix::pack_ternary(ternary()?);
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::F16 => {
            let m = F16Matrix::pack(&dense());
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::Q8_0 => {
            let m = Q8_0Matrix::pack_dense(&dense());
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::Q4_0 => {
            let m = Q4_0Matrix::pack_dense(&dense());
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::Q6K => {
            // Refuses K that is not a multiple of 256 (a FormatError, not a panic).
            let m = Q6KMatrix::pack_dense(&dense())?;
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::Tl1 => {
            let m = Tl1Matrix::pack(ternary()?);
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::Tl2 => {
            let m = Tl2Matrix::pack(ternary()?);
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
        Format::Tmac => {
            let m = TmacMatrix::pack(ternary()?);
            PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
        }
    })
}

/// A matrix kernel: y = W x for one format on one instruction set.
pub trait Kernel: Send + Sync {
    fn info(&self) -> &'static KernelInfo;

    /// Packs weights once. The default is the format's standard layout.
    fn prepare(&self, w: &Weights) -> Result<PreparedWeights, KernelError> {
        let info = self.info();
        pack_standard(info.name, info.format, w)
    }

    /// Derives this kernel's input from quantized activations, once per input.
    /// The default uses the activations as they are.
    fn prepare_input(&self, act: Activations) -> PreparedInput {
        PreparedInput { act, derived: None }
    }

    /// Quantizes `x` (`batch` rows of `cols` values) with the format's
    /// activation scheme and prepares it.
    fn prepare_input_f32(&self, x: &[f32], batch: usize, cols: usize) -> PreparedInput {
        let scheme = self.info().format.activation_scheme();
        self.prepare_input(Activations::quantize(scheme, x, batch, cols))
    }

    /// The tiling or variant this kernel uses for `w` at `batch` tokens
    /// (reported in the `variant` column); empty when it has no choice.
    fn variant(&self, _w: &PreparedWeights, _batch: usize) -> String {
        String::new()
    }

    /// Writes y[b][r] for every batch item b and every r in `out.rows()`.
    ///
    /// Callers go through [`crate::parallel::matmul`], which checks that `w`
    /// and `x` belong to this kernel's format and agree in shape.
    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>);
}

impl fmt::Debug for dyn Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

/// The output of a matrix multiply: `batch` rows of `stride` values (y[b][r]
/// at `b * stride + r`), from which disjoint row ranges are handed to threads.
pub struct OutputMatrix<'a> {
    ptr: *mut f32,
    batch: usize,
    stride: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: an OutputMatrix only hands out tiles through `tile` (exclusive
// borrow) or the unsafe `tile_shared`, whose callers guarantee that tiles used
// at the same time cover disjoint rows; so sharing it between threads never
// creates overlapping mutable access.
unsafe impl Sync for OutputMatrix<'_> {}
// SAFETY: it is a mutable borrow of f32 data, which may move between threads.
unsafe impl Send for OutputMatrix<'_> {}

impl<'a> OutputMatrix<'a> {
    pub fn new(y: &'a mut [f32], batch: usize, stride: usize) -> Self {
        assert_eq!(y.len(), batch * stride, "output length != batch * rows");
        OutputMatrix {
            ptr: y.as_mut_ptr(),
            batch,
            stride,
            _borrow: PhantomData,
        }
    }

    pub fn rows(&self) -> usize {
        self.stride
    }

    /// A tile covering `rows` for every batch item.
    pub fn tile(&mut self, rows: Range<usize>) -> OutputTile<'_> {
        // SAFETY: `&mut self` makes this the only live tile.
        unsafe { self.tile_shared(rows) }
    }

    /// A tile covering `rows`, from a shared reference.
    ///
    /// # Safety
    /// Tiles that are alive at the same time must cover disjoint row ranges.
    pub unsafe fn tile_shared(&self, rows: Range<usize>) -> OutputTile<'_> {
        assert!(
            rows.start <= rows.end && rows.end <= self.stride,
            "rows out of range"
        );
        OutputTile {
            ptr: self.ptr,
            batch: self.batch,
            stride: self.stride,
            rows,
            _borrow: PhantomData,
        }
    }
}

/// Mutable access to the outputs of one range of rows, for all batch items.
pub struct OutputTile<'a> {
    ptr: *mut f32,
    batch: usize,
    stride: usize,
    rows: Range<usize>,
    _borrow: PhantomData<&'a mut [f32]>,
}

impl OutputTile<'_> {
    pub fn rows(&self) -> Range<usize> {
        self.rows.clone()
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// y[b][rows]: element 0 is row `rows().start`.
    pub fn row_mut(&mut self, b: usize) -> &mut [f32] {
        assert!(b < self.batch, "batch index out of range");
        // SAFETY: b < batch and rows.end <= stride, so the range lies inside
        // the y slice the OutputMatrix borrows; this tile's rows are disjoint
        // from every other live tile's (the contract of `tile_shared`), and
        // `&mut self` prevents two slices of this tile at once.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.add(b * self.stride + self.rows.start),
                self.rows.len(),
            )
        }
    }
}
