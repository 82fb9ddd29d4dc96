//! TQ1_0 (llama.cpp: 256 weights as base-3 digits in 52 bytes + f16 scale)
//! on AVX2, reading the standard layout.
//!
//! A packed byte v holds 5 digits (w + 1), most significant first, rescaled
//! so that digit n is the top base-3 digit of x_n = 3^n v mod 256:
//! digit = [x_n >= 86] + [x_n >= 171]. AVX2 has no unsigned byte compare, so
//! the kernel works on y_n = x_n ^ 0x80 (then x >= 86 is y > -43 and x >= 171
//! is y > 42, signed), and since 3 * 128 = 128 mod 256 the flipped values obey
//! the same recurrence: y_{n+1} = 3 y_n (two byte adds). The two compare
//! masks (0 or -1) subtracted from 0 give the digit: 6 instructions per 32
//! digits. `qs[0..32]` gives 5 vectors of 32 codes, `qs[32..48]` with `qh`
//! (read without touching the next block) 5 more; their activations are
//! prepared in the same order ([`Q8kLayout::Tq1Digits`]). The driver
//! ([`super::tq`]) does the rest.

use super::tq::{block_dot, tq_matmul, BlockRows};
use crate::activations::Activations;
use crate::cpu::CpuFeature;
use crate::formats::tq1::Tq1Matrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use core::arch::x86_64::*;

pub struct Tq1;

/// Rows per GEMV pass.
const GEMV_ROWS: usize = 4;

static INFO: KernelInfo = KernelInfo {
    name: "tq1-avx2",
    format: Format::Tq1,
    isa: Isa::Avx2,
    exact: true,
    requires: &[CpuFeature::Avx2, CpuFeature::F16c],
    row_tile: GEMV_ROWS,
};

const LAYOUT: Q8kLayout = Q8kLayout::Tq1Digits;

impl Kernel for Tq1 {
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
            BlockRows::checked(w.expect::<Tq1Matrix>(), 52, x, LAYOUT, &mut owned, out);
        // SAFETY: ensure_features checked AVX2 and F16C; the checks above bound the
        // weight and activation reads; `unpack` reads the 52 digit bytes of its block.
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

/// The five digit vectors of 32 packed bytes (`flipped` = bytes ^ 0x80).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn digits(flipped: __m256i) -> [__m256i; 5] {
    let lo = _mm256_set1_epi8(-43);
    let hi = _mm256_set1_epi8(42);
    let mut y = flipped;
    let mut out = [_mm256_setzero_si256(); 5];
    for (n, o) in out.iter_mut().enumerate() {
        if n > 0 {
            y = _mm256_add_epi8(y, _mm256_add_epi8(y, y));
        }
        let ge86 = _mm256_cmpgt_epi8(y, lo);
        let ge171 = _mm256_cmpgt_epi8(y, hi);
        *o = _mm256_sub_epi8(_mm256_sub_epi8(_mm256_setzero_si256(), ge86), ge171);
    }
    out
}

/// The ten code vectors of a block, in activation order: digit n of
/// `qs[0..32]`, then digit n of `qs[32..48] ++ qh`, for n = 0..5.
///
/// # Safety
/// `block` must point at 52 readable bytes.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn unpack(block: *const u8) -> [__m256i; 10] {
    let flip = _mm256_set1_epi8(-128);
    // SAFETY: bytes 0..52 are readable (caller).
    let (first, rest) = unsafe {
        let first = _mm256_loadu_si256(block as *const _);
        let qs_hi = _mm_loadu_si128(block.add(32) as *const _);
        let qh = _mm_cvtsi32_si128((block.add(48) as *const i32).read_unaligned());
        (first, _mm256_set_m128i(qh, qs_hi))
    };
    // Lanes 20..32 of `rest` are 0: their digits meet zero activations.
    let a = digits(_mm256_xor_si256(first, flip));
    let b = digits(_mm256_xor_si256(rest, flip));
    [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4]]
}
