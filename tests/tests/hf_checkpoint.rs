//! ternbench against Hugging Face transformers: the tiny BitNet checkpoints in
//! tests/fixtures/hf_bitnet (made by make_fixture.py there with transformers'
//! BitNetForCausalLM) are loaded by ternbench's safetensors/config loader and
//! run by its engine with every available i2s kernel; the logits at every
//! position must match transformers' within a stated tolerance, and the greedy
//! tokens must be the same.

use std::path::PathBuf;
use ternbench::model::engine::{argmax, Breakdown, Model, ModelSpec};
use ternbench::model::hf::{HfCheckpoint, LinearLayout};
use ternbench::model::WeightSource;
use ternbench_kernels::formats::Format;
use ternbench_kernels::parallel::{Executor, Threading};
use ternbench_kernels::registry;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hf_bitnet")
        .join(name)
}

struct Expected {
    input_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn expected(variant: &str) -> Expected {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let input_ids = v["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let logits = v[format!("{variant}_logits")]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    Expected { input_ids, logits }
}

/// Max |a - b| over max |b|, per position.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn check(variant: &str, layout: LinearLayout, tolerance: f32) {
    let ckpt = HfCheckpoint::open(&fixture(variant)).unwrap();
    assert_eq!(ckpt.layout, layout);
    let c = ckpt.config.clone();
    assert_eq!(
        (c.hidden, c.ffn, c.layers, c.heads, c.kv_heads, c.vocab),
        (64, 128, 2, 4, 2, 256)
    );
    let want = expected(variant);
    let kernels: Vec<_> = registry::resolve("all")
        .unwrap()
        .into_iter()
        .filter(|k| k.info().format == Format::I2s)
        .collect();
    let specs: Vec<ModelSpec> = kernels
        .iter()
        .map(|&kernel| ModelSpec {
            kernel,
            lm_head: registry::reference(Format::F16),
        })
        .collect();
    let models =
        Model::build_many(&c, &ckpt as &dyn WeightSource, &specs, c.layers, |_| {}).unwrap();
    let exec = Executor::new(Threading::Pool, 2, false).unwrap();
    for model in &models {
        let name = model.spec.kernel.info().name;
        let mut session = model.session(want.input_ids.len(), false);
        let mut logits = Vec::new();
        let mut worst = 0.0f32;
        for (pos, &t) in want.input_ids.iter().enumerate() {
            model
                .forward(
                    &mut session,
                    &[t],
                    &exec,
                    Some(&mut logits),
                    &mut Breakdown::default(),
                )
                .unwrap();
            let d = rel_diff(&logits, &want.logits[pos]);
            worst = worst.max(d);
            assert_eq!(
                argmax(&logits),
                argmax(&want.logits[pos]),
                "{variant} {name}: greedy token at position {pos} differs from transformers"
            );
            assert!(d <= tolerance, "{variant} {name}: logits at position {pos} differ by {d} of their range (allowed {tolerance})");
        }
        println!("{variant} {name}: worst logit difference {worst:.2e} of the range");
    }
}

#[test]
fn online_master_weights_match_transformers() {
    check("online", LinearLayout::Master, 2e-3);
}

#[test]
fn offline_packed_weights_match_transformers() {
    check("offline", LinearLayout::Packed, 2e-3);
}
