//! Activation reorderings that x86 kernels derive once per input, before the
//! threads start (plain Rust: no target features, run by every caller).
//!
//! Formats that pack 128 weights per 32 bytes (I2_S blocks, TQ2_0 half-blocks)
//! give, after one shift-and-mask of a 64-byte load, a vector whose low 32
//! bytes are elements 32k..32k+32 of one 128-weight piece and whose high 32
//! bytes are the same elements of the next piece. [`interleave_halves`]
//! reorders each 256 activations to match, so the kernels load activations
//! with plain 64-byte loads instead of shuffling them in the inner loop.

use crate::activations::{Activations, Q8KActivations, Q8_0Activations};
use crate::formats::{aligned_filled, aligned_from_iter, AlignedVec};
use crate::kernel::PreparedInput;

/// Reorders one 256-element chunk: output vector k (64 elements) is
/// `src[32k..32k+32] ++ src[128+32k..128+32k+32]`.
pub fn interleave_halves(src: &[i8], dst: &mut [i8]) {
    assert_eq!(src.len(), 256);
    assert_eq!(dst.len(), 256);
    for k in 0..4 {
        dst[64 * k..64 * k + 32].copy_from_slice(&src[32 * k..32 * k + 32]);
        dst[64 * k + 32..64 * k + 64].copy_from_slice(&src[128 + 32 * k..128 + 32 * k + 32]);
    }
}

/// Rows of int8 activations (length a multiple of 256), each 256-chunk
/// reordered by [`interleave_halves`].
#[derive(Clone, Debug)]
pub struct InterleavedRows {
    /// Elements per row (a multiple of 256).
    pub stride: usize,
    pub q: AlignedVec<i8>,
}

impl InterleavedRows {
    /// `q` holds `batch` rows of `stride` elements; `stride` must be a multiple of 256.
    pub fn new(q: &[i8], stride: usize) -> Self {
        assert_eq!(stride % 256, 0, "row stride must be a multiple of 256");
        assert_eq!(q.len() % stride.max(1), 0);
        let mut out = aligned_filled(q.len(), 0i8);
        for (src, dst) in q.chunks_exact(256).zip(out.chunks_exact_mut(256)) {
            interleave_halves(src, dst);
        }
        InterleavedRows { stride, q: out }
    }

    pub fn row(&self, b: usize) -> &[i8] {
        &self.q[b * self.stride..(b + 1) * self.stride]
    }
}

/// How [`Q8kRows`] lays out the 256 values of each block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Q8kLayout {
    /// As in the Q8_K block (256 bytes).
    Natural,
    /// Reordered by [`interleave_halves`] (256 bytes).
    Interleaved,
    /// TQ1_0 digit order for 64-byte vectors (320 bytes, see [`tq1_digit_order`]).
    Tq1Digits,
    /// Q8_0 blocks of 32 values (built by [`Q8kRows::from_q8_0`]).
    Q8_0,
}

impl Q8kLayout {
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Q8kLayout::Natural | Q8kLayout::Interleaved => 256,
            Q8kLayout::Tq1Digits => 320,
            Q8kLayout::Q8_0 => 32,
        }
    }
}

/// Q8_K activations split into flat arrays: values in a kernel's order, and
/// per block the f32 scale and the sum of the 256 values (which removes the
/// +1 offset of unsigned weight codes).
#[derive(Clone, Debug)]
pub struct Q8kRows {
    pub layout: Q8kLayout,
    pub blocks_per_row: usize,
    pub q: AlignedVec<i8>,
    pub d: AlignedVec<f32>,
    pub sum: AlignedVec<i32>,
    /// Per block, the Q8_K sums of its 16 runs of 16 consecutive values
    /// (element order, whatever the layout; empty for Q8_0 activations).
    pub bsums: AlignedVec<i16>,
}

impl Q8kRows {
    pub fn new(act: &Q8KActivations, layout: Q8kLayout) -> Self {
        let nb = act.blocks_per_row;
        let bytes = layout.block_bytes();
        let mut q = aligned_filled(act.batch * nb * bytes, 0i8);
        let mut d = aligned_filled(act.batch * nb, 0.0f32);
        let mut sum = aligned_filled(act.batch * nb, 0i32);
        let mut bsums = aligned_filled(act.batch * nb * 16, 0i16);
        for b in 0..act.batch {
            for (i, blk) in act.row(b).iter().enumerate() {
                let at = b * nb + i;
                bsums[at * 16..(at + 1) * 16].copy_from_slice(&blk.bsums);
                let dst = &mut q[at * bytes..(at + 1) * bytes];
                match layout {
                    Q8kLayout::Natural => dst.copy_from_slice(&blk.qs),
                    Q8kLayout::Interleaved => interleave_halves(&blk.qs, dst),
                    Q8kLayout::Q8_0 => unreachable!("Q8_0 layout is built by from_q8_0"),
                    Q8kLayout::Tq1Digits => {
                        for (pos, &src) in tq1_digit_order().iter().enumerate() {
                            if let Some(src) = src {
                                dst[pos] = blk.qs[src as usize];
                            }
                        }
                    }
                }
                d[at] = blk.d;
                sum[at] = blk.bsums.iter().map(|&v| v as i32).sum();
            }
        }
        Q8kRows {
            layout,
            blocks_per_row: nb,
            q,
            d,
            sum,
            bsums,
        }
    }

    /// The same split for Q8_0 activations (32 values and an f16 scale per block).
    pub fn from_q8_0(act: &Q8_0Activations) -> Self {
        let nb = act.blocks_per_row;
        let mut q = aligned_filled(act.batch * nb * 32, 0i8);
        let mut d = aligned_filled(act.batch * nb, 0.0f32);
        let mut sum = aligned_filled(act.batch * nb, 0i32);
        for b in 0..act.batch {
            for (i, blk) in act.row(b).iter().enumerate() {
                let at = b * nb + i;
                q[at * 32..(at + 1) * 32].copy_from_slice(&blk.qs);
                d[at] = blk.d.to_f32();
                sum[at] = blk.qs.iter().map(|&v| v as i32).sum();
            }
        }
        Q8kRows {
            layout: Q8kLayout::Q8_0,
            blocks_per_row: nb,
            q,
            d,
            sum,
            bsums: aligned_from_iter(std::iter::empty()),
        }
    }

    /// The copy of `act` in `layout` (of its Q8_0 activations for
    /// [`Q8kLayout::Q8_0`], of its Q8_K ones otherwise).
    pub fn of(act: &Activations, layout: Q8kLayout) -> Self {
        match layout {
            Q8kLayout::Q8_0 => Self::from_q8_0(act.q8_0()),
            _ => Self::new(act.q8k(), layout),
        }
    }

    /// `act` with its copy in `layout`: a kernel's `prepare_input`.
    pub fn prepare(act: Activations, layout: Q8kLayout) -> PreparedInput {
        let derived = Self::of(&act, layout);
        PreparedInput {
            act,
            derived: Some(Box::new(derived)),
        }
    }

    /// The copy [`Q8kRows::prepare`] made, or, for an input another kernel
    /// prepared, a new one kept in `owned`.
    pub fn prepared<'a>(
        x: &'a PreparedInput,
        layout: Q8kLayout,
        owned: &'a mut Option<Q8kRows>,
    ) -> &'a Q8kRows {
        match x.derived.as_ref().and_then(|d| d.downcast_ref::<Q8kRows>()) {
            Some(d) if d.layout == layout => d,
            _ => owned.insert(Self::of(&x.act, layout)),
        }
    }

    /// Values of block `blk` of token `b`.
    pub fn block_ptr(&self, b: usize, blk: usize) -> *const i8 {
        let bytes = self.layout.block_bytes();
        self.q[(b * self.blocks_per_row + blk) * bytes..].as_ptr()
    }
}

/// For a TQ1_0 block decoded as five 64-byte digit vectors (vector n holds
/// digit n of the 52 packed bytes: 32 of `qs[..32]`, 16 of `qs[32..]`, 4 of
/// `qh`, then 12 unused lanes), the element each lane multiplies, or `None`
/// for lanes that must meet a zero activation.
pub fn tq1_digit_order() -> &'static [Option<u8>; 320] {
    static ORDER: std::sync::OnceLock<[Option<u8>; 320]> = std::sync::OnceLock::new();
    ORDER.get_or_init(|| {
        let mut order = [None; 320];
        for n in 0..5 {
            for lane in 0..52 {
                let element = match lane {
                    0..32 => Some(n * 32 + lane),
                    32..48 => Some(160 + n * 16 + lane - 32),
                    _ if n < 4 => Some(240 + n * 4 + lane - 48),
                    _ => None,
                };
                order[64 * n + lane] = element.map(|e| e as u8);
            }
        }
        order
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tq1_digit_order_covers_every_element_once() {
        let mut seen = [0; 256];
        for e in tq1_digit_order().iter().flatten() {
            seen[*e as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1));
        for (pos, e) in tq1_digit_order().iter().enumerate() {
            if let Some(e) = e {
                let (byte, digit) = crate::formats::tq1::position(*e as usize);
                assert_eq!((pos % 64, pos / 64), (byte, digit));
            }
        }
    }

    #[test]
    fn interleave_pairs_matching_quarters() {
        let src: Vec<i8> = (0..256).map(|i| (i % 251) as i8).collect();
        let rows = InterleavedRows::new(&src, 256);
        for k in 0..4 {
            for j in 0..32 {
                assert_eq!(rows.q[64 * k + j], src[32 * k + j]);
                assert_eq!(rows.q[64 * k + 32 + j], src[128 + 32 * k + j]);
            }
        }
    }
}
