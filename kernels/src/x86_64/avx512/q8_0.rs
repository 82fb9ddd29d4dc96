//! Q8_0 (llama.cpp: 32 int8 weights + f16 scale) on AVX-512 VNNI (256-bit), reading the standard layout.
//!
//! `vpdpbusd` needs one unsigned operand: w + 128 (w xor 0x80) times a gives
//! sum(w a) + 128 sum(a), and the driver removes 128 sum(a). One 256-bit
//! `vpdpbusd` per block (a 512-bit one would need two 34-byte-strided blocks
//! shuffled together).
//! The shared block driver ([`crate::x86_64::avx2::tq`]) reduces 8 block sums
//! at a time, subtracts 128 x sum(a) per block when the codes are offset
//! from the weights, and applies the scalar kernel's per-block float step
//! `isum as f32 * (d_w * d_a)` (only the order of the float additions differs).

use crate::activations::Activations;
use crate::cpu::CpuFeature;
use crate::formats::q8_0::Q8_0Matrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::avx2::tq::{tq_matmul, BlockRows};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use core::arch::x86_64::*;

pub struct Q8_0;

static INFO: KernelInfo = KernelInfo {
    name: "q8_0-avx512",
    format: Format::Q8_0,
    isa: Isa::Avx512,
    exact: true,
    requires: &[
        CpuFeature::Avx2,
        CpuFeature::Fma,
        CpuFeature::F16c,
        CpuFeature::Avx512f,
        CpuFeature::Avx512bw,
        CpuFeature::Avx512vl,
        CpuFeature::Avx512vnni,
    ],
    row_tile: 1,
};

impl Kernel for Q8_0 {
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
            w.expect::<Q8_0Matrix>(),
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
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn run(rows: &BlockRows, act: &Q8kRows, out: &mut OutputTile<'_>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        tq_matmul::<_, 4>(
            rows,
            act,
            out,
            |block| unpack(block),
            |c, a, _| dot(c[0], a),
            128,
        )
    }
}

/// The 32 signed weights of a block.
///
/// # Safety
/// `block` must point at a 34-byte Q8_0 block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn unpack(block: *const u8) -> [__m256i; 1] {
    // SAFETY: bytes 2..34 are the block's values (caller).
    [unsafe { _mm256_loadu_si256(block.add(2) as *const _) }]
}

/// sum(code * a) over one block of 32, as 8 lanes.
///
/// # Safety
/// `a` must point at 32 readable activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot(c: __m256i, a: *const i8) -> __m256i {
    // SAFETY: 32 activations readable (caller).
    let a = unsafe { _mm256_loadu_si256(a as *const _) };
    let u = _mm256_xor_si256(c, _mm256_set1_epi8(-128));
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a)
}
