//! A reference forward pass: one token at a time, one thread, every linear
//! layer computed by the scalar reference kernel of its format (itself
//! checked against the f64 reference of `ternbench-kernels`), with weights
//! packed in the standard layout. It shares the elementwise operations with
//! the engine (unit-tested on their own) and nothing else: no SIMD kernel, no
//! worker pool, no batching, no layer sampling.
//!
//! Why scalar kernels and not f64: one int8 rounding decision of the
//! per-token activation quantization, flipped by a 1-ulp difference upstream,
//! moves a tiny model's logits by several percent. Computing the linears in
//! exactly the kernels' arithmetic keeps the comparison sharp: an exact i2s
//! kernel must give bit-identical logits, and every kernel the same greedy
//! tokens and logits within 1e-3 of their range.

use super::config::{FfnActivation, ModelConfig};
use super::ops::{self, AttentionShape, KvCache};
use super::weights::WeightSource;
use ternbench_kernels::formats::{Format, Weights};
use ternbench_kernels::kernel::{pack_standard, OutputMatrix};
use ternbench_kernels::{registry, PreparedWeights};

pub struct ReferenceModel {
    config: ModelConfig,
    format: Format,
    lm_format: Format,
    /// Per layer: the seven linears in standard layout, then the four norms.
    layers: Vec<(Vec<PreparedWeights>, [Vec<f32>; 4])>,
    final_norm: Vec<f32>,
    lm_head: PreparedWeights,
    /// The embedding as the lm_head format stores it, dequantized.
    embedding: Vec<f32>,
    inv_freq: Vec<f32>,
    cache: KvCache,
    pos: usize,
}

/// y = W x with the scalar reference kernel of the weights' format.
fn linear(w: &PreparedWeights, x: &[f32]) -> Vec<f32> {
    let kernel = registry::reference(w.format);
    let input = kernel.prepare_input_f32(x, 1, x.len());
    let mut y = vec![0.0; w.rows];
    let mut out = OutputMatrix::new(&mut y, 1, w.rows);
    kernel.compute(w, &input, &mut out.tile(0..w.rows));
    y
}

impl ReferenceModel {
    /// Loads every layer (no sampling) for linears in `format` and an lm_head in `lm_format`.
    pub fn new(
        config: &ModelConfig,
        source: &dyn WeightSource,
        format: Format,
        lm_format: Format,
        capacity: usize,
    ) -> anyhow::Result<Self> {
        let mut layers = Vec::with_capacity(config.layers);
        for layer in 0..config.layers {
            let mut linears = Vec::with_capacity(7);
            for (name, _, _) in config.linear_shapes() {
                linears.push(pack_standard(
                    "reference",
                    format,
                    &source.linear(layer, name)?,
                )?);
            }
            let norm = |name: &str| source.norm(Some(layer), name);
            let norms = [
                norm("input_layernorm")?,
                norm("post_attention_layernorm")?,
                norm("attn_sub_norm")?,
                norm("ffn_sub_norm")?,
            ];
            layers.push((linears, norms));
        }
        let lm_head = match source.embedding_as(lm_format)? {
            Some(packed) => packed,
            None => pack_standard("reference", lm_format, &Weights::Dense(source.embedding()?))?,
        };
        // The engine embeds with the lm_head's stored (rounded) values.
        let embedding = dequantize(&lm_head);
        Ok(ReferenceModel {
            config: config.clone(),
            format,
            lm_format,
            layers,
            final_norm: source.norm(None, "norm")?,
            lm_head,
            embedding,
            inv_freq: ops::rope_inv_freq(config.head_dim, config.rope_theta),
            cache: KvCache::new(config.layers, capacity, config.kv_dim(), false),
            pos: 0,
        })
    }

    pub fn formats(&self) -> (Format, Format) {
        (self.format, self.lm_format)
    }

    /// Runs one token at the next position and returns its logits.
    pub fn step(&mut self, token: u32) -> Vec<f32> {
        let c = &self.config;
        let (hidden, q_dim) = (c.hidden, c.q_dim());
        let t = token as usize;
        let mut x = self.embedding[t * hidden..(t + 1) * hidden].to_vec();
        let shape = AttentionShape {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };
        for (layer, (w, norms)) in self.layers.iter().enumerate() {
            let mut h = x.clone();
            ops::rms_norm(&mut h, &norms[0], c.norm_eps);
            let mut q = linear(&w[0], &h);
            let mut k = linear(&w[1], &h);
            let v = linear(&w[2], &h);
            let angles = ops::rope_angles(self.pos, &self.inv_freq);
            ops::rope(&mut q, c.head_dim, &angles);
            ops::rope(&mut k, c.head_dim, &angles);
            self.cache.store(layer, self.pos, &k, &v);
            let mut attn = vec![0.0f32; q_dim];
            let group = q_dim / c.kv_heads;
            for kv_head in 0..c.kv_heads {
                let range = kv_head * group..(kv_head + 1) * group;
                ops::attend_group(
                    &self.cache,
                    layer,
                    shape,
                    kv_head,
                    self.pos,
                    &q[range.clone()],
                    &mut attn[range],
                );
            }
            ops::rms_norm(&mut attn, &norms[2], c.norm_eps);
            let o = linear(&w[3], &attn);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let mut h = x.clone();
            ops::rms_norm(&mut h, &norms[1], c.norm_eps);
            let mut g = linear(&w[4], &h);
            let u = linear(&w[5], &h);
            match c.ffn_activation {
                FfnActivation::Relu2Gated => ops::relu2_gate(&mut g, &u),
                FfnActivation::SiluGated => ops::silu_gate(&mut g, &u),
            }
            ops::rms_norm(&mut g, &norms[3], c.norm_eps);
            let d = linear(&w[6], &g);
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        self.pos += 1;
        ops::rms_norm(&mut x, &self.final_norm, c.norm_eps);
        linear(&self.lm_head, &x)
    }
}

/// The real values of a standard-layout f16 / q8_0 / q4_0 / q6_k matrix, row-major.
fn dequantize(w: &PreparedWeights) -> Vec<f32> {
    use ternbench_kernels::formats::{
        f16::F16Matrix, q4_0::Q4_0Matrix, q6_k::Q6KMatrix, q8_0::Q8_0Matrix,
    };
    if let Some(m) = w.get::<F16Matrix>() {
        m.unpack().values().to_vec()
    } else if let Some(m) = w.get::<Q8_0Matrix>() {
        m.dequantize()
    } else if let Some(m) = w.get::<Q4_0Matrix>() {
        m.dequantize()
    } else if let Some(m) = w.get::<Q6KMatrix>() {
        m.dequantize()
    } else {
        panic!("lm_head format {} is not f16, q8_0, q4_0 or q6_k", w.format)
    }
}
