//! The forward pass of a BitNet b1.58 decoder with any kernel.
//!
//! Every linear layer goes through the kernel trait and the worker pool; the
//! activations of q/k/v (and of gate/up) are quantized once and shared, as
//! they read the same input. The lm_head is a kernel too (f16, q8_0, q4_0 or q6_k
//! weights, the tied embedding). Attention runs in f32 over a KV cache (f32
//! or f16), parallel over (token, head). Each operation's time is added to a
//! [`Breakdown`].
//!
//! With layer sampling a model holds fewer distinct blocks than it has
//! layers and layer i runs block i mod n: every layer is still executed and
//! timed, on weights that are reused, so the figure is extrapolated from the
//! sampled blocks and is marked so.

use super::config::{FfnActivation, ModelConfig};
use super::ops::{self, AttentionShape, KvCache};
use super::weights::WeightSource;
use anyhow::Context;
use std::time::Instant;
use ternbench_kernels::formats::f16::F16Matrix;
use ternbench_kernels::formats::q4_0::Q4_0Matrix;
use ternbench_kernels::formats::q6_k::Q6KMatrix;
use ternbench_kernels::formats::q8_0::Q8_0Matrix;
use ternbench_kernels::formats::{Format, Weights};
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::parallel::{matmul, prepare_input_on, Executor};
use ternbench_kernels::{Kernel, PreparedWeights};

/// The operations a forward pass is broken down into.
pub const OPS: [&str; 12] = [
    "embed",
    "norm",
    "quant",
    "qkv",
    "rope",
    "attention",
    "o_proj",
    "gate_up",
    "ffn_act",
    "down",
    "residual",
    "lm_head",
];

/// Nanoseconds spent per operation of [`OPS`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Breakdown {
    pub ns: [u64; OPS.len()],
}

impl Breakdown {
    pub fn total_ns(&self) -> u64 {
        self.ns.iter().sum()
    }

    pub fn add(&mut self, other: &Breakdown) {
        for (a, b) in self.ns.iter_mut().zip(&other.ns) {
            *a += b;
        }
    }

    fn time<T>(&mut self, op: usize, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.ns[op] += start.elapsed().as_nanos() as u64;
        out
    }
}

const EMBED: usize = 0;
const NORM: usize = 1;
const QUANT: usize = 2;
const QKV: usize = 3;
const ROPE: usize = 4;
const ATTENTION: usize = 5;
const O_PROJ: usize = 6;
const GATE_UP: usize = 7;
const FFN_ACT: usize = 8;
const DOWN: usize = 9;
const RESIDUAL: usize = 10;
const LM_HEAD: usize = 11;

/// How to build a model: the kernel of its linear layers and of its lm_head.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    pub kernel: &'static dyn Kernel,
    pub lm_head: &'static dyn Kernel,
}

struct Block {
    input_norm: Vec<f32>,
    post_attention_norm: Vec<f32>,
    attn_sub_norm: Vec<f32>,
    ffn_sub_norm: Vec<f32>,
    /// q, k, v, o, gate, up, down.
    linears: Vec<PreparedWeights>,
}

/// A model packed for one kernel.
pub struct Model {
    pub config: ModelConfig,
    pub spec: ModelSpec,
    blocks: Vec<Block>,
    final_norm: Vec<f32>,
    lm_head: PreparedWeights,
    /// The embedding in the lm_head format's standard layout, when the lm_head
    /// kernel packed the weights differently (otherwise rows are read from it).
    embedding: Option<PreparedWeights>,
    inv_freq: Vec<f32>,
    pub weights_source: String,
}

/// Bytes the weights of a model packed in `format` take, per block and for the lm_head.
pub fn estimate_bytes(config: &ModelConfig, format: Format, lm_head: Format) -> (u64, u64) {
    let bits = |f: Format, n: u64| (n as f64 * f.bits_per_weight() / 8.0) as u64;
    let norms = 4 * (2 * config.hidden + config.q_dim() + config.ffn) as u64;
    (
        bits(format, config.params_per_layer()) + norms,
        bits(lm_head, (config.vocab * config.hidden) as u64),
    )
}

impl Model {
    /// Packs one model per spec from `source`, fetching each tensor once.
    /// `distinct_blocks` < layers enables layer sampling.
    pub fn build_many(
        config: &ModelConfig,
        source: &dyn WeightSource,
        specs: &[ModelSpec],
        distinct_blocks: usize,
        mut progress: impl FnMut(&str),
    ) -> anyhow::Result<Vec<Model>> {
        let distinct = distinct_blocks.clamp(1, config.layers);
        let mut blocks: Vec<Vec<Block>> =
            specs.iter().map(|_| Vec::with_capacity(distinct)).collect();
        for layer in 0..distinct {
            progress(&format!("packing block {}/{distinct}", layer + 1));
            let mut linears: Vec<Vec<PreparedWeights>> =
                specs.iter().map(|_| Vec::with_capacity(7)).collect();
            for (name, rows, cols) in config.linear_shapes() {
                let w = source.linear(layer, name)?;
                anyhow::ensure!(
                    (w.rows(), w.cols()) == (rows, cols),
                    "{}: layer {layer} {name} is {}x{}, expected {rows}x{cols}",
                    source.describe(),
                    w.rows(),
                    w.cols()
                );
                for (spec, out) in specs.iter().zip(linears.iter_mut()) {
                    out.push(spec.kernel.prepare(&w).with_context(|| {
                        format!(
                            "packing layer {layer} {name} for {}",
                            spec.kernel.info().name
                        )
                    })?);
                }
            }
            let norm = |name: &str| source.norm(Some(layer), name);
            let (input_norm, post_attention_norm, attn_sub_norm, ffn_sub_norm) = (
                norm("input_layernorm")?,
                norm("post_attention_layernorm")?,
                norm("attn_sub_norm")?,
                norm("ffn_sub_norm")?,
            );
            for (b, l) in blocks.iter_mut().zip(linears) {
                b.push(Block {
                    input_norm: input_norm.clone(),
                    post_attention_norm: post_attention_norm.clone(),
                    attn_sub_norm: attn_sub_norm.clone(),
                    ffn_sub_norm: ffn_sub_norm.clone(),
                    linears: l,
                });
            }
        }
        progress("packing the embedding / lm_head");
        let embedding = Weights::Dense(source.embedding()?);
        anyhow::ensure!(
            (embedding.rows(), embedding.cols()) == (config.vocab, config.hidden),
            "{}: embedding is {}x{}, expected {}x{}",
            source.describe(),
            embedding.rows(),
            embedding.cols(),
            config.vocab,
            config.hidden
        );
        let final_norm = source.norm(None, "norm")?;
        let mut models = Vec::with_capacity(specs.len());
        for (spec, blocks) in specs.iter().zip(blocks) {
            let lm_format = spec.lm_head.info().format;
            anyhow::ensure!(
                matches!(
                    lm_format,
                    Format::F16 | Format::Q8_0 | Format::Q4_0 | Format::Q6K
                ),
                "lm_head kernel {} reads {lm_format}; expected an f16, q8_0, q4_0 or q6_k kernel",
                spec.lm_head.info().name
            );
            // Every lm_head kernel reads the standard layout (embed_row relies
            // on it too), so a file's own blocks in that layout serve as is.
            let lm_head = match source.embedding_as(lm_format)? {
                Some(packed) => packed,
                None => spec.lm_head.prepare(&embedding)?,
            };
            let standard_layout = lm_head.get::<F16Matrix>().is_some()
                || lm_head.get::<Q8_0Matrix>().is_some()
                || lm_head.get::<Q4_0Matrix>().is_some()
                || lm_head.get::<Q6KMatrix>().is_some();
            let separate_embedding = if standard_layout {
                None
            } else {
                Some(pack_standard("embedding", lm_format, &embedding)?)
            };
            models.push(Model {
                config: config.clone(),
                spec: *spec,
                blocks,
                final_norm: final_norm.clone(),
                lm_head,
                embedding: separate_embedding,
                inv_freq: ops::rope_inv_freq(config.head_dim, config.rope_theta),
                weights_source: source.describe(),
            });
        }
        Ok(models)
    }

    /// True when blocks are reused (layer sampling): figures are extrapolated.
    pub fn sampled(&self) -> bool {
        self.blocks.len() < self.config.layers
    }

    /// Bytes of weights one token reads: every layer's linears and the lm_head.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let per_block: Vec<u64> = self
            .blocks
            .iter()
            .map(|b| b.linears.iter().map(|w| w.weight_bytes as u64).sum())
            .collect();
        let layers: u64 = (0..self.config.layers)
            .map(|l| per_block[l % per_block.len()])
            .sum();
        layers + self.lm_head.weight_bytes as u64
    }

    /// Bytes of the packed lm_head (read once per token that needs logits).
    pub fn lm_head_bytes(&self) -> u64 {
        self.lm_head.weight_bytes as u64
    }

    /// Bytes of packed weights held in memory.
    pub fn resident_bytes(&self) -> u64 {
        let blocks: u64 = self
            .blocks
            .iter()
            .flat_map(|b| &b.linears)
            .map(|w| w.weight_bytes as u64)
            .sum();
        blocks
            + self.lm_head.weight_bytes as u64
            + self.embedding.as_ref().map_or(0, |e| e.weight_bytes as u64)
    }

    /// A fresh generation state with room for `capacity` positions.
    pub fn session(&self, capacity: usize, kv_f16: bool) -> Session {
        Session {
            cache: KvCache::new(self.config.layers, capacity, self.config.kv_dim(), kv_f16),
            pos: 0,
        }
    }

    fn embed_row(&self, token: usize, out: &mut [f32]) {
        let w = self.embedding.as_ref().unwrap_or(&self.lm_head);
        if let Some(m) = w.get::<F16Matrix>() {
            for (o, v) in out.iter_mut().zip(&m.row(token)[..m.cols]) {
                *o = v.to_f32();
            }
        } else if let Some(m) = w.get::<Q8_0Matrix>() {
            for (i, o) in out.iter_mut().enumerate() {
                let b = &m.row(token)[i / 32];
                *o = b.qs[i % 32] as f32 * b.d.to_f32();
            }
        } else if let Some(m) = w.get::<Q4_0Matrix>() {
            for (i, o) in out.iter_mut().enumerate() {
                let b = &m.row(token)[i / 32];
                *o = (b.code(i % 32) as f32 - 8.0) * b.d.to_f32();
            }
        } else if let Some(m) = w.get::<Q6KMatrix>() {
            for (i, o) in out.iter_mut().enumerate() {
                let b = &m.row(token)[i / 256];
                let e = i % 256;
                *o = (b.code(e) as f32 - 32.0) * b.scales[e / 16] as f32 * b.d.to_f32();
            }
        } else {
            unreachable!("the embedding is kept in a standard f16/q8_0/q4_0/q6_k layout");
        }
    }

    /// Runs `tokens` as one batch at the session's next positions, appending
    /// to its KV cache. With `logits`, fills it with the last token's logits.
    pub fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        exec: &Executor,
        logits: Option<&mut Vec<f32>>,
        bd: &mut Breakdown,
    ) -> anyhow::Result<()> {
        let c = &self.config;
        let n = tokens.len();
        anyhow::ensure!(n > 0, "forward needs at least one token");
        anyhow::ensure!(
            session.pos + n <= session.cache.capacity,
            "the KV cache holds {} positions; {} + {} do not fit",
            session.cache.capacity,
            session.pos,
            n
        );
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            anyhow::bail!(
                "token id {t} is outside the vocabulary of {} tokens",
                c.vocab
            );
        }
        let (hidden, q_dim, kv_dim, ffn) = (c.hidden, c.q_dim(), c.kv_dim(), c.ffn);
        let kernel = self.spec.kernel;
        let shape = AttentionShape {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };
        let pos0 = session.pos;
        let mut x = vec![0.0f32; n * hidden];
        bd.time(EMBED, || {
            for (row, &t) in x.chunks_exact_mut(hidden).zip(tokens) {
                self.embed_row(t as usize, row);
            }
        });
        let angles: Vec<_> = bd.time(ROPE, || {
            (0..n)
                .map(|t| ops::rope_angles(pos0 + t, &self.inv_freq))
                .collect()
        });
        let mut h = vec![0.0f32; n * hidden];
        let mut q = vec![0.0f32; n * q_dim];
        let mut k = vec![0.0f32; n * kv_dim];
        let mut v = vec![0.0f32; n * kv_dim];
        let mut attn = vec![0.0f32; n * q_dim];
        let mut o = vec![0.0f32; n * hidden];
        let mut g = vec![0.0f32; n * ffn];
        let mut u = vec![0.0f32; n * ffn];
        for layer in 0..c.layers {
            let b = &self.blocks[layer % self.blocks.len()];
            let [wq, wk, wv, wo, wg, wu, wd] = b.linears.as_slice() else {
                unreachable!("a block has seven linear layers")
            };
            h.copy_from_slice(&x);
            bd.time(NORM, || {
                ops::par_rows(exec, &mut h, hidden, &|_, r| {
                    ops::rms_norm(r, &b.input_norm, c.norm_eps)
                })
            });
            let input = bd.time(QUANT, || prepare_input_on(kernel, exec, &h, n, hidden));
            bd.time(QKV, || -> anyhow::Result<()> {
                matmul(kernel, wq, &input, exec, &mut q)?;
                matmul(kernel, wk, &input, exec, &mut k)?;
                matmul(kernel, wv, &input, exec, &mut v)?;
                Ok(())
            })?;
            bd.time(ROPE, || {
                ops::par_rows(exec, &mut q, q_dim, &|t, r| {
                    ops::rope(r, c.head_dim, &angles[t])
                });
                ops::par_rows(exec, &mut k, kv_dim, &|t, r| {
                    ops::rope(r, c.head_dim, &angles[t])
                });
            });
            bd.time(ATTENTION, || {
                for t in 0..n {
                    session.cache.store(
                        layer,
                        pos0 + t,
                        &k[t * kv_dim..(t + 1) * kv_dim],
                        &v[t * kv_dim..(t + 1) * kv_dim],
                    );
                }
                let cache = &session.cache;
                let q = &q;
                // One task per token and KV head: its query heads share the keys and values.
                let group = c.head_dim * c.heads / c.kv_heads;
                ops::par_rows(exec, &mut attn, group, &|i, out| {
                    let (t, kv_head) = (i / c.kv_heads, i % c.kv_heads);
                    let at = t * q_dim + kv_head * group;
                    ops::attend_group(
                        cache,
                        layer,
                        shape,
                        kv_head,
                        pos0 + t,
                        &q[at..at + group],
                        out,
                    );
                });
            });
            bd.time(NORM, || {
                ops::par_rows(exec, &mut attn, q_dim, &|_, r| {
                    ops::rms_norm(r, &b.attn_sub_norm, c.norm_eps)
                })
            });
            let input = bd.time(QUANT, || prepare_input_on(kernel, exec, &attn, n, q_dim));
            bd.time(O_PROJ, || matmul(kernel, wo, &input, exec, &mut o))?;
            bd.time(RESIDUAL, || ops::add_rows(exec, &mut x, &o, hidden));
            h.copy_from_slice(&x);
            bd.time(NORM, || {
                ops::par_rows(exec, &mut h, hidden, &|_, r| {
                    ops::rms_norm(r, &b.post_attention_norm, c.norm_eps)
                })
            });
            let input = bd.time(QUANT, || prepare_input_on(kernel, exec, &h, n, hidden));
            bd.time(GATE_UP, || -> anyhow::Result<()> {
                matmul(kernel, wg, &input, exec, &mut g)?;
                matmul(kernel, wu, &input, exec, &mut u)?;
                Ok(())
            })?;
            bd.time(FFN_ACT, || {
                let gate = match c.ffn_activation {
                    FfnActivation::Relu2Gated => ops::relu2_gate,
                    FfnActivation::SiluGated => ops::silu_gate,
                };
                ops::par_rows(exec, &mut g, ffn, &|t, r| {
                    gate(r, &u[t * ffn..(t + 1) * ffn])
                });
            });
            bd.time(NORM, || {
                ops::par_rows(exec, &mut g, ffn, &|_, r| {
                    ops::rms_norm(r, &b.ffn_sub_norm, c.norm_eps)
                })
            });
            let input = bd.time(QUANT, || prepare_input_on(kernel, exec, &g, n, ffn));
            bd.time(DOWN, || matmul(kernel, wd, &input, exec, &mut o))?;
            bd.time(RESIDUAL, || ops::add_rows(exec, &mut x, &o, hidden));
        }
        session.pos += n;
        if let Some(logits) = logits {
            let last = &mut x[(n - 1) * hidden..];
            bd.time(NORM, || ops::rms_norm(last, &self.final_norm, c.norm_eps));
            logits.resize(c.vocab, 0.0);
            bd.time(LM_HEAD, || -> anyhow::Result<()> {
                let lm = self.spec.lm_head;
                let input = lm.prepare_input_f32(last, 1, hidden);
                matmul(lm, &self.lm_head, &input, exec, logits)?;
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// Generation state: the KV cache and the next position.
pub struct Session {
    pub cache: KvCache,
    pub pos: usize,
}

/// Index of the largest logit (greedy decoding); ties go to the lowest id.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::ReferenceModel;
    use crate::model::weights::SyntheticSource;
    use ternbench_kernels::parallel::Threading;
    use ternbench_kernels::registry;

    pub(crate) fn tiny(activation: &str) -> ModelConfig {
        ModelConfig::from_toml(
            &format!(
                "name = \"tiny\"\nhidden = 96\nffn = 160\nlayers = 3\nheads = 6\nkv_heads = 2\nhead_dim = 16\nvocab = 300\nffn_activation = \"{activation}\"\nrope_theta = 10000.0\n"
            ),
            "tiny.toml",
        )
        .unwrap()
    }

    /// Prompt logits (batched), then greedy generation; returns (logits of each step, tokens).
    fn generate(
        model: &Model,
        exec: &Executor,
        prompt: &[u32],
        n: usize,
        batched: bool,
    ) -> (Vec<Vec<f32>>, Vec<u32>) {
        let mut s = model.session(prompt.len() + n, false);
        let mut bd = Breakdown::default();
        let mut logits = Vec::new();
        if batched {
            model
                .forward(&mut s, prompt, exec, Some(&mut logits), &mut bd)
                .unwrap();
        } else {
            for &t in prompt {
                model
                    .forward(&mut s, &[t], exec, Some(&mut logits), &mut bd)
                    .unwrap();
            }
        }
        let mut all = vec![logits.clone()];
        let mut tokens = Vec::new();
        for _ in 0..n {
            let next = argmax(&logits);
            tokens.push(next);
            model
                .forward(&mut s, &[next], exec, Some(&mut logits), &mut bd)
                .unwrap();
            all.push(logits.clone());
        }
        assert!(bd.total_ns() > 0);
        (all, tokens)
    }

    fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
            / scale
    }

    /// The reference forward's logits after the prompt and after each of
    /// `steps` greedy tokens, and those tokens.
    fn reference_greedy(
        reference: &mut ReferenceModel,
        prompt: &[u32],
        steps: usize,
    ) -> (Vec<Vec<f32>>, Vec<u32>) {
        let mut logits = Vec::new();
        for &t in prompt {
            logits = reference.step(t);
        }
        let mut all = vec![logits.clone()];
        let mut tokens = Vec::new();
        for _ in 0..steps {
            let next = argmax(&logits);
            tokens.push(next);
            logits = reference.step(next);
            all.push(logits.clone());
        }
        (all, tokens)
    }

    #[test]
    fn every_kernel_matches_the_reference_forward() {
        let exec = Executor::new(Threading::Pool, 2, false).unwrap();
        let prompt = [3u32, 141, 59, 26, 5, 35, 89];
        for activation in ["relu2-gated", "silu-gated"] {
            let config = tiny(activation);
            let source = SyntheticSource {
                config: config.clone(),
                seed: 7,
            };
            // The lossy LUT kernels are left out: their int8 tables are
            // allowed an error (checked per layer by `verify`) that the
            // 1e-3 logit tolerance here is not meant for. Formats that refuse
            // these shapes (q6_k: K a multiple of 256) are checked at a
            // shape of their own below.
            let kernels: Vec<_> = registry::resolve("all")
                .unwrap()
                .into_iter()
                .filter(|k| !k.info().is_lossy() && fits(k.info().format, &config))
                .collect();
            assert!(kernels.len() > 10);
            // The scalar f16 lm_head keeps i2s logits comparable bit for bit.
            let lm = registry::reference(Format::F16);
            let specs: Vec<ModelSpec> = kernels
                .iter()
                .map(|&kernel| ModelSpec {
                    kernel,
                    lm_head: lm,
                })
                .collect();
            let models =
                Model::build_many(&config, &source, &specs, config.layers, |_| {}).unwrap();
            for model in &models {
                let format = model.spec.kernel.info().format;
                let mut reference =
                    ReferenceModel::new(&config, &source, format, Format::F16, 16).unwrap();
                let (want, ref_tokens) = reference_greedy(&mut reference, &prompt, 5);
                for batched in [true, false] {
                    let (got, tokens) = generate(model, &exec, &prompt, 5, batched);
                    let name = model.spec.kernel.info().name;
                    assert_eq!(
                        tokens, ref_tokens,
                        "{name} ({activation}, batched {batched}): greedy tokens differ"
                    );
                    let info = model.spec.kernel.info();
                    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
                        if info.exact && format == Format::I2s {
                            assert!(
                                g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{name} ({activation}, batched {batched}) step {step}: logits are not bit-identical"
                            );
                        }
                        let d = max_rel_diff(g, w);
                        assert!(d < 1e-3, "{name} ({activation}, batched {batched}) step {step}: logits differ by {d} of their range");
                    }
                }
            }
        }
    }

    /// True when every linear layer of `config` can be packed in `format`.
    fn fits(format: Format, config: &ModelConfig) -> bool {
        config
            .linear_shapes()
            .iter()
            .all(|&(_, _, cols)| format.accepts_cols(cols))
    }

    /// A q6_k lm_head (every q6_k kernel, with i2s-scalar or a q6_k kernel in
    /// the linear layers) gives the reference forward's logits and greedy
    /// tokens, batched and one token at a time; where K is not a multiple of
    /// 256 building the model is an error that names the rule.
    #[test]
    fn q6_k_lm_head_matches_the_reference_forward() {
        let exec = Executor::new(Threading::Pool, 2, false).unwrap();
        let config = ModelConfig::from_toml(
            "name = \"tiny256\"\nhidden = 256\nffn = 512\nlayers = 2\nheads = 4\nkv_heads = 2\nhead_dim = 64\nvocab = 300\nffn_activation = \"relu2-gated\"\nrope_theta = 10000.0\n",
            "tiny256.toml",
        )
        .unwrap();
        let source = SyntheticSource {
            config: config.clone(),
            seed: 11,
        };
        let q6k: Vec<_> = registry::resolve("all")
            .unwrap()
            .into_iter()
            .filter(|k| k.info().format == Format::Q6K)
            .collect();
        assert!(!q6k.is_empty());
        let mut specs = Vec::new();
        for &lm_head in &q6k {
            specs.push(ModelSpec {
                kernel: registry::reference(Format::I2s),
                lm_head,
            });
            specs.push(ModelSpec {
                kernel: lm_head,
                lm_head,
            });
        }
        let models = Model::build_many(&config, &source, &specs, config.layers, |_| {}).unwrap();
        let prompt = [3u32, 141, 59, 26, 5];
        for model in &models {
            let format = model.spec.kernel.info().format;
            let mut reference =
                ReferenceModel::new(&config, &source, format, Format::Q6K, 16).unwrap();
            let (want, ref_tokens) = reference_greedy(&mut reference, &prompt, 4);
            let name = format!(
                "{} + lm_head {}",
                model.spec.kernel.info().name,
                model.spec.lm_head.info().name
            );
            assert!(model.lm_head.get::<Q6KMatrix>().is_some(), "{name}");
            assert_eq!(
                model.lm_head_bytes(),
                (config.vocab * config.hidden / 256 * 210) as u64
            );
            for batched in [true, false] {
                let (got, tokens) = generate(model, &exec, &prompt, 4, batched);
                assert_eq!(tokens, ref_tokens, "{name} (batched {batched})");
                for (step, (g, w)) in got.iter().zip(&want).enumerate() {
                    let d = max_rel_diff(g, w);
                    assert!(d < 1e-3, "{name} (batched {batched}) step {step}: {d}");
                }
            }
        }
        // hidden = 96: the q6_k lm_head cannot be packed.
        let small = tiny("relu2-gated");
        let source = SyntheticSource {
            config: small.clone(),
            seed: 1,
        };
        let spec = ModelSpec {
            kernel: registry::reference(Format::I2s),
            lm_head: registry::reference(Format::Q6K),
        };
        let err = Model::build_many(&small, &source, &[spec], small.layers, |_| {})
            .err()
            .expect("q6_k at hidden 96 must be refused")
            .to_string();
        assert!(err.contains("multiple of 256"), "{err}");
    }

    #[test]
    fn layer_sampling_reuses_blocks_and_is_marked() {
        let config = tiny("relu2-gated");
        let source = SyntheticSource {
            config: config.clone(),
            seed: 1,
        };
        let spec = ModelSpec {
            kernel: registry::reference(Format::I2s),
            lm_head: registry::reference(Format::F16),
        };
        let full = Model::build_many(&config, &source, &[spec], config.layers, |_| {})
            .unwrap()
            .remove(0);
        let sampled = Model::build_many(&config, &source, &[spec], 1, |_| {})
            .unwrap()
            .remove(0);
        assert!(!full.sampled() && sampled.sampled());
        // Same bytes per token (every layer still runs), fewer bytes resident.
        let block = full.resident_bytes() - sampled.resident_bytes();
        assert!(block > 0);
        let per_block = sampled.weight_bytes_per_token() - sampled.lm_head.weight_bytes as u64;
        assert_eq!(per_block % config.layers as u64, 0);
        let exec = Executor::serial();
        let mut s = sampled.session(4, true);
        let mut logits = Vec::new();
        sampled
            .forward(
                &mut s,
                &[1, 2],
                &exec,
                Some(&mut logits),
                &mut Breakdown::default(),
            )
            .unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn bad_tokens_and_full_caches_are_errors() {
        let config = tiny("relu2-gated");
        let source = SyntheticSource {
            config: config.clone(),
            seed: 1,
        };
        let spec = ModelSpec {
            kernel: registry::reference(Format::I2s),
            lm_head: registry::reference(Format::F16),
        };
        let model = Model::build_many(&config, &source, &[spec], 1, |_| {})
            .unwrap()
            .remove(0);
        let exec = Executor::serial();
        let mut s = model.session(2, false);
        let e = model
            .forward(&mut s, &[300], &exec, None, &mut Breakdown::default())
            .unwrap_err();
        assert!(e.to_string().contains("outside the vocabulary"), "{e}");
        let e = model
            .forward(&mut s, &[1, 2, 3], &exec, None, &mut Breakdown::default())
            .unwrap_err();
        assert!(e.to_string().contains("KV cache holds 2"), "{e}");
    }
}
