//! Checks a kernel's output against the reference before any speed is reported.
//!
//! Exact kernels of formats with one float scaling per output (per-tensor
//! weight scale, per-token activation scale: i2s) must match the scalar
//! reference bit for bit. Everything else must lie within the float-rounding
//! bound of the f64 reference ([`crate::reference`]): block formats sum their
//! per-block products in an order that differs between kernels, and the f16
//! baseline sums products in f32.
//!
//! Lossy LUT kernels (`-lossy`, int8 tables) get two checks, and must pass
//! both: a SIMD one must equal the scalar lossy kernel of its format bit for
//! bit (the lossy arithmetic is deterministic: integer code sums, one float
//! scaling), and every one must lie within the error bound of
//! [`crate::lossy`] of the f64 reference of the exact product:
//!
//! ```text
//! |y_lossy - y| <= L * M / (2 D) * |w_scale / s_b| + 4 * 2^-23 * (|y| + that)
//! ```
//!
//! (L weighted lookups per output, M / D the token's table scale; derived in
//! [`crate::lossy`]), not the float-rounding bound of exact kernels.

use crate::activations::Activations;
use crate::formats::tl1::Tl1Matrix;
use crate::formats::tl2::Tl2Matrix;
use crate::formats::tmac::TmacMatrix;
use crate::formats::{ActivationScheme, Format};
use crate::kernel::{Isa, Kernel, OutputMatrix, PreparedWeights};
use crate::lossy::{self, CodeTables, TableScale};
use crate::reference::{reference, ReferenceOutput};
use crate::registry;
use std::sync::OnceLock;

/// The outcome of checking one output.
#[derive(Clone, Debug, PartialEq)]
pub struct Verification {
    pub ok: bool,
    /// True when the comparison was bit for bit.
    pub bitwise: bool,
    pub max_abs_err: f64,
    /// The first output outside its bound, described.
    pub first_failure: Option<String>,
}

/// What a kernel's output is compared with: computed once per (weights,
/// activations) and shared by every kernel of the format.
pub struct Expected<'a> {
    standard: &'a PreparedWeights,
    act: &'a Activations,
    scalar: OnceLock<Vec<f32>>,
    lossy_scalar: OnceLock<Vec<f32>>,
    table_scales: OnceLock<Vec<TableScale>>,
    reference: OnceLock<ReferenceOutput>,
}

impl<'a> Expected<'a> {
    /// `standard`: the weights packed in the format's standard layout;
    /// `act`: the quantized activations every kernel of the format reads.
    pub fn new(standard: &'a PreparedWeights, act: &'a Activations) -> Self {
        Expected {
            standard,
            act,
            scalar: OnceLock::new(),
            lossy_scalar: OnceLock::new(),
            table_scales: OnceLock::new(),
            reference: OnceLock::new(),
        }
    }

    fn run(&self, scalar: &dyn Kernel) -> Vec<f32> {
        let input = scalar.prepare_input(self.act.clone());
        let rows = self.standard.rows;
        let mut want = vec![0.0f32; self.act.batch() * rows];
        let mut out = OutputMatrix::new(&mut want, self.act.batch(), rows);
        scalar.compute(self.standard, &input, &mut out.tile(0..rows));
        want
    }

    fn scalar_output(&self) -> &[f32] {
        self.scalar
            .get_or_init(|| self.run(registry::reference(self.standard.format)))
    }

    fn lossy_scalar_output(&self) -> &[f32] {
        self.lossy_scalar.get_or_init(|| {
            let format = self.standard.format;
            self.run(registry::lossy_reference(format).expect("every LUT format has one"))
        })
    }

    /// Per token: the table scale of the lossy kernels.
    fn table_scales(&self) -> &[TableScale] {
        self.table_scales
            .get_or_init(|| CodeTables::new(self.standard.format, self.act.token_q8()).scale)
    }

    /// The largest |y - reference| a lossy kernel of this LUT format may have
    /// at output `i` (the bound of [`crate::lossy`]).
    pub fn lossy_bound(&self, i: usize) -> f64 {
        let w = self.standard;
        let w_scale = match w.format {
            Format::Tl1 => w.expect::<Tl1Matrix>().scale,
            Format::Tl2 => w.expect::<Tl2Matrix>().scale,
            Format::Tmac => w.expect::<TmacMatrix>().scale,
            other => panic!("{other} has no lossy kernels"),
        };
        let b = i / w.rows;
        let s_b = self.act.token_q8().scale[b];
        lossy::error_bound(
            w.format,
            w.cols,
            self.table_scales()[b],
            w_scale as f64 / s_b as f64,
            self.reference().y[i],
        )
    }

    fn reference(&self) -> &ReferenceOutput {
        self.reference
            .get_or_init(|| reference(self.standard, self.act))
    }

    /// Checks `y` (`[batch][rows]`, computed by `kernel`).
    pub fn check(&self, kernel: &dyn Kernel, y: &[f32]) -> Verification {
        let info = kernel.info();
        let rows = self.standard.rows;
        let describe = |i: usize, got: f32, want: f64, bound: f64| {
            format!(
                "{}: y[{}][{}] = {got:e}, reference {want:e}, allowed difference {bound:e}",
                info.name,
                i / rows,
                i % rows
            )
        };
        if y.len() != self.act.batch() * rows {
            return Verification {
                ok: false,
                bitwise: false,
                max_abs_err: f64::INFINITY,
                first_failure: Some(format!(
                    "{}: {} outputs, expected {}",
                    info.name,
                    y.len(),
                    self.act.batch() * rows
                )),
            };
        }
        if info.is_lossy() {
            return self.check_lossy(kernel, y);
        }
        if info.exact && info.format.activation_scheme() == ActivationScheme::TokenQ8 {
            let want = self.scalar_output();
            let max_abs_err = y
                .iter()
                .zip(want)
                .map(|(a, b)| (*a as f64 - *b as f64).abs())
                .fold(0.0, f64::max);
            let bad = y
                .iter()
                .zip(want)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            return Verification {
                ok: bad.is_none(),
                bitwise: true,
                max_abs_err,
                first_failure: bad.map(|i| describe(i, y[i], want[i] as f64, 0.0)),
            };
        }
        let r = self.reference();
        let mut max_abs_err = 0.0f64;
        let mut first_failure = None;
        for (i, (&got, &want)) in y.iter().zip(&r.y).enumerate() {
            let err = (got as f64 - want).abs();
            max_abs_err = max_abs_err.max(err);
            let within = err <= r.tolerance(i); // false for NaN
            if first_failure.is_none() && !within {
                first_failure = Some(describe(i, got, want, r.tolerance(i)));
            }
        }
        Verification {
            ok: first_failure.is_none(),
            bitwise: false,
            max_abs_err,
            first_failure,
        }
    }
}

impl Expected<'_> {
    /// A lossy LUT kernel (`y` has the right length): SIMD ones bit for bit
    /// against the scalar lossy kernel, all within [`Expected::lossy_bound`]
    /// of the f64 reference.
    fn check_lossy(&self, kernel: &dyn Kernel, y: &[f32]) -> Verification {
        let info = kernel.info();
        let rows = self.standard.rows;
        let at = |i: usize| format!("{}: y[{}][{}]", info.name, i / rows, i % rows);
        let mut first_failure = None;
        let bitwise = info.isa != Isa::Scalar;
        if bitwise {
            let want = self.lossy_scalar_output();
            if let Some(i) = y
                .iter()
                .zip(want)
                .position(|(a, b)| a.to_bits() != b.to_bits())
            {
                first_failure = Some(format!(
                    "{} = {:e}, scalar lossy kernel {:e}; a SIMD lossy kernel must match it bit for bit",
                    at(i),
                    y[i],
                    want[i]
                ));
            }
        }
        let mut max_abs_err = 0.0f64;
        for (i, (&got, &want)) in y.iter().zip(&self.reference().y).enumerate() {
            let err = (got as f64 - want).abs();
            max_abs_err = max_abs_err.max(err);
            let bound = self.lossy_bound(i);
            let within = err <= bound; // false for NaN
            if first_failure.is_none() && !within {
                first_failure = Some(format!(
                    "{} = {got:e}, exact reference {want:e}: difference {err:e} beyond the lossy bound {bound:e}",
                    at(i)
                ));
            }
        }
        Verification {
            ok: first_failure.is_none(),
            bitwise,
            max_abs_err,
            first_failure,
        }
    }
}

/// Compares `y` (`[batch][rows]`, computed by `kernel`) with the reference for
/// the same weights, packed in the format's standard layout, and activations.
pub fn verify(
    kernel: &dyn Kernel,
    standard: &PreparedWeights,
    act: &Activations,
    y: &[f32],
) -> Verification {
    Expected::new(standard, act).check(kernel, y)
}
