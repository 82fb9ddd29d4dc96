//! Synthetic weights and activations of real shapes, seeded and reproducible.
//!
//! Weights follow bitnet.cpp's dummy models: Gaussian master weights
//! ternarized with BitNet's absmean rule. For N(0, 1) master weights the
//! absmean scale is beta = E|w| = sqrt(2/pi) (the sample mean of the millions
//! of weights in a layer equals it to about 1e-4), and w rounds to 0 exactly
//! when |w| < beta/2, i.e. with probability P0 = 1 - 2 Phi(-beta/2) = 0.3101,
//! and to -1 or +1 with probability (1 - P0)/2 each. So the ternary values
//! are drawn directly from that distribution, one 16-bit uniform per weight,
//! instead of drawing and rounding the Gaussians: a 2B model's 2.4 billion
//! weights take seconds, not minutes, and the result is the same model in
//! distribution. Chunks of rows are generated in parallel, each from its own
//! generator seeded by (seed, chunk), so the values do not depend on the
//! thread count.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;
use ternbench_kernels::formats::TernaryMatrix;

/// Rows per independently seeded chunk.
const CHUNK_ROWS: usize = 64;

/// beta = E|w| for w ~ N(0, 1).
pub const GAUSSIAN_ABSMEAN: f32 = 0.797_884_6;

/// Phi(-beta/2) * 65536: a 16-bit uniform below this gives -1, at or above
/// 65536 minus this gives +1 (Phi(-0.398942) = 0.344968).
const TERNARY_THRESHOLD_16: u32 = 22_608;

fn chunk_rng(seed: u64, chunk: usize) -> Pcg64Mcg {
    // SplitMix64-style mixing keeps nearby (seed, chunk) pairs unrelated.
    let mut z = seed ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Pcg64Mcg::seed_from_u64(z ^ (z >> 31))
}

/// A rows x cols ternary matrix distributed as absmean-ternarized N(0, 1)
/// weights, with scale beta = sqrt(2/pi).
pub fn ternary_matrix(rows: usize, cols: usize, seed: u64) -> TernaryMatrix {
    let mut values = vec![0i8; rows * cols];
    values
        .par_chunks_mut(CHUNK_ROWS * cols)
        .enumerate()
        .for_each(|(c, out)| {
            let mut rng = chunk_rng(seed, c);
            for four in out.chunks_mut(4) {
                let bits = rng.next_u64();
                for (i, v) in four.iter_mut().enumerate() {
                    let u = ((bits >> (16 * i)) & 0xffff) as u32;
                    *v = if u < TERNARY_THRESHOLD_16 {
                        -1
                    } else if u >= 65_536 - TERNARY_THRESHOLD_16 {
                        1
                    } else {
                        0
                    };
                }
            }
        });
    TernaryMatrix::new(rows, cols, values, GAUSSIAN_ABSMEAN)
        .expect("values are ternary and the shape matches")
}

/// `batch x cols` activations, N(0, 1).
pub fn activations(batch: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = chunk_rng(seed ^ 0xAC71_0000, 0);
    (0..batch * cols)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ternbench_kernels::formats::DenseMatrix;

    #[test]
    fn seeded_and_distributed_like_absmean_ternarized_gaussians() {
        let a = ternary_matrix(300, 1000, 42);
        assert_eq!(a, ternary_matrix(300, 1000, 42));
        assert_ne!(a.values(), ternary_matrix(300, 1000, 43).values());
        assert_eq!(a.scale(), GAUSSIAN_ABSMEAN);
        let n = a.values().len() as f64;
        let frac = |x: i8| a.values().iter().filter(|&&v| v == x).count() as f64 / n;
        // Ternarize real Gaussian draws with the absmean rule and compare fractions.
        let mut rng = chunk_rng(7, 0);
        let master: Vec<f32> = (0..300_000)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let direct = TernaryMatrix::from_absmean(&DenseMatrix::new(300, 1000, master).unwrap());
        assert!(
            (direct.scale() - GAUSSIAN_ABSMEAN).abs() < 5e-3,
            "sample beta {}",
            direct.scale()
        );
        let dn = direct.values().len() as f64;
        for x in [-1i8, 0, 1] {
            let want = direct.values().iter().filter(|&&v| v == x).count() as f64 / dn;
            // 300k draws: standard error about 1e-3.
            assert!(
                (frac(x) - want).abs() < 6e-3,
                "value {x}: {} vs {want}",
                frac(x)
            );
        }
        assert!((frac(0) - 0.3101).abs() < 3e-3);
    }
}
