//! `ternbench layer`: one linear layer, y = W x, timed for every requested
//! kernel, batch size and thread count.
//!
//! For each shape the synthetic weights are generated once and every kernel
//! packs them once. For each (batch, threads) group every kernel's first
//! output is checked against the reference before it is timed; a kernel that
//! fails gets a row with `verified=false` and no speed. The kernels of a group
//! are then timed interleaved, so their ratios (and the speedup over the
//! fp16 baseline, timed in the same group) are not skewed by machine drift.
//! The timed operation is what a layer costs at inference: quantizing the
//! activations plus the matrix multiply.
//!
//! Cache state: by default the weights are cache-hot (the same packed copy
//! every call). With `cold`, each kernel packs enough distinct copies of the
//! weights to exceed twice the last-level cache and every call reads the
//! next copy, so the figure is the DRAM-resident one token generation sees.
//! With `roofline`, the read bandwidth and the compute roofs are probed in
//! the same process first (see [`crate::measure::roofline`]) at every thread
//! count still to run, and every row reports its fraction of each. A cold
//! group also times the read probe as one more interleaved operation
//! ([`ReadProbe`]) and reports its fractions against that: DRAM bandwidth on
//! a shared machine drifts within seconds, so a probe taken at the start
//! does not describe what a kernel saw minutes later. A hot group times a
//! same-size read per weight size instead ([`CacheProbe`]): cache-hot weights
//! outrun DRAM, and their roof is the cache level they sit in.

use crate::measure::bandwidth::{probe_buffer, probe_bytes, CacheProbe, ReadProbe};
use crate::measure::roofline::Roofline;
use crate::measure::{time_interleaved, SystemInfo, TimingPlan};
use crate::output::{Row, Sink};
use crate::synth;
use anyhow::Context;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Instant;
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::{Format, Weights};
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::parallel::{matmul, Executor, Threading};
use ternbench_kernels::verify::Expected;
use ternbench_kernels::{registry, Kernel, PreparedWeights};

/// A weight matrix shape, out x in (rows x cols), as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub rows: usize,
    pub cols: usize,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    /// Parses `ROWSxCOLS` with both at least 1, e.g. `2560x6912`.
    fn from_str(s: &str) -> Result<Shape, String> {
        let expected = "expected ROWSxCOLS with positive integers, e.g. 2560x6912";
        let (r, c) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("shape '{s}': {expected}"))?;
        let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0);
        match (parse(r), parse(c)) {
            (Some(rows), Some(cols)) if rows.checked_mul(cols).is_some() => {
                Ok(Shape { rows, cols })
            }
            _ => Err(format!("shape '{s}': {expected}")),
        }
    }
}

/// Everything a layer benchmark needs.
#[derive(Clone)]
pub struct LayerBench {
    pub kernels: Vec<&'static dyn Kernel>,
    pub shapes: Vec<Shape>,
    pub batches: Vec<usize>,
    pub threads: Vec<usize>,
    pub threading: Threading,
    pub pin: bool,
    /// Time the `f16` baseline in every group (added when not requested).
    pub baseline: bool,
    pub plan: TimingPlan,
    pub seed: u64,
    /// Cycle through distinct weight copies larger than the last-level cache.
    pub cold: bool,
    /// Probe the read bandwidth and compute roofs, and report fractions of them.
    pub roofline: bool,
    /// (shape, batch, threads) groups already measured (a resumed sweep): not run.
    pub skip: HashSet<(Shape, usize, usize)>,
}

/// What a run produced.
#[derive(Debug, Default)]
pub struct LayerSummary {
    pub rows_written: usize,
    /// Kernels whose output failed verification, with the reason.
    pub failures: Vec<String>,
}

/// One kernel's packed weights for the current shape: one copy, or with
/// `cold` several identical copies that calls cycle through.
struct Packed {
    kernel: &'static dyn Kernel,
    copies: Vec<PreparedWeights>,
    prepare_ms: f64,
}

/// Copies of `weight_bytes` that together exceed twice the last-level cache
/// (at least 2), so that cycling through them evicts each before its reuse.
fn cold_copies(weight_bytes: usize, last_level_cache: u64) -> usize {
    let llc = last_level_cache.max(1 << 20) as usize;
    (2 * llc).div_ceil(weight_bytes.max(1)).max(2)
}

/// The kernels of a group: the requested ones plus the fp16 baseline.
pub fn group_kernels(bench: &LayerBench) -> Vec<&'static dyn Kernel> {
    let mut kernels = bench.kernels.clone();
    if bench.baseline && !kernels.iter().any(|k| k.info().format == Format::F16) {
        kernels.push(registry::auto(Format::F16));
    }
    kernels
}

/// The kernel whose time is the fp16 baseline: the fastest verified f16
/// kernel of the group (the baseline must never be a weak one).
fn baseline_median(results: &[(&'static dyn Kernel, Option<f64>)]) -> Option<f64> {
    results
        .iter()
        .filter(|(k, _)| k.info().format == Format::F16)
        .filter_map(|(_, median)| *median)
        .min_by(f64::total_cmp)
}

pub fn run(bench: &LayerBench, sink: &mut Sink) -> anyhow::Result<LayerSummary> {
    let sys = SystemInfo::get();
    let all_kernels = group_kernels(bench);
    let mut summary = LayerSummary::default();
    let roofline = if bench.roofline {
        // Only the thread counts that still have groups to run (a resumed sweep).
        let pending: Vec<usize> = bench
            .threads
            .iter()
            .copied()
            .filter(|&t| {
                bench.shapes.iter().any(|&s| {
                    bench
                        .batches
                        .iter()
                        .any(|&b| !bench.skip.contains(&(s, b, t)))
                })
            })
            .collect();
        crate::say!("probing read bandwidth and compute roofs");
        Roofline::measure(
            &pending,
            bench.threading,
            bench.pin,
            sys.last_level_cache_bytes,
        )?
    } else {
        Roofline::default()
    };
    let probe_words = if bench.cold && bench.roofline {
        probe_buffer(probe_bytes(sys.last_level_cache_bytes))
    } else {
        Vec::new()
    };
    for (si, &shape) in bench.shapes.iter().enumerate() {
        let pending = |batch: usize, threads: usize| !bench.skip.contains(&(shape, batch, threads));
        if !bench
            .batches
            .iter()
            .any(|&b| bench.threads.iter().any(|&t| pending(b, t)))
        {
            continue;
        }
        // Formats that cannot pad rows (q6_k: whole 256-weight super-blocks)
        // sit out shapes they cannot hold, said on stderr; a shape none of
        // the kernels can hold is an error.
        #[allow(clippy::type_complexity)]
        let (kernels, unfit): (Vec<&'static dyn Kernel>, Vec<&'static dyn Kernel>) = all_kernels
            .iter()
            .copied()
            .partition(|k| k.info().format.accepts_cols(shape.cols));
        for k in &unfit {
            let m = k.info().format.required_col_multiple().unwrap_or(1);
            crate::say!(
                "layer {shape}: skipping {}: {} needs K (columns) a multiple of {m}",
                k.info().name,
                k.info().format
            );
        }
        anyhow::ensure!(
            !kernels.is_empty(),
            "layer {shape}: none of the kernels can pack {} columns ({} needs a multiple of {})",
            shape.cols,
            all_kernels[0].info().format,
            all_kernels[0]
                .info()
                .format
                .required_col_multiple()
                .unwrap_or(1)
        );
        crate::say!(
            "layer {shape}: generating weights and packing for {} kernels",
            kernels.len()
        );
        let ternary = synth::ternary_matrix(shape.rows, shape.cols, bench.seed ^ (si as u64 + 1));
        let weights = Weights::Ternary(ternary);
        let mut standard: HashMap<Format, PreparedWeights> = HashMap::new();
        let mut packed = Vec::with_capacity(kernels.len());
        for &kernel in &kernels {
            let info = kernel.info();
            let start = Instant::now();
            let prepared = kernel
                .prepare(&weights)
                .with_context(|| format!("{}: packing {shape}", info.name))?;
            let prepare_ms = start.elapsed().as_secs_f64() * 1e3;
            let n_copies = if bench.cold {
                cold_copies(prepared.weight_bytes, sys.last_level_cache_bytes)
            } else {
                1
            };
            let mut copies = vec![prepared];
            for _ in 1..n_copies {
                copies.push(kernel.prepare(&weights)?);
            }
            if let std::collections::hash_map::Entry::Vacant(e) = standard.entry(info.format) {
                e.insert(pack_standard(info.name, info.format, &weights)?);
            }
            packed.push(Packed {
                kernel,
                copies,
                prepare_ms,
            });
        }
        for &batch in &bench.batches {
            if !bench.threads.iter().any(|&t| pending(batch, t)) {
                continue;
            }
            let x = synth::activations(
                batch,
                shape.cols,
                bench.seed ^ 0x5eed ^ (batch as u64) << 32,
            );
            let acts: HashMap<Format, Activations> = standard
                .keys()
                .map(|&f| {
                    (
                        f,
                        Activations::quantize(f.activation_scheme(), &x, batch, shape.cols),
                    )
                })
                .collect();
            let expected: HashMap<Format, Expected<'_>> = standard
                .iter()
                .map(|(f, w)| (*f, Expected::new(w, &acts[f])))
                .collect();
            for &threads in bench.threads.iter().filter(|&&t| pending(batch, t)) {
                let exec = Executor::new(bench.threading, threads, bench.pin)?;
                run_group(
                    bench,
                    sys,
                    shape,
                    batch,
                    &exec,
                    &packed,
                    &x,
                    &acts,
                    &expected,
                    &roofline,
                    &probe_words,
                    sink,
                    &mut summary,
                )?;
            }
        }
    }
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn run_group(
    bench: &LayerBench,
    sys: &SystemInfo,
    shape: Shape,
    batch: usize,
    exec: &Executor,
    packed: &[Packed],
    x: &[f32],
    acts: &HashMap<Format, Activations>,
    expected: &HashMap<Format, Expected<'_>>,
    roofline: &Roofline,
    probe_words: &[u64],
    sink: &mut Sink,
    summary: &mut LayerSummary,
) -> anyhow::Result<()> {
    let n_out = batch * shape.rows;
    // Verify each kernel's first output.
    let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(packed.len());
    let mut verdicts = Vec::with_capacity(packed.len());
    for p in packed {
        let format = p.kernel.info().format;
        let input = p.kernel.prepare_input(acts[&format].clone());
        let mut y = vec![f32::NAN; n_out];
        matmul(p.kernel, &p.copies[0], &input, exec, &mut y)?;
        verdicts.push(expected[&format].check(p.kernel, &y));
        outputs.push(y);
    }
    // Time the verified kernels interleaved.
    let timed: Vec<usize> = (0..packed.len()).filter(|&i| verdicts[i].ok).collect();
    let mut buffers: Vec<Vec<f32>> = timed.iter().map(|_| vec![0.0f32; n_out]).collect();
    let mut ops: Vec<Box<dyn FnMut() + '_>> = timed
        .iter()
        .zip(buffers.iter_mut())
        .map(|(&i, y)| {
            let p = &packed[i];
            let mut next = 0;
            Box::new(move || {
                let input = p.kernel.prepare_input_f32(x, batch, shape.cols);
                matmul(p.kernel, &p.copies[next], &input, exec, y)
                    .expect("shapes were checked by the verified call");
                next = (next + 1) % p.copies.len();
            }) as Box<dyn FnMut() + '_>
        })
        .collect();
    // The read probe, timed as the last operation (cold groups only: in a
    // hot group it would evict the weights between samples). Each call reads
    // twice the last-level cache, so none of it is cached.
    let mut probe = (!probe_words.is_empty()).then(|| {
        let llc = sys.last_level_cache_bytes as usize;
        ReadProbe::new(probe_words, (2 * llc).max(64 << 20))
    });
    let mut probe_op = || {
        if let Some(p) = probe.as_mut() {
            p.read(exec)
        }
    };
    // In a hot group, one same-size read per weight size (up to the
    // last-level cache; past it the weights come from DRAM), timed after the
    // kernels: each kernel's roof in the cache level its weights sit in.
    let cache_sizes: BTreeSet<usize> = if bench.roofline && !bench.cold {
        timed
            .iter()
            .map(|&i| packed[i].copies[0].weight_bytes)
            .filter(|&b| b as u64 <= sys.last_level_cache_bytes)
            .collect()
    } else {
        BTreeSet::new()
    };
    let cache_probes: Vec<CacheProbe> = cache_sizes.iter().map(|&b| CacheProbe::new(b)).collect();
    let mut cache_ops: Vec<Box<dyn FnMut() + '_>> = cache_probes
        .iter()
        .map(|p| Box::new(move || p.read(exec)) as Box<dyn FnMut() + '_>)
        .collect();
    let mut op_refs: Vec<&mut dyn FnMut()> = ops
        .iter_mut()
        .map(|b| b.as_mut() as &mut dyn FnMut())
        .collect();
    if !op_refs.is_empty() {
        op_refs.extend(cache_ops.iter_mut().map(|b| b.as_mut() as &mut dyn FnMut()));
    }
    let probed = !probe_words.is_empty() && !op_refs.is_empty();
    if probed {
        op_refs.push(&mut probe_op);
    }
    let mut stats = if op_refs.is_empty() {
        Vec::new()
    } else {
        time_interleaved(&bench.plan, &mut op_refs)
    };
    drop(op_refs);
    drop(ops);
    drop(cache_ops);
    let bandwidth = if probed {
        let probe_stats = stats.pop().expect("the probe was timed last");
        let bytes = probe.as_ref().map_or(0, |p| p.bytes_per_call());
        Some(bytes as f64 / probe_stats.median)
    } else {
        roofline.bandwidth(exec.n_threads())
    };
    // GB/s of each same-size read, by weight bytes (the probe reads them
    // rounded down to whole words).
    // (Nothing was timed when no kernel verified: then both are empty.)
    let cache_stats = stats.split_off(timed.len());
    let cache_read: HashMap<usize, f64> = cache_sizes
        .iter()
        .zip(&cache_probes)
        .zip(cache_stats)
        .map(|((&size, p), s)| (size, p.bytes() as f64 / s.median))
        .collect();
    let mut medians: Vec<Option<f64>> = vec![None; packed.len()];
    for (j, &i) in timed.iter().enumerate() {
        // A kernel must also be deterministic: the last timed output must
        // equal the verified one bit for bit.
        let same = buffers[j]
            .iter()
            .zip(&outputs[i])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        if same {
            medians[i] = Some(stats[j].median);
        } else {
            verdicts[i].ok = false;
            verdicts[i].first_failure = Some(format!(
                "{}: output changed between calls (nondeterministic kernel)",
                packed[i].kernel.info().name
            ));
        }
    }
    let results: Vec<_> = packed
        .iter()
        .map(|p| p.kernel)
        .zip(medians.iter().copied())
        .collect();
    let baseline = baseline_median(&results);
    for (i, p) in packed.iter().enumerate() {
        let info = p.kernel.info();
        let mut row = Row::new(sys);
        row.kernel = info.name.into();
        row.kernel_isa = info.isa.name().into();
        row.wtype = info.format.name().into();
        row.bits_per_weight = info.bits_per_weight();
        row.exact = info.exact;
        row.threading = exec.threading().name().into();
        row.n_threads = exec.n_threads();
        row.pinned = exec.pinned();
        row.test = "layer".into();
        row.rows = shape.rows;
        row.cols = shape.cols;
        row.batch = batch;
        row.reps = bench.plan.reps;
        row.cold = bench.cold;
        let weight_bytes = p.copies[0].weight_bytes;
        row.weight_bytes = weight_bytes;
        row.mem_bandwidth_gbs = bandwidth;
        row.variant = p.kernel.variant(&p.copies[0], batch);
        row.prepare_ms = p.prepare_ms;
        row.verified = verdicts[i].ok;
        row.max_abs_err = verdicts[i].max_abs_err;
        if let (Some(median), Some(j)) = (medians[i], timed.iter().position(|&t| t == i)) {
            let s = stats[j];
            row.avg_ns = Some(s.mean);
            row.median_ns = Some(median);
            row.stddev_ns = Some(s.stddev);
            row.min_ns = Some(s.min);
            let gbs = weight_bytes as f64 / median;
            let gops = 2.0 * (shape.rows * shape.cols * batch) as f64 / median;
            row.gbs = Some(gbs);
            row.gops = Some(gops);
            row.cache_read_gbs = cache_read.get(&weight_bytes).copied();
            row.roofline_fraction = row
                .cache_read_gbs
                .or(row.mem_bandwidth_gbs)
                .map(|bw| gbs / bw);
            row.compute_fraction = roofline
                .compute_roof(info, exec.n_threads())
                .map(|roof| gops / roof);
            row.speedup_vs_f16 = baseline.map(|b| b / median);
        }
        if let Some(why) = &verdicts[i].first_failure {
            crate::say!("error: {why}; no speed reported");
            row.note = why.clone();
            summary.failures.push(why.clone());
        }
        sink.write(&row)?;
        summary.rows_written += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_refuse_bad_input() {
        assert_eq!(
            "2560x6912".parse::<Shape>(),
            Ok(Shape {
                rows: 2560,
                cols: 6912
            })
        );
        assert_eq!("3X5".parse::<Shape>(), Ok(Shape { rows: 3, cols: 5 }));
        for bad in [
            "",
            "2560",
            "0x5",
            "5x0",
            "axb",
            "5x-1",
            "99999999999x99999999999",
        ] {
            let err = bad.parse::<Shape>().unwrap_err();
            assert!(err.contains("expected ROWSxCOLS"), "{bad}: {err}");
        }
    }

    #[test]
    fn cold_copies_exceed_twice_the_last_level_cache() {
        assert_eq!(cold_copies(1 << 20, 8 << 20), 16);
        assert_eq!(cold_copies(3 << 20, 8 << 20), 6);
        // A matrix larger than the cache still alternates between two copies.
        assert_eq!(cold_copies(64 << 20, 8 << 20), 2);
        // Unknown cache size: assume 1 MiB rather than one copy.
        assert_eq!(cold_copies(1 << 19, 0), 4);
    }

    #[test]
    fn baseline_is_the_fastest_verified_f16_kernel() {
        let f16 = registry::reference(Format::F16);
        let i2s = registry::reference(Format::I2s);
        assert_eq!(
            baseline_median(&[
                (i2s, Some(1.0)),
                (f16, Some(5.0)),
                (f16, Some(4.0)),
                (f16, None)
            ]),
            Some(4.0)
        );
        assert_eq!(baseline_median(&[(i2s, Some(1.0))]), None);
    }
}
