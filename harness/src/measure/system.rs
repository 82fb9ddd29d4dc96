//! What machine and build produced a figure: recorded once per run and copied
//! into every output row, because a speed means nothing without the CPU,
//! its caches, its memory and the build that measured it.

use std::sync::OnceLock;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
use ternbench_kernels::cpu;

#[derive(Clone, Debug, PartialEq)]
pub struct SystemInfo {
    pub cpu_model: String,
    pub cpu_vendor: String,
    /// Kernel-relevant ISA features this CPU has, space-separated.
    pub cpu_features: String,
    pub arch: String,
    pub physical_cores: usize,
    pub logical_cpus: usize,
    /// Cache sizes of cpu0, e.g. "L1d 48K, L1i 32K, L2 1024K, L3 32768K".
    pub caches: String,
    /// Size of the largest cache level in bytes (0 if unknown).
    pub last_level_cache_bytes: u64,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    /// See [`crate::huge_pages::status`].
    pub huge_pages: String,
    pub rustc: String,
    pub commit: String,
}

impl SystemInfo {
    /// Detected once per process.
    pub fn get() -> &'static SystemInfo {
        static INFO: OnceLock<SystemInfo> = OnceLock::new();
        INFO.get_or_init(SystemInfo::detect)
    }

    fn detect() -> SystemInfo {
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        let first_cpu = sys.as_ref().and_then(|s| s.cpus().first());
        let logical_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (caches, last_level_cache_bytes) = linux_caches();
        SystemInfo {
            cpu_model: first_cpu
                .map(|c| c.brand().trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            cpu_vendor: first_cpu
                .map(|c| c.vendor_id().trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            cpu_features: cpu::features().names().join(" "),
            arch: std::env::consts::ARCH.to_string(),
            physical_cores: System::physical_core_count().unwrap_or(logical_cpus),
            logical_cpus,
            caches,
            last_level_cache_bytes,
            memory_bytes: sys.as_ref().map_or(0, |s| s.total_memory()),
            os: System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
            kernel: System::kernel_version().unwrap_or_else(|_| "unknown".into()),
            huge_pages: crate::huge_pages::status(),
            rustc: env!("TERNBENCH_RUSTC").to_string(),
            commit: env!("TERNBENCH_COMMIT").to_string(),
        }
    }
}

/// Cache levels of cpu0 from Linux sysfs: ("L1d 48K, ...", largest size in bytes).
fn linux_caches() -> (String, u64) {
    let base = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut entries = Vec::new();
    let mut largest = 0u64;
    for i in 0..8 {
        let dir = base.join(format!("index{i}"));
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let suffix = match kind.as_str() {
            "Data" => "d",
            "Instruction" => "i",
            _ => "",
        };
        largest = largest.max(parse_cache_size(&size));
        entries.push(format!("L{level}{suffix} {size}"));
    }
    if entries.is_empty() {
        ("unknown".into(), 0)
    } else {
        (entries.join(", "), largest)
    }
}

/// "32768K" -> 33554432; "1M" -> 1048576; plain numbers are bytes.
fn parse_cache_size(s: &str) -> u64 {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().unwrap_or(0);
    match unit {
        "K" => n << 10,
        "M" => n << 20,
        "G" => n << 30,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("48K"), 48 << 10);
        assert_eq!(parse_cache_size("32M"), 32 << 20);
        assert_eq!(parse_cache_size("512"), 512);
        assert_eq!(parse_cache_size("?"), 0);
    }

    #[test]
    fn detection_fills_the_basics() {
        let s = SystemInfo::get();
        assert!(s.logical_cpus >= 1);
        assert!(!s.rustc.is_empty() && !s.commit.is_empty());
        assert_eq!(s.arch, std::env::consts::ARCH);
    }
}
