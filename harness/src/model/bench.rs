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
//! tokens/s that the bytes read per token allow: for tg rows, just before
//! and after each timed run (DRAM bandwidth on a shared machine drifts
//! within seconds), for the rest once per thread count.

use super::config::ModelConfig;
use super::engine::{argmax, estimate_bytes, Breakdown, Model, ModelSpec, OPS};
use super::weights::WeightSource;
use crate::measure::bandwidth::{probe_buffer, probe_bytes, read_bandwidth, ReadProbe};
use crate::measure::energy::{Arithmetic, EnergyPlan, Joules};
use crate::measure::{Stats, SystemInfo};
use crate::output::{Row, Sink};
use crate::synth;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::time::Instant;
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::Format;
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::parallel::{matmul, Executor, Threading};
use ternbench_kernels::verify::Expected;
use ternbench_kernels::{registry, Kernel};

/// How a prompt is processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
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

/// One llama-bench test of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelTest {
    /// Process an n-token prompt into an empty KV cache, in `mode`.
    Pp { n: usize, mode: BatchMode },
    /// Generate n tokens one at a time from an empty cache.
    Tg { n: usize },
}

impl ModelTest {
    /// `ppN` or `tgN`, the `test` column.
    pub fn name(self) -> String {
        match self {
            ModelTest::Pp { n, .. } => format!("pp{n}"),
            ModelTest::Tg { n } => format!("tg{n}"),
        }
    }

    /// Tokens of the test.
    pub fn n(self) -> usize {
        match self {
            ModelTest::Pp { n, .. } | ModelTest::Tg { n } => n,
        }
    }

    /// The `batch_mode` column: the pp mode, empty for tg.
    pub fn batch_mode_name(self) -> &'static str {
        match self {
            ModelTest::Pp { mode, .. } => mode.name(),
            ModelTest::Tg { .. } => "",
        }
    }

    /// The tests `ternbench model -p P -n N --batch-mode M` runs (0 skips one).
    pub fn from_lengths(n_prompt: usize, n_gen: usize, mode: BatchMode) -> Vec<ModelTest> {
        let mut out = Vec::new();
        if n_prompt > 0 {
            out.push(ModelTest::Pp { n: n_prompt, mode });
        }
        if n_gen > 0 {
            out.push(ModelTest::Tg { n: n_gen });
        }
        out
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
    pub tests: Vec<ModelTest>,
    pub reps: usize,
    pub kv_f16: bool,
    /// Distinct blocks to hold (layer sampling); `None` holds every layer.
    pub sample_layers: Option<usize>,
    pub breakdown: bool,
    pub seed: u64,
    /// (test, threads) groups already measured (a resumed sweep): not run.
    pub skip: HashSet<(ModelTest, usize)>,
    /// Energy sources read around every timed run.
    pub energy: EnergyPlan,
}

#[derive(Debug, Default)]
pub struct ModelSummary {
    pub rows_written: usize,
    pub failures: Vec<String>,
}

/// The models of a run: requested kernels, then the f16 baseline if asked and absent.
pub fn specs(bench: &ModelBench) -> Vec<ModelSpec> {
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

/// Bytes of memory available now (0 if unknown).
pub fn available_memory() -> u64 {
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

/// Energy the arithmetic model of the papers gives for one token of `test`
/// on `model`: (joules, note), or why it has no figure.
fn model_energy(
    plan: &EnergyPlan,
    model: &Model,
    test: ModelTest,
) -> Option<Result<(f64, String), String>> {
    let arith = plan.model.as_ref()?;
    let c = &model.config;
    let info = model.spec.kernel.info();
    let lm_info = model.spec.lm_head.info();
    let (Some(a), Some(a_lm)) = (
        Arithmetic::of_format(info.format.name()),
        Arithmetic::of_format(lm_info.format.name()),
    ) else {
        return Some(Err(format!(
            "model energy: no arithmetic accounting for {} / {}",
            info.format, lm_info.format
        )));
    };
    let lm_bytes = model.lm_head_bytes();
    let block_bytes = model.weight_bytes_per_token() - lm_bytes;
    let blocks: Vec<_> = c
        .linear_shapes()
        .iter()
        .map(|&(_, r, k)| (a, r * c.layers, k, 0))
        .collect();
    let eb = arith.token(&blocks);
    let el = arith.token(&[(a_lm, c.vocab, c.hidden, 0)]);
    let n = test.n() as f64;
    // Per test: arithmetic of every token through the blocks; the lm_head
    // for every generated token but only the last prompt token; weight bytes
    // once per token, or once per batch for a batched prompt.
    let (arith_j, bytes) = match test {
        ModelTest::Tg { .. } => (
            n * (eb.arithmetic_j + el.arithmetic_j),
            n * (block_bytes + lm_bytes) as f64,
        ),
        ModelTest::Pp { mode, .. } => (
            n * eb.arithmetic_j + el.arithmetic_j,
            match mode {
                BatchMode::Batched => (block_bytes + lm_bytes) as f64,
                BatchMode::Token => n * block_bytes as f64 + lm_bytes as f64,
            },
        ),
    };
    let memory_j = arith.memory_joules(bytes);
    Some(Ok((
        (arith_j + memory_j) / n,
        format!(
            "model estimate ({}): arithmetic {:.3e} J + weight traffic {:.3e} J per token",
            arith.node.name(),
            arith_j / n,
            memory_j / n
        ),
    )))
}

pub fn run(bench: &ModelBench, sink: &mut Sink) -> anyhow::Result<ModelSummary> {
    let c = &bench.config;
    let sys = SystemInfo::get();
    let specs = specs(bench);
    let blocks = bench.sample_layers.unwrap_or(c.layers).clamp(1, c.layers);
    let capacity = bench.tests.iter().map(|t| t.n()).max().unwrap_or(1);
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
    let mut summary = ModelSummary::default();
    let pending: Vec<usize> = bench
        .threads
        .iter()
        .copied()
        .filter(|&t| {
            bench
                .tests
                .iter()
                .any(|&test| !bench.skip.contains(&(test, t)))
        })
        .collect();
    if pending.is_empty() {
        return Ok(summary);
    }
    crate::say!(
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
        crate::say!("  {what}")
    })?;
    crate::say!("  built in {:.1} s", start.elapsed().as_secs_f64());
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(bench.seed);
    let prompt_len = bench
        .tests
        .iter()
        .filter(|t| matches!(t, ModelTest::Pp { .. }))
        .map(|t| t.n())
        .max()
        .unwrap_or(1);
    let prompt: Vec<u32> = (0..prompt_len)
        .map(|_| (rng.next_u64() % c.vocab as u64) as u32)
        .collect();
    let buffer = probe_buffer(probe_bytes(sys.last_level_cache_bytes));
    let sources = bench.energy.sources();
    for &threads in &pending {
        let tests: Vec<ModelTest> = bench
            .tests
            .iter()
            .copied()
            .filter(|&t| !bench.skip.contains(&(t, threads)))
            .collect();
        let exec = Executor::new(bench.threading, threads, bench.pin)?;
        let bandwidth = read_bandwidth(&buffer, threads, 3)?;
        let failures = verify_specs(bench, &specs, &exec)?;
        // Warm-up (as llama-bench does): a short prompt in each batch mode
        // and two generated tokens per model.
        let mut warm: Vec<(usize, usize, BatchMode)> = Vec::new();
        for t in &tests {
            let w = match *t {
                ModelTest::Pp { n, mode } => (n.min(8), 0, mode),
                ModelTest::Tg { .. } => (1, 2, BatchMode::Batched),
            };
            if !warm.contains(&w) {
                warm.push(w);
            }
        }
        for (i, model) in models.iter().enumerate() {
            if failures[i].is_none() {
                let mut bd = Breakdown::default();
                for &(p, g, mode) in &warm {
                    run_test(model, &exec, &prompt[..p], g, mode, bench.kv_f16, &mut bd)?;
                }
            }
        }
        // One pass over the probe buffer, on this thread count's pool (GB/s).
        let mut probe = ReadProbe::new(&buffer, buffer.len() * 8);
        let mut probe_now = || {
            let start = Instant::now();
            probe.read(&exec);
            probe.bytes_per_call() as f64 / start.elapsed().as_secs_f64() / 1e9
        };
        let mut last_probe = tests
            .iter()
            .any(|t| matches!(t, ModelTest::Tg { .. }))
            .then(&mut probe_now);
        // bandwidths[test][model]: per tg rep, the mean of the probes just
        // before and after it.
        let mut bandwidths = vec![vec![Vec::new(); models.len()]; tests.len()];
        // times[test][model] = seconds per rep; breakdowns summed over reps;
        // joules[test][model][meter] summed over reps (Err: why not).
        let mut times = vec![vec![Vec::new(); models.len()]; tests.len()];
        let mut breakdowns = vec![vec![Breakdown::default(); models.len()]; tests.len()];
        let mut joules: Vec<Vec<Vec<Result<Joules, String>>>> = vec![
            vec![
                bench
                    .energy
                    .meters
                    .iter()
                    .map(|m| Ok(Joules {
                        joules: 0.0,
                        source: m.source(),
                        note: String::new(),
                    }))
                    .collect();
                models.len()
            ];
            tests.len()
        ];
        for rep in 0..bench.reps {
            crate::say!("  {threads} thread(s): rep {}/{}", rep + 1, bench.reps);
            for (ti, &test) in tests.iter().enumerate() {
                for (mi, model) in models.iter().enumerate() {
                    if failures[mi].is_some() {
                        continue;
                    }
                    let (p, g, mode) = match test {
                        ModelTest::Tg { n } => (&prompt[..1], n, BatchMode::Batched),
                        ModelTest::Pp { n, mode } => (&prompt[..n], 0, mode),
                    };
                    let marks: Vec<_> = bench.energy.meters.iter().map(|m| m.start()).collect();
                    let t = run_test(
                        model,
                        &exec,
                        p,
                        g,
                        mode,
                        bench.kv_f16,
                        &mut breakdowns[ti][mi],
                    )?;
                    for (k, (meter, mark)) in bench.energy.meters.iter().zip(marks).enumerate() {
                        let slot = &mut joules[ti][mi][k];
                        if let Ok(acc) = slot {
                            match mark.and_then(|m| meter.stop(&m)) {
                                Ok(j) => {
                                    acc.joules += j.joules;
                                    acc.note = j.note;
                                }
                                Err(e) => *slot = Err(e.to_string()),
                            }
                        }
                    }
                    times[ti][mi].push(t);
                    if let (ModelTest::Tg { .. }, Some(before)) = (test, last_probe) {
                        let after = probe_now();
                        bandwidths[ti][mi].push((before + after) / 2.0);
                        last_probe = Some(after);
                    }
                }
            }
        }
        for (ti, &test) in tests.iter().enumerate() {
            let is_tg = matches!(test, ModelTest::Tg { .. });
            let n = test.n();
            let ts = |mi: usize| -> Option<Stats> {
                let v: Vec<f64> = times[ti][mi].iter().map(|t| n as f64 / t).collect();
                Stats::of(&v)
            };
            let baseline = models
                .iter()
                .enumerate()
                .filter(|(mi, m)| {
                    m.spec.kernel.info().format == Format::F16 && failures[*mi].is_none()
                })
                .filter_map(|(mi, _)| ts(mi).map(|s| (mi, s.mean)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            // Energy per token of model mi from source k (index into `sources`).
            let energy = |mi: usize, k: usize| -> Result<(f64, String), String> {
                if let Some(slot) = joules[ti][mi].get(k) {
                    let tokens = (n * times[ti][mi].len()).max(1) as f64;
                    return slot
                        .as_ref()
                        .map(|j| (j.joules / tokens, j.note.clone()))
                        .map_err(Clone::clone);
                }
                model_energy(&bench.energy, &models[mi], test)
                    .unwrap_or_else(|| Err("no such energy source".into()))
            };
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
                row.test = test.name();
                row.batch = match test {
                    ModelTest::Pp {
                        n,
                        mode: BatchMode::Batched,
                    } => n,
                    _ => 1,
                };
                row.n_prompt = if is_tg { 0 } else { n };
                row.n_gen = if is_tg { n } else { 0 };
                row.batch_mode = test.batch_mode_name().into();
                row.reps = bench.reps;
                row.mem_bandwidth_gbs = if is_tg {
                    Stats::of(&bandwidths[ti][mi]).map(|s| s.mean)
                } else {
                    Some(bandwidth)
                };
                row.extrapolated = model.sampled();
                row.verified = failures[mi].is_none();
                if let Some(why) = &failures[mi] {
                    crate::say!("error: {}: {why}; no speed reported", info.name);
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
                    row.speedup_vs_f16 = baseline.map(|(_, b)| s.mean / b);
                    if is_tg {
                        let bytes = model.weight_bytes_per_token() as f64;
                        row.gbs = Some(bytes * s.mean / 1e9);
                        if let Some(bw) = row.mem_bandwidth_gbs {
                            row.roofline_fraction = Some(bytes * s.mean / 1e9 / bw);
                            row.note = format!("roofline {:.1} t/s", bw * 1e9 / bytes);
                        }
                    }
                }
                // One row per energy source that gave a figure (the same
                // measurement, a different energy column); unavailable
                // sources are named in the note, never estimated.
                let mut rows = Vec::new();
                let mut missing = bench.energy.skipped.clone();
                if row.verified {
                    for (k, source) in sources.iter().enumerate() {
                        match energy(mi, k) {
                            Ok((j, what)) => {
                                let mut r = row.clone();
                                r.energy_j_per_token = Some(j);
                                r.energy_source = source.to_string();
                                let mut note = vec![what];
                                if let Some((bi, _)) = baseline.filter(|(bi, _)| *bi != mi) {
                                    if let Ok((jb, _)) = energy(bi, k) {
                                        if jb > 0.0 {
                                            note.push(format!(
                                                "energy saving vs f16: {:.1}%",
                                                100.0 * (1.0 - j / jb)
                                            ));
                                        }
                                    }
                                }
                                if !r.note.is_empty() {
                                    note.insert(0, r.note.clone());
                                }
                                r.note = note.join("; ");
                                rows.push(r);
                            }
                            Err(why) => missing.push(format!("{source} unavailable: {why}")),
                        }
                    }
                }
                if rows.is_empty() {
                    rows.push(row.clone());
                }
                for r in &mut rows {
                    for m in &missing {
                        if !r.note.is_empty() {
                            r.note += "; ";
                        }
                        r.note += m;
                    }
                    sink.write(r)?;
                    summary.rows_written += 1;
                }
                if bench.breakdown && row.verified {
                    let bd = &breakdowns[ti][mi];
                    let tokens = (n * bench.reps) as f64;
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
