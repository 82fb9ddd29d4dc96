//! The roofline a kernel is judged against, measured in the same process:
//! the read bandwidth at each thread count (the memory roof of token
//! generation, see [`super::bandwidth`]) and the peak rate of each ISA's
//! int8 dot-product and f32 FMA instructions (the compute roof of prompt
//! processing, see [`ternbench_kernels::peak`]).
//!
//! `ternbench bandwidth` prints both; `ternbench layer` measures them once per
//! run and reports every row's `roofline_fraction` (GB/s of packed weights /
//! read bandwidth) and `compute_fraction` (GOP/s / compute roof of the
//! kernel's ISA at that thread count).

use super::bandwidth::{probe_buffer, probe_bytes, read_bandwidth};
use std::collections::BTreeMap;
use std::time::Instant;
use ternbench_kernels::parallel::{Executor, Threading};
use ternbench_kernels::peak::{self, PeakProbe};
use ternbench_kernels::KernelInfo;

/// Both roofs, per thread count.
#[derive(Debug, Default)]
pub struct Roofline {
    /// Read bandwidth (GB/s) by thread count.
    pub read_gbs: BTreeMap<usize, f64>,
    /// Peak GOP/s of each available probe, by thread count.
    pub peak_gops: BTreeMap<(&'static str, usize), f64>,
}

/// Loop trips of a probe per timed chunk (about a millisecond on a 4 GHz core).
const TRIPS_PER_CHUNK: u64 = 100_000;

/// Peak GOP/s of `probe` with every thread of `exec` running it, best of 3
/// passes of `chunks` chunks (dynamically shared, like kernel rows).
fn peak_gops(probe: &PeakProbe, exec: &Executor) -> f64 {
    let chunks = 16 * exec.n_threads();
    let mut best = f64::INFINITY;
    for _ in 0..4 {
        let start = Instant::now();
        exec.for_each_chunk(chunks, 1, &|_| {
            std::hint::black_box(probe.run(TRIPS_PER_CHUNK));
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    (chunks as u64 * TRIPS_PER_CHUNK * probe.ops_per_iter) as f64 / best / 1e9
}

impl Roofline {
    /// Measures both roofs at each of `threads`, on a worker pool like the
    /// kernels'. `last_level_cache` sizes the bandwidth probe's buffer.
    pub fn measure(
        threads: &[usize],
        threading: Threading,
        pin: bool,
        last_level_cache: u64,
    ) -> anyhow::Result<Roofline> {
        let mut roof = Roofline::default();
        if threads.is_empty() {
            return Ok(roof);
        }
        let buffer = probe_buffer(probe_bytes(last_level_cache));
        for &t in threads {
            let exec = Executor::new(threading, t, pin)?;
            roof.read_gbs.insert(t, read_bandwidth(&buffer, t, 3)?);
            for probe in peak::all().iter().filter(|p| p.is_available()) {
                roof.peak_gops
                    .insert((probe.name, t), peak_gops(probe, &exec));
            }
        }
        Ok(roof)
    }

    pub fn bandwidth(&self, threads: usize) -> Option<f64> {
        self.read_gbs.get(&threads).copied()
    }

    /// The compute roof (GOP/s) of `kernel` at `threads`, if its ISA has a probe here.
    pub fn compute_roof(&self, kernel: &KernelInfo, threads: usize) -> Option<f64> {
        let probe = peak::roof_for(kernel)?;
        self.peak_gops.get(&(probe.name, threads)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_give_positive_rates_and_kernels_find_their_roof() {
        let exec = Executor::new(Threading::Pool, 1, false).unwrap();
        let mut roof = Roofline::default();
        for p in peak::all().iter().filter(|p| p.is_available()) {
            let gops = peak_gops(p, &exec);
            assert!(gops.is_finite() && gops > 0.0, "{}: {gops}", p.name);
            roof.peak_gops.insert((p.name, 1), gops);
        }
        for k in ternbench_kernels::registry::resolve("all").unwrap() {
            let info = k.info();
            if let Some(p) = peak::roof_for(info).filter(|p| p.is_available()) {
                assert_eq!(
                    roof.compute_roof(info, 1),
                    roof.peak_gops.get(&(p.name, 1)).copied()
                );
                assert_eq!(roof.compute_roof(info, 2), None);
            }
        }
    }
}
