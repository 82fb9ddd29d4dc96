//! `ternbench model`: tokens per second of whole models, llama-bench style.
//!
//! Tests follow llama-bench: `ppN` processes an N-token prompt into an empty
//! KV cache (one batch, or token by token like bitnet.cpp's `-b 1`), with
//! logits for the last token only; `tgN` generates N tokens one at a time
//! from an empty cache (greedy). Every kernel's model and the fp16 baseline
//! are built from the same weights and timed interleaved, rep by rep, so the
//! speedup is a ratio measured in one run. Before timing, each kernel is
//! verified on the model's own layer shapes against the scalar reference.
//! The read bandwidth is probed in the same process, giving the roofline
//! tokens/s that the bytes read per token allow.

use super::config::ModelConfig;
use super::engine::{argmax, estimate_bytes, Breakdown, Model, ModelSpec, OPS};
use super::weights::WeightSource;
use crate::measure::bandwidth::{probe_buffer, probe_bytes, read_bandwidth};
use crate::measure::{Stats, SystemInfo};
use crate::output::{Row, Sink};
use crate::synth;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::Format;
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::parallel::{matmul, Executor, Threading};
use ternbench_kernels::verify::Expected;
use ternbench_kernels::{registry, Kernel};

/// How a prompt is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchMode {
    /// The whole prompt as one batch (matrix-matrix products).
    Batched,
    /// One token at a time (what bitnet.cpp's benchmark script measured with `-b 1`).
    Token,
}

impl BatchMode {
    pub fn name(self) -> &'static str {
        match self {
            BatchMode::Batched => "batched",
            BatchMode::Token => "token",
        }
    }
}

pub struct ModelBench {
    pub config: ModelConfig,
    pub source: Box<dyn WeightSource>,
    pub kernels: Vec<&'static dyn Kernel>,
    /// Also build and time the model with the fastest-ranked f16 kernel.
    pub baseline: bool,
    pub lm_head: &'static dyn Kernel,
    pub threads: Vec<usize>,
    pub threading: Threading,
    pub pin: bool,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub batch_mode: BatchMode,
    pub reps: usize,
    pub kv_f16: bool,
    /// Distinct blocks to hold (layer sampling); `None` holds every layer.
    pub sample_layers: Option<usize>,
    pub breakdown: bool,
    pub seed: u64,
}

#[derive(Debug, Default)]
pub struct ModelSummary {
    pub rows_written: usize,
    pub failures: Vec<String>,
}

/// The models of a run: requested kernels, then the f16 baseline if asked and absent.
fn specs(bench: &ModelBench) -> Vec<ModelSpec> {
    let mut kernels = bench.kernels.clone();
    if bench.baseline && !kernels.iter().any(|k| k.info().format == Format::F16) {
        kernels.push(registry::auto(Format::F16));
    }
    kernels
        .into_iter()
        .map(|kernel| ModelSpec {
            kernel,
            lm_head: bench.lm_head,
        })
        .collect()
}

/// Bytes the run needs: weights of every model (sampled blocks only), KV caches and slack.
pub fn memory_needed(
    config: &ModelConfig,
    specs: &[ModelSpec],
    blocks: usize,
    capacity: usize,
    kv_f16: bool,
) -> u64 {
    let weights: u64 = specs
        .iter()
        .map(|s| {
            let (block, lm) =
                estimate_bytes(config, s.kernel.info().format, s.lm_head.info().format);
            block * blocks as u64 + lm
        })
        .sum();
    let kv = (2 * config.layers * capacity * config.kv_dim() * if kv_f16 { 2 } else { 4 }) as u64;
    // The f32 embedding is materialised once while the lm_heads are packed.
    let embedding = (config.vocab * config.hidden * 4) as u64;
    weights + kv + embedding
}

fn available_memory() -> u64 {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map_or(0, |s| s.available_memory())
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Checks every kernel on the model's layer shapes (q_proj, down_proj of block 0)
/// against the scalar reference; returns the first failure per spec.
fn verify_specs(
    bench: &ModelBench,
    specs: &[ModelSpec],
    exec: &Executor,
) -> anyhow::Result<Vec<Option<String>>> {
    let mut failures = vec![None; specs.len()];
    for (name, rows, cols) in bench.config.linear_shapes() {
        if name != "q_proj" && name != "down_proj" {
            continue;
        }
        let w = bench.source.linear(0, name)?;
        let x = synth::activations(2, cols, bench.seed ^ rows as u64);
        for (i, spec) in specs.iter().enumerate() {
            let info = spec.kernel.info();
            let standard = pack_standard(info.name, info.format, &w)?;
            let act = Activations::quantize(info.format.activation_scheme(), &x, 2, cols);
            let prepared = spec.kernel.prepare(&w)?;
            let input = spec.kernel.prepare_input(act.clone());
            let mut y = vec![0.0f32; 2 * rows];
            matmul(spec.kernel, &prepared, &input, exec, &mut y)?;
            let v = Expected::new(&standard, &act).check(spec.kernel, &y);
            if let (Some(why), None) = (v.first_failure, &failures[i]) {
                failures[i] = Some(format!("{name} {rows}x{cols}: {why}"));
            }
        }
    }
    Ok(failures)
}

/// One timed test run of one model: seconds and the op breakdown.
fn run_test(
    model: &Model,
    exec: &Executor,
    prompt: &[u32],
    n_gen: usize,
    mode: BatchMode,
    kv_f16: bool,
    bd: &mut Breakdown,
) -> anyhow::Result<f64> {
    let mut session = model.session(prompt.len().max(n_gen), kv_f16);
    let mut logits = Vec::new();
    let start = Instant::now();
    if n_gen == 0 {
        match mode {
            BatchMode::Batched => {
                model.forward(&mut session, prompt, exec, Some(&mut logits), bd)?
            }
            BatchMode::Token => {
                for (i, &t) in prompt.iter().enumerate() {
                    let want = (i + 1 == prompt.len()).then_some(&mut logits);
                    model.forward(&mut session, &[t], exec, want, bd)?;
                }
            }
        }
    } else {
        let mut next = prompt.first().copied().unwrap_or(1);
        for _ in 0..n_gen {
            model.forward(&mut session, &[next], exec, Some(&mut logits), bd)?;
            next = argmax(&logits);
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

pub fn run(bench: &ModelBench, sink: &mut Sink) -> anyhow::Result<ModelSummary> {
    let c = &bench.config;
    let sys = SystemInfo::get();
    let specs = specs(bench);
    let blocks = bench.sample_layers.unwrap_or(c.layers).clamp(1, c.layers);
    let capacity = bench.n_prompt.max(bench.n_gen).max(1);
    let needed = memory_needed(c, &specs, blocks, capacity, bench.kv_f16);
    let available = available_memory();
    if available > 0 && needed > available {
        anyhow::bail!(
            "{} with {} model(s) needs about {:.1} GiB, {:.1} GiB are available; hold fewer layers with --sample-layers N (each {} block takes about {:.2} GiB)",
            c.name,
            specs.len(),
            gib(needed),
            gib(available),
            specs[0].kernel.info().format,
            gib(estimate_bytes(c, specs[0].kernel.info().format, Format::F16).0)
        );
    }
    if bench.sample_layers.is_some() {
        let min_block = specs
            .iter()
            .map(|s| estimate_bytes(c, s.kernel.info().format, s.lm_head.info().format).0)
            .min()
            .unwrap_or(0);
        let llc = sys.last_level_cache_bytes;
        if llc > 0 && min_block * blocks as u64 <= llc {
            anyhow::bail!(
                "--sample-layers {blocks}: {blocks} blocks take {:.1} MiB, not more than the {:.1} MiB last-level cache, so they would be timed cache-hot; expected more blocks",
                (min_block * blocks as u64) as f64 / (1 << 20) as f64,
                llc as f64 / (1 << 20) as f64
            );
        }
    }
    eprintln!(
        "model {}: {} models ({}), {} of {} blocks held, about {:.1} GiB",
        c,
        specs.len(),
        specs
            .iter()
            .map(|s| s.kernel.info().name)
            .collect::<Vec<_>>()
            .join(", "),
        blocks,
        c.layers,
        gib(needed)
    );
    let start = Instant::now();
    let models = Model::build_many(c, bench.source.as_ref(), &specs, blocks, |what| {
        eprintln!("  {what}")
    })?;
    eprintln!("  built in {:.1} s", start.elapsed().as_secs_f64());
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(bench.seed);
    let prompt: Vec<u32> = (0..bench.n_prompt.max(1))
        .map(|_| (rng.next_u64() % c.vocab as u64) as u32)
        .collect();
    let buffer = probe_buffer(probe_bytes(sys.last_level_cache_bytes));
    let mut summary = ModelSummary::default();
    let tests: Vec<(String, usize)> = [("pp", bench.n_prompt), ("tg", bench.n_gen)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| (format!("{t}{n}"), n))
        .collect();
    for &threads in &bench.threads {
        let exec = Executor::new(bench.threading, threads, bench.pin)?;
        let bandwidth = read_bandwidth(&buffer, threads, 3)?;
        let failures = verify_specs(bench, &specs, &exec)?;
        // Warm-up (as llama-bench does): a short prompt and two generated tokens per model.
        for (i, model) in models.iter().enumerate() {
            if failures[i].is_none() {
                let mut bd = Breakdown::default();
                if bench.n_prompt > 0 {
                    run_test(
                        model,
                        &exec,
                        &prompt[..prompt.len().min(8)],
                        0,
                        bench.batch_mode,
                        bench.kv_f16,
                        &mut bd,
                    )?;
                }
                if bench.n_gen > 0 {
                    run_test(
                        model,
                        &exec,
                        &prompt[..1],
                        2,
                        bench.batch_mode,
                        bench.kv_f16,
                        &mut bd,
                    )?;
                }
            }
        }
        // times[test][model] = seconds per rep; breakdowns summed over reps.
        let mut times = vec![vec![Vec::new(); models.len()]; tests.len()];
        let mut breakdowns = vec![vec![Breakdown::default(); models.len()]; tests.len()];
        for rep in 0..bench.reps {
            eprintln!("  {threads} thread(s): rep {}/{}", rep + 1, bench.reps);
            for (ti, (test, n)) in tests.iter().enumerate() {
                let is_tg = test.starts_with("tg");
                for (mi, model) in models.iter().enumerate() {
                    if failures[mi].is_some() {
                        continue;
                    }
                    let (p, g) = if is_tg {
                        (&prompt[..1], *n)
                    } else {
                        (&prompt[..*n], 0)
                    };
                    let t = run_test(
                        model,
                        &exec,
                        p,
                        g,
                        bench.batch_mode,
                        bench.kv_f16,
                        &mut breakdowns[ti][mi],
                    )?;
                    times[ti][mi].push(t);
                }
            }
        }
        for (ti, (test, n)) in tests.iter().enumerate() {
            let is_tg = test.starts_with("tg");
            let ts = |mi: usize| -> Option<Stats> {
                let v: Vec<f64> = times[ti][mi].iter().map(|t| *n as f64 / t).collect();
                Stats::of(&v)
            };
            let baseline_ts = models
                .iter()
                .enumerate()
                .filter(|(_, m)| m.spec.kernel.info().format == Format::F16)
                .filter_map(|(mi, _)| ts(mi).map(|s| s.mean))
                .max_by(f64::total_cmp);
            for (mi, model) in models.iter().enumerate() {
                let info = model.spec.kernel.info();
                let mut row = Row::new(sys);
                row.kernel = info.name.into();
                row.kernel_isa = info.isa.name().into();
                row.wtype = info.format.name().into();
                row.bits_per_weight = info.bits_per_weight();
                row.exact = info.exact;
                row.variant = format!("lm_head={}", model.spec.lm_head.info().name);
                row.threading = exec.threading().name().into();
                row.n_threads = threads;
                row.pinned = exec.pinned();
                row.model_type = c.name.clone();
                row.model_n_params = Some(c.n_params());
                row.model_size_bytes = Some(model.weight_bytes_per_token());
                row.weights_source = model.weights_source.clone();
                row.test = test.clone();
                row.batch = if is_tg || bench.batch_mode == BatchMode::Token {
                    1
                } else {
                    *n
                };
                row.n_prompt = if is_tg { 0 } else { *n };
                row.n_gen = if is_tg { *n } else { 0 };
                row.batch_mode = if is_tg {
                    String::new()
                } else {
                    bench.batch_mode.name().into()
                };
                row.reps = bench.reps;
                row.mem_bandwidth_gbs = Some(bandwidth);
                row.extrapolated = model.sampled();
                row.verified = failures[mi].is_none();
                if let Some(why) = &failures[mi] {
                    eprintln!("error: {}: {why}; no speed reported", info.name);
                    row.note = why.clone();
                    summary.failures.push(format!("{}: {why}", info.name));
                } else if let (Some(s), Some(t)) = (
                    ts(mi),
                    Stats::of(&times[ti][mi].iter().map(|t| t * 1e9).collect::<Vec<_>>()),
                ) {
                    row.avg_ts = Some(s.mean);
                    row.stddev_ts = Some(s.stddev);
                    row.avg_ns = Some(t.mean);
                    row.median_ns = Some(t.median);
                    row.stddev_ns = Some(t.stddev);
                    row.min_ns = Some(t.min);
                    row.speedup_vs_f16 = baseline_ts.map(|b| s.mean / b);
                    if is_tg {
                        let bytes = model.weight_bytes_per_token() as f64;
                        row.gbs = Some(bytes * s.mean / 1e9);
                        row.roofline_fraction = Some(bytes * s.mean / 1e9 / bandwidth);
                        row.note = format!("roofline {:.1} t/s", bandwidth * 1e9 / bytes);
                    }
                }
                sink.write(&row)?;
                summary.rows_written += 1;
                if bench.breakdown && row.verified {
                    let bd = &breakdowns[ti][mi];
                    let tokens = (*n * bench.reps) as f64;
                    for (op, &ns) in OPS.iter().zip(&bd.ns) {
                        let mut r = row.clone();
                        r.op = op.to_string();
                        r.avg_ts = None;
                        r.stddev_ts = None;
                        r.median_ns = None;
                        r.stddev_ns = None;
                        r.min_ns = None;
                        r.speedup_vs_f16 = None;
                        r.gbs = None;
                        r.roofline_fraction = None;
                        r.avg_ns = Some(ns as f64 / tokens);
                        r.note = format!(
                            "{:.1}% of the forward time",
                            100.0 * ns as f64 / bd.total_ns().max(1) as f64
                        );
                        sink.write(&r)?;
                        summary.rows_written += 1;
                    }
                }
            }
        }
    }
    Ok(summary)
}
