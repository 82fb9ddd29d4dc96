//! The `ternbench` command line.
//!
//! Exit codes: 0 success; 1 a run finished but a kernel failed verification
//! or an I/O error occurred; 2 bad input (arguments or configuration).

use crate::config::{Config, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};
use crate::layer::{self, LayerBench, Shape};
use crate::measure::bandwidth::probe_bytes;
use crate::measure::roofline::Roofline;
use crate::measure::{SystemInfo, TimingPlan};
use crate::output::{utc_timestamp, OutputFormat, Sink};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use ternbench_kernels::parallel::Threading;
use ternbench_kernels::{peak, registry, Kernel};

#[derive(Parser, Debug)]
#[command(
    name = "ternbench",
    version,
    about = "Benchmark and kernel-research harness for ternary (BitNet b1.58) LLM inference on CPUs",
    long_about = "Benchmark and kernel-research harness for ternary (BitNet b1.58) LLM inference on CPUs.\n\n\
        With no command, runs the embedded default configuration (configs/default.toml): every kernel \
        this CPU can run on the BitNet b1.58 2B4T layer shapes, verified against the scalar reference, \
        timed against the fp16 baseline, and writes reports/out/<run>/results.csv."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List every kernel in this binary: format, ISA, bits per weight, exactness, and whether this CPU can run it.
    Kernels {
        /// `markdown` prints the format x ISA coverage matrix (as in the README).
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Time one linear layer (y = W x) for each kernel, shape, batch size and thread count, after verifying its output.
    Layer(LayerArgs),
    /// Tokens per second of a whole model (ppN, tgN), with the fp16 baseline timed in the same run.
    Model(crate::model::cli::ModelArgs),
    /// The roofline: read bandwidth (GB/s) and the peak int8 dot-product and f32 FMA rates (GOP/s) of each ISA, per thread count.
    #[command(alias = "roofline")]
    Bandwidth(BandwidthArgs),
    /// Write a preset (synthetic weights) as a GGUF file in llama.cpp's bitnet architecture, to run it in llama.cpp side by side.
    ExportGguf(crate::model::export::ExportArgs),
    /// Greedy generation from a checkpoint (HF directory or .gguf): prints text with a tokenizer.json (feature `tokenizers`), token ids otherwise.
    Generate(crate::model::generate::GenerateArgs),
    /// Run a benchmark configuration file (TOML), writing results.csv row by row, then the report.
    Sweep(SweepArgs),
    /// Charts (SVG, PNG), report.html and summary.md from result CSVs.
    Report(crate::report::ReportArgs),
    /// Convert llama-bench output (-o json, jsonl or csv) into result rows, to chart llama.cpp/bitnet.cpp runs beside ternbench's.
    Import(crate::report::import::ImportArgs),
    /// Measured model rows beside the published claims (speedups, energy), with both machines' bandwidth and a verdict per row.
    Claims(crate::report::claims::ClaimsArgs),
    /// CI regression gate: instruction counts (callgrind) and interleaved wall-clock speedups vs a committed baseline.
    Check(crate::check::CheckArgs),
    /// Helper of `check`: runs one kernel's calls on seeded data (counted under callgrind).
    #[command(hide = true)]
    CountKernel(crate::check::instructions::CountArgs),
}

/// Output of `ternbench kernels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ListFormat {
    Table,
    Csv,
    Markdown,
}

/// A comma-separated kernel list, resolved against the registry.
#[derive(Clone)]
struct KernelList(Vec<&'static dyn Kernel>);

impl std::fmt::Debug for KernelList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|k| k.info().name))
            .finish()
    }
}

fn parse_kernels(s: &str) -> Result<KernelList, String> {
    registry::resolve(s)
        .map(KernelList)
        .map_err(|e| e.to_string())
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}': expected an integer of at least 1")),
    }
}

fn parse_threading(s: &str) -> Result<Threading, String> {
    Threading::from_name(s).ok_or_else(|| format!("'{s}': expected 'pool' or 'rayon'"))
}

#[derive(Args, Debug)]
struct LayerArgs {
    /// Kernels: names (i2s-avx2,...), 'all' (every kernel this CPU can run), 'auto' (the preferred kernel of each format) or FORMAT-auto.
    #[arg(long, value_parser = parse_kernels)]
    kernel: KernelList,
    /// Weight shapes as OUTxIN (rows x cols), comma-separated, e.g. 2560x2560,6912x2560.
    #[arg(long, value_delimiter = ',', required = true)]
    shape: Vec<Shape>,
    /// Batch sizes (activation rows): 1 is a matrix-vector product (token generation), more is prompt processing.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = parse_positive)]
    batch: Vec<usize>,
    /// Thread counts, comma-separated (the calling thread counts as one).
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = parse_positive)]
    threads: Vec<usize>,
    /// Samples per measurement (taken interleaved across the kernels of a group).
    #[arg(long, default_value_t = 10, value_parser = parse_positive)]
    reps: usize,
    /// Warm-up per kernel before sampling, in milliseconds.
    #[arg(long, default_value_t = 100)]
    warmup_ms: u64,
    /// Each sample repeats the call until this many milliseconds have passed.
    #[arg(long, default_value_t = 5)]
    min_sample_ms: u64,
    /// Threading strategy: 'pool' (persistent spin-then-park workers) or 'rayon'.
    #[arg(long, default_value = "pool", value_parser = parse_threading)]
    threading: Threading,
    /// Pin thread i to core i.
    #[arg(long)]
    pin: bool,
    /// Do not time the f16 baseline (no speedup_vs_f16 column values).
    #[arg(long)]
    no_baseline: bool,
    /// Weights from DRAM: each call reads the next of enough distinct copies to exceed twice the last-level cache (default: cache-hot).
    #[arg(long)]
    cold: bool,
    /// Skip the read-bandwidth and compute-roof probes (no %bw and %peak figures).
    #[arg(long)]
    no_roofline: bool,
    /// Seed of the synthetic weights and activations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Also append every row to this CSV file, flushed as each completes.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BandwidthArgs {
    /// Thread counts, comma-separated (default: 1 up to the number of cores).
    #[arg(long, short = 't', value_delimiter = ',', value_parser = parse_positive)]
    threads: Vec<usize>,
    /// Threading strategy: 'pool' (persistent spin-then-park workers) or 'rayon'.
    #[arg(long, default_value = "pool", value_parser = parse_threading)]
    threading: Threading,
    /// Pin thread i to core i.
    #[arg(long)]
    pin: bool,
    /// Output: an aligned table or CSV (probe, isa, threads, value, unit).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// The configuration file (see configs/*.toml); with --resume, defaults to the run's config.toml.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Output directory (default: reports/out/<time>-<name>/).
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue an interrupted sweep in this run directory: measurements already in its results.csv are skipped, new rows appended.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

/// Parses the arguments, runs the command and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_config(
            Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME),
            None,
            OutputFormat::Table,
            false,
        ),
        Some(Command::Kernels { format }) => list_kernels(format).map(|_| ExitCode::SUCCESS),
        Some(Command::Layer(args)) => run_layer(args),
        Some(Command::Bandwidth(args)) => run_bandwidth(args).map(|_| ExitCode::SUCCESS),
        Some(Command::Model(args)) => crate::model::cli::run(args),
        Some(Command::ExportGguf(args)) => crate::model::export::run(args),
        Some(Command::Generate(args)) => crate::model::generate::run(args),
        Some(Command::Sweep(args)) => {
            let config = match (&args.config, &args.resume) {
                (Some(c), _) => Config::load(c),
                (None, Some(dir)) => Config::load(&dir.join("config.toml")),
                (None, None) => unreachable!("clap requires --config or --resume"),
            };
            let resume = args.resume.is_some();
            run_config(config, args.resume.or(args.out), args.format, resume)
        }
        Some(Command::Report(args)) => Ok(crate::report::run(args)),
        Some(Command::Import(args)) => Ok(crate::report::import::run(args)),
        Some(Command::Claims(args)) => Ok(crate::report::claims::run(args)),
        Some(Command::Check(args)) => Ok(crate::check::run(args)),
        Some(Command::CountKernel(args)) => Ok(crate::check::instructions::run_helper(args)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn list_kernels(format: ListFormat) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for k in registry::all() {
        let i = k.info();
        let available = match registry::availability(*k) {
            Ok(()) => "yes".to_string(),
            Err(missing) => format!("no (needs {missing})"),
        };
        rows.push([
            i.name.to_string(),
            i.format.name().to_string(),
            i.isa.name().to_string(),
            format!("{:.4}", i.bits_per_weight()),
            i.exact.to_string(),
            available,
        ]);
    }
    let header = [
        "name",
        "format",
        "isa",
        "bits_per_weight",
        "exact",
        "available",
    ];
    match format {
        ListFormat::Markdown => print!("{}", coverage_markdown()),
        ListFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(header)?;
            for r in &rows {
                w.write_record(r)?;
            }
            w.flush()?;
        }
        ListFormat::Table => {
            println!(
                "{:<18} {:<6} {:<8} {:>15} {:<6} available",
                header[0], header[1], header[2], header[3], header[4]
            );
            for r in &rows {
                println!(
                    "{:<18} {:<6} {:<8} {:>15} {:<6} {}",
                    r[0], r[1], r[2], r[3], r[4], r[5]
                );
            }
        }
    }
    Ok(())
}

/// The format x ISA coverage matrix of this binary as a Markdown table: a
/// cell names the kernel when it exists (marked when this CPU cannot run it).
pub fn coverage_markdown() -> String {
    use ternbench_kernels::formats::Format;
    let kernels = registry::all();
    let mut isas: Vec<_> = kernels.iter().map(|k| k.info().isa).collect();
    isas.sort();
    isas.dedup();
    let mut out = format!(
        "| format | {} |\n",
        isas.iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    out += &format!("|---|{}\n", "---|".repeat(isas.len()));
    for format in Format::ALL {
        let cells: Vec<String> = isas
            .iter()
            .map(|&isa| {
                // The lossless kernel first, then its `-lossy` variant.
                kernels
                    .iter()
                    .filter(|k| k.info().format == format && k.info().isa == isa)
                    .map(|k| format!("`{}`", k.info().name))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        out += &format!("| {} | {} |\n", format, cells.join(" | "));
    }
    out
}

fn finish(summary: layer::LayerSummary, sink: &Sink) -> ExitCode {
    if let Some(path) = sink.file_path() {
        eprintln!(
            "{} rows written to {}",
            summary.rows_written,
            path.display()
        );
    }
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: {} kernel(s) failed verification; their rows have verified=false and no speed",
            summary.failures.len()
        );
        ExitCode::FAILURE
    }
}

fn run_layer(args: LayerArgs) -> anyhow::Result<ExitCode> {
    let bench = LayerBench {
        kernels: args.kernel.0,
        shapes: args.shape,
        batches: args.batch,
        threads: args.threads,
        threading: args.threading,
        pin: args.pin,
        baseline: !args.no_baseline,
        plan: TimingPlan {
            warmup: Duration::from_millis(args.warmup_ms),
            reps: args.reps,
            min_sample: Duration::from_millis(args.min_sample_ms),
        },
        seed: args.seed,
        cold: args.cold,
        roofline: !args.no_roofline,
        skip: Default::default(),
    };
    let mut sink = Sink::new(args.format, args.out.as_deref())?;
    let summary = layer::run(&bench, &mut sink)?;
    Ok(finish(summary, &sink))
}

fn run_bandwidth(args: BandwidthArgs) -> anyhow::Result<()> {
    let sys = SystemInfo::get();
    let threads = if args.threads.is_empty() {
        (1..=sys.physical_cores.max(1)).collect()
    } else {
        args.threads
    };
    let roof = Roofline::measure(
        &threads,
        args.threading,
        args.pin,
        sys.last_level_cache_bytes,
    )?;
    // (probe, isa, threads, value, unit)
    let mut lines: Vec<(&str, &str, usize, f64, &str)> = Vec::new();
    for (&t, &gbs) in &roof.read_gbs {
        lines.push(("read", peak::read_isa().name(), t, gbs, "GB/s"));
    }
    for probe in peak::all().iter().filter(|p| p.is_available()) {
        for &t in &threads {
            if let Some(&gops) = roof.peak_gops.get(&(probe.name, t)) {
                lines.push((probe.name, probe.isa.name(), t, gops, "GOP/s"));
            }
        }
    }
    match args.format {
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(["probe", "isa", "threads", "value", "unit"])?;
            for (probe, isa, t, v, unit) in &lines {
                let (t, v) = (t.to_string(), v.to_string());
                w.write_record([*probe, *isa, &t, &v, *unit])?;
            }
            w.flush()?;
        }
        OutputFormat::Table => {
            println!(
                "{} ({} cores), {}",
                sys.cpu_model, sys.physical_cores, sys.caches
            );
            println!(
                "{:<16} {:<8} {:>7} {:>10} unit",
                "probe", "isa", "threads", "value"
            );
            for (probe, isa, t, v, unit) in &lines {
                println!("{probe:<16} {isa:<8} {t:>7} {v:>10.1} {unit}");
            }
            println!(
                "(GOP/s count 2 per multiply-add; read = best of 3 passes over {} MiB)",
                probe_bytes(sys.last_level_cache_bytes) >> 20
            );
        }
    }
    Ok(())
}

fn run_config(
    config: Result<Config, crate::config::ConfigError>,
    out: Option<PathBuf>,
    format: OutputFormat,
    resume: bool,
) -> anyhow::Result<ExitCode> {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let (true, Some(dir)) = (resume, &out) {
        if !dir.is_dir() {
            eprintln!(
                "error: --resume {}: no such run directory; expected the directory of an interrupted sweep",
                dir.display()
            );
            return Ok(ExitCode::from(2));
        }
    }
    let dir = out.unwrap_or_else(|| default_out_dir(&config.name));
    crate::sweep::run(&config, &dir, format, resume)
}

/// reports/out/<UTC time>-<name>, e.g. reports/out/20261124-184313-default.
fn default_out_dir(name: &str) -> PathBuf {
    let stamp: String = utc_timestamp(std::time::SystemTime::now())
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    Path::new("reports")
        .join("out")
        .join(format!("{stamp}-{name}"))
}
