//! x86-64 compute-roof probes (see [`crate::peak`]): `vpdpbusd` on 512-bit
//! registers and f32 FMA for the AVX-512 kernels, `vpmaddubsw` accumulated in
//! 16-bit lanes (`vpaddw`) and f32 FMA for the AVX2 kernels, AMX `tdpbusd`
//! on tiles already loaded for the AMX kernels (their loop also loads a
//! tile per `tdpbusd`, so it cannot reach this roof).
//!
//! The AVX2 probe leaves out the `vpmaddwd` that widens 16-bit sums to 32
//! bits: kernels amortise it over several blocks, and on cores with one
//! vector multiplier (Zen 1: 2 cycles per 256-bit multiply) counting it would
//! halve the roof and put good kernels above 100%.
//!
//! Each body keeps `CHAINS` independent accumulators, more than latency x
//! throughput of the instruction on current cores (VNNI and FMA: 4-5 cycles,
//! 2 per cycle), so the loop is bound by issue width, as a kernel's inner
//! loop at best is.

use crate::cpu::CpuFeature;
use crate::kernel::Isa;
use crate::peak::{PeakKind, PeakProbe};
use core::arch::x86_64::*;
use std::hint::black_box;

const CHAINS: usize = 12;

const AVX2: &[CpuFeature] = &[CpuFeature::Avx2, CpuFeature::Fma];
const AVX512: &[CpuFeature] = &[
    CpuFeature::Avx512f,
    CpuFeature::Avx512bw,
    CpuFeature::Avx512vnni,
];

pub(crate) static PROBES: &[PeakProbe] = &[
    // 32 u8 x s8 products per vpmaddubsw (+ one vpaddw): 64 ops.
    PeakProbe::new(
        "vpmaddubsw-ymm",
        Isa::Avx2,
        PeakKind::Int8Dot,
        AVX2,
        CHAINS as u64 * 64,
        maddubs_ymm,
    ),
    // 8 f32 FMAs per instruction: 16 ops.
    PeakProbe::new(
        "vfmadd-ymm",
        Isa::Avx2,
        PeakKind::F32Fma,
        AVX2,
        CHAINS as u64 * 16,
        fma_ymm,
    ),
    // 64 u8 x s8 products per vpdpbusd: 128 ops.
    PeakProbe::new(
        "vpdpbusd-zmm",
        Isa::Avx512,
        PeakKind::Int8Dot,
        AVX512,
        CHAINS as u64 * 128,
        dpbusd_zmm,
    ),
    // 16 f32 FMAs per instruction: 32 ops.
    PeakProbe::new(
        "vfmadd-zmm",
        Isa::Avx512,
        PeakKind::F32Fma,
        AVX512,
        CHAINS as u64 * 32,
        fma_zmm,
    ),
    // 16 x 16 x 64 u8 x s8 products per tdpbusd, 4 per round: 131072 ops.
    PeakProbe::new(
        "tdpbusd-tmm",
        Isa::Amx,
        PeakKind::Int8Dot,
        &[CpuFeature::AmxInt8],
        4 * 16 * 16 * 64 * 2,
        tdpbusd_tmm,
    ),
];

/// Bytes ahead of the loads that [`sum_words`] prefetches into L2. On a
/// Sapphire-Rapids-class Xeon (KVM guest), 1 thread, 1 GiB on 2 MiB pages,
/// loops interleaved in one process: plain 512-bit loads 15.0-15.6 GB/s,
/// the compiler's SSE2 loop 17.4-17.7, prefetching 1-2 KB ahead 18.3-18.8,
/// 4 KB ahead 14.9 (no arithmetic between the loads).
const READ_PREFETCH_BYTES: usize = 2048;

/// The ISA of [`sum_words`]'s loop on this CPU.
pub(crate) fn read_isa() -> Isa {
    let cpu = crate::cpu::features();
    if cpu.has(CpuFeature::Avx512f) {
        Isa::Avx512
    } else if cpu.has(CpuFeature::Avx2) {
        Isa::Avx2
    } else {
        Isa::Scalar
    }
}

/// The wrapping sum of `words`, read with the widest loads this CPU has (see
/// [`crate::peak::sum_words`]).
pub(crate) fn sum_words(words: &[u64]) -> u64 {
    match read_isa() {
        // SAFETY: read_isa found AVX-512F.
        Isa::Avx512 => unsafe { sum_words_avx512(words) },
        // SAFETY: read_isa found AVX2.
        Isa::Avx2 => unsafe { sum_words_avx2(words) },
        _ => crate::peak::sum_words_scalar(words),
    }
}

/// Prefetches into L2 the 4 lines [`READ_PREFETCH_BYTES`] past the start of
/// a 256-byte step (a prefetch never faults, whatever the address).
#[inline(always)]
fn prefetch_step_ahead(step: *const u64) {
    for k in 0..4 {
        let line = step.wrapping_byte_add(READ_PREFETCH_BYTES + 64 * k);
        // SAFETY: SSE is part of the x86-64 baseline; a prefetch is a hint
        // that never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(line as *const i8) };
    }
}

/// Wrapping sum of `words`: per 256-byte step, the 4 lines
/// [`READ_PREFETCH_BYTES`] ahead are prefetched into L2, then the step's 4
/// vectors are added. (Each prefetch next to its load instead read 15.0
/// GB/s, two steps unrolled 17.2-17.5, where this reads 18.8: the order of
/// the instructions matters. With arithmetic between the loads, as in the
/// GEMVs, the opposite holds: see the i2s-avx512 GEMV.)
#[target_feature(enable = "avx512f")]
fn sum_words_avx512(words: &[u64]) -> u64 {
    let steps = words.len() / 32;
    let p = words.as_ptr();
    let mut acc = [_mm512_setzero_si512(); 4];
    for s in 0..steps {
        // SAFETY: step s reads words 32s..32s+32, which lie inside `words`.
        unsafe {
            let step = p.add(32 * s);
            prefetch_step_ahead(step);
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm512_add_epi64(*a, _mm512_loadu_si512(step.add(8 * k) as *const _));
            }
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_si512(), |s, &a| _mm512_add_epi64(s, a));
    (_mm512_reduce_add_epi64(s) as u64)
        .wrapping_add(crate::peak::sum_words_scalar(&words[32 * steps..]))
}

/// [`sum_words_avx512`] with 256-bit loads, 8 per step.
#[target_feature(enable = "avx2")]
fn sum_words_avx2(words: &[u64]) -> u64 {
    let steps = words.len() / 32;
    let p = words.as_ptr();
    let mut acc = [_mm256_setzero_si256(); 8];
    for s in 0..steps {
        // SAFETY: as in `sum_words_avx512`.
        unsafe {
            let step = p.add(32 * s);
            prefetch_step_ahead(step);
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_epi64(*a, _mm256_loadu_si256(step.add(4 * k) as *const _));
            }
        }
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi64(s, a));
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` holds 4 u64.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, s) };
    crate::peak::sum_words_scalar(&lanes)
        .wrapping_add(crate::peak::sum_words_scalar(&words[32 * steps..]))
}

fn maddubs_ymm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX2 and FMA.
    unsafe { maddubs_ymm_avx2(iters) }
}

#[target_feature(enable = "avx2,fma")]
fn maddubs_ymm_avx2(iters: u64) -> u64 {
    // The accumulator's bytes are the unsigned operand, so the products are
    // not loop-invariant (the compiler would hoist them); wrap-around does
    // not change the speed.
    let b = black_box(_mm256_set1_epi8(-3));
    let mut acc = [black_box(_mm256_set1_epi8(2)); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm256_add_epi16(*c, _mm256_maddubs_epi16(*c, b));
        }
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_si256(), |s, &c| _mm256_add_epi32(s, c));
    _mm256_extract_epi32::<0>(s) as u32 as u64
}

fn fma_ymm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX2 and FMA.
    unsafe { fma_ymm_avx2(iters) }
}

#[target_feature(enable = "avx2,fma")]
fn fma_ymm_avx2(iters: u64) -> u64 {
    // acc = acc * m + k converges (|m| < 1): no overflow, no denormals.
    let m = black_box(_mm256_set1_ps(0.999));
    let k = black_box(_mm256_set1_ps(0.5));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm256_fmadd_ps(*c, m, k);
        }
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &c| _mm256_add_ps(s, c));
    _mm256_cvtss_f32(s).to_bits() as u64
}

fn dpbusd_zmm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX-512F/BW/VNNI.
    unsafe { dpbusd_zmm_avx512(iters) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn dpbusd_zmm_avx512(iters: u64) -> u64 {
    let a = black_box(_mm512_set1_epi8(2));
    let b = black_box(_mm512_set1_epi8(-3));
    let mut acc = [_mm512_setzero_si512(); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm512_dpbusd_epi32(*c, a, b);
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_si512(), |s, &c| _mm512_add_epi32(s, c));
    _mm512_reduce_add_epi32(s) as u32 as u64
}

fn fma_zmm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AVX-512F.
    unsafe { fma_zmm_avx512(iters) }
}

#[target_feature(enable = "avx512f")]
fn fma_zmm_avx512(iters: u64) -> u64 {
    let m = black_box(_mm512_set1_ps(0.999));
    let k = black_box(_mm512_set1_ps(0.5));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for _ in 0..iters {
        for c in acc.iter_mut() {
            *c = _mm512_fmadd_ps(*c, m, k);
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &c| _mm512_add_ps(s, c));
    _mm512_reduce_add_ps(s).to_bits() as u64
}

fn tdpbusd_tmm(iters: u64) -> u64 {
    // SAFETY: reachable only through `PeakProbe::run`, which checks AMX-INT8
    // (detected with the tile permission granted).
    unsafe { crate::x86_64::amx::tdpbusd_rounds(iters) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_the_arithmetic() {
        // The AVX2 chain feeds back into itself: check it is deterministic
        // and does work (one trip from bytes of 2: each i16 lane of a chain
        // becomes 0x0202 plus 2 products of 2 * -3, i.e. 502; lane 0 of the
        // i32 sum holds two of them).
        let p = &PROBES[0];
        if let Some(sum) = p.run(1) {
            assert_eq!(sum as u32 as i32, CHAINS as i32 * (502 + (502 << 16)));
            assert_eq!(p.run(7), p.run(7));
        }
        let p = &PROBES[2];
        if let Some(sum) = p.run(10) {
            // vpdpbusd: each of 16 lanes gains 4 products (-24); 16 lanes summed.
            assert_eq!(sum as u32 as i32, -24 * 16 * CHAINS as i32 * 10);
        }
        let p = &PROBES[4];
        if let Some(sum) = p.run(10) {
            // tdpbusd: element 0 of each of 4 tiles gains 64 products (-384).
            assert_eq!(sum as i64, -384 * 4 * 10);
        }
    }

    #[test]
    fn simd_word_sums_match_the_scalar_sum() {
        let words: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let cpu = crate::cpu::features();
        for len in [0, 1, 31, 32, 33, 64, 999, 1000] {
            let want = crate::peak::sum_words_scalar(&words[..len]);
            if cpu.has(CpuFeature::Avx512f) {
                // SAFETY: AVX-512F is present.
                assert_eq!(
                    unsafe { sum_words_avx512(&words[..len]) },
                    want,
                    "avx512, {len}"
                );
            }
            if cpu.has(CpuFeature::Avx2) {
                // SAFETY: AVX2 is present.
                assert_eq!(
                    unsafe { sum_words_avx2(&words[..len]) },
                    want,
                    "avx2, {len}"
                );
            }
        }
    }
}
