//! The f16 baseline on AVX2 + F16C + FMA: weights converted with `vcvtph2ps`
//! (8 per instruction) and multiplied into f32 accumulators with FMA.
//!
//! - GEMV: 4 rows per pass share each activation load, 2 accumulators per
//!   row (8 FMA chains); the next 4 rows are prefetched in address order
//!   ([`InOrderPrefetch`]).
//! - GEMM: 2 rows x 4 tokens per tile (16 registers).
//!
//! Rows are zero-padded to 32 elements, so there is no tail loop. Lossy (f32
//! sums in another order than the scalar kernel).

use super::hsum_ps;
use crate::activations::F32Activations;
use crate::cpu::CpuFeature;
use crate::formats::f16::F16Matrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::{ensure_features, InOrderPrefetch};
use core::arch::x86_64::*;

const ROWS: usize = 4;
const GEMM_ROWS: usize = 2;
const GEMM_TOKENS: usize = 4;

pub struct F16;

static INFO: KernelInfo = KernelInfo {
    name: "f16-avx2",
    format: Format::F16,
    isa: Isa::Avx2,
    exact: false,
    requires: &[CpuFeature::Avx2, CpuFeature::Fma, CpuFeature::F16c],
    row_tile: ROWS,
};

impl Kernel for F16 {
    fn info(&self) -> &'static KernelInfo {
        &INFO
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        ensure_features(&INFO);
        let m = w.expect::<F16Matrix>();
        let act = x.act.f32();
        assert_eq!(m.stride % 32, 0);
        assert!(act.stride >= m.stride && act.stride.is_multiple_of(32));
        assert!(out.rows().end <= m.rows);
        // SAFETY: ensure_features checked AVX2, FMA, F16C; the asserts bound
        // every read (rows of `stride` elements, multiples of 32).
        unsafe { compute_avx2(m, act, out) }
    }
}

/// # Safety
/// AVX2, FMA, F16C; rows inside the matrix; activation rows at least
/// `m.stride` long; `m.stride` a multiple of 32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn compute_avx2(m: &F16Matrix, act: &F32Activations, out: &mut OutputTile<'_>) {
    let rows = out.rows();
    let base = m.data.as_ptr() as *const u16;
    let stride = m.stride;
    // SAFETY (every use): rows passed lie inside the matrix (caller).
    let row_ptr = |r: usize| unsafe { base.add(r * stride) };
    if out.batch() == 1 {
        let x = act.row(0).as_ptr();
        let y = out.row_mut(0);
        let mut r = rows.start;
        while r < rows.end {
            let n = (rows.end - r).min(ROWS);
            let w: [*const u16; ROWS] = core::array::from_fn(|i| row_ptr(r + i.min(n - 1)));
            // The rows are contiguous: the next tile starts at row r + ROWS.
            // The loop is compiled with and without the prefetch (one loop
            // testing an Option cost 8 register moves per step).
            // SAFETY: rows inside the matrix; `x` covers `stride` elements.
            let acc = unsafe {
                if r + 2 * ROWS <= rows.end {
                    let next = InOrderPrefetch::new(row_ptr(r + ROWS) as *const u8);
                    gemv_rows::<true>(w, x, stride, next)
                } else {
                    gemv_rows::<false>(w, x, stride, InOrderPrefetch::new(w[0] as *const u8))
                }
            };
            for i in 0..n {
                y[r - rows.start + i] = hsum_ps(acc[i]);
            }
            r += n;
        }
        return;
    }
    let mut r = rows.start;
    while r < rows.end {
        let n = (rows.end - r).min(GEMM_ROWS);
        let w: [*const u16; GEMM_ROWS] = core::array::from_fn(|i| row_ptr(r + i.min(n - 1)));
        let mut t = 0;
        while t < out.batch() {
            let nt = (out.batch() - t).min(GEMM_TOKENS);
            let x: [*const f32; GEMM_TOKENS] =
                core::array::from_fn(|j| act.row(t + j.min(nt - 1)).as_ptr());
            // SAFETY: as above; repeated rows/tokens are valid duplicates.
            let acc = unsafe { gemm_tile(w, x, stride) };
            for j in 0..nt {
                let yt = out.row_mut(t + j);
                for i in 0..n {
                    yt[r - rows.start + i] = hsum_ps(acc[i][j]);
                }
            }
            t += nt;
        }
        r += n;
    }
}

/// With `PREFETCH`, the tile at `next` is prefetched in address order.
///
/// # Safety
/// Each `w[i]` points at `len` f16, `x` at `len` f32; `len` a multiple of 32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_rows<const PREFETCH: bool>(
    w: [*const u16; ROWS],
    x: *const f32,
    len: usize,
    mut next: InOrderPrefetch,
) -> [__m256; ROWS] {
    let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
    for c in (0..len).step_by(16) {
        if PREFETCH {
            next.upto::<_MM_HINT_T1>((c / 16 + 1) * ROWS * 32);
        }
        // SAFETY: c + 16 <= len (caller).
        let xv = unsafe { [_mm256_loadu_ps(x.add(c)), _mm256_loadu_ps(x.add(c + 8))] };
        for i in 0..ROWS {
            for h in 0..2 {
                // SAFETY: as above.
                let wv = unsafe { _mm_loadu_si128(w[i].add(c + 8 * h) as *const _) };
                acc[i][h] = _mm256_fmadd_ps(_mm256_cvtph_ps(wv), xv[h], acc[i][h]);
            }
        }
    }
    acc.map(|a| _mm256_add_ps(a[0], a[1]))
}

/// # Safety
/// Each `w[i]` points at `len` f16, each `x[j]` at `len` f32; `len` a multiple of 8.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_tile(
    w: [*const u16; GEMM_ROWS],
    x: [*const f32; GEMM_TOKENS],
    len: usize,
) -> [[__m256; GEMM_TOKENS]; GEMM_ROWS] {
    let mut acc = [[_mm256_setzero_ps(); GEMM_TOKENS]; GEMM_ROWS];
    for c in (0..len).step_by(8) {
        // SAFETY: c + 8 <= len (caller).
        let wv: [__m256; GEMM_ROWS] = core::array::from_fn(|i| unsafe {
            _mm256_cvtph_ps(_mm_loadu_si128(w[i].add(c) as *const _))
        });
        for j in 0..GEMM_TOKENS {
            // SAFETY: as above.
            let xv = unsafe { _mm256_loadu_ps(x[j].add(c)) };
            for i in 0..GEMM_ROWS {
                acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
            }
        }
    }
    acc
}
