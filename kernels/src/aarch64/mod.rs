//! AArch64 SIMD kernels (NEON, dotprod, i8mm). Each ISA is one submodule with
//! the same surface as [`crate::scalar`]: unit structs implementing
//! [`crate::Kernel`], named `<format>-<isa>`, collected in [`KERNELS`].
//!
//! - [`neon`]: Armv8.0 Advanced SIMD only (`smull`/`smlal` into int16 lanes,
//!   `sadalp` into int32), plus the f16 baseline (`fcvtl` + `fmla`);
//! - [`dotprod`]: Armv8.2 `sdot` (16 int8 products into 4 int32 lanes);
//! - [`lut`]: the LUT formats (tl1, tl2, tmac) with NEON `tbl`, lossless and
//!   `-lossy` (int8 tables);
//! - [`i8mm`]: Armv8.6 `smmla` (a 2x8 by 8x2 int8 matrix product into a 2x2
//!   int32 tile), pairing 2 weight rows with 2 batch items: the GEMM kernels.
//!
//! Nothing here enables a target feature for the whole crate: a plain
//! Armv8.0 CPU runs the crate, and dotprod/i8mm code only runs behind a
//! capability token (`Dotprod::new`, `I8mm::new`) whose constructor checks
//! the CPU at run time. `sdot` and `smmla` have no stable intrinsics on this
//! toolchain, so each is one `asm!` instruction in a small `#[inline(always)]`
//! method of its token.
//!
//! Every integer kernel here is bit-identical to the scalar kernel of its
//! format (see `bodies.rs` for why; a `-lossy` kernel to the scalar lossy
//! kernel), which the exactness matrix (`lossy.rs` for the lossy ones)
//! checks under qemu with cortex-a53, neoverse-n1 and max
//! (`.ci/aarch64-tests.sh`).

mod bodies;
pub mod dotprod;
pub mod i8mm;
pub mod lut;
pub mod neon;
pub(crate) mod peak;

use crate::cpu;
use crate::kernel::{Kernel, KernelInfo};

/// Every AArch64 SIMD kernel compiled into this binary (the registry checks
/// CPU features before handing one out).
pub static KERNELS: &[&dyn Kernel] = &[
    &neon::I2s,
    &neon::Tq2,
    &neon::Tq1,
    &neon::F16,
    &neon::Q8_0,
    &neon::Q4_0,
    &neon::Q6K,
    &dotprod::I2s,
    &dotprod::Tq2,
    &dotprod::Tq1,
    &dotprod::Q8_0,
    &dotprod::Q4_0,
    &dotprod::Q6K,
    &i8mm::I2s,
    &i8mm::Tq2,
    &i8mm::Tq1,
    &i8mm::Q8_0,
    &i8mm::Q4_0,
    &lut::TL1,
    &lut::TL2,
    &lut::TMAC,
    &lut::TL1_LOSSY,
    &lut::TL2_LOSSY,
    &lut::TMAC_LOSSY,
];

/// Panics, naming the kernel and the feature, unless this CPU has every
/// feature `info.requires` lists. `Kernel::compute` is safe, so it must not
/// reach a target-feature function on a CPU without the feature; the
/// registry never hands such a kernel out, and this catches direct calls.
#[track_caller]
pub(crate) fn require(info: &KernelInfo) {
    if let Some(missing) = cpu::features().first_missing(info.requires) {
        panic!(
            "kernel {} needs the CPU feature '{missing}', which this CPU does not have \
             (detected: {}); use the registry, which only hands out kernels this CPU can run",
            info.name,
            cpu::features().names().join(" ")
        );
    }
}

/// Defines a unit-struct kernel whose `compute` gets the ISA's token (which
/// panics clearly when the CPU lacks a required feature) and calls a
/// `#[target_feature]` entry point with the unpacked weights and activations.
macro_rules! aarch64_kernel {
    ($(#[$doc:meta])* $ty:ident: $name:literal, $format:ident, $token:ty, $entry:path,
     $weights:ty, $act:ident) => {
        $(#[$doc])*
        pub struct $ty;

        impl $crate::kernel::Kernel for $ty {
            fn info(&self) -> &'static $crate::kernel::KernelInfo {
                static INFO: $crate::kernel::KernelInfo =
                    info($name, $crate::formats::Format::$format);
                &INFO
            }

            fn compute(
                &self,
                w: &$crate::kernel::PreparedWeights,
                x: &$crate::kernel::PreparedInput,
                out: &mut $crate::kernel::OutputTile<'_>,
            ) {
                let token = <$token>::for_kernel(self.info());
                // SAFETY: `token` exists, so the CPU has every feature the
                // entry point enables (its constructor checked them).
                unsafe { $entry(token, w.expect::<$weights>(), x.act.$act(), out) }
            }
        }
    };
}
pub(crate) use aarch64_kernel;
