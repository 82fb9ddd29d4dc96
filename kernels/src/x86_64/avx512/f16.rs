//! The f16 baseline on AVX-512: weights converted with `vcvtph2ps` (16 per
//! instruction) and multiplied into f32 accumulators with FMA.
//!
//! - GEMV: 4 rows per pass share each activation load, 2 accumulators per
//!   row (8 FMA chains); the next 4 rows are prefetched in address order
//!   ([`InOrderPrefetch`]), a line beside each row's loads (as in the
//!   i2s-avx512 GEMV; from DRAM, 1 thread, on a Sapphire-Rapids-class
//!   Xeon: 2560x6912 2479-3164 -> 2059-2107 us, 6912x2560 unchanged within
//!   the noise, 2359-2421 -> 2366).
//! - GEMM: 4 rows x 6 tokens per tile; each weight vector is converted once
//!   and used by 6 FMAs.
//!
//! Rows (weights and activations) are zero-padded to 32 elements, so there is
//! no tail loop. Lossy (f32 sums in another order than the scalar kernel).

use crate::activations::F32Activations;
use crate::formats::f16::F16Matrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::avx512::BASE_FEATURES;
use crate::x86_64::{ensure_features, InOrderPrefetch};
use core::arch::x86_64::*;

const ROWS: usize = 4;
const TOKENS: usize = 6;
/// Rows per GEMM panel (32 rows of 6912 f16 and 6 tokens' activations fit
/// a 1 MiB L2).
const PANEL_ROWS: usize = 32;

pub struct F16;

static INFO: KernelInfo = KernelInfo {
    name: "f16-avx512",
    format: Format::F16,
    isa: Isa::Avx512,
    exact: false,
    requires: BASE_FEATURES,
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
        // SAFETY: ensure_features checked the enabled features; the asserts
        // bound every read (rows of `stride` elements, multiples of 32).
        unsafe { compute_avx512(m, act, out) }
    }
}

/// # Safety
/// Features in [`BASE_FEATURES`]; rows inside the matrix; activation rows at
/// least `m.stride` long; `m.stride` a multiple of 32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn compute_avx512(m: &F16Matrix, act: &F32Activations, out: &mut OutputTile<'_>) {
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
            // SAFETY: rows inside the matrix; `x` covers `stride` elements.
            // The rows are contiguous: the next tile starts at row r + ROWS.
            let next = (r + 2 * ROWS <= rows.end)
                .then(|| InOrderPrefetch::new(row_ptr(r + ROWS) as *const u8));
            let acc = unsafe { gemv_rows(w, x, stride, next) };
            for i in 0..n {
                y[r - rows.start + i] = _mm512_reduce_add_ps(acc[i]);
            }
            r += n;
        }
        return;
    }
    // Panels of PANEL_ROWS rows: a token group's activations stay in L2
    // while the panel's row tiles pass over them, and the panel stays in L2
    // for all token groups (row tile by row tile over all tokens read every
    // token's activations again per tile: 3.5 MB at batch 128 x 6912).
    let mut panel = rows.start;
    while panel < rows.end {
        let panel_end = (panel + PANEL_ROWS).min(rows.end);
        let mut t = 0;
        while t < out.batch() {
            let nt = (out.batch() - t).min(TOKENS);
            let x: [*const f32; TOKENS] =
                core::array::from_fn(|j| act.row(t + j.min(nt - 1)).as_ptr());
            let mut r = panel;
            while r < panel_end {
                let n = (panel_end - r).min(ROWS);
                let w: [*const u16; ROWS] = core::array::from_fn(|i| row_ptr(r + i.min(n - 1)));
                // SAFETY: as above; repeated rows/tokens are valid duplicates.
                let acc = unsafe { gemm_tile(w, x, stride) };
                for j in 0..nt {
                    let yt = out.row_mut(t + j);
                    for i in 0..n {
                        yt[r - rows.start + i] = _mm512_reduce_add_ps(acc[i][j]);
                    }
                }
                r += n;
            }
            t += nt;
        }
        panel = panel_end;
    }
}

/// # Safety
/// Each `w[i]` points at `len` f16, `x` at `len` f32; `len` a multiple of 32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_rows(
    w: [*const u16; ROWS],
    x: *const f32,
    len: usize,
    mut next: Option<InOrderPrefetch>,
) -> [__m512; ROWS] {
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    for c in (0..len).step_by(32) {
        // SAFETY: c + 32 <= len (caller).
        let xv = unsafe { [_mm512_loadu_ps(x.add(c)), _mm512_loadu_ps(x.add(c + 16))] };
        for i in 0..ROWS {
            // One line beside each row's loads, not a burst per step (see
            // the i2s-avx512 GEMV).
            if let Some(pf) = next.as_mut() {
                pf.upto::<_MM_HINT_T1>(((c / 32) * ROWS + i + 1) * 64);
            }
            for h in 0..2 {
                // SAFETY: as above.
                let wv = unsafe { _mm256_loadu_si256(w[i].add(c + 16 * h) as *const _) };
                acc[i][h] = _mm512_fmadd_ps(_mm512_cvtph_ps(wv), xv[h], acc[i][h]);
            }
        }
    }
    acc.map(|a| _mm512_add_ps(a[0], a[1]))
}

/// # Safety
/// Each `w[i]` points at `len` f16, each `x[j]` at `len` f32; `len` a multiple of 32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_tile(
    w: [*const u16; ROWS],
    x: [*const f32; TOKENS],
    len: usize,
) -> [[__m512; TOKENS]; ROWS] {
    let mut acc = [[_mm512_setzero_ps(); TOKENS]; ROWS];
    for c in (0..len).step_by(16) {
        // SAFETY: c + 16 <= len (caller).
        let wv: [__m512; ROWS] = core::array::from_fn(|i| unsafe {
            _mm512_cvtph_ps(_mm256_loadu_si256(w[i].add(c) as *const _))
        });
        for j in 0..TOKENS {
            // SAFETY: as above.
            let xv = unsafe { _mm512_loadu_ps(x[j].add(c)) };
            for i in 0..ROWS {
                acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
            }
        }
    }
    acc
}
