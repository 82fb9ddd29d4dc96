//! Energy per measurement, from three sources (the `energy_source` column):
//!
//! - `rapl`: Linux powercap counters of the CPU packages
//!   (`<root>/intel-rapl:N/energy_uj`, `<root>` normally
//!   `/sys/class/powercap`; AMD Zen exposes the same zones), read before and
//!   after the measurement. A counter that wrapped (end < start) is
//!   corrected with the zone's `max_energy_range_uj`; only one wrap per
//!   measurement can be detected, which at 100 W takes tens of minutes. Only
//!   package zones (`name` = `package-N`) are summed: their sub-zones
//!   (core, uncore, dram) are parts of them or outside the package, and
//!   `psys` overlaps them. `energy_uj` is readable only by root on most
//!   systems since Linux 5.10 (CVE-2020-8694); then the meter is unavailable
//!   and says so. It measures the whole package, so anything else running
//!   is counted too.
//! - `cpu-time`: process CPU seconds (getrusage: user + system, all
//!   threads) x watts per core, a figure given by the user. A **proxy**,
//!   not a measurement: it knows nothing of frequency, idle cores, memory or
//!   uncore power.
//! - `model`: the arithmetic-operation energy of the BitNet papers,
//!   E = adds x pJ_add + muls x pJ_mul for the matrix multiplies of a
//!   token, with the constants of `configs/energy-constants.csv` (copied
//!   from the project's reference data with their sources, embedded in the
//!   binary) at 45 nm or 7 nm, plus a separately reported memory term:
//!   weight bytes read per token x 160 pJ/byte (Horowitz's 45 nm DRAM figure
//!   as tabulated by Han et al., ICLR 2016; there is no published 7 nm
//!   figure, and DRAM access energy is not set by the CPU's node, so the same
//!   constant serves both nodes). See [`ArithmeticModel`] for what it
//!   leaves out.
//!
//! Layer rows leave `energy_j_per_token` empty: a layer call is not a token,
//! and a per-call figure under that column would mislead. The model runner
//! takes an [`EnergyPlan`]: it reads each meter around every timed ppN /
//! tgN run and divides by the tokens, and asks [`ArithmeticModel::token`]
//! for the model figure; sources that cannot be used here are listed with
//! the reason and give no figure.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why an energy source cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Energy measured between [`EnergyMeter::start`] and [`EnergyMeter::stop`].
#[derive(Debug, Clone, PartialEq)]
pub struct Joules {
    pub joules: f64,
    /// `rapl` or `cpu-time`: the `energy_source` column.
    pub source: &'static str,
    /// What the figure covers, e.g. "package-0 + package-1" or the proxy's watts.
    pub note: String,
}

/// A reading taken at `start`.
#[derive(Debug, Clone)]
pub enum Mark {
    Counters(Vec<u64>),
    CpuSeconds(f64),
}

/// A meter read around a measurement.
#[derive(Debug, Clone)]
pub enum EnergyMeter {
    Rapl(Rapl),
    /// CPU seconds x this many watts per busy core.
    CpuTime {
        watts_per_core: f64,
    },
}

impl EnergyMeter {
    /// The meter named `rapl` (zones under `powercap_root`) or `cpu-time`
    /// (with `watts_per_core`), or why it cannot be used.
    pub fn open(
        name: &str,
        powercap_root: &Path,
        watts_per_core: Option<f64>,
    ) -> Result<EnergyMeter, Unavailable> {
        match name {
            "rapl" => Rapl::open(powercap_root).map(EnergyMeter::Rapl),
            "cpu-time" => match watts_per_core {
                Some(w) if w.is_finite() && w > 0.0 => {
                    Ok(EnergyMeter::CpuTime { watts_per_core: w })
                }
                _ => Err(Unavailable(
                    "cpu-time energy needs watts per core (a positive number)".into(),
                )),
            },
            "model" => Err(Unavailable(
                "'model' energy is computed, not measured: use ArithmeticModel".into(),
            )),
            other => Err(Unavailable(format!(
                "unknown energy source '{other}'; expected rapl, cpu-time or model"
            ))),
        }
    }

    /// The `energy_source` label.
    pub fn source(&self) -> &'static str {
        match self {
            EnergyMeter::Rapl(_) => "rapl",
            EnergyMeter::CpuTime { .. } => "cpu-time",
        }
    }

    pub fn start(&self) -> Result<Mark, Unavailable> {
        match self {
            EnergyMeter::Rapl(r) => r.read().map(Mark::Counters),
            EnergyMeter::CpuTime { .. } => process_cpu_seconds().map(Mark::CpuSeconds),
        }
    }

    pub fn stop(&self, mark: &Mark) -> Result<Joules, Unavailable> {
        match (self, mark) {
            (EnergyMeter::Rapl(r), Mark::Counters(start)) => {
                let end = r.read()?;
                Ok(Joules {
                    joules: r.joules_between(start, &end),
                    source: "rapl",
                    note: r.zone_names().join(" + "),
                })
            }
            (EnergyMeter::CpuTime { watts_per_core }, Mark::CpuSeconds(start)) => {
                let secs = (process_cpu_seconds()? - start).max(0.0);
                Ok(Joules {
                    joules: secs * watts_per_core,
                    source: "cpu-time",
                    note: format!(
                        "proxy: {secs:.3} CPU s x {watts_per_core} W per core, not a measurement"
                    ),
                })
            }
            _ => Err(Unavailable("stop() with a mark from another meter".into())),
        }
    }
}

/// The energy sources of a model run: the meters that could be opened, the
/// arithmetic model if asked, and why the others are skipped.
#[derive(Debug, Clone, Default)]
pub struct EnergyPlan {
    pub meters: Vec<EnergyMeter>,
    pub model: Option<ArithmeticModel>,
    /// "SOURCE unavailable: why", one per source that could not be used.
    pub skipped: Vec<String>,
}

impl EnergyPlan {
    /// No energy figures.
    pub fn none() -> EnergyPlan {
        EnergyPlan::default()
    }

    /// Opens `sources` (`rapl`, `cpu-time`, `model`); a source that cannot
    /// be used here goes to `skipped` with the reason.
    pub fn open(
        sources: &[String],
        powercap_root: &Path,
        watts_per_core: Option<f64>,
        node: Node,
    ) -> EnergyPlan {
        let mut plan = EnergyPlan::none();
        for s in sources {
            let opened = if s == "model" {
                ArithmeticModel::new(node).map(|m| plan.model = Some(m))
            } else {
                EnergyMeter::open(s, powercap_root, watts_per_core).map(|m| plan.meters.push(m))
            };
            if let Err(e) = opened {
                plan.skipped.push(format!("{s} unavailable: {e}"));
            }
        }
        plan
    }

    /// The `energy_source` labels of the figures, in row order: meters, then `model`.
    pub fn sources(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self.meters.iter().map(|m| m.source()).collect();
        if self.model.is_some() {
            out.push("model");
        }
        out
    }
}

/// One RAPL package zone.
#[derive(Debug, Clone)]
struct Zone {
    name: String,
    energy: PathBuf,
    max_range_uj: u64,
}

/// The package zones of the powercap tree.
#[derive(Debug, Clone)]
pub struct Rapl {
    zones: Vec<Zone>,
}

/// The default powercap root on Linux.
pub const POWERCAP_ROOT: &str = "/sys/class/powercap";

fn read_u64(path: &Path) -> Result<u64, Unavailable> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "permission denied (energy_uj is readable only by root on most Linux systems since 5.10)"
                .to_string()
        } else {
            e.to_string()
        };
        Unavailable(format!("{}: {why}", path.display()))
    })?;
    text.trim().parse::<u64>().map_err(|_| {
        Unavailable(format!(
            "{}: '{}' is not a counter value (expected an unsigned integer)",
            path.display(),
            text.trim()
        ))
    })
}

impl Rapl {
    /// Finds the package zones `intel-rapl:N` under `root` and checks that
    /// their counters can be read.
    pub fn open(root: &Path) -> Result<Rapl, Unavailable> {
        let entries = std::fs::read_dir(root).map_err(|e| {
            Unavailable(format!(
                "RAPL unavailable: cannot list {} ({e}); no powercap driver on this machine",
                root.display()
            ))
        })?;
        let mut dirs: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("intel-rapl:")?.parse::<u32>().ok()?;
                Some((n, e.path()))
            })
            .collect();
        dirs.sort();
        let mut zones = Vec::new();
        for (_, dir) in dirs {
            let name = std::fs::read_to_string(dir.join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            if !name.starts_with("package") {
                continue; // psys and others overlap the packages
            }
            let max_range_uj = read_u64(&dir.join("max_energy_range_uj"))?;
            let energy = dir.join("energy_uj");
            read_u64(&energy)?;
            zones.push(Zone {
                name,
                energy,
                max_range_uj,
            });
        }
        if zones.is_empty() {
            return Err(Unavailable(format!(
                "RAPL unavailable: no package zone (intel-rapl:N with name package-N) under {}",
                root.display()
            )));
        }
        Ok(Rapl { zones })
    }

    pub fn zone_names(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.name.clone()).collect()
    }

    /// The counters of every package zone, in microjoules.
    pub fn read(&self) -> Result<Vec<u64>, Unavailable> {
        self.zones.iter().map(|z| read_u64(&z.energy)).collect()
    }

    /// Joules between two readings, correcting one wrap-around per zone.
    pub fn joules_between(&self, start: &[u64], end: &[u64]) -> f64 {
        self.zones
            .iter()
            .zip(start.iter().zip(end))
            .map(|(z, (&a, &b))| wrapped_delta(a, b, z.max_range_uj) as f64 * 1e-6)
            .sum()
    }
}

/// end - start for a counter that wraps to 0 after `max` (at most one wrap).
pub fn wrapped_delta(start: u64, end: u64, max: u64) -> u64 {
    if end >= start {
        end - start
    } else {
        max.saturating_sub(start) + end
    }
}

/// User + system CPU seconds of this process (all threads).
pub fn process_cpu_seconds() -> Result<f64, Unavailable> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete `rusage` into the pointer, which
    // points to memory of that type; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Err(Unavailable(format!(
            "getrusage failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: getrusage returned 0, so it initialised the struct.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// The energy constants, embedded: `configs/energy-constants.csv`.
pub const ENERGY_CONSTANTS: &str = include_str!("../../../configs/energy-constants.csv");

/// Process node of the arithmetic constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Nm45,
    Nm7,
}

impl Node {
    pub fn from_name(s: &str) -> Option<Node> {
        match s {
            "45" | "45nm" => Some(Node::Nm45),
            "7" | "7nm" => Some(Node::Nm7),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Node::Nm45 => "45nm",
            Node::Nm7 => "7nm",
        }
    }
}

/// The arithmetic a weight format costs per weight and token, in the
/// papers' accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// fp16 weights and activations: one fp16 multiply and one fp16 add.
    Fp16MulAdd,
    /// Ternary weights, int8 activations: one int8 add (BitNet's count;
    /// multiplies by -1/0/+1 are not multiplies).
    TernaryInt8Add,
    /// 8- or 4-bit integer weights, int8 activations: one int8 multiply and
    /// one int8 add (this project's extension of the same accounting).
    Int8MulAdd,
}

impl Arithmetic {
    /// The accounting of a ternbench format name (`f16`, `i2s`, `tq2`,
    /// `tq1`, `q8_0`, `q4_0`), if it has one.
    pub fn of_format(format: &str) -> Option<Arithmetic> {
        match format {
            "f16" => Some(Arithmetic::Fp16MulAdd),
            "i2s" | "tq2" | "tq1" | "tl1" | "tl2" => Some(Arithmetic::TernaryInt8Add),
            "q8_0" | "q4_0" => Some(Arithmetic::Int8MulAdd),
            _ => None,
        }
    }
}

/// Arithmetic (and weight-traffic) energy of one token.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEnergy {
    pub adds: u64,
    pub muls: u64,
    /// adds x pJ_add + muls x pJ_mul, in joules.
    pub arithmetic_j: f64,
    /// Weight bytes read per token.
    pub weight_bytes: u64,
    /// weight_bytes x the DRAM pJ/byte constant, in joules (reported apart).
    pub memory_j: f64,
}

impl ModelEnergy {
    pub fn total_j(&self) -> f64 {
        self.arithmetic_j + self.memory_j
    }
}

/// The papers' arithmetic-energy model with the embedded constants.
///
/// What it leaves out (so its figures are lower bounds of a kind, and
/// comparable only with each other): the multiplies by the weight and
/// activation scales; accumulator width (int32 accumulation is counted as
/// int8 adds, as the papers do); activation quantization; everything that
/// is not a matrix multiply (attention over the KV cache, norms, RoPE,
/// softmax, sampling); loads and stores in registers and caches; what a real
/// SIMD instruction does (x86 `maddubs` multiplies int8 values even for
/// ternary weights; LUT kernels look up tables instead of adding); reads of
/// activations and the KV cache; static and uncore power. The memory term
/// counts weight bytes only, each read once per token from DRAM.
#[derive(Clone, Debug)]
pub struct ArithmeticModel {
    pub node: Node,
    add_fp16: f64,
    mul_fp16: f64,
    add_int8: f64,
    mul_int8: f64,
    dram_pj_per_byte: f64,
}

impl ArithmeticModel {
    /// The model at `node`, from the embedded constants.
    pub fn new(node: Node) -> Result<ArithmeticModel, Unavailable> {
        Self::from_csv(ENERGY_CONSTANTS, "configs/energy-constants.csv", node)
    }

    /// The model from constants CSV `text` (read from `file`).
    pub fn from_csv(text: &str, file: &str, node: Node) -> Result<ArithmeticModel, Unavailable> {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut table: Vec<(String, String, Option<f64>, Option<f64>)> = Vec::new();
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| Unavailable(format!("{file}:{line}: {e}")))?;
            let num = |j: usize, col: &str| -> Result<Option<f64>, Unavailable> {
                let v = rec.get(j).unwrap_or("").trim();
                if v.is_empty() {
                    return Ok(None);
                }
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .map(Some)
                    .ok_or_else(|| {
                        Unavailable(format!(
                            "{file}:{line}: {col} is '{v}'; expected a positive number of picojoules"
                        ))
                    })
            };
            table.push((
                rec.get(0).unwrap_or("").trim().to_string(),
                rec.get(1).unwrap_or("").trim().to_string(),
                num(2, "pj_45nm")?,
                num(3, "pj_7nm")?,
            ));
        }
        let get = |op: &str, bits: &str, fallback_45: bool| -> Result<f64, Unavailable> {
            let row = table
                .iter()
                .find(|r| r.0 == op && r.1 == bits)
                .ok_or_else(|| Unavailable(format!("{file}: no row for {op} {bits}")))?;
            let v = match node {
                Node::Nm45 => row.2,
                Node::Nm7 => row.3.or(if fallback_45 { row.2 } else { None }),
            };
            v.ok_or_else(|| {
                Unavailable(format!("{file}: {op} {bits} has no {} value", node.name()))
            })
        };
        Ok(ArithmeticModel {
            node,
            add_fp16: get("add", "fp16", false)?,
            mul_fp16: get("mul", "fp16", false)?,
            add_int8: get("add", "int8", false)?,
            mul_int8: get("mul", "int8", false)?,
            // DRAM energy does not follow the logic node: the 45 nm figure serves both.
            dram_pj_per_byte: get("dram_read", "byte", true)?,
        })
    }

    /// Picojoules of arithmetic per weight and token.
    pub fn pj_per_weight(&self, a: Arithmetic) -> f64 {
        match a {
            Arithmetic::Fp16MulAdd => self.add_fp16 + self.mul_fp16,
            Arithmetic::TernaryInt8Add => self.add_int8,
            Arithmetic::Int8MulAdd => self.add_int8 + self.mul_int8,
        }
    }

    /// Joules of reading `bytes` of weights from DRAM.
    pub fn memory_joules(&self, bytes: f64) -> f64 {
        bytes * self.dram_pj_per_byte * 1e-12
    }

    /// One token through matrices of (arithmetic, rows, cols, weight bytes).
    pub fn token(&self, matrices: &[(Arithmetic, usize, usize, u64)]) -> ModelEnergy {
        let mut e = ModelEnergy {
            adds: 0,
            muls: 0,
            arithmetic_j: 0.0,
            weight_bytes: 0,
            memory_j: 0.0,
        };
        for &(a, rows, cols, bytes) in matrices {
            let n = rows as u64 * cols as u64;
            e.adds += n;
            if a != Arithmetic::TernaryInt8Add {
                e.muls += n;
            }
            e.arithmetic_j += n as f64 * self.pj_per_weight(a) * 1e-12;
            e.weight_bytes += bytes;
        }
        e.memory_j = e.weight_bytes as f64 * self.dram_pj_per_byte * 1e-12;
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake powercap tree: two packages, a sub-zone and a psys zone.
    fn fake_tree(dir: &Path, energies: [&str; 2], max: u64) {
        for (i, name) in ["intel-rapl:0", "intel-rapl:1"].iter().enumerate() {
            let z = dir.join(name);
            std::fs::create_dir_all(&z).unwrap();
            std::fs::write(z.join("name"), format!("package-{i}\n")).unwrap();
            std::fs::write(z.join("energy_uj"), format!("{}\n", energies[i])).unwrap();
            std::fs::write(z.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
        }
        let core = dir.join("intel-rapl:0:0");
        std::fs::create_dir_all(&core).unwrap();
        std::fs::write(core.join("name"), "core\n").unwrap();
        std::fs::write(core.join("energy_uj"), "999999\n").unwrap();
        let psys = dir.join("intel-rapl:2");
        std::fs::create_dir_all(&psys).unwrap();
        std::fs::write(psys.join("name"), "psys\n").unwrap();
        std::fs::write(psys.join("energy_uj"), "5\n").unwrap();
        std::fs::write(psys.join("max_energy_range_uj"), "100\n").unwrap();
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ternbench-rapl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rapl_sums_package_zones_and_handles_wrap_around() {
        let dir = temp("ok");
        fake_tree(&dir, ["1000000", "262143000000"], 262_143_328_850);
        let meter = EnergyMeter::open("rapl", &dir, None).unwrap();
        assert_eq!(meter.source(), "rapl");
        let mark = meter.start().unwrap();
        // package-0 advances 2.5 J; package-1 wraps past its maximum, +1.5 J.
        std::fs::write(dir.join("intel-rapl:0/energy_uj"), "3500000").unwrap();
        std::fs::write(dir.join("intel-rapl:1/energy_uj"), "1171150").unwrap();
        let j = meter.stop(&mark).unwrap();
        assert!((j.joules - 4.0).abs() < 1e-9, "{j:?}");
        assert_eq!(
            (j.source, j.note.as_str()),
            ("rapl", "package-0 + package-1")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rapl_says_why_it_is_unavailable() {
        let dir = temp("none");
        let e = Rapl::open(&dir.join("missing")).unwrap_err();
        assert!(
            e.0.contains("cannot list") && e.0.contains("missing"),
            "{e}"
        );
        let e = Rapl::open(&dir).unwrap_err();
        assert!(e.0.contains("no package zone"), "{e}");
        fake_tree(&dir, ["12", "x"], 100);
        let e = Rapl::open(&dir).unwrap_err();
        assert!(
            e.0.contains("intel-rapl:1/energy_uj") && e.0.contains("'x'"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // This machine's real tree: either readable, or a reason is given.
        match Rapl::open(Path::new(POWERCAP_ROOT)) {
            Ok(r) => assert!(!r.zone_names().is_empty()),
            Err(e) => assert!(!e.0.is_empty()),
        }
    }

    #[test]
    fn energy_plan_skips_unusable_sources_with_a_reason() {
        let dir = temp("plan");
        let sources: Vec<String> = ["rapl", "cpu-time", "model"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let plan = EnergyPlan::open(&sources, &dir.join("none"), Some(3.0), Node::Nm7);
        assert_eq!(plan.sources(), ["cpu-time", "model"]);
        assert_eq!(plan.skipped.len(), 1);
        assert!(
            plan.skipped[0].starts_with("rapl unavailable: RAPL unavailable: cannot list"),
            "{:?}",
            plan.skipped
        );
        fake_tree(&dir, ["10", "20"], 1000);
        let plan = EnergyPlan::open(&sources[..1], &dir, None, Node::Nm7);
        assert_eq!((plan.sources(), plan.skipped.len()), (vec!["rapl"], 0));
        let plan = EnergyPlan::open(&sources[1..2], &dir, None, Node::Nm7);
        assert!(plan.sources().is_empty() && plan.skipped[0].contains("watts per core"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrap_around_arithmetic() {
        assert_eq!(wrapped_delta(10, 25, 100), 15);
        assert_eq!(wrapped_delta(90, 5, 100), 15);
        assert_eq!(wrapped_delta(7, 7, 100), 0);
    }

    #[test]
    fn cpu_time_is_a_labelled_proxy() {
        let meter = EnergyMeter::open("cpu-time", Path::new("/nonexistent"), Some(10.0)).unwrap();
        let mark = meter.start().unwrap();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let j = meter.stop(&mark).unwrap();
        assert_eq!(j.source, "cpu-time");
        assert!(j.note.contains("proxy"), "{}", j.note);
        // About 0.05 CPU s x 10 W; allow for scheduling.
        assert!(j.joules > 0.1 && j.joules < 5.0, "{j:?}");
        assert!(EnergyMeter::open("cpu-time", Path::new("/"), None).is_err());
        assert!(EnergyMeter::open("joulemeter", Path::new("/"), None)
            .unwrap_err()
            .0
            .contains("expected rapl, cpu-time or model"));
    }

    #[test]
    fn arithmetic_model_reproduces_the_published_71_4x() {
        let m = ArithmeticModel::new(Node::Nm7).unwrap();
        let fp16 = m.pj_per_weight(Arithmetic::Fp16MulAdd);
        let ternary = m.pj_per_weight(Arithmetic::TernaryInt8Add);
        // (0.16 + 0.34) / 0.007 = 71.43 (arXiv 2402.17764 / 2310.11453).
        assert!(
            (fp16 / ternary - 71.428_571).abs() < 1e-3,
            "{}",
            fp16 / ternary
        );
        // The same ratio for a whole matrix multiply (2560 x 6912, one token).
        let e16 = m.token(&[(Arithmetic::Fp16MulAdd, 2560, 6912, 2560 * 6912 * 2)]);
        let e2 = m.token(&[(Arithmetic::TernaryInt8Add, 2560, 6912, 2560 * 6912 / 4)]);
        assert!((e16.arithmetic_j / e2.arithmetic_j - 71.428_571).abs() < 1e-3);
        assert_eq!((e16.adds, e16.muls, e2.muls), (2560 * 6912, 2560 * 6912, 0));
        // 2560 x 6912 fp16 multiply-adds at 0.5 pJ.
        assert!((e16.arithmetic_j - 2560.0 * 6912.0 * 0.5e-12).abs() < 1e-15);
        // The memory term is separate: bytes x 160 pJ.
        assert_eq!(e2.weight_bytes, 2560 * 6912 / 4);
        assert!((e2.memory_j - e2.weight_bytes as f64 * 160e-12).abs() < 1e-15);
        assert!((e2.total_j() - e2.arithmetic_j - e2.memory_j).abs() < 1e-18);
        // At 45 nm: (0.4 + 1.1) / 0.03 = 50.
        let m45 = ArithmeticModel::new(Node::Nm45).unwrap();
        let r45 = m45.pj_per_weight(Arithmetic::Fp16MulAdd)
            / m45.pj_per_weight(Arithmetic::TernaryInt8Add);
        assert!((r45 - 50.0).abs() < 1e-9, "{r45}");
    }

    #[test]
    fn embedded_constants_match_the_reference_copy() {
        // configs/energy-constants.csv starts with the reference rows verbatim.
        assert!(ENERGY_CONSTANTS.starts_with(
            "operation,bits,pj_45nm,pj_7nm,source\nadd,fp32,0.9,0.38,BitNet 2310.11453 Table 2"
        ));
        let e = ArithmeticModel::from_csv(
            "operation,bits,pj_45nm,pj_7nm,source\nadd,fp16,cheap,0.16,x\n",
            "c.csv",
            Node::Nm7,
        )
        .unwrap_err();
        assert!(
            e.0.starts_with("c.csv:2:") && e.0.contains("pj_45nm"),
            "{e}"
        );
        assert_eq!(Node::from_name("7nm"), Some(Node::Nm7));
        assert_eq!(
            Arithmetic::of_format("tq2"),
            Some(Arithmetic::TernaryInt8Add)
        );
    }
}
