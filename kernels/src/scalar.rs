//! Scalar reference kernels, one per format: plain Rust with no target
//! features, the oracle every SIMD kernel is checked against.
//!
//! They decode each weight from the packed bytes with the format's own
//! accessors and accumulate in integers (ternary, 8- and 4-bit formats) or
//! sequentially in f32 (f16). The float step after the integer sum is written
//! once per format here; SIMD kernels may sum blocks in another order, which
//! is why only i2s (one scaling per output) compares bit for bit after scaling.

use crate::activations::{Activations, TokenQ8};
use crate::activations::{BlockActivations, BlockQ8K};
use crate::formats::f16::F16Matrix;
use crate::formats::i2s::{BlockI2s, I2sMatrix};
use crate::formats::lut::TILE_ROWS;
use crate::formats::q4_0::{BlockQ4_0, Q4_0Matrix};
use crate::formats::q6_k::{BlockQ6K, Q6KMatrix};
use crate::formats::q8_0::{BlockQ8_0, Q8_0Matrix};
use crate::formats::tl1::Tl1Matrix;
use crate::formats::tl2::Tl2Matrix;
use crate::formats::tmac::TmacMatrix;
use crate::formats::tq1::{BlockTq1, Tq1Matrix};
use crate::formats::tq2::{BlockTq2, Tq2Matrix};
use crate::formats::{BlockMatrix, Format, PackedBlock};
use crate::kernel::{Isa, Kernel, KernelInfo, OutputTile, PreparedInput, PreparedWeights};
use crate::lossy::CodeTables;
use crate::lut::PlainTables;

/// Every scalar kernel, in format order.
pub static KERNELS: [&dyn Kernel; 13] = [
    &I2s,
    &Tq2,
    &Tq1,
    &F16,
    &Q8_0,
    &Q4_0,
    &Q6K,
    &Tl1,
    &Tl2,
    &Tmac,
    &TL1_LOSSY_KERNEL,
    &TL2_LOSSY_KERNEL,
    &TMAC_LOSSY_KERNEL,
];

const fn info(name: &'static str, format: Format, exact: bool) -> KernelInfo {
    KernelInfo {
        name,
        format,
        isa: Isa::Scalar,
        exact,
        requires: &[],
        row_tile: 1,
    }
}

/// Integer dot product of one I2_S block with 128 activations: sum(code * a).
fn i2s_block_dot(block: &BlockI2s, a: &[i8]) -> i32 {
    let mut acc = 0i32;
    for (j, &byte) in block.qs.iter().enumerate() {
        for group in 0..4 {
            let code = (byte >> (6 - 2 * group)) & 3;
            acc += code as i32 * a[group * 32 + j] as i32;
        }
    }
    acc
}

pub struct I2s;
static I2S: KernelInfo = info("i2s-scalar", Format::I2s, true);

impl Kernel for I2s {
    fn info(&self) -> &'static KernelInfo {
        &I2S
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        let m = w.expect::<I2sMatrix>();
        let act = x.act.token_q8();
        let rows = out.rows();
        for b in 0..out.batch() {
            let a = act.row(b);
            let factor = act.output_factor(b, m.scale);
            for (y, r) in out.row_mut(b).iter_mut().zip(rows.clone()) {
                let coded: i32 = m
                    .packed
                    .row(r)
                    .iter()
                    .zip(a.chunks_exact(128))
                    .map(|(block, a)| i2s_block_dot(block, a))
                    .sum();
                // Codes are w + 1: subtract sum(a) to get sum(w * a).
                *y = (coded - act.sum[b]) as f32 * factor;
            }
        }
    }
}

/// y[b][r] = sum over blocks of isum(w_block, a_block) * (d_w * d_a), in
/// block order, for formats whose weight and activation blocks pair 1:1.
fn block_scaled_rows<W: PackedBlock, A>(
    w: &BlockMatrix<W>,
    act: &BlockActivations<A>,
    out: &mut OutputTile<'_>,
    isum: impl Fn(&W, &A) -> i32,
    scale: impl Fn(&W, &A) -> f32,
) {
    let rows = out.rows();
    for b in 0..out.batch() {
        let a_row = act.row(b);
        for (y, r) in out.row_mut(b).iter_mut().zip(rows.clone()) {
            let mut sum = 0.0f32;
            for (wb, ab) in w.row(r).iter().zip(a_row) {
                sum += isum(wb, ab) as f32 * scale(wb, ab);
            }
            *y = sum;
        }
    }
}

pub struct Tq2;
static TQ2: KernelInfo = info("tq2-scalar", Format::Tq2, true);

impl Kernel for Tq2 {
    fn info(&self) -> &'static KernelInfo {
        &TQ2
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        block_scaled_rows(
            w.expect::<Tq2Matrix>(),
            x.act.q8k(),
            out,
            |wb: &BlockTq2, ab: &BlockQ8K| {
                (0..256)
                    .map(|i| (wb.code(i) as i32 - 1) * ab.qs[i] as i32)
                    .sum()
            },
            |wb, ab| wb.d.to_f32() * ab.d,
        );
    }
}

pub struct Tq1;
static TQ1: KernelInfo = info("tq1-scalar", Format::Tq1, true);

impl Kernel for Tq1 {
    fn info(&self) -> &'static KernelInfo {
        &TQ1
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        block_scaled_rows(
            w.expect::<Tq1Matrix>(),
            x.act.q8k(),
            out,
            |wb: &BlockTq1, ab: &BlockQ8K| {
                (0..256)
                    .map(|i| (wb.code(i) as i32 - 1) * ab.qs[i] as i32)
                    .sum()
            },
            |wb, ab| wb.d.to_f32() * ab.d,
        );
    }
}

pub struct Q8_0;
static Q8_0_INFO: KernelInfo = info("q8_0-scalar", Format::Q8_0, true);

impl Kernel for Q8_0 {
    fn info(&self) -> &'static KernelInfo {
        &Q8_0_INFO
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        block_scaled_rows(
            w.expect::<Q8_0Matrix>(),
            x.act.q8_0(),
            out,
            |wb: &BlockQ8_0, ab: &BlockQ8_0| {
                wb.qs
                    .iter()
                    .zip(&ab.qs)
                    .map(|(&w, &a)| w as i32 * a as i32)
                    .sum()
            },
            |wb, ab| wb.d.to_f32() * ab.d.to_f32(),
        );
    }
}

pub struct Q4_0;
static Q4_0_INFO: KernelInfo = info("q4_0-scalar", Format::Q4_0, true);

impl Kernel for Q4_0 {
    fn info(&self) -> &'static KernelInfo {
        &Q4_0_INFO
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        block_scaled_rows(
            w.expect::<Q4_0Matrix>(),
            x.act.q8_0(),
            out,
            |wb: &BlockQ4_0, ab: &BlockQ8_0| {
                (0..32)
                    .map(|i| (wb.code(i) as i32 - 8) * ab.qs[i] as i32)
                    .sum()
            },
            |wb, ab| wb.d.to_f32() * ab.d.to_f32(),
        );
    }
}

/// Integer dot product of one Q6_K super-block with one Q8_K block:
/// sum over sub-blocks j of scales[j] * sum((code - 32) * a). At most
/// 16 * 128 * 16 * 32 * 128 = 2^27 in magnitude, so i32 is exact.
pub fn q6k_block_dot(wb: &BlockQ6K, ab: &BlockQ8K) -> i32 {
    (0..16)
        .map(|j| {
            let sub: i32 = (16 * j..16 * j + 16)
                .map(|i| (wb.code(i) as i32 - 32) * ab.qs[i] as i32)
                .sum();
            wb.scales[j] as i32 * sub
        })
        .sum()
}

pub struct Q6K;
static Q6K_INFO: KernelInfo = info("q6_k-scalar", Format::Q6K, true);

impl Kernel for Q6K {
    fn info(&self) -> &'static KernelInfo {
        &Q6K_INFO
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        block_scaled_rows(
            w.expect::<Q6KMatrix>(),
            x.act.q8k(),
            out,
            q6k_block_dot,
            |wb, ab| wb.d.to_f32() * ab.d,
        );
    }
}

pub struct F16;
static F16_INFO: KernelInfo = info("f16-scalar", Format::F16, false);

impl Kernel for F16 {
    fn info(&self) -> &'static KernelInfo {
        &F16_INFO
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        let m = w.expect::<F16Matrix>();
        let act = x.act.f32();
        let rows = out.rows();
        for b in 0..out.batch() {
            let a = &act.row(b)[..m.cols];
            for (y, r) in out.row_mut(b).iter_mut().zip(rows.clone()) {
                let mut sum = 0.0f32;
                for (wv, &av) in m.row(r)[..m.cols].iter().zip(a) {
                    sum += wv.to_f32() * av;
                }
                *y = sum;
            }
        }
    }
}

/// The plain tables a LUT kernel's input carries, or built now for an input
/// prepared by another kernel.
fn plain_tables<'a>(
    x: &'a PreparedInput,
    owned: &'a mut Option<PlainTables>,
    build: impl FnOnce(&TokenQ8) -> PlainTables,
) -> &'a PlainTables {
    match x
        .derived
        .as_ref()
        .and_then(|d| d.downcast_ref::<PlainTables>())
    {
        Some(t) => t,
        None => owned.insert(build(x.act.token_q8())),
    }
}

/// y[b][r] = (lut_sum(b, r) - offset_b) * output_factor, the shared end of the
/// LUT reference kernels (integer sums, one scaling per output, like i2s).
fn lut_rows(
    act: &TokenQ8,
    scale: f32,
    subtract_sum: bool,
    out: &mut OutputTile<'_>,
    lut_sum: impl Fn(usize, usize) -> i32,
) {
    let rows = out.rows();
    for b in 0..out.batch() {
        let factor = act.output_factor(b, scale);
        let offset = if subtract_sum { act.sum[b] } else { 0 };
        for (y, r) in out.row_mut(b).iter_mut().zip(rows.clone()) {
            *y = (lut_sum(b, r) - offset) as f32 * factor;
        }
    }
}

/// The integer sum of TL1 lookups of row `r`: `lookup(group, index)` is
/// table `group`'s entry (exact or int8 code).
fn tl1_row_sum(m: &Tl1Matrix, r: usize, lookup: impl Fn(usize, u8) -> i32) -> i32 {
    let rr = r % TILE_ROWS;
    m.tiles
        .tile(r / TILE_ROWS)
        .iter()
        .enumerate()
        .map(|(k, c)| lookup(2 * k, c.index(rr, 0)) + lookup(2 * k + 1, c.index(rr, 1)))
        .sum()
}

/// The TL2 sum of row `r`: the signed triple lookups, then the leftover pairs.
fn tl2_row_sum(m: &Tl2Matrix, r: usize, lookup: impl Fn(usize, u8) -> i32) -> i32 {
    let n3 = 2 * m.tl2_per_tile;
    let (tile, rr) = (r / TILE_ROWS, r % TILE_ROWS);
    let mut acc = 0i32;
    for (k, blk) in m.tl2.tile(tile).iter().enumerate() {
        for s in 0..2 {
            let (mag, neg) = blk.entry(rr, s);
            let v = lookup(2 * k + s, mag);
            acc += if neg { -v } else { v };
        }
    }
    for (k, c) in m.tl1.tile(tile).iter().enumerate() {
        for s in 0..2 {
            acc += lookup(n3 + 2 * k + s, c.index(rr, s));
        }
    }
    acc
}

/// The T-MAC sum of row `r`: sum(code * a) as plane 0 + 2 plane 1.
fn tmac_row_sum(m: &TmacMatrix, r: usize, lookup: impl Fn(usize, u8) -> i32) -> i32 {
    let rr = r % TILE_ROWS;
    m.tiles
        .tile(r / TILE_ROWS)
        .iter()
        .enumerate()
        .map(|(k, c)| lookup(k, c.index(rr, 0)) + 2 * lookup(k, c.index(rr, 1)))
        .sum()
}

pub struct Tl1;
static TL1: KernelInfo = info("tl1-scalar", Format::Tl1, true);

impl Kernel for Tl1 {
    fn info(&self) -> &'static KernelInfo {
        &TL1
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let chunks = act.cols().div_ceil(crate::formats::tl1::CHUNK_COLS);
        let t = PlainTables::tl1(act.token_q8(), chunks);
        PreparedInput {
            act,
            derived: Some(Box::new(t)),
        }
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        let m = w.expect::<Tl1Matrix>();
        let mut owned = None;
        let tables = plain_tables(x, &mut owned, |a| PlainTables::tl1(a, m.chunks_per_tile));
        lut_rows(x.act.token_q8(), m.scale, false, out, |b, r| {
            let t = tables.token(b);
            tl1_row_sum(m, r, |g, i| t[g][i as usize] as i32)
        });
    }
}

pub struct Tl2;
static TL2: KernelInfo = info("tl2-scalar", Format::Tl2, true);

impl Kernel for Tl2 {
    fn info(&self) -> &'static KernelInfo {
        &TL2
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let t = PlainTables::tl2(act.token_q8());
        PreparedInput {
            act,
            derived: Some(Box::new(t)),
        }
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        let m = w.expect::<Tl2Matrix>();
        let mut owned = None;
        let tables = plain_tables(x, &mut owned, PlainTables::tl2);
        lut_rows(x.act.token_q8(), m.scale, false, out, |b, r| {
            let t = tables.token(b);
            tl2_row_sum(m, r, |g, i| t[g][i as usize] as i32)
        });
    }
}

pub struct Tmac;
static TMAC: KernelInfo = info("tmac-scalar", Format::Tmac, true);

impl Kernel for Tmac {
    fn info(&self) -> &'static KernelInfo {
        &TMAC
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let chunks = act.cols().div_ceil(crate::formats::tmac::CHUNK_COLS);
        let t = PlainTables::tmac(act.token_q8(), chunks);
        PreparedInput {
            act,
            derived: Some(Box::new(t)),
        }
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        let m = w.expect::<TmacMatrix>();
        let mut owned = None;
        let tables = plain_tables(x, &mut owned, |a| PlainTables::tmac(a, m.chunks_per_tile));
        // Codes are w + 1: sum(code * a) - sum(a), as for i2s.
        lut_rows(x.act.token_q8(), m.scale, true, out, |b, r| {
            let t = tables.token(b);
            tmac_row_sum(m, r, |g, i| t[g][i as usize] as i32)
        });
    }
}

/// The scalar lossy LUT kernels (`<format>-scalar-lossy`): the definition of
/// the int8-table arithmetic of [`crate::lossy`], which every SIMD lossy
/// kernel must reproduce bit for bit. One type for the three formats.
pub struct LutLossy(&'static KernelInfo);

static TL1_LOSSY: KernelInfo = info("tl1-scalar-lossy", Format::Tl1, false);
static TL2_LOSSY: KernelInfo = info("tl2-scalar-lossy", Format::Tl2, false);
static TMAC_LOSSY: KernelInfo = info("tmac-scalar-lossy", Format::Tmac, false);
pub static TL1_LOSSY_KERNEL: LutLossy = LutLossy(&TL1_LOSSY);
pub static TL2_LOSSY_KERNEL: LutLossy = LutLossy(&TL2_LOSSY);
pub static TMAC_LOSSY_KERNEL: LutLossy = LutLossy(&TMAC_LOSSY);

impl Kernel for LutLossy {
    fn info(&self) -> &'static KernelInfo {
        self.0
    }

    fn prepare_input(&self, act: Activations) -> PreparedInput {
        let t = CodeTables::new(self.0.format, act.token_q8());
        PreparedInput {
            act,
            derived: Some(Box::new(t)),
        }
    }

    fn compute(&self, w: &PreparedWeights, x: &PreparedInput, out: &mut OutputTile<'_>) {
        let format = self.0.format;
        let act = x.act.token_q8();
        let owned;
        let tables = match x
            .derived
            .as_ref()
            .and_then(|d| d.downcast_ref::<CodeTables>())
        {
            Some(t) => t,
            None => {
                owned = CodeTables::new(format, act);
                &owned
            }
        };
        let code = |b: usize, g: usize, i: u8| tables.token(b)[g][i as usize] as i32;
        match format {
            Format::Tl1 => {
                let m = w.expect::<Tl1Matrix>();
                lossy_rows(act, tables, m.scale, false, out, |b, r| {
                    tl1_row_sum(m, r, |g, i| code(b, g, i))
                });
            }
            Format::Tl2 => {
                let m = w.expect::<Tl2Matrix>();
                lossy_rows(act, tables, m.scale, false, out, |b, r| {
                    tl2_row_sum(m, r, |g, i| code(b, g, i))
                });
            }
            Format::Tmac => {
                let m = w.expect::<TmacMatrix>();
                lossy_rows(act, tables, m.scale, true, out, |b, r| {
                    tmac_row_sum(m, r, |g, i| code(b, g, i))
                });
            }
            other => unreachable!("{other} is not a LUT format"),
        }
    }
}

/// [`lut_rows`] for code sums: y = the token's [`crate::lossy::TableScale::output`].
fn lossy_rows(
    act: &TokenQ8,
    tables: &CodeTables,
    scale: f32,
    subtract_sum: bool,
    out: &mut OutputTile<'_>,
    code_sum: impl Fn(usize, usize) -> i32,
) {
    let rows = out.rows();
    for b in 0..out.batch() {
        let factor = act.output_factor(b, scale);
        let offset = if subtract_sum { act.sum[b] } else { 0 };
        let ts = tables.scale[b];
        for (y, r) in out.row_mut(b).iter_mut().zip(rows.clone()) {
            *y = ts.output(code_sum(b, r), offset, factor);
        }
    }
}
