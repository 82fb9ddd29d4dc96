//! AVX2 kernels (with FMA and F16C for f16): 32-byte vectors, `vpmaddubsw`
//! (unsigned 8-bit x signed 8-bit pairs into saturating 16-bit lanes) and
//! `vpmaddwd` to widen.
//!
//! Shared here: the horizontal reductions every kernel ends a dot product with.

pub mod f16;
pub mod i2s;
pub mod lut;
pub mod q4_0;
pub mod q6_k;
pub mod q8_0;
pub(crate) mod tq;
pub mod tq1;
pub mod tq2;

use core::arch::x86_64::*;

/// Sums of the 8 lanes of four vectors, as the 4 lanes of one 128-bit vector.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum4_epi32(v: [__m256i; 4]) -> __m128i {
    let t01 = _mm256_hadd_epi32(v[0], v[1]);
    let t23 = _mm256_hadd_epi32(v[2], v[3]);
    // Per 128-bit half: [v0, v1, v2, v3] partial sums.
    let t = _mm256_hadd_epi32(t01, t23);
    _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t))
}

/// Sum of the 8 lanes of one vector.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Sum of the 8 lanes of an f32 vector.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
