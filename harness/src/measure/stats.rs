//! Timing with warm-up and repetitions, summarised as mean, median and
//! standard deviation (llama-bench reports mean and stddev; the median is
//! what the tables and ratios use because it resists the outliers a shared
//! machine produces).

use std::time::{Duration, Instant};

/// Summary statistics of a set of samples (nanoseconds per operation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub stddev: f64,
    pub min: f64,
}

impl Stats {
    /// Statistics of `samples`; `None` when empty or not finite.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let n = samples.len();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        // Sample standard deviation (n - 1), 0 for a single sample.
        let stddev = if n > 1 {
            (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Stats {
            n,
            mean,
            median,
            stddev,
            min: sorted[0],
        })
    }
}

/// How long to warm up and how many samples to take.
#[derive(Clone, Copy, Debug)]
pub struct TimingPlan {
    /// Time spent running the operation before measuring (caches, clocks, pages).
    pub warmup: Duration,
    /// Number of samples.
    pub reps: usize,
    /// Each sample repeats the operation until at least this long has passed,
    /// so timer resolution and call overhead stay negligible.
    pub min_sample: Duration,
}

impl Default for TimingPlan {
    fn default() -> Self {
        TimingPlan {
            warmup: Duration::from_millis(100),
            reps: 10,
            min_sample: Duration::from_millis(5),
        }
    }
}

/// Times `op`: warms up, picks how many calls make one sample, then takes
/// `plan.reps` samples. Returns the statistics of nanoseconds per call.
pub fn time_op(plan: &TimingPlan, mut op: impl FnMut()) -> Stats {
    time_interleaved(plan, &mut [&mut op]).remove(0)
}

/// Times several operations interleaved: after each one's warm-up, sample i
/// of every operation is taken before sample i + 1 of any, so drift of a
/// shared machine (clock changes, other load) falls on all of them alike and
/// their ratios stay meaningful.
pub fn time_interleaved(plan: &TimingPlan, ops: &mut [&mut dyn FnMut()]) -> Vec<Stats> {
    let inner: Vec<u64> = ops
        .iter_mut()
        .map(|op| {
            let start = Instant::now();
            let mut calls = 0u64;
            loop {
                op();
                calls += 1;
                if start.elapsed() >= plan.warmup {
                    break;
                }
            }
            let per_call = start.elapsed().as_secs_f64() / calls as f64;
            ((plan.min_sample.as_secs_f64() / per_call).ceil() as u64).max(1)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(plan.reps); ops.len()];
    for _ in 0..plan.reps.max(1) {
        for (i, op) in ops.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..inner[i] {
                op();
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / inner[i] as f64);
        }
    }
    samples
        .iter()
        .map(|s| Stats::of(s).expect("timings are finite and non-empty"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_samples() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.n, s.mean, s.median, s.min), (4, 2.5, 2.5, 1.0));
        assert!((s.stddev - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        let one = Stats::of(&[7.0]).unwrap();
        assert_eq!((one.median, one.stddev), (7.0, 0.0));
        assert!(Stats::of(&[]).is_none());
        assert!(Stats::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn interleaved_timing_keeps_operations_apart() {
        let plan = TimingPlan {
            warmup: Duration::from_millis(1),
            reps: 3,
            min_sample: Duration::from_micros(200),
        };
        let slow = || std::thread::sleep(Duration::from_micros(300));
        let fast = || {
            std::hint::black_box(1 + 1);
        };
        let (mut a, mut b) = (slow, fast);
        let stats = time_interleaved(&plan, &mut [&mut a, &mut b]);
        assert_eq!(stats.len(), 2);
        assert!(stats[0].median >= 300_000.0, "{:?}", stats[0]);
        assert!(stats[1].median < stats[0].median);
    }

    #[test]
    fn time_op_takes_the_requested_samples() {
        let plan = TimingPlan {
            warmup: Duration::from_millis(1),
            reps: 5,
            min_sample: Duration::from_micros(100),
        };
        let mut calls = 0u64;
        let s = time_op(&plan, || {
            calls += 1;
            std::hint::black_box(calls);
        });
        assert_eq!(s.n, 5);
        assert!(s.median > 0.0 && s.min <= s.median);
        assert!(calls > 5);
    }
}
