//! Quantization rules with BitNet b1.58 semantics, and the block quantizers of
//! the llama.cpp formats the project compares against.
//!
//! Rounding is round-half-to-even everywhere, like `torch.round` (BitNet's
//! reference training code) and ggml's `nearest_int`.

/// Smallest scale denominators are clamped to, as in BitNet's reference code.
pub const SCALE_EPS: f32 = 1e-5;

/// Round half to even, as an integer.
///
/// For |x| < 2^22 - 1 this adds 1.5 * 2^23, which makes the float's unit in the
/// last place 1, so the addition itself rounds to an integer (ties to even,
/// the default rounding mode), then reads the integer from the mantissa bits.
/// That is a few instructions where `round_ties_even` is a library call on
/// x86-64 without SSE4.1; quantizing activations is on the hot path of every
/// linear layer. Larger magnitudes take the library path.
#[inline]
pub fn round_even(x: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    if x.abs() < 4_194_303.0 {
        ((x + MAGIC).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
    } else {
        x.round_ties_even() as i32
    }
}

/// BitNet b1.58 absmean ternarization: beta = max(mean|W|, 1e-5),
/// W_t = clamp(round(W / beta), -1, 1). Returns (values, beta).
///
/// The mean is accumulated in f64 so it does not depend on the summation
/// order; the division is written as a multiplication by 1/beta like the
/// reference implementation (`w * (1 / beta)`), which decides exact ties.
pub fn absmean_ternarize(w: &[f32]) -> (Vec<i8>, f32) {
    let mean = if w.is_empty() {
        0.0
    } else {
        (w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64) as f32
    };
    let beta = mean.max(SCALE_EPS);
    let inv = 1.0 / beta;
    let values = w
        .iter()
        .map(|&v| round_even(v * inv).clamp(-1, 1) as i8)
        .collect();
    (values, beta)
}

crate::avx2_where_available! {
    /// Per-token int8 absmax quantization (BitNet b1.58): s = 127 / max(|x|, 1e-5),
    /// q = clamp(round(x * s), -128, 127). Writes `q` (same length as `x`) and
    /// returns s; the real value of q is q / s.
    pub fn quantize_token_q8(x: &[f32], q: &mut [i8]) -> f32;
    baseline quantize_token_q8_baseline {
        debug_assert_eq!(x.len(), q.len());
        let amax = abs_max(x);
        let s = 127.0 / amax.max(SCALE_EPS);
        scale_round(x, s, q, -128);
        s
    }
}

crate::avx2_where_available! {
    /// The sum of int8 values (a token's sum, which removes the +1 offset of
    /// unsigned weight codes): 8 sign extensions per instruction with AVX2
    /// where the x86-64 baseline unpacks and shifts 4 at a time.
    pub fn sum_i8(q: &[i8]) -> i32;
    baseline sum_i8_baseline {
        q.iter().map(|&v| v as i32).sum()
    }
}

/// max |x| (0 for an empty slice; NaN is ignored, as by `f32::max`), in 32
/// lanes so that the compiler vectorizes it into 4 independent chains: the
/// maximum does not depend on the order. `if v > m` rather than `f32::max`,
/// because it is one `maxps` (a NaN v keeps m) where `f32::max` adds a NaN
/// test and a blend to each step of the chain (`quantize_token_q8` of 2560
/// values: 1.1 -> 0.8 us).
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    const LANES: usize = 32;
    let larger = |m: f32, v: f32| if v > m { v } else { m };
    let mut lanes = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, v| larger(m, v.abs()));
    for c in chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = larger(*m, v.abs());
        }
    }
    lanes.iter().fold(tail, |m, &v| larger(m, v))
}

/// q = clamp(round_even(x * s), lo, 127) for an absmax scale s (finite, so
/// |x * s| is at most 127 for finite x): the rounding needs no range check
/// and the loop vectorizes. x * s is NaN only for a NaN or infinite x (then s
/// is 0), which `round_even` maps to 0, as here.
#[inline(always)]
fn scale_round(x: &[f32], s: f32, q: &mut [i8], lo: i32) {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23, as in round_even
    debug_assert!(s.is_finite());
    for (qi, &xi) in q.iter_mut().zip(x) {
        let p = xi * s;
        let r = ((p + MAGIC).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000;
        *qi = if p.is_nan() {
            0
        } else {
            r.clamp(lo, 127) as i8
        };
    }
}

crate::avx2_where_available! {
    /// Symmetric absmax block quantization to `[-127, 127]` (Q8_0, Q8_K), in
    /// llama.cpp's order of operations: d = amax / 127, q = round(x * (1 / d)).
    /// Returns d (0 for an all-zero block). Missing elements (`x` shorter than
    /// `q`) are zero.
    pub fn quantize_block_absmax_q8(x: &[f32], q: &mut [i8]) -> f32;
    baseline quantize_block_absmax_q8_baseline {
        let amax = abs_max(x);
        q.fill(0);
        if amax == 0.0 {
            return 0.0;
        }
        let d = amax / 127.0;
        scale_round(x, 1.0 / d, q, -127);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_rounding_matches_round_ties_even() {
        let mut x = -300.0f32;
        while x <= 300.0 {
            assert_eq!(round_even(x), x.round_ties_even() as i32, "{x}");
            x += 0.125;
        }
        for x in [
            0.5f32,
            1.5,
            2.5,
            -0.5,
            -1.5,
            4_194_303.5,
            -4_194_303.5,
            1e9,
            -1e9,
            8_388_607.0,
            f32::MIN_POSITIVE,
        ] {
            assert_eq!(round_even(x), x.round_ties_even() as i32, "{x}");
        }
    }

    #[test]
    fn absmean_follows_the_bitnet_rule() {
        // mean |w| = (0.1 + 0.5 + 1.0 + 2.4) / 4 = 1.0
        let (v, beta) = absmean_ternarize(&[0.1, -0.5, 1.0, -2.4]);
        assert_eq!(beta, 1.0);
        // 0.1 -> 0, -0.5 -> -0 (tie to even), 1.0 -> 1, -2.4 -> clamp(-2) = -1
        assert_eq!(v, vec![0, 0, 1, -1]);
    }

    #[test]
    fn absmean_of_zeros_uses_the_epsilon() {
        let (v, beta) = absmean_ternarize(&[0.0; 8]);
        assert_eq!(beta, SCALE_EPS);
        assert!(v.iter().all(|&x| x == 0));
    }

    #[test]
    fn token_quantization_maps_absmax_to_127() {
        let mut q = [0i8; 4];
        let s = quantize_token_q8(&[0.5, -1.0, 0.25, 0.0], &mut q);
        assert_eq!(s, 127.0);
        // 63.5 -> 64 (ties to even), -127, 31.75 -> 32, 0
        assert_eq!(q, [64, -127, 32, 0]);
    }

    #[test]
    fn token_quantization_of_zeros_is_zero() {
        let mut q = [1i8; 3];
        let s = quantize_token_q8(&[0.0; 3], &mut q);
        assert_eq!(q, [0; 3]);
        assert_eq!(s, 127.0 / SCALE_EPS);
    }

    #[test]
    fn block_quantization_pads_with_zero() {
        let mut q = [5i8; 4];
        let d = quantize_block_absmax_q8(&[2.0, -1.0], &mut q);
        assert_eq!(d, 2.0 / 127.0);
        assert_eq!(q, [127, -64, 0, 0]); // -63.5 -> -64 (ties to even)
        assert_eq!(quantize_block_absmax_q8(&[0.0; 2], &mut q), 0.0);
        assert_eq!(q, [0; 4]);
    }

    /// The vectorizable quantizers give exactly what the plain definitions
    /// give, including ties, lengths that are not a multiple of 8, zeros and
    /// non-finite inputs.
    #[test]
    fn quantizers_equal_their_plain_definitions() {
        fn plain_token(x: &[f32]) -> (Vec<i8>, f32) {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let s = 127.0 / amax.max(SCALE_EPS);
            (
                x.iter()
                    .map(|&v| round_even(v * s).clamp(-128, 127) as i8)
                    .collect(),
                s,
            )
        }
        fn plain_block(x: &[f32]) -> (Vec<i8>, f32) {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if amax == 0.0 {
                return (vec![0; x.len()], 0.0);
            }
            let d = amax / 127.0;
            let inv = 1.0 / d;
            (
                x.iter()
                    .map(|&v| round_even(v * inv).clamp(-127, 127) as i8)
                    .collect(),
                d,
            )
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases: Vec<Vec<f32>> = vec![
            vec![],
            vec![0.0; 9],
            vec![0.5, -1.0, 0.25, 0.0, 1.5 / 127.0, -2.5 / 127.0, 1e-7],
            vec![1.0, f32::NAN, -3.0],
            vec![1.0, f32::INFINITY, -3.0, 2.0],
            vec![f32::NEG_INFINITY, f32::NAN],
        ];
        for len in [1usize, 7, 8, 31, 32, 33, 255, 256, 2560] {
            cases.push(
                (0..len)
                    .map(|_| {
                        let r = next();
                        // Mostly smooth values, some on exact halves of the scale.
                        if r % 5 == 0 {
                            ((r >> 8) % 255) as f32 / 2.0 - 63.5
                        } else {
                            ((r >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0) as f32
                        }
                    })
                    .collect(),
            );
        }
        for x in &cases {
            let mut q = vec![0i8; x.len()];
            let s = quantize_token_q8(x, &mut q);
            assert_eq!(
                (q.clone(), s.to_bits()),
                {
                    let (pq, ps) = plain_token(x);
                    (pq, ps.to_bits())
                },
                "token {x:?}"
            );
            // The baseline (SSE2) build of the same loops, which CPUs without
            // AVX2 run, gives the same bits.
            let mut narrow = vec![0i8; x.len()];
            assert_eq!(
                quantize_token_q8_baseline(x, &mut narrow).to_bits(),
                s.to_bits()
            );
            assert_eq!(narrow, q, "token {x:?} (baseline build)");
            let plain_sum: i32 = q.iter().map(|&v| v as i32).sum();
            assert_eq!((sum_i8(&q), sum_i8_baseline(&q)), (plain_sum, plain_sum));
            let d = quantize_block_absmax_q8(x, &mut q);
            let (pq, pd) = plain_block(x);
            assert_eq!(
                quantize_block_absmax_q8_baseline(x, &mut narrow).to_bits(),
                d.to_bits()
            );
            assert_eq!(narrow, q, "block {x:?} (baseline build)");
            assert_eq!((q, d.to_bits()), (pq, pd.to_bits()), "block {x:?}");
        }
    }

    #[test]
    fn sum_i8_is_exact_at_the_extremes() {
        for len in [0usize, 1, 31, 32, 33, 6912 + 5] {
            for v in [-128i8, 127] {
                let q = vec![v; len];
                assert_eq!(sum_i8(&q), v as i32 * len as i32, "{len} x {v}");
                assert_eq!(sum_i8_baseline(&q), v as i32 * len as i32);
            }
        }
    }
}
