//! I2_S (bitnet.cpp, 2-bit codes w + 1, 128-weight blocks, per-tensor scale)
//! on AVX-512 VNNI, reading the standard layout.
//!
//! One 64-byte load covers two blocks. Byte j of a block holds the codes of
//! elements j, 32+j, 64+j, 96+j in bits 7:6, 5:4, 3:2, 1:0, so masking the
//! load with 0xC0, 0x30, 0x0C, 0x03 gives four vectors of codes scaled by 64,
//! 16, 4 and 1, each lined up with 64 activations (the activations are
//! reordered once per input by [`InterleavedRows`]).
//!
//! - GEMV (batch 1): no shifts at all. Each scaled code vector feeds its own
//!   `vpdpbusd` accumulator; the scale is removed once per row with an exact
//!   arithmetic shift (every product in accumulator k is a multiple of
//!   4^(3-k)). Unsigned codes are at most 128 and activations lie in
//!   [-128, 127], so a 32-bit lane gains at most 4 * 128 * 128 = 2^16 per 256
//!   columns: no overflow below 2^23 columns (checked). Four rows share each
//!   activation load; 16 accumulators hide the `vpdpbusd` latency; the rows
//!   [`PREFETCH_TILES`] tiles ahead are prefetched into L2 in address order
//!   while these are computed (from DRAM 1.8x faster at 6912x2560 on Zen 4
//!   than the rows' own prefetch; 4 tiles into L2 a
//!   further 1.2x over the next tile into L1: a 2.5 KB tile takes this loop
//!   ~70 ns, less than a DRAM access). One line is prefetched beside each
//!   row's load: the same 4 lines as a burst at the top of each step left
//!   the stream at 12.8 GB/s on a Sapphire-Rapids-class Xeon (read probe
//!   18), spread they give 15.0-16.0 (6912x2560 `--cold`, 1 thread: 346 ->
//!   290 us; a microbenchmark of this loop's loads and arithmetic: 13.2 ->
//!   18.1 GB/s), at a cost of 5-8% in L2 (2560x2560 hot: 42.5-44.6 -> 46-47
//!   us).
//! - GEMM (batch > 1): the codes of 4 rows are shifted down to 0..2 once
//!   into a buffer (a byte per weight, in L1 or L2) and read back for every
//!   group of 6 tokens; a 4-row x 6-token tile keeps 24 accumulators in
//!   registers.
//!
//! Measured on Zen 5 (min of interleaved runs, 640x2560 in L2): this
//! AND + `vpdpbusd` loop runs at ~82% of the same loop without the ANDs; the
//! 256-bit (AVX-512VL) form of the same loop is as fast in L2 but 15% slower
//! from L3, so 512-bit vectors are kept.
//!
//! The integer dot product is sum((w + 1) a) - sum(a) (the per-token sum from
//! [`TokenQ8`]), scaled by the same `output_factor` as the scalar kernel, so
//! outputs are bit-identical to it.

use crate::activations::{Activations, TokenQ8};
use crate::formats::i2s::I2sMatrix;
use crate::formats::Format;
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::avx512::{hsum4_epi32, BASE_FEATURES};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::InterleavedRows;
use core::arch::x86_64::*;

/// Rows per GEMV pass and per GEMM tile.
const ROWS: usize = 4;
/// Tokens per GEMM tile.
const TOKENS: usize = 6;
/// How many 4-row tiles ahead the GEMV prefetches.
const PREFETCH_TILES: usize = 4;
/// Longest row the 32-bit lane accumulators cannot overflow on.
const MAX_COLS: usize = 1 << 22;

pub struct I2s;

static INFO: KernelInfo = KernelInfo {
    name: "i2s-avx512",
    format: Format::I2s,
    isa: Isa::Avx512,
    exact: true,
    requires: BASE_FEATURES,
    row_tile: ROWS,
};

impl Kernel for I2s {
    fn info(&self) -> &'static KernelInfo {
        &INFO
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let t = act.token_q8();
        let derived = InterleavedRows::new(&t.q, t.stride);
        PreparedInput {
            act,
            derived: Some(Box::new(derived)),
        }
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        ensure_features(&INFO);
        let m = w.expect::<I2sMatrix>();
        let act = x.act.token_q8();
        assert!(
            m.packed.cols <= MAX_COLS,
            "i2s-avx512: rows longer than {MAX_COLS} columns"
        );
        let inter = x.derived_or(|| InterleavedRows::new(&act.q, act.stride));
        assert!(inter.stride >= m.packed.blocks_per_row.div_ceil(2) * 256);
        assert!(inter.q.len() >= act.batch * inter.stride);
        assert!(out.rows().end <= m.packed.rows);
        // SAFETY: ensure_features checked every feature the entry point
        // enables; the asserts above bound every weight and activation read.
        unsafe { compute_avx512(m, act, &inter, out) }
    }
}

/// # Safety
/// The CPU must have the features in [`BASE_FEATURES`]; `inter` must hold
/// `act.batch` rows of at least `ceil(blocks_per_row / 2) * 256` elements and
/// `out.rows()` must lie inside the matrix.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn compute_avx512(
    m: &I2sMatrix,
    act: &TokenQ8,
    inter: &InterleavedRows,
    out: &mut OutputTile<'_>,
) {
    let nblocks = m.packed.blocks_per_row;
    let base = m.packed.blocks.as_ptr() as *const u8;
    // SAFETY (every use): the rows passed lie inside the matrix (caller).
    let row_ptr = |r: usize| unsafe { base.add(r * nblocks * 32) };
    let rows = out.rows();
    if out.batch() == 1 {
        let a = inter.row(0).as_ptr();
        let factor = act.output_factor(0, m.scale);
        let sum = act.sum[0];
        let y = out.row_mut(0);
        let mut r = rows.start;
        while r + ROWS <= rows.end {
            let w = [row_ptr(r), row_ptr(r + 1), row_ptr(r + 2), row_ptr(r + 3)];
            // Prefetch only rows that exist.
            let prefetch = r + (PREFETCH_TILES + 1) * ROWS <= m.packed.rows;
            // SAFETY: 4 rows inside the matrix; `a` covers them (caller).
            let acc = unsafe {
                if prefetch {
                    gemv_rows::<ROWS, true>(w, a, nblocks)
                } else {
                    gemv_rows::<ROWS, false>(w, a, nblocks)
                }
            };
            let v = _mm_mul_ps(
                _mm_cvtepi32_ps(_mm_sub_epi32(hsum4_epi32(acc), _mm_set1_epi32(sum))),
                _mm_set1_ps(factor),
            );
            let o = &mut y[r - rows.start..r - rows.start + ROWS];
            // SAFETY: `o` holds exactly 4 floats.
            unsafe { _mm_storeu_ps(o.as_mut_ptr(), v) };
            r += ROWS;
        }
        for r in r..rows.end {
            // SAFETY: one row inside the matrix.
            let acc = unsafe { gemv_rows::<1, false>([row_ptr(r)], a, nblocks) };
            let coded = _mm512_reduce_add_epi32(acc[0]);
            y[r - rows.start] = (coded - sum) as f32 * factor;
        }
        return;
    }
    // Codes of one tile, unpacked once for all its token groups.
    let mut codes = vec![_mm512_setzero_si512(); 4 * ROWS * nblocks.div_ceil(2)];
    let mut r = rows.start;
    while r < rows.end {
        let n = (rows.end - r).min(ROWS);
        let w: [*const u8; ROWS] = core::array::from_fn(|i| row_ptr(r + i.min(n - 1)));
        // SAFETY: rows r..r+n exist (loop bounds); `codes` holds 4 vectors
        // per block pair and row of a tile.
        unsafe { unpack_rows(&w[..n], nblocks, &mut codes) };
        let mut t = 0;
        while t < out.batch() {
            let nt = (out.batch() - t).min(TOKENS);
            // SAFETY: rows r..r+n and tokens t..t+nt exist (loop bounds) and
            // `codes` holds rows r..r+n.
            unsafe {
                match (n, nt) {
                    (4, 6) => gemm_tile::<4, 6>(&codes, m, act, inter, out, r, t),
                    (4, 5) => gemm_tile::<4, 5>(&codes, m, act, inter, out, r, t),
                    (4, 4) => gemm_tile::<4, 4>(&codes, m, act, inter, out, r, t),
                    (4, 3) => gemm_tile::<4, 3>(&codes, m, act, inter, out, r, t),
                    (4, 2) => gemm_tile::<4, 2>(&codes, m, act, inter, out, r, t),
                    (4, _) => gemm_tile::<4, 1>(&codes, m, act, inter, out, r, t),
                    (3, _) => gemm_tile::<3, 1>(&codes, m, act, inter, out, r, t),
                    (2, _) => gemm_tile::<2, 1>(&codes, m, act, inter, out, r, t),
                    _ => gemm_tile::<1, 1>(&codes, m, act, inter, out, r, t),
                }
            }
            t += if n == ROWS { nt } else { 1 };
        }
        r += n;
    }
}

/// Loads the 64 code bytes of block pair `p` of a row (zero-extending a lone
/// last block, so no byte past the row is read).
///
/// # Safety
/// `w` must point at a row of `nblocks` I2_S blocks and `2p < nblocks`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn load_pair(w: *const u8, p: usize, nblocks: usize) -> __m512i {
    // SAFETY: block 2p exists; block 2p+1 is read only when it exists.
    unsafe {
        if 2 * p + 1 < nblocks {
            _mm512_loadu_si512(w.add(64 * p) as *const _)
        } else {
            _mm512_zextsi256_si512(_mm256_loadu_si256(w.add(64 * p) as *const _))
        }
    }
}

/// The dot products sum(code * a) of `R` rows with one activation row, as
/// vectors whose lanes sum to them (shift-free masking, see the module docs).
/// With `PREFETCH`, the `R` rows [`PREFETCH_TILES`] tiles on are prefetched
/// in address order, one line beside each row's load: a step reads one line
/// of each row, so a tile's steps name exactly the lines of the tile
/// [`PREFETCH_TILES`] on. The prefetch test and the lone-last-block test are
/// outside the loop (inside, they cost 4 branches per row and step; out,
/// 2560x2560 hot runs 56-59 -> 48-51 us at 1 thread, 640x2560 15 -> 12-13,
/// while `--cold` is unchanged).
///
/// # Safety
/// Each `w[i]` must point at a row of `nblocks` blocks and `a` at
/// `ceil(nblocks / 2) * 256` interleaved activations.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_rows<const R: usize, const PREFETCH: bool>(
    w: [*const u8; R],
    a: *const i8,
    nblocks: usize,
) -> [__m512i; R] {
    // The rows are contiguous: tiles lie R rows apart.
    let ahead = w[0].wrapping_add(PREFETCH_TILES * R * nblocks * 32);
    let mut acc = [[_mm512_setzero_si512(); 4]; R];
    for p in 0..nblocks / 2 {
        // SAFETY: activation vectors 4p..4p+4 lie inside the row (caller).
        unsafe {
            gemv_step(&mut acc, a, p, |i| {
                if PREFETCH {
                    _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add((p * R + i) * 64) as *const i8);
                }
                // SAFETY: blocks 2p and 2p+1 exist.
                _mm512_loadu_si512(w[i].add(64 * p) as *const _)
            })
        };
    }
    if nblocks % 2 == 1 {
        let p = nblocks / 2;
        // SAFETY: the lone last block exists; its activations are in the row.
        unsafe { gemv_step(&mut acc, a, p, |i| load_pair(w[i], p, nblocks)) };
    }
    // Every product in accumulator k is a multiple of 4^(3-k): exact shifts.
    acc.map(|a| {
        let hi = _mm512_add_epi32(_mm512_srai_epi32::<6>(a[0]), _mm512_srai_epi32::<4>(a[1]));
        let lo = _mm512_add_epi32(_mm512_srai_epi32::<2>(a[2]), a[3]);
        _mm512_add_epi32(hi, lo)
    })
}

/// One step of [`gemv_rows`]: block pair `p` of every row, `load(i)` giving
/// row i's 64 code bytes, masked four ways into the row's accumulators.
///
/// # Safety
/// `a` must hold activation vectors 4p..4p+4.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_step<const R: usize>(
    acc: &mut [[__m512i; 4]; R],
    a: *const i8,
    p: usize,
    load: impl Fn(usize) -> __m512i,
) {
    let masks = [0xC0u8, 0x30, 0x0C, 0x03].map(|m| _mm512_set1_epi8(m as i8));
    // SAFETY: activation vectors 4p..4p+4 are readable (caller).
    let av: [__m512i; 4] =
        std::array::from_fn(|k| unsafe { _mm512_loadu_si512(a.add(256 * p + 64 * k) as *const _) });
    for (i, acc) in acc.iter_mut().enumerate() {
        let wv = load(i);
        for k in 0..4 {
            acc[k] = _mm512_dpbusd_epi32(acc[k], _mm512_and_si512(wv, masks[k]), av[k]);
        }
    }
}

/// Codes (0..2) of group `k` (elements 32k..32k+32 of each block) of a pair.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn codes_of(wv: __m512i, k: usize) -> __m512i {
    let three = _mm512_set1_epi8(3);
    let shifted = match k {
        0 => _mm512_srli_epi16::<6>(wv),
        1 => _mm512_srli_epi16::<4>(wv),
        2 => _mm512_srli_epi16::<2>(wv),
        _ => wv,
    };
    _mm512_and_si512(shifted, three)
}

/// The codes (0..2) of the rows `w` (R of them), vector k of block pair p of
/// row i at `codes[(4p + k) R + i]`, in the order [`gemm_tile`] reads them.
///
/// # Safety
/// Each `w[i]` must point at a row of `nblocks` blocks; `codes` must hold
/// `4 R ceil(nblocks / 2)` vectors.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn unpack_rows(w: &[*const u8], nblocks: usize, codes: &mut [__m512i]) {
    let rows = w.len();
    let c = codes[..4 * rows * nblocks.div_ceil(2)].as_mut_ptr();
    for p in 0..nblocks.div_ceil(2) {
        for (i, &row) in w.iter().enumerate() {
            // SAFETY: 2p < nblocks; the index is below the length sliced above.
            unsafe {
                let wv = load_pair(row, p, nblocks);
                for k in 0..4 {
                    *c.add((4 * p + k) * rows + i) = codes_of(wv, k);
                }
            }
        }
    }
}

/// y for rows r..r+R and tokens t..t+T from the rows' unpacked codes: each
/// code vector is loaded once per T tokens. (Shifting and masking the codes
/// again for every token group was a third of the loop's vector
/// instructions; without it, batch 128 on Zen 4 runs 0-8% faster, at 76-84%
/// of the `vpdpbusd` roof.)
///
/// # Safety
/// Rows r..r+R and tokens t..t+T must exist, `codes` must hold rows r..r+R
/// unpacked by [`unpack_rows`] and `inter` rows must cover the weight rows
/// (see [`compute_avx512`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_tile<const R: usize, const T: usize>(
    codes: &[__m512i],
    m: &I2sMatrix,
    act: &TokenQ8,
    inter: &InterleavedRows,
    out: &mut OutputTile<'_>,
    r: usize,
    t: usize,
) {
    let pairs = m.packed.blocks_per_row.div_ceil(2);
    let c = codes[..4 * R * pairs].as_ptr();
    let a: [*const i8; T] = std::array::from_fn(|j| inter.row(t + j).as_ptr());
    let mut acc = [[_mm512_setzero_si512(); T]; R];
    for p in 0..pairs {
        for k in 0..4 {
            // SAFETY: the index is below the length sliced above.
            let cv: [__m512i; R] = std::array::from_fn(|i| unsafe { *c.add((4 * p + k) * R + i) });
            for j in 0..T {
                // SAFETY: activation vector 4p+k lies inside row t+j (caller).
                let av = unsafe { _mm512_loadu_si512(a[j].add(256 * p + 64 * k) as *const _) };
                for i in 0..R {
                    acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], cv[i], av);
                }
            }
        }
    }
    let rows0 = out.rows().start;
    for j in 0..T {
        let b = t + j;
        let four: [__m512i; 4] = std::array::from_fn(|i| {
            if i < R {
                acc[i][j]
            } else {
                _mm512_setzero_si512()
            }
        });
        let v = _mm_mul_ps(
            _mm_cvtepi32_ps(_mm_sub_epi32(hsum4_epi32(four), _mm_set1_epi32(act.sum[b]))),
            _mm_set1_ps(act.output_factor(b, m.scale)),
        );
        let mut vals = [0.0f32; 4];
        // SAFETY: `vals` holds 4 floats.
        unsafe { _mm_storeu_ps(vals.as_mut_ptr(), v) };
        out.row_mut(b)[r - rows0..r - rows0 + R].copy_from_slice(&vals[..R]);
    }
}
