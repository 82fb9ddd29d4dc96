//! Lossy int8 tables for the LUT formats: the `-lossy` kernels
//! (`tl1-avx2-lossy`, `tmac-scalar-lossy`, ...), flagged `exact = false`.
//!
//! The lossless kernels ([`crate::lut`]) keep every int16 table entry T by
//! looking up a low-byte and a high-byte table (two shuffles per lookup).
//! The lossy kernels store one int8 code per entry, so one shuffle suffices
//! and a chunk's tables take 32 bytes instead of 64 (TL2: 128, with the
//! negated tables; the lossy TL2 kernels negate the looked-up code instead).
//!
//! # The arithmetic (defined by the scalar `-lossy` kernels)
//! Per token b, let M = max |T| over all of that token's tables. If M <= 127
//! every entry is an int8 already and the codes are the entries (D = M = 1,
//! lossless). Otherwise D = 127 and each entry becomes
//! `q = round(T * D / M)` (half away from zero, computed exactly in integers,
//! so |q| <= D <= 127 and -q never overflows), i.e. T ~ q * M / D. The kernel
//! sums the looked-up codes in integers exactly as the lossless kernel sums
//! entries (TL2 negating by the sign bit, T-MAC weighting plane 1 by 2), giving
//! `acc`, and outputs
//!
//! ```text
//! y = (acc * M - D * offset) as f32 * (factor / D as f32)
//! ```
//!
//! with the integer part exact in i64 (|acc| <= 3 * 127 per chunk, so the
//! int32 row sums of the driver hold rows of up to 5.6M chunks, 22M columns;
//! the SIMD kernels' int16 partial sums are bounded in their module docs),
//! `offset` = sum(a) for T-MAC (codes w + 1) and 0 otherwise, `factor` =
//! w_scale / s_b as for every LUT kernel
//! ([`crate::activations::TokenQ8::output_factor`]): the table scale M / D is
//! part of the one final float scaling. A single scale per token (not per
//! column block) keeps `acc` a plain integer sum over all chunks, so the SIMD
//! kernels reuse the lossless driver and match the scalar lossy kernel bit for
//! bit; a per-block scale would be tighter for activations whose magnitude
//! varies along the row, but would need a float step per block and tile.
//!
//! # Error bound (what [`crate::verify`] enforces)
//! Rounding to the nearest code: |T - q M / D| <= M / (2 D) per lookup, exactly
//! (0 when M <= 127). An output adds up L weighted lookups
//! ([`weighted_lookups`]: TL1 2 per chunk of 4 columns, TL2 2 per chunk of 6
//! plus 2 per leftover TL1 chunk, T-MAC 1 + 2 = 3 per chunk of 4 columns since
//! plane 1 counts twice), so the integer dot product is off by at most
//! L M / (2 D), and
//!
//! ```text
//! |y_lossy - y| <= L * M / (2 D) * |w_scale / s_b|  +  4 * 2^-23 * (|y| + that)
//! ```
//!
//! The second term covers the float step: rounding w_scale / s_b, its division
//! by D, the i64 -> f32 conversion and the product (four roundings of at most
//! 2^-24 relative each of the lossy value, whose size is at most |y| plus the
//! first term; 2^-23 doubles that for slack). [`error_bound`] computes it.
//! The first term is attained: activations whose looked-up entries all lie
//! exactly halfway between two codes, on the same side, give that error (the
//! test `lossy_bound_is_attained` builds such a case). For BitNet-like
//! activations (absmax-quantized, roughly Gaussian) it is a few percent of
//! sum |w a| * |factor|, and the error actually seen is far smaller (rounding
//! errors of different lookups cancel).

use crate::activations::TokenQ8;
use crate::formats::{aligned_filled, tl1, tl2, tmac, AlignedVec, Format};
use crate::lut::PlainTables;

/// Bytes of lossy tables per chunk and token: `[codes A | codes B]`, 16 each.
pub const CHUNK_BYTES: usize = 32;

/// The largest |code|.
pub const MAX_CODE: i32 = 127;

/// The largest |entry| of any LUT table (T-MAC: 4 * 128).
const MAX_ENTRY: i32 = 512;

/// One token's table scale: entries T are coded as q ~ T * den / max.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableScale {
    /// M: the largest |entry| of the token's tables (1 when M <= 127).
    pub max: i32,
    /// D: 127 when M > 127, else 1.
    pub den: i32,
}

impl TableScale {
    /// The scale of tables whose largest |entry| is `max_abs`.
    pub fn of(max_abs: i32) -> Self {
        if max_abs <= MAX_CODE {
            TableScale { max: 1, den: 1 }
        } else {
            TableScale {
                max: max_abs,
                den: MAX_CODE,
            }
        }
    }

    /// The code of an entry `t` of the token's tables (so |t| <= M):
    /// round(t * den / max), half away from zero, exact (|t * den| <=
    /// 512 * 127 fits an i32); `t` itself when lossless (max = den = 1).
    #[inline]
    pub fn code(self, t: i16) -> i8 {
        let num = t as i32 * self.den;
        let q = (2 * num.abs() + self.max) / (2 * self.max);
        debug_assert!(q <= MAX_CODE, "entry {t} beyond the scale {self:?}");
        (if num < 0 { -q } else { q }) as i8
    }

    /// y of the integer sum `acc` of codes (see the module docs).
    #[inline]
    pub fn output(self, acc: i32, offset: i32, factor: f32) -> f32 {
        let n = acc as i64 * self.max as i64 - self.den as i64 * offset as i64;
        n as f32 * (factor / self.den as f32)
    }

    /// The largest error of one lookup: M / (2 D) (0 when lossless).
    pub fn half_step(self) -> f64 {
        if self.den == 1 {
            0.0
        } else {
            self.max as f64 / (2.0 * self.den as f64)
        }
    }
}

/// Lookups per output, plane 1 of T-MAC counted twice (L in the module docs).
pub fn weighted_lookups(format: Format, cols: usize) -> usize {
    match format {
        Format::Tl1 => 2 * cols.div_ceil(tl1::CHUNK_COLS),
        Format::Tl2 => {
            let (n3, n2) = tl2::chunk_counts(cols);
            2 * n3 + 2 * n2
        }
        Format::Tmac => 3 * cols.div_ceil(tmac::CHUNK_COLS),
        other => panic!("{other} is not a LUT format"),
    }
}

/// The largest |y_lossy - y| allowed for an output of token scale `scale`
/// whose exact value is `y` (see the module docs).
pub fn error_bound(format: Format, cols: usize, scale: TableScale, factor: f64, y: f64) -> f64 {
    let table = weighted_lookups(format, cols) as f64 * scale.half_step() * factor.abs();
    table + 4.0 * f32::EPSILON as f64 * (y.abs() + table) + f32::MIN_POSITIVE as f64
}

/// The exact tables of a LUT format for `act` (one per column group and token).
pub fn plain_tables(format: Format, act: &TokenQ8) -> PlainTables {
    match format {
        Format::Tl1 => PlainTables::tl1(act, act.cols.div_ceil(tl1::CHUNK_COLS)),
        Format::Tl2 => PlainTables::tl2(act),
        Format::Tmac => PlainTables::tmac(act, act.cols.div_ceil(tmac::CHUNK_COLS)),
        other => panic!("{other} is not a LUT format"),
    }
}

/// int8 tables in the order of [`PlainTables`], read by the scalar lossy kernels.
#[derive(Clone, Debug)]
pub struct CodeTables {
    /// Tables per token.
    pub groups: usize,
    pub t: Vec<[i8; 16]>,
    /// Per token.
    pub scale: Vec<TableScale>,
}

impl CodeTables {
    /// Codes the exact tables `plain`, one scale per token.
    pub fn from_plain(plain: &PlainTables) -> Self {
        let groups = plain.groups;
        let batch = plain.t.len() / groups.max(1);
        let mut t = Vec::with_capacity(plain.t.len());
        let mut scale = Vec::with_capacity(batch);
        for b in 0..batch {
            let tok = plain.token(b);
            let max = tok
                .iter()
                .flatten()
                .map(|v| v.unsigned_abs() as i32)
                .max()
                .unwrap_or(0);
            let s = TableScale::of(max);
            // Every entry lies in -512..=512: code each value once (one
            // integer division each) instead of each entry.
            let codes: Vec<i8> = (-MAX_ENTRY..=MAX_ENTRY)
                .map(|v| if v.abs() <= max { s.code(v as i16) } else { 0 })
                .collect();
            t.extend(
                tok.iter()
                    .map(|e| e.map(|v| codes[(v as i32 + MAX_ENTRY) as usize])),
            );
            scale.push(s);
        }
        CodeTables { groups, t, scale }
    }

    /// The coded tables of `format` for `act`.
    pub fn new(format: Format, act: &TokenQ8) -> Self {
        Self::from_plain(&plain_tables(format, act))
    }

    pub fn token(&self, b: usize) -> &[[i8; 16]] {
        &self.t[b * self.groups..(b + 1) * self.groups]
    }
}

/// The byte-shuffle form of [`CodeTables`]: per chunk and token
/// [`CHUNK_BYTES`] bytes `[codes A | codes B]`, chunks in the order of the
/// matrix (for TL2 the TL2 chunks, then the leftover TL1 chunks).
#[derive(Clone, Debug)]
pub struct LossyTables {
    /// The format the tables were built for.
    pub format: Format,
    /// Bytes per token.
    pub stride: usize,
    pub bytes: AlignedVec<u8>,
    /// Per token.
    pub scale: Vec<TableScale>,
}

impl LossyTables {
    /// Lays out the coded tables of `format` for `act`.
    pub fn new(format: Format, act: &TokenQ8) -> Self {
        let codes = CodeTables::new(format, act);
        let (chunks, group): (usize, fn(usize, usize) -> usize) = match format {
            // Chunk k holds groups 2k, 2k + 1: TL1 pairs, and for TL2 the
            // triples and then the leftover pairs, as PlainTables orders them.
            Format::Tl1 | Format::Tl2 => (codes.groups.div_ceil(2), |k, s| 2 * k + s),
            // Both bit planes of chunk k look up group k.
            Format::Tmac => (codes.groups, |k, _| k),
            other => panic!("{other} is not a LUT format"),
        };
        let stride = chunks * CHUNK_BYTES;
        let batch = codes.scale.len();
        let mut bytes = aligned_filled(batch * stride, 0u8);
        for b in 0..batch {
            let tok = codes.token(b);
            for k in 0..chunks {
                for s in 0..2 {
                    let at = b * stride + k * CHUNK_BYTES + 16 * s;
                    for (dst, &q) in bytes[at..at + 16].iter_mut().zip(&tok[group(k, s)]) {
                        *dst = q as u8;
                    }
                }
            }
        }
        LossyTables {
            format,
            stride,
            bytes,
            scale: codes.scale,
        }
    }

    /// Tables of token `b`.
    pub fn token(&self, b: usize) -> &[u8] {
        &self.bytes[b * self.stride..(b + 1) * self.stride]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_half_away_from_zero_within_half_a_step() {
        let s = TableScale::of(254);
        assert_eq!((s.max, s.den), (254, 127));
        // 254 -> 127 exactly; odd entries lie halfway between two codes.
        assert_eq!(s.code(254), 127);
        assert_eq!(s.code(-254), -127);
        assert_eq!(s.code(1), 1);
        assert_eq!(s.code(-1), -1);
        assert_eq!(s.code(0), 0);
        for max in [128, 200, 384, 512] {
            let s = TableScale::of(max);
            for t in -max..=max {
                let q = s.code(t as i16) as i32;
                assert!(q.abs() <= MAX_CODE);
                let err = (t as f64 - q as f64 * max as f64 / 127.0).abs();
                assert!(err <= s.half_step() + 1e-12, "max {max} t {t}: q {q}");
            }
        }
        let exact = TableScale::of(127);
        assert_eq!(exact.half_step(), 0.0);
        assert!((-127..=127).all(|t| exact.code(t) as i16 == t));
    }

    #[test]
    fn output_equals_the_lossless_formula_when_exact() {
        let s = TableScale::of(100);
        for (acc, off) in [(0, 0), (12345, -77), (-3, 4)] {
            let f = 0.37f32;
            assert_eq!(
                s.output(acc, off, f).to_bits(),
                ((acc - off) as f32 * f).to_bits()
            );
        }
    }

    #[test]
    fn lossy_tables_hold_the_codes_chunk_by_chunk() {
        let cols = 15; // TL2: 2 triple chunks and one leftover pair chunk
        let q: Vec<i8> = (0..2 * cols).map(|i| (i * 53 % 256) as u8 as i8).collect();
        let act = TokenQ8::from_quantized(2, cols, &q, &[1.0, 2.0]);
        for format in [Format::Tl1, Format::Tl2, Format::Tmac] {
            let codes = CodeTables::new(format, &act);
            let t = LossyTables::new(format, &act);
            assert_eq!(t.scale, codes.scale);
            for b in 0..2 {
                let tok = t.token(b);
                assert!(codes.scale[b].den == 127, "{format}: a lossy scale");
                for (k, chunk) in tok.chunks_exact(CHUNK_BYTES).enumerate() {
                    for s in 0..2 {
                        let g = if format == Format::Tmac { k } else { 2 * k + s };
                        let want = codes.token(b)[g];
                        let got: Vec<i8> = chunk[16 * s..16 * s + 16]
                            .iter()
                            .map(|&v| v as i8)
                            .collect();
                        assert_eq!(got, want, "{format} token {b} chunk {k} set {s}");
                    }
                }
            }
        }
    }
}
