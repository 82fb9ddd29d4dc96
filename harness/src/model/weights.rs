//! Where a model's tensors come from: seeded synthetic weights (bitnet.cpp's
//! dummy models) or files. A source hands out one tensor at a time, so a
//! model is packed layer by layer and the logical (unpacked) weights of the
//! whole model are never held in memory at once.

use super::config::ModelConfig;
use crate::synth;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64;
use rayon::prelude::*;
use ternbench_kernels::formats::{DenseMatrix, Format, Weights};
use ternbench_kernels::PreparedWeights;

/// The tensors of a model, by layer and name.
pub trait WeightSource: Sync {
    /// `synthetic (seed N)` or the file the weights come from.
    fn describe(&self) -> String;
    /// A linear layer of block `layer`: `q_proj`, `k_proj`, `v_proj`, `o_proj`,
    /// `gate_proj`, `up_proj`, `down_proj` (shapes in [`ModelConfig::linear_shapes`]).
    fn linear(&self, layer: usize, name: &str) -> anyhow::Result<Weights>;
    /// A norm weight vector: `input_layernorm`, `post_attention_layernorm`,
    /// `attn_sub_norm`, `ffn_sub_norm` of block `layer`, or the final `norm` (layer `None`).
    fn norm(&self, layer: Option<usize>, name: &str) -> anyhow::Result<Vec<f32>>;
    /// The token embedding, vocab x hidden (tied to the lm_head).
    fn embedding(&self) -> anyhow::Result<DenseMatrix>;
    /// The token embedding in `format`'s standard layout when the source
    /// stores it so (a GGUF's Q8_0, Q4_0 or Q6_K `token_embd` for an lm_head
    /// of that format): the lm_head then runs on the file's own codes, not on
    /// codes re-quantized from their dequantized values (ternbench's Q6_K
    /// quantizer picks other codes than ggml's). `None` otherwise.
    fn embedding_as(&self, _format: Format) -> anyhow::Result<Option<PreparedWeights>> {
        Ok(None)
    }
}

/// Seeded synthetic weights: Gaussian master weights ternarized with absmean
/// for every linear layer (each tensor its own seed), unit norm weights, and a
/// N(0, 0.02^2) embedding (the initializer range of the HF configs).
pub struct SyntheticSource {
    pub config: ModelConfig,
    pub seed: u64,
}

impl SyntheticSource {
    fn tensor_seed(&self, layer: usize, name: &str) -> u64 {
        let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        self.seed ^ name_hash ^ ((layer as u64 + 1) << 40)
    }
}

impl WeightSource for SyntheticSource {
    fn describe(&self) -> String {
        format!("synthetic (seed {})", self.seed)
    }

    fn linear(&self, layer: usize, name: &str) -> anyhow::Result<Weights> {
        let (_, rows, cols) = *self
            .config
            .linear_shapes()
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| anyhow::anyhow!("no linear layer called {name}"))?;
        Ok(Weights::Ternary(synth::ternary_matrix(
            rows,
            cols,
            self.tensor_seed(layer, name),
        )))
    }

    fn norm(&self, _layer: Option<usize>, name: &str) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        let len = match name {
            "input_layernorm" | "post_attention_layernorm" | "norm" => c.hidden,
            "attn_sub_norm" => c.q_dim(),
            "ffn_sub_norm" => c.ffn,
            _ => anyhow::bail!("no norm called {name}"),
        };
        Ok(vec![1.0; len])
    }

    fn embedding(&self) -> anyhow::Result<DenseMatrix> {
        let (vocab, hidden) = (self.config.vocab, self.config.hidden);
        let dist = Normal::new(0.0f32, 0.02).expect("valid normal distribution");
        let mut values = vec![0.0f32; vocab * hidden];
        let seed = self.tensor_seed(usize::MAX >> 24, "embed_tokens");
        values
            .par_chunks_mut(hidden * 256)
            .enumerate()
            .for_each(|(c, chunk)| {
                let mut rng =
                    Pcg64::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for v in chunk {
                    *v = dist.sample(&mut rng);
                }
            });
        Ok(DenseMatrix::new(vocab, hidden, values)?)
    }
}
