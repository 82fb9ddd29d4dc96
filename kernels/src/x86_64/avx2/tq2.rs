//! TQ2_0 (llama.cpp: 256 weights in 64 bytes of 2-bit codes + f16 scale) on
//! AVX2, reading the standard layout.
//!
//! Each 32-byte half of a block holds elements 128c + m + 32k of byte m at
//! bits 2k..2k+1, so `(w >> 2k) & 3` gives 32 codes lined up with 32
//! consecutive activations: natural order, 8 vectors per block. The driver
//! ([`super::tq`]) does the rest.

use super::tq::{block_dot, tq_matmul, BlockRows};
use crate::activations::Activations;
use crate::cpu::CpuFeature;
use crate::formats::tq2::Tq2Matrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use core::arch::x86_64::*;

pub struct Tq2;

/// Rows per GEMV pass.
const GEMV_ROWS: usize = 4;

static INFO: KernelInfo = KernelInfo {
    name: "tq2-avx2",
    format: Format::Tq2,
    isa: Isa::Avx2,
    exact: true,
    requires: &[CpuFeature::Avx2, CpuFeature::F16c],
    row_tile: GEMV_ROWS,
};

const LAYOUT: Q8kLayout = Q8kLayout::Natural;

impl Kernel for Tq2 {
    fn info(&self) -> &'static KernelInfo {
        &INFO
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        Q8kRows::prepare(act, LAYOUT)
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        ensure_features(&INFO);
        let mut owned = None;
        let (rows, act) =
            BlockRows::checked(w.expect::<Tq2Matrix>(), 64, x, LAYOUT, &mut owned, out);
        // SAFETY: ensure_features checked AVX2 and F16C; the checks above bound the
        // weight and activation reads; `unpack` reads the 64 code bytes of its block.
        unsafe { run(&rows, act, out) }
    }
}

/// # Safety
/// See [`tq_matmul`].
#[target_feature(enable = "avx2,f16c")]
unsafe fn run(rows: &BlockRows, act: &Q8kRows, out: &mut OutputTile<'_>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        tq_matmul::<_, GEMV_ROWS>(
            rows,
            act,
            out,
            |block| unpack(block),
            |c, a, _| block_dot(c, a),
            1,
        )
    }
}

/// The eight code vectors of a block, in activation order.
///
/// # Safety
/// `block` must point at 64 readable bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn unpack(block: *const u8) -> [__m256i; 8] {
    let three = _mm256_set1_epi8(3);
    // SAFETY: 64 bytes readable (caller).
    let (w0, w1) = unsafe {
        (
            _mm256_loadu_si256(block as *const _),
            _mm256_loadu_si256(block.add(32) as *const _),
        )
    };
    [
        _mm256_and_si256(w0, three),
        _mm256_and_si256(_mm256_srli_epi16::<2>(w0), three),
        _mm256_and_si256(_mm256_srli_epi16::<4>(w0), three),
        _mm256_and_si256(_mm256_srli_epi16::<6>(w0), three),
        _mm256_and_si256(w1, three),
        _mm256_and_si256(_mm256_srli_epi16::<2>(w1), three),
        _mm256_and_si256(_mm256_srli_epi16::<4>(w1), three),
        _mm256_and_si256(_mm256_srli_epi16::<6>(w1), three),
    ]
}
