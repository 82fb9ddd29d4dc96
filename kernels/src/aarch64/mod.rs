//! AArch64 SIMD kernels (NEON, dotprod, i8mm). Each ISA is one submodule with
//! the same surface as [`crate::scalar`]: a `KERNELS` list of unit structs
//! implementing [`crate::Kernel`].

use crate::kernel::Kernel;

/// Every AArch64 SIMD kernel compiled into this binary (the registry checks
/// CPU features before handing one out).
pub static KERNELS: &[&dyn Kernel] = &[];
