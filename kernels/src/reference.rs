//! The f64 reference: the same math as the kernels, computed in double
//! precision from the logical (unpacked) values, with the error bound that
//! float accumulation allows.
//!
//! It decodes weights through the formats' own unpack functions (not the
//! kernels' decoding), multiplies in exact integer or f64 arithmetic, and
//! returns per output both the value and the sum of the magnitudes of the
//! float terms a kernel adds up; [`tolerance`] turns that into a bound.

use crate::activations::{Activations, BlockActivations};
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
use crate::formats::{BlockMatrix, Format, PackedBlock};
use crate::kernel::PreparedWeights;

/// Reference outputs, `[batch][rows]`.
#[derive(Clone, Debug)]
pub struct ReferenceOutput {
    pub rows: usize,
    pub y: Vec<f64>,
    /// Sum of |term| over the float terms that make up each output.
    pub magnitude: Vec<f64>,
    /// How many float terms a kernel adds up per output.
    pub terms: usize,
}

impl ReferenceOutput {
    /// The largest |kernel - reference| that float rounding allows for output `i`:
    /// each of `terms` additions and the few multiplications per term round
    /// by at most 2^-24 relative, whatever the summation order.
    pub fn tolerance(&self, i: usize) -> f64 {
        tolerance(self.magnitude[i], self.terms)
    }
}

/// (terms + 4) * 2^-23 * magnitude: twice the worst-case relative rounding
/// of a `terms`-long f32 sum, plus a few roundings per term.
pub fn tolerance(magnitude: f64, terms: usize) -> f64 {
    (terms as f64 + 4.0) * f32::EPSILON as f64 * magnitude + f32::MIN_POSITIVE as f64
}

/// Computes the reference for weights packed in their format's standard
/// layout (see [`crate::kernel::pack_standard`]).
pub fn reference(w: &PreparedWeights, act: &Activations) -> ReferenceOutput {
    let (rows, cols, batch) = (w.rows, w.cols, act.batch());
    assert_eq!(act.cols(), cols, "activation length != weight columns");
    assert_eq!(
        act.scheme(),
        w.format.activation_scheme(),
        "activation scheme"
    );
    let mut out = ReferenceOutput {
        rows,
        y: vec![0.0; batch * rows],
        magnitude: vec![0.0; batch * rows],
        terms: 1,
    };
    let lut = |t: crate::formats::TernaryMatrix| (t.scale(), t);
    let per_tensor = match w.format {
        Format::I2s => {
            let m = w.expect::<I2sMatrix>();
            Some((m.scale, m.unpack()))
        }
        Format::Tl1 => Some(lut(w.expect::<Tl1Matrix>().unpack())),
        Format::Tl2 => Some(lut(w.expect::<Tl2Matrix>().unpack())),
        Format::Tmac => Some(lut(w.expect::<TmacMatrix>().unpack())),
        _ => None,
    };
    match w.format {
        Format::I2s | Format::Tl1 | Format::Tl2 | Format::Tmac => {
            let (scale, t) = per_tensor.expect("per-tensor formats are unpacked above");
            let a = act.token_q8();
            for b in 0..batch {
                for r in 0..rows {
                    let acc: i64 = t
                        .row(r)
                        .iter()
                        .zip(a.row(b))
                        .map(|(&w, &q)| w as i64 * q as i64)
                        .sum();
                    let y = acc as f64 * scale as f64 / a.scale[b] as f64;
                    out.y[b * rows + r] = y;
                    out.magnitude[b * rows + r] = y.abs();
                }
            }
        }
        Format::Tq2 => {
            let m = w.expect::<Tq2Matrix>();
            let values = m.ternary_values();
            block_reference(
                m,
                &values,
                act.q8k(),
                &mut out,
                |a| a.qs.to_vec(),
                |wb| wb.d.to_f64(),
                |a| a.d as f64,
            );
        }
        Format::Tq1 => {
            let m = w.expect::<Tq1Matrix>();
            let values = m.ternary_values();
            block_reference(
                m,
                &values,
                act.q8k(),
                &mut out,
                |a| a.qs.to_vec(),
                |wb| wb.d.to_f64(),
                |a| a.d as f64,
            );
        }
        Format::Q8_0 => {
            let m = w.expect::<Q8_0Matrix>();
            let codes = m.unpack(|b, out: &mut [i8]| out.copy_from_slice(&b.qs));
            block_reference(
                m,
                &codes,
                act.q8_0(),
                &mut out,
                |a| a.qs.to_vec(),
                |wb| wb.d.to_f64(),
                |a| a.d.to_f64(),
            );
        }
        Format::Q4_0 => {
            let m = w.expect::<Q4_0Matrix>();
            let codes = m.unpack(|b, out: &mut [i8]| {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = b.code(i) as i8 - 8;
                }
            });
            block_reference(
                m,
                &codes,
                act.q8_0(),
                &mut out,
                |a| a.qs.to_vec(),
                |wb| wb.d.to_f64(),
                |a| a.d.to_f64(),
            );
        }
        Format::Q6K => {
            let m = w.expect::<Q6KMatrix>();
            // (code - 32) * scales[sub-block], so one term per super-block.
            let values: Vec<i16> = m.unpack(|b, out: &mut [i16]| {
                for (e, o) in out.iter_mut().enumerate() {
                    *o = (b.code(e) as i16 - 32) * b.scales[e / 16] as i16;
                }
            });
            block_reference(
                m,
                &values,
                act.q8k(),
                &mut out,
                |a| a.qs.to_vec(),
                |wb| wb.d.to_f64(),
                |a| a.d as f64,
            );
        }
        Format::F16 => {
            let m = w.expect::<F16Matrix>();
            let dense = m.unpack();
            let a = act.f32();
            out.terms = cols;
            for b in 0..batch {
                for r in 0..rows {
                    let (mut y, mut mag) = (0.0f64, 0.0f64);
                    for (&w, &x) in dense.row(r).iter().zip(&a.row(b)[..cols]) {
                        let t = w as f64 * x as f64;
                        y += t;
                        mag += t.abs();
                    }
                    out.y[b * rows + r] = y;
                    out.magnitude[b * rows + r] = mag;
                }
            }
        }
    }
    out
}

/// For block formats: term i = (sum over block i of value * activation) * d_w * d_a.
fn block_reference<W: PackedBlock, A, V: Copy + Into<i64>>(
    m: &BlockMatrix<W>,
    values: &[V],
    act: &BlockActivations<A>,
    out: &mut ReferenceOutput,
    act_values: impl Fn(&A) -> Vec<i8>,
    w_scale: impl Fn(&W) -> f64,
    a_scale: impl Fn(&A) -> f64,
) {
    let (rows, cols, len) = (m.rows, m.cols, W::LEN);
    out.terms = m.blocks_per_row;
    for b in 0..act.batch {
        let a_blocks = act.row(b);
        let a: Vec<i8> = a_blocks.iter().flat_map(&act_values).collect();
        for r in 0..rows {
            let (mut y, mut mag) = (0.0f64, 0.0f64);
            for (i, wb) in m.row(r).iter().enumerate() {
                let span = i * len..((i + 1) * len).min(cols);
                let isum: i64 = values[r * cols + span.start..r * cols + span.end]
                    .iter()
                    .zip(&a[span])
                    .map(|(&v, &q)| v.into() * q as i64)
                    .sum();
                let t = isum as f64 * w_scale(wb) * a_scale(&a_blocks[i]);
                y += t;
                mag += t.abs();
            }
            out.y[b * rows + r] = y;
            out.magnitude[b * rows + r] = mag;
        }
    }
}
