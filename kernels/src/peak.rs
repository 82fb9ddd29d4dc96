//! Compute-roof probes: the peak rate of the instructions the kernels' inner
//! loops are built on, so a kernel's GOP/s can be reported as a fraction of
//! what its ISA can do on this core (beside its fraction of the read
//! bandwidth).
//!
//! Each probe runs a loop of independent accumulator chains (enough of them
//! to hide the instruction's latency) with no memory traffic. `run(iters)`
//! executes `iters` loop trips and returns a checksum the caller must
//! consume; a trip performs [`PeakProbe::ops_per_iter`] operations, counting
//! 2 per multiply-add as the kernels' GOP/s do. The timing is the caller's
//! (the harness runs the probes on its worker pool).
//!
//! Which probe bounds which kernel is [`roof_for`]: the integer dot-product
//! instruction of the kernel's ISA for the integer formats, the f32 FMA of
//! the ISA for `f16`. Scalar kernels have no probe.

use crate::cpu::{self, CpuFeature};
use crate::formats::Format;
use crate::kernel::{Isa, KernelInfo};

/// What a probe measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeakKind {
    /// 8-bit integer multiply-adds accumulated into 32-bit lanes.
    Int8Dot,
    /// f32 fused multiply-adds.
    F32Fma,
}

/// One compute-roof microbenchmark.
pub struct PeakProbe {
    /// The instruction sequence, e.g. `vpdpbusd-zmm`.
    pub name: &'static str,
    /// The kernel ISA whose roof this is.
    pub isa: Isa,
    pub kind: PeakKind,
    pub requires: &'static [CpuFeature],
    /// Operations per loop trip (a multiply-add counts 2).
    pub ops_per_iter: u64,
    /// Must only be called when `requires` are present (checked by [`PeakProbe::run`]).
    body: fn(u64) -> u64,
}

impl PeakProbe {
    /// Probe built by an ISA module: `body` must check nothing itself; it is
    /// only reachable through [`PeakProbe::run`], which checks `requires`.
    pub(crate) const fn new(
        name: &'static str,
        isa: Isa,
        kind: PeakKind,
        requires: &'static [CpuFeature],
        ops_per_iter: u64,
        body: fn(u64) -> u64,
    ) -> Self {
        PeakProbe {
            name,
            isa,
            kind,
            requires,
            ops_per_iter,
            body,
        }
    }

    pub fn is_available(&self) -> bool {
        cpu::features().first_missing(self.requires).is_none()
    }

    /// Runs `iters` loop trips and returns the checksum, or `None` when this
    /// CPU lacks a required feature (never SIGILL).
    pub fn run(&self, iters: u64) -> Option<u64> {
        self.is_available().then(|| (self.body)(iters))
    }
}

/// Every probe compiled into this binary (available or not).
pub fn all() -> &'static [PeakProbe] {
    #[cfg(target_arch = "x86_64")]
    return crate::x86_64::peak::PROBES;
    #[cfg(target_arch = "aarch64")]
    return crate::aarch64::peak::PROBES;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return &[];
}

/// The wrapping sum of `words`, read the fastest plain way found: the
/// widest vector loads, each step prefetching the lines a little ahead into
/// L2, as the GEMV kernels prefetch their weights. The read-bandwidth probe
/// is built on it, so a kernel's fraction of the bandwidth roof compares it
/// with a stream at least as well fed as its own. (With the compiler's
/// 16-byte loop the probe read 14.9 GB/s at 1 thread on a
/// Sapphire-Rapids-class Xeon, and f16 GEMVs from DRAM 100-130% of it;
/// this loop reads 16.9 there, 18.1 on 2 MiB pages.)
pub fn sum_words(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    return crate::x86_64::peak::sum_words(words);
    #[cfg(not(target_arch = "x86_64"))]
    return sum_words_scalar(words);
}

/// The ISA of [`sum_words`]'s loop on this CPU (NEON is part of the aarch64
/// baseline, so the plain loop is vectorised there).
pub fn read_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    return crate::x86_64::peak::read_isa();
    #[cfg(target_arch = "aarch64")]
    return Isa::Neon;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return Isa::Scalar;
}

/// Wrapping sum of `words` with 8 independent accumulators (so loads, not
/// the adds' dependency chain, bound the loop).
pub(crate) fn sum_words_scalar(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let chunks = words.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(w);
        }
    }
    acc.iter().chain(tail).fold(0u64, |s, &v| s.wrapping_add(v))
}

/// The probe that bounds `kernel`'s arithmetic, if this binary has one.
pub fn roof_for(kernel: &KernelInfo) -> Option<&'static PeakProbe> {
    let kind = match kernel.format {
        Format::F16 => PeakKind::F32Fma,
        _ => PeakKind::Int8Dot,
    };
    // i8mm kernels are bounded by smmla, which has no probe here; their sdot
    // roof is the dotprod one.
    let isa = match kernel.isa {
        Isa::I8mm => Isa::Dotprod,
        isa => isa,
    };
    all().iter().find(|p| p.isa == isa && p.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_probes_run_and_unavailable_ones_refuse() {
        for p in all() {
            let got = p.run(1000);
            assert_eq!(got.is_some(), p.is_available(), "{}", p.name);
            assert!(p.ops_per_iter > 0);
        }
    }

    #[test]
    fn simd_kernels_have_a_roof_and_scalar_ones_none() {
        for k in crate::registry::all() {
            let info = k.info();
            let roof = roof_for(info);
            match info.isa {
                Isa::Scalar => assert!(roof.is_none(), "{}", info.name),
                // Plain NEON integer kernels widen with smull/sadalp: no probe.
                Isa::Neon if info.format != Format::F16 => {}
                _ => assert!(roof.is_some(), "{} has no compute roof", info.name),
            }
        }
    }
}
