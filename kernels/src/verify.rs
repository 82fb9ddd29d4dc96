//! Checks a kernel's output against the reference before any speed is reported.
//!
//! Exact kernels of formats with one float scaling per output (per-tensor
//! weight scale, per-token activation scale: i2s) must match the scalar
//! reference bit for bit. Everything else must lie within the float-rounding
//! bound of the f64 reference ([`crate::reference`]): block formats sum their
//! per-block products in an order that differs between kernels, and the f16
//! baseline sums products in f32.

use crate::activations::Activations;
use crate::formats::ActivationScheme;
use crate::kernel::{Kernel, OutputMatrix, PreparedWeights};
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
            reference: OnceLock::new(),
        }
    }

    fn scalar_output(&self) -> &[f32] {
        self.scalar.get_or_init(|| {
            let scalar = registry::reference(self.standard.format);
            let input = scalar.prepare_input(self.act.clone());
            let rows = self.standard.rows;
            let mut want = vec![0.0f32; self.act.batch() * rows];
            let mut out = OutputMatrix::new(&mut want, self.act.batch(), rows);
            scalar.compute(self.standard, &input, &mut out.tile(0..rows));
            want
        })
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
