//! Armv8.2 dot-product kernels: `sdot` multiplies 16 int8 pairs and adds each
//! group of 4 products into one int32 lane, so runs need no int16 stage and no
//! widening. Same bodies and tiling as the NEON kernels (`bodies.rs`); only
//! the `Dot` instruction differs.
//!
//! `sdot` has no stable intrinsic on this toolchain: it is emitted with
//! `asm!` in one `#[inline(always)]` method of the [`Dotprod`] token, whose
//! constructor checks the CPU at run time. The crate itself is not compiled
//! for dotprod; only the entry points below enable it.

use super::bodies::{self, ActLayout, Dot, WeightLayout, ROW_TILE};
use super::{aarch64_kernel, require};
use crate::activations::{BlockActivations, BlockQ8K, TokenQ8};
use crate::cpu::{self, CpuFeature};
use crate::formats::i2s::I2sMatrix;
use crate::formats::q4_0::Q4_0Matrix;
use crate::formats::q6_k::Q6KMatrix;
use crate::formats::q8_0::Q8_0Matrix;
use crate::formats::tq1::Tq1Matrix;
use crate::formats::tq2::Tq2Matrix;
use crate::formats::{BlockMatrix, Format};
use crate::kernel::{Isa, KernelInfo, OutputTile};
use core::arch::aarch64::*;
use core::arch::asm;

const REQUIRES: &[CpuFeature] = &[CpuFeature::Neon, CpuFeature::Dotprod];

const fn info(name: &'static str, format: Format) -> KernelInfo {
    KernelInfo {
        name,
        format,
        isa: Isa::Dotprod,
        exact: true,
        requires: REQUIRES,
        row_tile: ROW_TILE,
    }
}

/// Proof that the CPU has NEON and the dot-product extension.
#[derive(Clone, Copy, Debug)]
pub struct Dotprod(());

impl Dotprod {
    pub fn new() -> Option<Self> {
        let f = cpu::features();
        (f.has(CpuFeature::Neon) && f.has(CpuFeature::Dotprod)).then_some(Dotprod(()))
    }

    /// The token for `info`'s kernel; panics clearly if a required feature is missing.
    #[track_caller]
    pub(crate) fn for_kernel(info: &KernelInfo) -> Self {
        require(info);
        Dotprod::new().expect("the kernel requires neon and dotprod")
    }

    /// `sdot acc.4s, a.16b, b.16b`: lane i += sum of a[4i+j] * b[4i+j], j < 4.
    #[inline(always)]
    pub fn sdot(self, acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: `self` proves the CPU implements FEAT_DotProd. The
        // instruction reads and writes only the three vector registers given
        // (no memory, no flags, no stack). `.arch_extension` lets the assembler
        // accept it in a function not compiled with the feature (the NEON
        // bodies, when not inlined into a dotprod entry point, e.g. at opt-level 0).
        unsafe {
            asm!(
                ".arch_extension dotprod",
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }
}

impl Dot for Dotprod {
    /// sdot accumulates in int32: a run is the accumulator itself.
    type Run = int32x4_t;

    #[inline(always)]
    fn start(self, acc: int32x4_t) -> int32x4_t {
        acc
    }

    #[inline(always)]
    fn dot(self, run: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
        self.sdot(run, w, a)
    }

    #[inline(always)]
    fn end(self, _acc: int32x4_t, run: int32x4_t) -> int32x4_t {
        run
    }
}

#[target_feature(enable = "neon,dotprod")]
fn i2s_entry(t: Dotprod, m: &I2sMatrix, act: &TokenQ8, out: &mut OutputTile<'_>) {
    bodies::i2s(t, m, act, out)
}

#[target_feature(enable = "neon,dotprod")]
fn q6k_entry(
    t: Dotprod,
    m: &Q6KMatrix,
    act: &BlockActivations<BlockQ8K>,
    out: &mut OutputTile<'_>,
) {
    bodies::q6k(t, m, act, out)
}

#[target_feature(enable = "neon,dotprod")]
fn blocks_entry<W: WeightLayout, A: ActLayout>(
    t: Dotprod,
    m: &BlockMatrix<W>,
    act: &BlockActivations<A>,
    out: &mut OutputTile<'_>,
) {
    bodies::blocks(t, m, act, out)
}

aarch64_kernel!(I2s: "i2s-dotprod", I2s, Dotprod, i2s_entry, I2sMatrix, token_q8);
aarch64_kernel!(Tq2: "tq2-dotprod", Tq2, Dotprod, blocks_entry, Tq2Matrix, q8k);
aarch64_kernel!(Tq1: "tq1-dotprod", Tq1, Dotprod, blocks_entry, Tq1Matrix, q8k);
aarch64_kernel!(Q8_0: "q8_0-dotprod", Q8_0, Dotprod, blocks_entry, Q8_0Matrix, q8_0);
aarch64_kernel!(Q4_0: "q4_0-dotprod", Q4_0, Dotprod, blocks_entry, Q4_0Matrix, q8_0);
aarch64_kernel!(Q6K: "q6_k-dotprod", Q6K, Dotprod, q6k_entry, Q6KMatrix, q8k);
