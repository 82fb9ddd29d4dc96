//! x86-64 SIMD kernels (AVX2, AVX-VNNI, AVX-512). Each ISA is one submodule
//! with the same surface as [`crate::scalar`]: a `KERNELS` list of unit
//! structs implementing [`crate::Kernel`].

use crate::kernel::Kernel;

/// Every x86-64 SIMD kernel compiled into this binary (the registry checks
/// CPU features before handing one out).
pub static KERNELS: &[&dyn Kernel] = &[];
