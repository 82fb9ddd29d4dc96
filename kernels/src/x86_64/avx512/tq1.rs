//! TQ1_0 (llama.cpp: 256 weights as base-3 digits in 52 bytes + f16 scale)
//! on AVX-512 VNNI + VBMI, reading the standard layout.
//!
//! Digit n of a packed byte v is (3 x_n) >> 8 with x_n = v 3^n mod 256, so
//! 256 d_n = 3 x_n - x_(n+1). The 52 packed bytes are loaded with a byte mask
//! (nothing of the next block is read); digit vector n lines up with
//! activations prepared by [`Q8kLayout::Tq1Digits`].
//! - GEMV (batch 1): no digits are formed. x_1..x_5 cost two `vpaddb` each,
//!   and 10 `vpdpbusd` of the unsigned x_n against the activations give the
//!   block's digit sum as (3A - B) / 256 ([`multiples_dot`]). On a
//!   Sapphire-Rapids-class Xeon this is 1.6x faster than the table lookups
//!   below (6912x2560 hot, 1 thread: 632-662 -> 401-402 us), whose
//!   `vpermi2b` are slow there.
//! - GEMM (batch > 1): digit n of every byte is read from a 256-entry table
//!   with two merged `vpermi2b` lookups (128 entries each) and the digit
//!   vectors are reused for every token: 5 `vpdpbusd` per token and block
//!   instead of 10.
//!
//! The AVX2 kernels' block driver ([`crate::x86_64::avx2::tq`]) does the
//! rest, bit-identical to the scalar kernel.

use super::block_dot;
use crate::activations::Activations;
use crate::cpu::CpuFeature;
use crate::formats::tq1::{Tq1Matrix, POW3};
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::avx2::tq::{tq_matmul, BlockRows};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::{Q8kLayout, Q8kRows};
use core::arch::x86_64::*;

pub struct Tq1;

/// Rows per GEMV pass.
const GEMV_ROWS: usize = 4;

static INFO: KernelInfo = KernelInfo {
    name: "tq1-avx512",
    format: Format::Tq1,
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
        CpuFeature::Avx512vbmi,
    ],
    row_tile: GEMV_ROWS,
};

const LAYOUT: Q8kLayout = Q8kLayout::Tq1Digits;

/// `DIGITS[n][v]` = digit n of byte v (the formula of [`crate::formats::tq1::digit`]).
#[repr(C, align(64))]
struct DigitTables([[u8; 256]; 5]);

static DIGITS: DigitTables = {
    let mut t = [[0u8; 256]; 5];
    let mut n = 0;
    while n < 5 {
        let mut v = 0;
        while v < 256 {
            t[n][v] = (((v * POW3[n] as usize) % 256 * 3) >> 8) as u8;
            v += 1;
        }
        n += 1;
    }
    DigitTables(t)
};

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
        // SAFETY: ensure_features checked every feature enabled below; the
        // checks above bound the weight and activation reads; `unpack` reads the
        // 52 digit bytes of the block it is given.
        unsafe { run(&rows, act, out) }
    }
}

/// # Safety
/// See [`tq_matmul`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn run(rows: &BlockRows, act: &Q8kRows, out: &mut OutputTile<'_>) {
    if out.batch() == 1 {
        // SAFETY: forwarded from the caller; `multiples` reads the 52 digit
        // bytes of the block it is given.
        return unsafe {
            tq_matmul::<_, GEMV_ROWS>(
                rows,
                act,
                out,
                |block| multiples(block),
                |x, a, _| multiples_dot(x, a),
                1,
            )
        };
    }
    let t = &DIGITS.0;
    // SAFETY: each table row is 256 bytes, 64-byte aligned.
    let tables: [[__m512i; 4]; 5] = core::array::from_fn(|n| {
        core::array::from_fn(|q| unsafe { _mm512_loadu_si512(t[n][64 * q..].as_ptr() as *const _) })
    });
    // SAFETY: forwarded from the caller.
    unsafe {
        tq_matmul::<_, GEMV_ROWS>(
            rows,
            act,
            out,
            |block| unpack(block, &tables),
            |c, a, _| block_dot(c, a),
            1,
        )
    }
}

/// x_n = v 3^n mod 256 for n = 0..=5, bytewise, of a block's packed bytes v
/// (lanes 52..64 are 0). Digit n is (3 x_n) >> 8, so 256 d_n = 3 x_n - x_(n+1).
///
/// # Safety
/// `block` must point at 52 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn multiples(block: *const u8) -> [__m512i; 6] {
    // SAFETY: the mask limits the load to bytes 0..52 (caller), and masked-off
    // bytes are not accessed.
    let v = unsafe { _mm512_maskz_loadu_epi8((1u64 << 52) - 1, block as *const i8) };
    let mut x = [v; 6];
    for n in 1..6 {
        x[n] = triple(x[n - 1]);
    }
    x
}

/// 3x mod 256 in every byte, as two `vpaddb`. Written in assembly because
/// LLVM folds the chain of additions in [`multiples`] into byte multiplies
/// by 3^n, which x86 lacks and it emulates with `vpmaddubsw`, `vpmullw` and
/// `vpermt2b` (3 instructions, one a cross-lane permute, per vector).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn triple(x: __m512i) -> __m512i {
    let tripled: __m512i;
    // SAFETY: register-only byte additions, which the enabled AVX-512BW
    // provides; `out` (not `lateout`) keeps `tripled` apart from `x`.
    unsafe {
        core::arch::asm!(
            "vpaddb {t}, {x}, {x}",
            "vpaddb {t}, {t}, {x}",
            x = in(zmm_reg) x,
            t = out(zmm_reg) tripled,
            options(pure, nomem, nostack),
        );
    }
    tripled
}

/// sum(digit a) of one block from its [`multiples`], as 8 lanes: with
/// A = sum_n x_n a_n and B = sum_n x_(n+1) a_n (unsigned bytes against the
/// digit-ordered activations, `vpdpbusd`), the digit products sum to
/// (3A - B) / 256 in every lane, exactly. A lane of A or B is at most
/// 5 * 4 * 255 * 128 < 2^20 in magnitude, so 3A - B cannot overflow.
///
/// # Safety
/// `a` must point at the block's 320 digit-ordered activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn multiples_dot(x: &[__m512i; 6], a: *const i8) -> __m256i {
    let (mut sa, mut sb) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for n in 0..5 {
        // SAFETY: digit vector n of the block is readable (caller).
        let av = unsafe { _mm512_loadu_si512(a.add(n * 64) as *const _) };
        sa = _mm512_dpbusd_epi32(sa, x[n], av);
        sb = _mm512_dpbusd_epi32(sb, x[n + 1], av);
    }
    let three_a_minus_b = _mm512_sub_epi32(_mm512_add_epi32(_mm512_add_epi32(sa, sa), sa), sb);
    let d = _mm512_srai_epi32::<8>(three_a_minus_b);
    _mm256_add_epi32(_mm512_castsi512_si256(d), _mm512_extracti64x4_epi64::<1>(d))
}

/// The five digit vectors of a block (lanes 52..64 are 0).
///
/// # Safety
/// `block` must point at 52 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn unpack(block: *const u8, tables: &[[__m512i; 4]; 5]) -> [__m512i; 5] {
    // SAFETY: the mask limits the load to bytes 0..52 (caller), and masked-off
    // bytes are not accessed.
    let v = unsafe { _mm512_maskz_loadu_epi8((1u64 << 52) - 1, block as *const i8) };
    let high = _mm512_movepi8_mask(v);
    core::array::from_fn(|n| {
        let [t0, t1, t2, t3] = tables[n];
        // Bytes below 128 look up entries 0..128; the rest keep their value...
        let low = _mm512_mask2_permutex2var_epi8(t0, v, !high, t1);
        // ...and look up entries 128..256 (the index's top bit is ignored).
        _mm512_mask2_permutex2var_epi8(t2, low, high, t3)
    })
}
