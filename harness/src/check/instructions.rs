//! Instruction counts of kernel calls under valgrind's callgrind.
//!
//! `ternbench check` runs its own binary once per (kernel, shape, batch) as
//! `valgrind --tool=callgrind --toggle-collect=ternbench_gate_kernel_calls
//! ternbench count-kernel ...` (a hidden subcommand). The helper generates the
//! same seeded synthetic weights and activations as `ternbench layer`, packs
//! them, checks the kernel's output against the scalar reference, then calls
//! [`ternbench_gate_kernel_calls`], which runs the matrix multiply `calls`
//! times on one thread. `--toggle-collect` turns collection on only while that
//! function (and what it calls) runs, so weight generation, packing,
//! verification and start-up are not counted: the figure is the instructions
//! retired by the kernel calls (and the `matmul` driver's shape checks around
//! them), divided by `calls`.
//!
//! valgrind executes the program on a synthetic CPU, so the count is the same
//! from run to run for the same binary and input, however loaded the machine
//! is. It changes with the code, the compiler and its flags: the baseline
//! records the rustc version and the commit. valgrind does not implement
//! AVX-512, so only scalar and AVX2 (NEON on arm64) kernels are counted; the
//! helper refuses a kernel valgrind's virtual CPU does not report.

use crate::layer::Shape;
use crate::synth;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::Weights;
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::parallel::{matmul, Executor};
use ternbench_kernels::verify::Expected;
use ternbench_kernels::{registry, Kernel, PreparedInput, PreparedWeights};

/// The symbol callgrind's `--toggle-collect` names.
pub const TOGGLE_SYMBOL: &str = "ternbench_gate_kernel_calls";

/// One (shape, batch) case of a count: `ROWSxCOLS:BATCH` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub shape: Shape,
    pub batch: usize,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.shape, self.batch)
    }
}

impl std::str::FromStr for Case {
    type Err = String;

    fn from_str(s: &str) -> Result<Case, String> {
        let expected = "expected ROWSxCOLS:BATCH, e.g. 128x2560:1";
        let (shape, batch) = s
            .split_once(':')
            .ok_or_else(|| format!("case '{s}': {expected}"))?;
        let shape = shape.parse::<Shape>()?;
        match batch.trim().parse::<usize>() {
            Ok(batch) if batch > 0 => Ok(Case { shape, batch }),
            _ => Err(format!("case '{s}': {expected}")),
        }
    }
}

/// Arguments of the hidden `ternbench count-kernel` helper.
#[derive(Args, Debug, Clone)]
pub struct CountArgs {
    /// Kernel name (never `auto`).
    #[arg(long)]
    pub kernel: String,
    /// Cases ROWSxCOLS:BATCH, comma-separated; each is one call of the counted function.
    #[arg(long, value_delimiter = ',', required = true)]
    pub case: Vec<Case>,
    /// Kernel calls inside the counted function, per case.
    #[arg(long, default_value_t = 1)]
    pub calls: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Seeded weights of `shape` (as `ternbench layer` draws them for its first shape).
pub fn weights(shape: Shape, seed: u64) -> Weights {
    Weights::Ternary(synth::ternary_matrix(shape.rows, shape.cols, seed ^ 1))
}

/// Seeded activations for `batch` tokens.
pub fn activations(shape: Shape, batch: usize, seed: u64) -> Vec<f32> {
    synth::activations(batch, shape.cols, seed ^ 0x5eed ^ (batch as u64) << 32)
}

/// The counted region: `calls` matrix multiplies with `kernel` on one thread.
///
/// Unmangled and never inlined, so callgrind can toggle collection on its
/// symbol; nothing else runs inside it.
#[no_mangle]
#[inline(never)]
pub fn ternbench_gate_kernel_calls(
    kernel: &dyn Kernel,
    w: &PreparedWeights,
    x: &PreparedInput,
    exec: &Executor,
    y: &mut [f32],
    calls: usize,
) -> Result<(), ternbench_kernels::KernelError> {
    for _ in 0..calls {
        matmul(kernel, w, x, exec, y)?;
        std::hint::black_box(&mut *y);
    }
    Ok(())
}

/// Runs the helper: for each case in order, verify the kernel's output,
/// then one call of the counted function. Exit 0; 2 with the reason for an
/// unknown kernel or one this CPU (or valgrind's virtual CPU) cannot run;
/// 1 when the kernel's output is wrong.
pub fn run_helper(args: CountArgs) -> ExitCode {
    let kernel = match registry::find(&args.kernel) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.calls == 0 {
        eprintln!("error: --calls: 0; expected at least 1");
        return ExitCode::from(2);
    }
    let info = kernel.info();
    let exec = Executor::serial();
    for case in &args.case {
        let w = weights(case.shape, args.seed);
        let x = activations(case.shape, case.batch, args.seed);
        let prepared = match kernel.prepare(&w) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {}: packing {}: {e}", info.name, case.shape);
                return ExitCode::from(2);
            }
        };
        let standard = pack_standard(info.name, info.format, &w).expect("packing succeeded above");
        let act = Activations::quantize(
            info.format.activation_scheme(),
            &x,
            case.batch,
            case.shape.cols,
        );
        let input = kernel.prepare_input(act.clone());
        let mut y = vec![f32::NAN; case.batch * case.shape.rows];
        if let Err(e) = matmul(kernel, &prepared, &input, &exec, &mut y) {
            eprintln!("error: {}: {e}", info.name);
            return ExitCode::from(2);
        }
        let verdict = Expected::new(&standard, &act).check(kernel, &y);
        if !verdict.ok {
            eprintln!(
                "error: {}",
                verdict
                    .first_failure
                    .unwrap_or_else(|| "verification failed".into())
            );
            return ExitCode::FAILURE;
        }
        let first = y.clone();
        if let Err(e) =
            ternbench_gate_kernel_calls(kernel, &prepared, &input, &exec, &mut y, args.calls)
        {
            eprintln!("error: {}: {e}", info.name);
            return ExitCode::FAILURE;
        }
        if y.iter()
            .zip(&first)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            eprintln!(
                "error: {}: output changed between calls (nondeterministic kernel)",
                info.name
            );
            return ExitCode::FAILURE;
        }
        println!(
            "verified {} {} batch {} ({} calls counted)",
            info.name, case.shape, case.batch, args.calls
        );
    }
    ExitCode::SUCCESS
}

/// The installed valgrind's version (`valgrind-3.19.0`), or why it cannot run.
pub fn valgrind_version() -> Result<String, String> {
    let out = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "cannot run valgrind ({e}); the instruction counts need it on PATH (Debian/Ubuntu: apt-get install valgrind)"
            )
        })?;
    if !out.status.success() {
        return Err("'valgrind --version' failed".into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One counting job: one kernel, several cases, one valgrind process.
#[derive(Clone, Debug)]
pub struct CountJob {
    pub kernel: &'static str,
    pub cases: Vec<Case>,
    pub calls: usize,
    pub seed: u64,
}

/// Why a count could not be made.
#[derive(Debug, Clone, PartialEq)]
pub enum CountError {
    /// The helper refused the kernel (exit 2: e.g. valgrind's CPU lacks a feature).
    Refused(String),
    /// valgrind or the helper failed otherwise (a wrong output, a crash).
    Failed(String),
}

/// Instructions per kernel call for each case of `job`, counted by callgrind
/// running `exe`: `--dump-after` writes one profile part per call of the
/// counted function (`OUT.1`, `OUT.2`, ... in case order).
pub fn count(exe: &Path, job: &CountJob, scratch: &Path) -> Result<Vec<u64>, CountError> {
    let out_file = scratch.join(format!("callgrind-{}.out", job.kernel));
    let cases: Vec<String> = job.cases.iter().map(Case::to_string).collect();
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--toggle-collect={TOGGLE_SYMBOL}"))
        .arg(format!("--dump-after={TOGGLE_SYMBOL}"))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg("--quiet")
        .arg(exe)
        .arg("count-kernel")
        .args(["--kernel", job.kernel])
        .args(["--case", &cases.join(",")])
        .args(["--calls", &job.calls.to_string()])
        .args(["--seed", &job.seed.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CountError::Failed(format!("cannot start valgrind: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let what = job.kernel;
    let part = |i: usize| PathBuf::from(format!("{}.{i}", out_file.display()));
    let cleanup = || {
        let _ = std::fs::remove_file(&out_file);
        for i in 1..=job.cases.len() + 1 {
            let _ = std::fs::remove_file(part(i));
        }
    };
    if output.status.code() == Some(2) {
        cleanup();
        return Err(CountError::Refused(format!("{what}: {stderr}")));
    }
    if !output.status.success() {
        cleanup();
        return Err(CountError::Failed(format!(
            "{what}: valgrind run failed ({}): {stderr}",
            output.status
        )));
    }
    let mut counts = Vec::with_capacity(job.cases.len());
    for (i, case) in job.cases.iter().enumerate() {
        let path = part(i + 1);
        let total = std::fs::read_to_string(&path)
            .ok()
            .as_deref()
            .and_then(parse_total);
        match total {
            Some(n) if n > 0 => counts.push(n / job.calls as u64),
            Some(_) => {
                cleanup();
                return Err(CountError::Failed(format!(
                    "{what} {case}: callgrind counted 0 instructions; was {TOGGLE_SYMBOL} inlined or stripped?"
                )));
            }
            None => {
                cleanup();
                return Err(CountError::Failed(format!(
                    "{what} {case}: no readable callgrind part {} with a 'summary:' line",
                    path.display()
                )));
            }
        }
    }
    cleanup();
    Ok(counts)
}

/// The Ir total of a callgrind output file (`summary:` or `totals:` line).
pub fn parse_total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l
            .strip_prefix("summary:")
            .or_else(|| l.strip_prefix("totals:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Per-case counts of one job, or why not.
pub type JobResult = Result<Vec<u64>, CountError>;

/// Runs every job on up to `parallel` valgrind processes at once; results in job order.
pub fn count_all(exe: &Path, jobs: &[CountJob], parallel: usize, scratch: &Path) -> Vec<JobResult> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<JobResult>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..parallel.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let r = count(exe, job, scratch);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(CountError::Failed("job did not run".into())))
        })
        .collect()
}

/// A scratch directory for callgrind's output files, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("ternbench-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callgrind_totals_parse() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123456\n\nfn=(1) f\n1 5\ntotals: 123456\n";
        assert_eq!(parse_total(text), Some(123456));
        assert_eq!(parse_total("events: Ir\ntotals: 42\n"), Some(42));
        assert_eq!(parse_total("events: Ir\n"), None);
        assert_eq!(parse_total("summary: x\n"), None);
    }

    #[test]
    fn cases_parse_and_refuse_bad_input() {
        let c: Case = "128x2560:4".parse().unwrap();
        assert_eq!((c.shape.rows, c.shape.cols, c.batch), (128, 2560, 4));
        assert_eq!(c.to_string(), "128x2560:4");
        for bad in ["128x2560", "128x2560:0", "128:1", "128x2560:b"] {
            assert!(bad.parse::<Case>().is_err(), "{bad}");
        }
    }
}
