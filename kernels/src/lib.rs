//! ternbench-kernels: ternary (BitNet b1.58) and baseline matrix kernels
//! behind one trait, with the formats they read and the references they are
//! checked against. Pure compute: no I/O, no command line.
//!
//! - [`formats`]: logical matrices and every packed layout;
//! - [`quant`], [`activations`]: BitNet b1.58 quantization and the activation
//!   representations kernels read;
//! - [`kernel`]: the [`Kernel`] trait; [`scalar`]: the reference kernels;
//! - [`registry`]: kernels by name, CPU availability, `auto`;
//! - [`parallel`]: the worker pool and the [`parallel::matmul`] driver;
//! - [`reference`], [`verify`]: the f64 reference and output checks;
//! - [`peak`]: compute-roof probes (peak int8 dot-product and FMA rates).

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod activations;
pub mod cpu;
pub mod formats;
pub mod kernel;
pub mod lossy;
pub mod lut;
pub mod parallel;
pub mod peak;
pub mod quant;
pub mod reference;
pub mod registry;
pub mod scalar;
pub mod verify;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use kernel::{Isa, Kernel, KernelError, KernelInfo, PreparedInput, PreparedWeights};
