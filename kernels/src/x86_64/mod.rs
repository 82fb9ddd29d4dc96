//! x86-64 SIMD kernels (AVX2, AVX-512, AMX). Each ISA is one submodule with the
//! same surface as [`crate::scalar`]: one file per format, each exporting a
//! unit struct implementing [`crate::Kernel`], collected in the ISA's `KERNELS`.
//!
//! Dispatch: `Kernel::compute` is safe, so every kernel checks (through
//! [`ensure_features`], a cached bit test) that the CPU has every feature its
//! `KernelInfo::requires` lists before it calls a `#[target_feature]` entry
//! point, and panics otherwise. The registry refuses such kernels earlier, so
//! the panic only fires when a caller bypasses it.
//!
//! [`prep`] holds the activation reorderings that several kernels derive once
//! per input (plain Rust, no target features).

// Tiles index accumulators by (row, token) in nested loops; iterator chains
// over two-dimensional register arrays read worse than the indices.
#![allow(clippy::needless_range_loop)]

use crate::kernel::{Kernel, KernelInfo};
use core::arch::x86_64::_mm_prefetch;

pub mod amx;
pub mod avx2;
pub mod avx512;
pub(crate) mod peak;
pub mod prep;

/// Every x86-64 SIMD kernel compiled into this binary (the registry checks
/// CPU features before handing one out).
pub static KERNELS: &[&dyn Kernel] = &[
    &avx2::i2s::I2s,
    &avx512::i2s::I2s,
    &amx::i2s::I2s,
    &avx2::tq2::Tq2,
    &avx512::tq2::Tq2,
    &avx2::tq1::Tq1,
    &avx512::tq1::Tq1,
    &avx2::f16::F16,
    &avx512::f16::F16,
    &avx2::q8_0::Q8_0,
    &avx512::q8_0::Q8_0,
    &avx2::q4_0::Q4_0,
    &avx512::q4_0::Q4_0,
    &avx2::q6_k::Q6K,
    &avx512::q6_k::Q6K,
    &avx2::lut::TL1,
    &avx512::lut::TL1,
    &avx2::lut::TL2,
    &avx512::lut::TL2,
    &avx2::lut::TMAC,
    &avx512::lut::TMAC,
    &avx2::lut::TL1_LOSSY,
    &avx2::lut::TL2_LOSSY,
    &avx2::lut::TMAC_LOSSY,
];

/// Panics unless this CPU has every feature `info.requires` lists.
///
/// Called at the top of every x86 kernel's `compute`, before any
/// `#[target_feature]` function runs, so that a kernel obtained without the
/// registry's check can never execute instructions the CPU lacks.
#[inline]
pub(crate) fn ensure_features(info: &KernelInfo) {
    if let Some(missing) = crate::cpu::features().first_missing(info.requires) {
        panic!(
            "kernel {} needs the CPU feature '{}', which this CPU does not have",
            info.name, missing
        );
    }
}

/// Prefetches the next tile of a multi-row GEMV in address order, a slice
/// per step of the current tile.
///
/// Multi-row GEMVs read a tile of contiguous rows as interleaved short
/// streams (row 0 at offset k, row 1 at offset k, ...), which the hardware
/// prefetchers of Zen 4 do not follow from DRAM: 4 rows of 640 bytes read that
/// way stream at a quarter of the rate of one sequential pass. Prefetching the
/// next tile's bytes in address order restores the sequential rate (measured
/// at 4.4 MB per call, 1 thread: 5.5 -> 15 GB/s, read probe 17-26 GB/s).
pub(crate) struct InOrderPrefetch {
    next: *const u8,
    line: *const u8,
}

impl InOrderPrefetch {
    /// Prefetches the tile that starts at `next` (which may lie past the
    /// matrix: a prefetch never faults).
    #[inline(always)]
    pub(crate) fn new(next: *const u8) -> Self {
        let line = next.wrapping_add(next.align_offset(64));
        InOrderPrefetch { next, line }
    }

    /// Prefetches every line not yet prefetched that starts before `next + upto`.
    #[inline(always)]
    pub(crate) fn upto<const HINT: i32>(&mut self, upto: usize) {
        self.upto_with(upto, |line| {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch is a
            // hint that never faults, whatever the address.
            unsafe { _mm_prefetch::<{ HINT }>(line as *const i8) }
        });
    }

    #[inline(always)]
    fn upto_with(&mut self, upto: usize, mut fetch: impl FnMut(*const u8)) {
        let end = self.next.wrapping_add(upto);
        while self.line < end {
            fetch(self.line);
            self.line = self.line.wrapping_add(64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InOrderPrefetch;

    #[test]
    fn steps_name_every_line_of_the_tile_once() {
        let buf = vec![0u8; 4096];
        for offset in [0, 1, 16, 63] {
            let next = buf[offset..].as_ptr();
            for step in [18, 32, 54, 64, 66, 210, 256] {
                let mut pf = InOrderPrefetch::new(next);
                let mut lines = Vec::new();
                for s in 0..12 {
                    pf.upto_with((s + 1) * step, |p| lines.push(p as usize));
                }
                let (lo, hi) = (next as usize, next as usize + 12 * step);
                let want: Vec<usize> = (lo.next_multiple_of(64)..hi).step_by(64).collect();
                assert_eq!(lines, want, "offset {offset}, step {step}");
            }
        }
    }
}
