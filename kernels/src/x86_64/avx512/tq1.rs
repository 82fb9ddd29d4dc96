//! TQ1_0 (llama.cpp: 256 weights as base-3 digits in 52 bytes + f16 scale)
//! on AVX-512 VNNI + VBMI, reading the standard layout.
//!
//! Digit n of a packed byte v is a fixed function of v, so it is read from a
//! 256-entry table: `vpermi2b` looks up 128 entries (the low 7 bits of the
//! index), so one masked lookup serves the bytes below 128 and a second one,
//! merged into the first, the bytes from 128 up. Two table lookups per 64
//! digits, against ~6 arithmetic instructions per digit vector (see the
//! AVX2 kernel). The 52 packed bytes are loaded with a byte mask (nothing of
//! the next block is read); digit vector n lines up with activations
//! prepared by [`Q8kLayout::Tq1Digits`]. The AVX2 kernels' block driver
//! ([`crate::x86_64::avx2::tq`]) does the rest, bit-identical to the scalar
//! kernel.

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
