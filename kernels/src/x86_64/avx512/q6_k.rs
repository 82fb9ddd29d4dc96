//! Q6_K (llama.cpp: 256 6-bit codes, int8 scales per 16, f16 scale) on
//! AVX-512, reading the standard layout, with Q8_K activations.
//!
//! Unpacking: in half h of a block, the 64 bytes `ql[64h..64h+64]` hold
//! elements 128h + 0..64 in their low nibbles and 128h + 64..128 in their high
//! nibbles, in element order; `qh[32h..32h+32]`, loaded into both 256-bit
//! halves, holds their high bits (element 32k + l at bits 2k of byte l). Each
//! 256-bit half first keeps only its own two 2-bit fields (a mask), so one
//! 16-bit shift by a per-half count (`vpsllvw` / `vpsrlvw`) puts the high bits
//! at bits 4-5 with zeros above, and one `vpternlogd` takes bits 0-3 from the
//! nibble and 4-7 from the shifted bits: 6 operations per 128 codes instead of
//! 12 with fixed shifts, blends and masks (256x2560 hot: 21.0-21.5 -> 19.6-19.9 us).
//!
//! Arithmetic, exact: `vpmaddubsw(code, a)` is the pair sum of code * a, at
//! most 2 * 63 * 128 = 16128 in 16 bits; `vpdpwssd` multiplies it with the
//! sub-block scales (16-bit lanes 8j..8j+8 of vector k: scale 4k + j) and
//! accumulates in 32 bits, one instruction where AVX2 needs `vpmaddwd` and an
//! add per 32 weights. The codes' offset of 32 comes off with the
//! activations' 16-value sums (one more `vpdpwssd` of 32 * scale with -sum),
//! and the shared driver ([`crate::x86_64::avx2::tq`]) applies the scalar
//! kernel's float step, so outputs are bit-identical to `q6_k-scalar`.

use crate::activations::Activations;
use crate::formats::q6_k::Q6KMatrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::avx2::tq::{tq_matmul, BlockRows};
use crate::x86_64::avx512::BASE_FEATURES;
use crate::x86_64::ensure_features;
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use core::arch::x86_64::*;

/// Rows per GEMV pass.
const GEMV_ROWS: usize = 4;

pub struct Q6K;

static INFO: KernelInfo = KernelInfo {
    name: "q6_k-avx512",
    format: Format::Q6K,
    isa: Isa::Avx512,
    exact: true,
    requires: BASE_FEATURES,
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
        // SAFETY: ensure_features checked every feature enabled below; the
        // checks above bound the weight and activation reads; `unpack` reads the
        // 210 bytes of its block and `dot` 256 activations and their 16 sums.
        unsafe { run(&rows, act, out) }
    }
}

/// # Safety
/// See [`tq_matmul`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
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

/// One block, unpacked: 4 vectors of 64 codes (0..63) in element order, the
/// 16-bit scales lined up with the pair sums of each, and the 16 scales in
/// order times 32 (for the codes' offset) as 16-bit values.
struct Codes {
    codes: [__m512i; 4],
    scales: [__m512i; 4],
    scales_x32: __m256i,
}

/// The sub-block of each pair-sum lane of a code vector, less 4k for vector k.
const SUB_OF_LANE: [i16; 32] = {
    let mut lanes = [0; 32];
    let mut i = 0;
    while i < 32 {
        lanes[i] = (i / 8) as i16;
        i += 1;
    }
    lanes
};

/// 16-bit lanes: `low` in the lower 256 bits, `high` in the upper.
#[inline]
#[target_feature(enable = "avx512f")]
fn halves_epi16(low: i16, high: i16) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_set1_epi16(low)),
        _mm256_set1_epi16(high),
    )
}

/// # Safety
/// `block` must point at a 210-byte Q6_K block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn unpack(block: *const u8) -> Codes {
    // `C ? A : B` bit by bit (the vpternlog truth table of A, B, C).
    const SELECT: i32 = 0xE4;
    let low4 = _mm512_set1_epi8(0x0F);
    // Lower 256 bits serve k = 0 and 2 (bits 0-1, 4-5 of qh), upper k = 1 and 3.
    let own_pairs = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_set1_epi8(0x33)),
        _mm256_set1_epi8(0xCCu8 as i8),
    );
    // Bits 0-1 up 4 and 2-3 up 2 (to bits 4-5); bits 4-5 stay, 6-7 down 2.
    let (up_01, down_23) = (halves_epi16(4, 2), halves_epi16(0, 2));
    let mut codes = [_mm512_setzero_si512(); 4];
    for h in 0..2 {
        // SAFETY: ql is bytes 0..128, qh bytes 128..192 of the block (caller).
        let (ql, qh) = unsafe {
            (
                _mm512_loadu_si512(block.add(64 * h) as *const _),
                _mm512_broadcast_i64x4(_mm256_loadu_si256(block.add(128 + 32 * h) as *const _)),
            )
        };
        // Each half keeps only its own 2-bit fields, so the 16-bit shifts
        // below bring zeros, never a neighbour's bits, into bits 6-7; bits
        // 0-3 take the low nibble, whatever the shifts put there.
        let qh = _mm512_and_si512(qh, own_pairs);
        let hi_01 = _mm512_sllv_epi16(qh, up_01);
        let hi_23 = _mm512_srlv_epi16(qh, down_23);
        codes[2 * h] = _mm512_ternarylogic_epi32::<SELECT>(ql, hi_01, low4);
        codes[2 * h + 1] =
            _mm512_ternarylogic_epi32::<SELECT>(_mm512_srli_epi16::<4>(ql), hi_23, low4);
    }
    // SAFETY: the 16 scales are bytes 192..208 of the block (caller).
    let in_order = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(block.add(192) as *const _) });
    let all = _mm512_castsi256_si512(in_order);
    // SAFETY: SUB_OF_LANE holds 32 16-bit values.
    let sub_of_lane = unsafe { _mm512_loadu_si512(SUB_OF_LANE.as_ptr() as *const _) };
    let scales = core::array::from_fn(|k| {
        let pick = _mm512_add_epi16(sub_of_lane, _mm512_set1_epi16(4 * k as i16));
        _mm512_permutexvar_epi16(pick, all)
    });
    Codes {
        codes,
        scales,
        // At most 128 * 32 = 4096 in magnitude.
        scales_x32: _mm256_slli_epi16::<5>(in_order),
    }
}

/// sum over sub-blocks of scale * sum((code - 32) a), as 8 lanes.
///
/// # Safety
/// `a` must point at 256 readable activations and `bsums` at their 16 sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot(c: &Codes, a: *const i8, bsums: *const i16) -> __m256i {
    let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for k in 0..4 {
        // SAFETY: vector k of the 256 activations is readable (caller).
        let av = unsafe { _mm512_loadu_si512(a.add(64 * k) as *const _) };
        let pairs = _mm512_maddubs_epi16(c.codes[k], av);
        if k % 2 == 0 {
            acc0 = _mm512_dpwssd_epi32(acc0, pairs, c.scales[k]);
        } else {
            acc1 = _mm512_dpwssd_epi32(acc1, pairs, c.scales[k]);
        }
    }
    let acc = _mm512_add_epi32(acc0, acc1);
    let acc = _mm256_add_epi32(
        _mm512_castsi512_si256(acc),
        _mm512_extracti64x4_epi64::<1>(acc),
    );
    // SAFETY: 16 sums readable (caller).
    let sums = unsafe { _mm256_loadu_si256(bsums as *const _) };
    // Pairs of 32 * scale * -bsum: at most 2 * 4096 * 2048 = 2^24.
    _mm256_dpwssd_epi32(
        acc,
        c.scales_x32,
        _mm256_sub_epi16(_mm256_setzero_si256(), sums),
    )
}
