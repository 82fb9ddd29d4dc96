//! Synthetic weights and activations of real shapes, seeded and reproducible.
//!
//! Weights follow bitnet.cpp's dummy models: Gaussian master weights
//! ternarized with BitNet's absmean rule. Rows are generated in parallel in
//! fixed chunks, each from its own generator seeded by (seed, chunk), so the
//! result does not depend on the thread count. The master weights are never
//! held in memory: one pass sums |w| for beta, a second regenerates and
//! ternarizes, so an lm_head of 128256 x 2560 needs only its i8 values.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64;
use rayon::prelude::*;
use ternbench_kernels::formats::TernaryMatrix;
use ternbench_kernels::quant::{round_even, SCALE_EPS};

/// Rows per independently seeded chunk.
const CHUNK_ROWS: usize = 64;

fn chunk_rng(seed: u64, chunk: usize) -> Pcg64 {
    // SplitMix64-style mixing keeps nearby (seed, chunk) pairs unrelated.
    let mut z = seed ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Pcg64::seed_from_u64(z ^ (z >> 31))
}

fn gaussian_chunk(seed: u64, chunk: usize, len: usize, mut f: impl FnMut(usize, f32)) {
    let mut rng = chunk_rng(seed, chunk);
    for i in 0..len {
        f(i, StandardNormal.sample(&mut rng));
    }
}

/// A rows x cols ternary matrix: N(0, 1) master weights, absmean-ternarized.
pub fn ternary_matrix(rows: usize, cols: usize, seed: u64) -> TernaryMatrix {
    let chunk_len = CHUNK_ROWS * cols;
    let n_chunks = rows.div_ceil(CHUNK_ROWS);
    let len_of = |c: usize| ((c + 1) * CHUNK_ROWS).min(rows) * cols - c * chunk_len;
    let abs_sum: f64 = (0..n_chunks)
        .into_par_iter()
        .map(|c| {
            let mut s = 0.0f64;
            gaussian_chunk(seed, c, len_of(c), |_, v| s += v.abs() as f64);
            s
        })
        .sum();
    let beta = ((abs_sum / (rows * cols) as f64) as f32).max(SCALE_EPS);
    let inv = 1.0 / beta;
    let mut values = vec![0i8; rows * cols];
    values
        .par_chunks_mut(chunk_len)
        .enumerate()
        .for_each(|(c, out)| {
            gaussian_chunk(seed, c, out.len(), |i, v| {
                out[i] = round_even(v * inv).clamp(-1, 1) as i8
            })
        });
    TernaryMatrix::new(rows, cols, values, beta).expect("values are ternary and the shape matches")
}

/// `batch x cols` activations, N(0, 1).
pub fn activations(batch: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut x = vec![0.0f32; batch * cols];
    gaussian_chunk(seed ^ 0xAC71_0000, 0, x.len(), |i, v| x[i] = v);
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use ternbench_kernels::formats::DenseMatrix;

    #[test]
    fn same_seed_same_matrix_and_absmean_semantics() {
        let a = ternary_matrix(130, 70, 42);
        assert_eq!(a, ternary_matrix(130, 70, 42));
        assert_ne!(a.values(), ternary_matrix(130, 70, 43).values());
        // The streamed two-pass generation equals absmean applied to the master weights.
        let mut master = vec![0.0f32; 130 * 70];
        for c in 0..130usize.div_ceil(CHUNK_ROWS) {
            let start = c * CHUNK_ROWS * 70;
            let len = ((c + 1) * CHUNK_ROWS).min(130) * 70 - start;
            gaussian_chunk(42, c, len, |i, v| master[start + i] = v);
        }
        let direct = TernaryMatrix::from_absmean(&DenseMatrix::new(130, 70, master).unwrap());
        assert_eq!(a.values(), direct.values());
        assert!((a.scale() - direct.scale()).abs() <= direct.scale() * 1e-6);
        // N(0, 1): beta = E|w| = sqrt(2 / pi) ~ 0.798, about 31% zeros.
        assert!((a.scale() - 0.798).abs() < 0.02, "beta {}", a.scale());
        let zeros = a.values().iter().filter(|&&v| v == 0).count() as f64 / a.values().len() as f64;
        assert!((zeros - 0.31).abs() < 0.03, "zeros {zeros}");
    }
}
