//! Wall-clock speedups of kernel pairs, measured in one process.
//!
//! A shared CI machine's speed drifts by 10-30% from run to run, so the gate
//! never compares absolute times with a baseline. It compares the speedup of
//! a kernel over a reference kernel timed in the same run: every kernel of
//! the configured pairs is prepared and verified, then all are timed round
//! after round, A/B/C/.../A/B/C, on one pinned thread; each round takes the
//! best of `reps` calls per kernel. A pair's speedup is the median over
//! rounds of (reference time / kernel time) within the same round, so drift
//! that lasts longer than a round cancels.
//!
//! The timed operation is the matrix multiply with prepared inputs (the
//! kernel itself; activation quantization is outside).

use super::config::WallclockPlan;
use crate::layer::Shape;
use crate::measure::{Stats, SystemInfo};
use crate::output::Row;
use std::time::Instant;
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::Format;
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::parallel::{matmul, Executor, Threading};
use ternbench_kernels::verify::Expected;
use ternbench_kernels::{registry, Kernel, PreparedInput, PreparedWeights};

/// A pair's result for one shape and batch.
#[derive(Clone, Debug)]
pub struct PairResult {
    pub kernel: &'static str,
    pub reference: &'static str,
    pub shape: Shape,
    pub batch: usize,
    /// Median over rounds of reference time / kernel time.
    pub speedup: f64,
}

/// What the wall-clock part produced.
#[derive(Debug, Default)]
pub struct WallclockOutcome {
    pub pairs: Vec<PairResult>,
    /// Result rows (schema v1) of every timed kernel, for `ternbench report`.
    pub rows: Vec<Row>,
    /// Pairs not measured, with the reason (a kernel this CPU cannot run).
    pub skipped: Vec<String>,
    /// Kernels whose output failed verification.
    pub failures: Vec<String>,
}

struct Case {
    kernel: &'static dyn Kernel,
    w: PreparedWeights,
    x: PreparedInput,
    y: Vec<f32>,
    first: Vec<f32>,
}

/// Median of per-round ratios `num[r] / den[r]`.
pub fn median_ratio(num: &[f64], den: &[f64]) -> f64 {
    let ratios: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
    Stats::of(&ratios).map_or(f64::NAN, |s| s.median)
}

/// Runs every pair of `plan` on `seed`ed synthetic data.
pub fn run(plan: &WallclockPlan, seed: u64) -> anyhow::Result<WallclockOutcome> {
    let mut outcome = WallclockOutcome::default();
    let mut pairs = Vec::new();
    for p in &plan.pairs {
        let missing = [p.kernel, p.reference]
            .into_iter()
            .find_map(|k| registry::availability(k).err().map(|f| (k, f)));
        match missing {
            Some((k, f)) => outcome.skipped.push(format!(
                "{}/{}: {} needs the CPU feature '{}', which this CPU does not have",
                p.kernel.info().name,
                p.reference.info().name,
                k.info().name,
                f
            )),
            None => pairs.push(*p),
        }
    }
    let mut kernels: Vec<&'static dyn Kernel> = Vec::new();
    for p in &pairs {
        for k in [p.kernel, p.reference] {
            if !kernels.iter().any(|o| o.info().name == k.info().name) {
                kernels.push(k);
            }
        }
    }
    if kernels.is_empty() {
        return Ok(outcome);
    }
    let sys = SystemInfo::get();
    let exec = Executor::new(Threading::Pool, 1, plan.pin)?;
    for &shape in &plan.shapes {
        let weights = super::instructions::weights(shape, seed);
        for &batch in &plan.batches {
            let x = super::instructions::activations(shape, batch, seed);
            let mut cases = Vec::new();
            let mut failed: Vec<&str> = Vec::new();
            for &kernel in &kernels {
                let info = kernel.info();
                let standard = pack_standard(info.name, info.format, &weights)?;
                let act =
                    Activations::quantize(info.format.activation_scheme(), &x, batch, shape.cols);
                let w = kernel.prepare(&weights)?;
                let input = kernel.prepare_input(act.clone());
                let mut y = vec![f32::NAN; batch * shape.rows];
                matmul(kernel, &w, &input, &exec, &mut y)?;
                let v = Expected::new(&standard, &act).check(kernel, &y);
                if !v.ok {
                    let why = v
                        .first_failure
                        .unwrap_or_else(|| format!("{}: verification failed", info.name));
                    outcome.failures.push(why);
                    failed.push(info.name);
                    continue;
                }
                cases.push(Case {
                    kernel,
                    w,
                    x: input,
                    first: y.clone(),
                    y,
                });
            }
            let times = time_rounds(plan, &exec, &mut cases);
            for c in &cases {
                if c.y
                    .iter()
                    .zip(&c.first)
                    .any(|(a, b)| a.to_bits() != b.to_bits())
                {
                    outcome.failures.push(format!(
                        "{}: output changed between calls (nondeterministic kernel)",
                        c.kernel.info().name
                    ));
                    failed.push(c.kernel.info().name);
                }
            }
            let index = |name: &str| {
                cases
                    .iter()
                    .position(|c| c.kernel.info().name == name)
                    .filter(|_| !failed.contains(&name))
            };
            for p in &pairs {
                let (a, b) = (p.kernel.info().name, p.reference.info().name);
                if let (Some(i), Some(j)) = (index(a), index(b)) {
                    outcome.pairs.push(PairResult {
                        kernel: a,
                        reference: b,
                        shape,
                        batch,
                        speedup: median_ratio(&times[j], &times[i]),
                    });
                }
            }
            // The f16 baseline of the rows: the fastest f16 kernel timed here.
            let f16_median = cases
                .iter()
                .zip(&times)
                .filter(|(c, _)| c.kernel.info().format == Format::F16)
                .filter_map(|(c, t)| index(c.kernel.info().name).and(Stats::of(t)))
                .map(|s| s.median)
                .min_by(f64::total_cmp);
            for (c, t) in cases.iter().zip(&times) {
                let info = c.kernel.info();
                let Some(s) = Stats::of(t).filter(|_| index(info.name).is_some()) else {
                    continue;
                };
                let mut row = Row::new(sys);
                row.kernel = info.name.into();
                row.kernel_isa = info.isa.name().into();
                row.wtype = info.format.name().into();
                row.bits_per_weight = info.bits_per_weight();
                row.exact = info.exact;
                row.threading = exec.threading().name().into();
                row.n_threads = 1;
                row.pinned = exec.pinned();
                row.test = "layer".into();
                row.rows = shape.rows;
                row.cols = shape.cols;
                row.batch = batch;
                row.reps = plan.rounds;
                row.weight_bytes = c.w.weight_bytes;
                row.avg_ns = Some(s.mean);
                row.median_ns = Some(s.median);
                row.stddev_ns = Some(s.stddev);
                row.min_ns = Some(s.min);
                row.gbs = Some(c.w.weight_bytes as f64 / s.median);
                row.gops = Some(2.0 * (shape.rows * shape.cols * batch) as f64 / s.median);
                row.speedup_vs_f16 = f16_median.map(|f| f / s.median);
                row.verified = true;
                row.note = format!(
                    "ternbench check: best of {} calls per round, {} rounds interleaved",
                    plan.reps, plan.rounds
                );
                outcome.rows.push(row);
            }
        }
    }
    Ok(outcome)
}

/// times[case][round] in nanoseconds: the best of `plan.reps` calls.
fn time_rounds(plan: &WallclockPlan, exec: &Executor, cases: &mut [Case]) -> Vec<Vec<f64>> {
    for c in cases.iter_mut() {
        let start = Instant::now();
        loop {
            matmul(c.kernel, &c.w, &c.x, exec, &mut c.y).expect("checked by the verified call");
            if start.elapsed() >= plan.warmup {
                break;
            }
        }
    }
    let mut times = vec![Vec::with_capacity(plan.rounds); cases.len()];
    for _ in 0..plan.rounds {
        for (c, t) in cases.iter_mut().zip(times.iter_mut()) {
            let mut best = f64::INFINITY;
            for _ in 0..plan.reps {
                let start = Instant::now();
                matmul(c.kernel, &c.w, &c.x, exec, &mut c.y).expect("checked by the verified call");
                best = best.min(start.elapsed().as_nanos() as f64);
            }
            t.push(best);
        }
    }
    times
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_round_ratios() {
        // Round 2 is slow for both (drift): the ratio is unaffected.
        let reference = [10.0, 30.0, 10.0];
        let kernel = [5.0, 15.0, 4.0];
        assert_eq!(median_ratio(&reference, &kernel), 2.0);
    }

    #[test]
    fn a_small_plan_runs_and_verifies() {
        let scalar = registry::reference(Format::I2s);
        let f16 = registry::reference(Format::F16);
        let plan = WallclockPlan {
            threshold_pct: 25.0,
            shapes: vec![Shape { rows: 8, cols: 256 }],
            batches: vec![1],
            rounds: 3,
            reps: 1,
            warmup: std::time::Duration::ZERO,
            pin: false,
            pairs: vec![super::super::config::Pair {
                kernel: scalar,
                reference: f16,
            }],
        };
        let out = run(&plan, 1).unwrap();
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(out.pairs.len(), 1);
        assert!(out.pairs[0].speedup.is_finite() && out.pairs[0].speedup > 0.0);
        assert_eq!(out.rows.len(), 2);
        assert!(out.rows.iter().all(|r| r.verified && r.median_ns.is_some()));
    }
}
