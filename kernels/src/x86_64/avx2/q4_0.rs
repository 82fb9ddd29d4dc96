//! Q4_0 (llama.cpp: 32 4-bit codes + f16 scale) on AVX2, reading the standard layout.
//!
//! The codes (w + 8, 0..15) are unsigned, so `vpmaddubsw` multiplies them with
//! the activations directly (a pair is at most 2 * 15 * 127) and the driver
//! removes 8 sum(a).
//! The shared block driver ([`crate::x86_64::avx2::tq`]) reduces 8 block sums
//! at a time, subtracts 8 x sum(a) per block when the codes are offset
//! from the weights, and applies the scalar kernel's per-block float step
//! `isum as f32 * (d_w * d_a)` (only the order of the float additions differs).

use crate::activations::Activations;
use crate::cpu::CpuFeature;
use crate::formats::q4_0::Q4_0Matrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::avx2::tq::{tq_matmul, BlockRows};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use core::arch::x86_64::*;

pub struct Q4_0;

/// Rows per GEMV pass.
const GEMV_ROWS: usize = 4;

static INFO: KernelInfo = KernelInfo {
    name: "q4_0-avx2",
    format: Format::Q4_0,
    isa: Isa::Avx2,
    exact: true,
    requires: &[CpuFeature::Avx2, CpuFeature::F16c],
    row_tile: GEMV_ROWS,
};

impl Kernel for Q4_0 {
    fn info(&self) -> &'static KernelInfo {
        &INFO
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        Q8kRows::prepare(act, Q8kLayout::Q8_0)
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        ensure_features(&INFO);
        let mut owned = None;
        let (rows, act) = BlockRows::checked(
            w.expect::<Q4_0Matrix>(),
            0,
            x,
            Q8kLayout::Q8_0,
            &mut owned,
            out,
        );
        // SAFETY: ensure_features checked every feature enabled below; the
        // checks above bound the weight and activation reads; `unpack` reads the
        // block it is given and `dot` 32 activations.
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
            |c, a, _| dot(c[0], a),
            8,
        )
    }
}

/// The 32 unsigned codes (0..15) of a block, in element order.
///
/// # Safety
/// `block` must point at an 18-byte Q4_0 block.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn unpack(block: *const u8) -> [__m256i; 1] {
    // SAFETY: bytes 2..18 are the block's nibbles (caller).
    let x = unsafe { _mm_loadu_si128(block.add(2) as *const _) };
    let nibble = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(x, nibble);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(x), nibble);
    [_mm256_set_m128i(hi, lo)]
}

/// sum(code * a) over one block of 32, as 8 lanes.
///
/// # Safety
/// `a` must point at 32 readable activations.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dot(c: __m256i, a: *const i8) -> __m256i {
    // SAFETY: 32 activations readable (caller).
    let a = unsafe { _mm256_loadu_si256(a as *const _) };
    _mm256_madd_epi16(_mm256_maddubs_epi16(c, a), _mm256_set1_epi16(1))
}
