//! Q6_K (llama.cpp: 256 6-bit codes, int8 scales per 16, f16 scale) on AVX2,
//! reading the standard layout, with Q8_K activations (llama.cpp's pairing).
//!
//! Unpacking: in each 128-element half, the 32 bytes `ql[64h..64h+32]` hold
//! elements 32k + l for k = 0 (low nibble) and k = 2 (high nibble),
//! `ql[64h+32..64h+64]` those for k = 1 and 3, and `qh[32h..32h+32]` their high
//! bits at 2k, so a shift and two masks give 32 codes lined up with 32
//! consecutive activations (natural order, 8 vectors per block).
//!
//! Arithmetic, exact: `vpmaddubsw(code, a)` is the pair sum of code * a for
//! the unsigned codes, at most 2 * 63 * 128 = 16128 in 16 bits; `vpmaddwd`
//! with the sub-block scales (lanes 0..8 of a vector are sub-block 2k, lanes
//! 8..16 sub-block 2k + 1) widens to 32 bits, at most 2^26 per block. The
//! codes' offset of 32 comes off once per block, as llama.cpp does it:
//! 32 * sum(scale_j * bsum_j) with the activations' 16-value sums (one more
//! `vpmaddwd`), instead of a second `vpmaddubsw` per 32 weights. The shared
//! driver ([`super::tq`]) applies the scalar kernel's float step
//! `isum as f32 * (d_w * d_a)` per block. Its GEMV takes 2 rows per pass
//! here, not 4: with 17 code and scale vectors per block, 4 rows spill
//! registers (4 rows: 4.5% fewer instructions under callgrind; before the
//! offset went to `bsums`, 1.2x slower; timings here could not separate them since).

use super::tq::{tq_matmul, BlockRows};
use crate::activations::Activations;
use crate::cpu::CpuFeature;
use crate::formats::q6_k::Q6KMatrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use core::arch::x86_64::*;

/// Rows per GEMV pass.
const GEMV_ROWS: usize = 2;

pub struct Q6K;

static INFO: KernelInfo = KernelInfo {
    name: "q6_k-avx2",
    format: Format::Q6K,
    isa: Isa::Avx2,
    exact: true,
    requires: &[CpuFeature::Avx2, CpuFeature::F16c],
    row_tile: GEMV_ROWS,
};

const LAYOUT: Q8kLayout = Q8kLayout::Natural;

impl Kernel for Q6K {
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
            BlockRows::checked(w.expect::<Q6KMatrix>(), 208, x, LAYOUT, &mut owned, out);
        assert!(act.bsums.len() >= out.batch() * act.blocks_per_row * 16);
        // SAFETY: ensure_features checked AVX2 and F16C; the checks above bound the
        // weight and activation reads; `unpack` reads the 210 bytes of its
        // block and `dot` 256 activations.
        unsafe { run(&rows, act, out) }
    }
}

/// # Safety
/// See [`tq_matmul`].
#[target_feature(enable = "avx2,f16c")]
unsafe fn run(rows: &BlockRows, act: &Q8kRows, out: &mut OutputTile<'_>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let bsums = act.bsums.as_ptr();
        tq_matmul::<_, GEMV_ROWS>(
            rows,
            act,
            out,
            |block| unpack(block),
            // SAFETY: `at` indexes a block of `act`, which has 16 sums per block.
            |c, a, at| dot(c, a, bsums.add(16 * at)),
            0,
        )
    }
}

/// The 256 codes (0..63) of a block as 8 vectors in element order, then 8
/// vectors of 16-bit scales (vector k: sub-block 2k in lanes 0..8, 2k + 1 in
/// 8..16), then the 16 scales in order as 16-bit values.
///
/// # Safety
/// `block` must point at a 210-byte Q6_K block.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn unpack(block: *const u8) -> [__m256i; 17] {
    let low4 = _mm256_set1_epi8(0x0F);
    let mut v = [_mm256_setzero_si256(); 17];
    for h in 0..2 {
        // SAFETY: ql is bytes 0..128, qh bytes 128..192 of the block (caller).
        let (l0, l1, hb) = unsafe {
            (
                _mm256_loadu_si256(block.add(64 * h) as *const _),
                _mm256_loadu_si256(block.add(64 * h + 32) as *const _),
                _mm256_loadu_si256(block.add(128 + 32 * h) as *const _),
            )
        };
        v[4 * h] = _mm256_or_si256(_mm256_and_si256(l0, low4), high::<0>(hb));
        v[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, low4), high::<2>(hb));
        v[4 * h + 2] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(l0), low4),
            high::<4>(hb),
        );
        v[4 * h + 3] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(l1), low4),
            high::<6>(hb),
        );
    }
    // SAFETY: the 16 scales are bytes 192..208 of the block (caller).
    let scales = unsafe { _mm_loadu_si128(block.add(192) as *const _) };
    for k in 0..8 {
        let (a, b) = (2 * k as i8, 2 * k as i8 + 1);
        let pick = _mm_setr_epi8(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
        v[8 + k] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
    }
    v[16] = _mm256_cvtepi8_epi16(scales);
    v
}

/// Bits S..S+2 of every byte of `qh`, moved to bits 4..6.
#[inline]
#[target_feature(enable = "avx2")]
fn high<const S: i32>(qh: __m256i) -> __m256i {
    let two = _mm256_and_si256(_mm256_srli_epi16::<S>(qh), _mm256_set1_epi8(0x03));
    _mm256_slli_epi16::<4>(two)
}

/// sum over sub-blocks of scale * sum((code - 32) a), as 8 lanes: the
/// unsigned codes' products, less 32 * sum(scale * run sum) from the
/// activations' 16-value sums.
///
/// # Safety
/// `a` must point at 256 readable activations and `bsums` at their 16 sums.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dot(c: &[__m256i; 17], a: *const i8, bsums: *const i16) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    for k in 0..8 {
        // SAFETY: vector k of the 256 activations is readable (caller).
        let av = unsafe { _mm256_loadu_si256(a.add(32 * k) as *const _) };
        acc = _mm256_add_epi32(
            acc,
            _mm256_madd_epi16(_mm256_maddubs_epi16(c[k], av), c[8 + k]),
        );
    }
    // SAFETY: 16 sums readable (caller).
    let sums = unsafe { _mm256_loadu_si256(bsums as *const _) };
    let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(c[16], sums));
    _mm256_sub_epi32(acc, offset)
}
