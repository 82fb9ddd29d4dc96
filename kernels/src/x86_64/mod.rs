//! x86-64 SIMD kernels (AVX2, AVX-512). Each ISA is one submodule with the
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

pub mod avx2;
pub mod avx512;
pub(crate) mod peak;
pub mod prep;

/// Every x86-64 SIMD kernel compiled into this binary (the registry checks
/// CPU features before handing one out).
pub static KERNELS: &[&dyn Kernel] = &[
    &avx2::i2s::I2s,
    &avx512::i2s::I2s,
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
