//! AVX-512 kernels (F, BW, VL, VNNI; VBMI for tq1): 64-byte vectors and
//! `vpdpbusd` (unsigned 8-bit x signed 8-bit dot products into 32-bit lanes).
//!
//! Shared here: the horizontal reductions kernels end their dot products with.

pub mod f16;
pub mod i2s;
pub mod lut;
pub mod q4_0;
pub mod q6_k;
pub mod q8_0;
pub mod tq1;
pub mod tq2;

/// The features every kernel of this module enables (`avx512f` implies AVX2,
/// FMA and F16C in Rust's feature model; they are listed for `requires`).
pub(crate) const BASE_FEATURES: &[crate::cpu::CpuFeature] = &[
    crate::cpu::CpuFeature::Avx2,
    crate::cpu::CpuFeature::Fma,
    crate::cpu::CpuFeature::F16c,
    crate::cpu::CpuFeature::Avx512f,
    crate::cpu::CpuFeature::Avx512bw,
    crate::cpu::CpuFeature::Avx512vl,
    crate::cpu::CpuFeature::Avx512vnni,
];

use core::arch::x86_64::*;

/// Sums of the 16 lanes of four vectors, as the 4 lanes of one 128-bit vector
/// (a transposing reduction: 6 lane shuffles and 4 in-lane steps instead of
/// four separate reductions).
#[inline]
#[target_feature(enable = "avx2,avx512f")]
pub(crate) fn hsum4_epi32(v: [__m512i; 4]) -> __m128i {
    // Rows 0,1: 256-bit halves side by side, then summed (8 partials per row).
    let a01 = _mm512_add_epi32(
        _mm512_shuffle_i64x2::<0b01_00_01_00>(v[0], v[1]),
        _mm512_shuffle_i64x2::<0b11_10_11_10>(v[0], v[1]),
    );
    let a23 = _mm512_add_epi32(
        _mm512_shuffle_i64x2::<0b01_00_01_00>(v[2], v[3]),
        _mm512_shuffle_i64x2::<0b11_10_11_10>(v[2], v[3]),
    );
    // 128-bit lane i now holds 4 partials of row i.
    let s = _mm512_add_epi32(
        _mm512_shuffle_i64x2::<0b10_00_10_00>(a01, a23),
        _mm512_shuffle_i64x2::<0b11_01_11_01>(a01, a23),
    );
    let s = _mm512_add_epi32(s, _mm512_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm512_add_epi32(s, _mm512_shuffle_epi32::<0b10_11_00_01>(s));
    // Every element of lane i is row i's total; pick element 0 of each lane.
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castsi512_si128(_mm512_permutexvar_epi32(idx, s))
}

/// sum(code * a) of one block of the TQ kernels' `N` code vectors, as 8
/// lanes (the form [`crate::x86_64::avx2::tq`], their driver, reduces).
///
/// # Safety
/// `a` must point at `N * 64` readable activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn block_dot<const N: usize>(codes: &[__m512i; N], a: *const i8) -> __m256i {
    let (mut acc0, mut acc1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for (k, c) in codes.iter().enumerate() {
        // SAFETY: vector k of the block is readable (caller).
        let av = unsafe { _mm512_loadu_si512(a.add(k * 64) as *const _) };
        if k % 2 == 0 {
            acc0 = _mm512_dpbusd_epi32(acc0, *c, av);
        } else {
            acc1 = _mm512_dpbusd_epi32(acc1, *c, av);
        }
    }
    let acc = _mm512_add_epi32(acc0, acc1);
    _mm256_add_epi32(
        _mm512_castsi512_si256(acc),
        _mm512_extracti64x4_epi64::<1>(acc),
    )
}
