//! I2_S on AMX: prompt processing (batch >= [`MIN_TOKENS`]) as 16 x 16 tile
//! products, reading the standard layout; smaller batches (token generation)
//! run i2s-avx512's loops, which are bound by memory, not by multiplies.
//!
//! - Weights: 32 rows at a time are unpacked into codes 0..2 (a byte per
//!   weight, 2 x 16 rows per K-step of 64, each 16 x 64 block contiguous) by
//!   i2s-avx512's shift-and-mask, in its interleaved element order; every
//!   32-token group then reads them back. The next 32 rows are unpacked
//!   between the tile steps of the current ones' first token group (the
//!   vector units are idle while the tile unit multiplies): 2-25% faster than
//!   unpacking between the groups of rows.
//! - Activations: the int8 token rows are rearranged once per input into
//!   `tdpbusd`'s B layout (per 16 tokens and K-step, 16 groups of 4
//!   consecutive K values x 16 tokens, in the weights' interleaved order),
//!   zero-padded to an even number of 16-token tiles.
//! - [`dot_2x2`] sums 2 row tiles x 2 token tiles over the whole row into
//!   int32: codes are at most 2 and activations at least -128, so a lane
//!   moves by at most 256 per column; no overflow below 2^23 columns.
//!
//! On a Sapphire-Rapids-class Xeon (1 thread, hot) this runs batch 128 at
//! 6912x2560 3.1x faster than i2s-avx512, at 1.7-2.1 TOP/s: a third of the
//! `tdpbusd` roof on loaded tiles (6.4 TOP/s). The 2 x 2 step alone, its
//! tiles in L1 or L2, ran at 3.6-4.5 TOP/s (its four tile loads; tiles not
//! 64-byte aligned halved that); the rest is unpacking and the outputs.
//!
//! The integer dot product is sum((w + 1) a) - sum(a) with the per-token sum
//! from [`TokenQ8`], scaled by the same `output_factor` as the scalar kernel,
//! so outputs are bit-identical to it.

use super::{configure_tiles, dot_2x2, release_tiles, FEATURES, TILE_BYTES, TILE_K, TILE_ROWS};
use crate::activations::{Activations, TokenQ8};
use crate::formats::i2s::I2sMatrix;
use crate::formats::{aligned_filled, AlignedVec, Format};
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::x86_64::avx512::i2s::{codes_of, compute_avx512, load_pair};
use crate::x86_64::ensure_features;
use crate::x86_64::prep::InterleavedRows;
use core::arch::x86_64::*;

/// Smallest batch run on the tiles: below it the padding to 32 tokens and
/// the unpacking cost more than the tiles gain over i2s-avx512 (measured:
/// slower at 8 and 12 tokens, level or faster at 16).
pub const MIN_TOKENS: usize = 16;
/// Weight rows per tile product (2 tiles).
const ROWS: usize = 2 * TILE_ROWS;
/// Longest row the 32-bit accumulators cannot overflow on.
const MAX_COLS: usize = 1 << 22;

pub struct I2s;

static INFO: KernelInfo = KernelInfo {
    name: "i2s-amx",
    format: Format::I2s,
    isa: Isa::Amx,
    exact: true,
    requires: FEATURES,
    row_tile: ROWS,
};

/// The input as the kernel reads it: for batches below [`MIN_TOKENS`] the
/// interleaved rows of i2s-avx512, else the B tiles: token tile t, K-step s
/// at `tiles[(t * steps + s) * 256..]` (in 4-byte words).
#[derive(Clone)]
enum TileInput {
    Rows(InterleavedRows),
    Tiles {
        tiles: AlignedVec<u32>,
        token_tiles: usize,
        steps: usize,
    },
}

impl TileInput {
    fn new(act: &TokenQ8) -> Self {
        if act.batch < MIN_TOKENS {
            return TileInput::Rows(InterleavedRows::new(&act.q, act.stride));
        }
        let steps = act.stride / TILE_K;
        let token_tiles = act.batch.div_ceil(TILE_ROWS).next_multiple_of(2);
        let mut tiles = aligned_filled(token_tiles * steps * TILE_BYTES / 4, 0u32);
        let mut words = vec![0u32; act.stride / 4];
        for b in 0..act.batch {
            let (t, n) = (b / TILE_ROWS, b % TILE_ROWS);
            for (word, four) in words.iter_mut().zip(act.row(b).chunks_exact(4)) {
                *word = u32::from_ne_bytes([four[0], four[1], four[2], four[3]].map(|v| v as u8));
            }
            // Step 4c + k holds the interleaved order of chunk c (see
            // `interleave_halves`): its 16 words are words 8k..8k+8 of the
            // chunk's first half and the same of its second half.
            for (s, tile) in tiles[t * steps * 256..(t + 1) * steps * 256]
                .chunks_exact_mut(256)
                .enumerate()
            {
                let (c, k) = (s / 4, s % 4);
                for g in 0..16 {
                    let half = if g < 8 { 0 } else { 24 };
                    tile[16 * g + n] = words[64 * c + 8 * k + g + half];
                }
            }
        }
        TileInput::Tiles {
            tiles,
            token_tiles,
            steps,
        }
    }
}

impl Kernel for I2s {
    fn info(&self) -> &'static KernelInfo {
        &INFO
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let derived = TileInput::new(act.token_q8());
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
            "i2s-amx: rows longer than {MAX_COLS} columns"
        );
        let input = x.derived_or(|| TileInput::new(act));
        assert!(out.rows().end <= m.packed.rows);
        let pairs = m.packed.blocks_per_row.div_ceil(2);
        match &*input {
            TileInput::Rows(inter) => {
                assert!(inter.stride >= pairs * 256);
                assert!(inter.q.len() >= act.batch * inter.stride);
                // SAFETY: ensure_features checked the AVX-512 features it
                // enables; the asserts above are its bounds.
                unsafe { compute_avx512(m, act, inter, out) }
            }
            TileInput::Tiles {
                tiles,
                token_tiles,
                steps,
            } => {
                assert!(token_tiles * TILE_ROWS >= act.batch && token_tiles % 2 == 0);
                assert!(*steps >= 4 * pairs);
                assert!(tiles.len() >= token_tiles * steps * 256);
                // SAFETY: ensure_features checked AVX-512 and AMX-INT8 (whose
                // detection obtained the tile permission); the asserts bound
                // every read of the weights and of the B tiles.
                unsafe { compute_tiles(m, act, tiles, *token_tiles, *steps, out) }
            }
        }
    }
}

/// # Safety
/// The CPU must have the features in `INFO.requires` (AMX permission
/// granted); `tiles` must hold `token_tiles` (even, covering `act.batch`)
/// B tiles of `tile_steps >= 4 * ceil(blocks_per_row / 2)` steps each and
/// `out.rows()` must lie inside the matrix.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn compute_tiles(
    m: &I2sMatrix,
    act: &TokenQ8,
    tiles: &[u32],
    token_tiles: usize,
    tile_steps: usize,
    out: &mut OutputTile<'_>,
) {
    let nblocks = m.packed.blocks_per_row;
    let steps = 4 * nblocks.div_ceil(2);
    let base = m.packed.blocks.as_ptr() as *const u8;
    let rows = out.rows();
    // Row pair q's codes are in codes[q % 2]; row pair q + 1 is unpacked
    // while the tile unit multiplies row pair q with the first token tiles.
    let mut codes = [0, 1].map(|_| aligned_filled(2 * steps * TILE_BYTES, 0u8));
    let mut acc = [[0i32; 256]; 4];
    let pair_rows = |r: usize| (r, (rows.end - r).min(ROWS));
    // SAFETY: the CPU has AMX (caller).
    unsafe { configure_tiles() };
    if !rows.is_empty() {
        let (r, n) = pair_rows(rows.start);
        // SAFETY: rows r..r+n lie inside the matrix (caller).
        let mut unpack = unsafe { Unpack::new(base, nblocks, r, n, &mut codes[0]) };
        (0..unpack.units()).for_each(|u| unpack.unit(u));
    }
    let mut r = rows.start;
    while r < rows.end {
        let n = (rows.end - r).min(ROWS);
        let q = (r - rows.start) / ROWS;
        let [even, odd] = &mut codes;
        let (cur, next) = if q.is_multiple_of(2) {
            (even, odd)
        } else {
            (odd, even)
        };
        let a = [cur.as_ptr(), cur[steps * TILE_BYTES..].as_ptr()];
        let mut unpack = (r + n < rows.end).then(|| {
            let (r, n) = pair_rows(r + n);
            // SAFETY: rows r..r+n lie inside the matrix (caller).
            unsafe { Unpack::new(base, nblocks, r, n, next) }
        });
        for t in (0..token_tiles).step_by(2) {
            let tile = |t: usize| tiles[t * tile_steps * 256..].as_ptr() as *const i8;
            // The next pair's units, spread over this call's steps.
            let mut job = unpack.take();
            let per_step = job.as_ref().map_or(0, |u| u.units().div_ceil(steps));
            // SAFETY: tiles configured above; `cur` holds 2 x steps tiles,
            // the B tiles t, t+1 hold `tile_steps >= steps` each (caller).
            unsafe {
                dot_2x2(a, [tile(t), tile(t + 1)], steps, &mut acc, |s| {
                    if let Some(u) = job.as_mut() {
                        (s * per_step..((s + 1) * per_step).min(u.units())).for_each(|i| u.unit(i));
                    }
                })
            };
            for (j, tokens) in [t, t + 1].map(|t| t * TILE_ROWS).into_iter().enumerate() {
                for b in tokens..(tokens + TILE_ROWS).min(act.batch) {
                    let y = &mut out.row_mut(b)[r - rows.start..r - rows.start + n];
                    store_token(
                        &acc,
                        j,
                        b - tokens,
                        act.sum[b],
                        act.output_factor(b, m.scale),
                        y,
                    );
                }
            }
        }
        r += n;
    }
    // SAFETY: the CPU has AMX (caller).
    unsafe { release_tiles() };
}

/// y[i] = (c - sum) * factor for the n <= 32 rows of token column `col` of
/// token tile j (of two), c from the row tiles' sums in `acc` (a column of
/// a tile is strided: gathered).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn store_token(acc: &[[i32; 256]; 4], j: usize, col: usize, sum: i32, factor: f32, y: &mut [f32]) {
    let rows = _mm512_setr_epi32(
        0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
    );
    let column = _mm512_add_epi32(rows, _mm512_set1_epi32(col as i32));
    for h in 0..2 {
        let n = y.len().saturating_sub(16 * h).min(16);
        if n == 0 {
            break;
        }
        // SAFETY: the offsets are 16m + col < 256 elements of the tile.
        let c = unsafe { _mm512_i32gather_epi32::<4>(column, acc[2 * h + j].as_ptr()) };
        let v = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_sub_epi32(c, _mm512_set1_epi32(sum))),
            _mm512_set1_ps(factor),
        );
        // SAFETY: the mask stores the n values y holds from 16h on.
        unsafe {
            _mm512_mask_storeu_ps(
                y[16 * h..].as_mut_ptr(),
                (1u32 << n).wrapping_sub(1) as u16,
                v,
            )
        };
    }
}

/// The unpacking of rows r..r+n (n <= 32) into A tiles, in units of one
/// block pair of one row: code vector k of block pair p of row r + 16h + i
/// goes to `codes[(h * steps + 4p + k) * 1024 + 64i..]`; the rows past n are
/// zero.
struct Unpack<'a> {
    base: *const u8,
    nblocks: usize,
    r: usize,
    n: usize,
    codes: &'a mut [u8],
}

impl<'a> Unpack<'a> {
    /// # Safety
    /// `base` must point at a matrix of I2_S rows of `nblocks` blocks that
    /// holds rows r..r+n.
    unsafe fn new(
        base: *const u8,
        nblocks: usize,
        r: usize,
        n: usize,
        codes: &'a mut [u8],
    ) -> Self {
        assert!((1..=ROWS).contains(&n));
        assert!(codes.len() >= 2 * 4 * nblocks.div_ceil(2) * TILE_BYTES);
        Unpack {
            base,
            nblocks,
            r,
            n,
            codes,
        }
    }

    fn units(&self) -> usize {
        ROWS * self.nblocks.div_ceil(2)
    }

    /// Unit u: block pair u % pairs of row u / pairs.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn unit(&mut self, u: usize) {
        let pairs = self.nblocks.div_ceil(2);
        let (row, p) = (u / pairs, u % pairs);
        let (h, i) = (row / TILE_ROWS, row % TILE_ROWS);
        let wv = if row < self.n {
            // SAFETY: the row lies inside the matrix (`new`'s contract)
            // and 2p < nblocks.
            unsafe {
                load_pair(
                    self.base.add((self.r + row) * self.nblocks * 32),
                    p,
                    self.nblocks,
                )
            }
        } else {
            _mm512_setzero_si512()
        };
        for k in 0..4 {
            let at = &mut self.codes[(h * 4 * pairs + 4 * p + k) * TILE_BYTES + 64 * i..][..64];
            // SAFETY: `at` holds 64 bytes.
            unsafe { _mm512_storeu_si512(at.as_mut_ptr() as *mut _, codes_of(wv, k)) };
        }
    }
}
