//! Entry points for fuzzing the checkpoint loaders on arbitrary bytes, shared
//! by the `cargo fuzz` targets (tests/fuzz/) and the libFuzzer-free mutation driver
//! (examples/fuzz_loaders.rs). Each writes the bytes to a per-thread file
//! (the loaders memory-map files), opens it, and when it opens, reads every
//! tensor the model needs through the [`WeightSource`]. Errors are the
//! expected outcome; a panic, an abort or a hang is a bug.

use super::gguf::{Dialect, GgufFile};
use super::gguf_model::GgufModel;
use super::hf::HfCheckpoint;
use super::safetensors::SafeTensors;
use super::weights::WeightSource;
use std::path::PathBuf;
use ternbench_kernels::formats::Format;

/// Most weights a fuzzed model may ask to unpack (so a valid-looking huge shape
/// backed by a huge file cannot make one execution take minutes).
const MAX_WORK: usize = 1 << 24;

/// A config.json matching the tiny committed HF fixture's shape (64 hidden, 128 ffn, 2 layers, 4/2 heads, vocab 256).
pub const HF_CONFIG: &str = r#"{"model_type": "bitnet", "hidden_act": "relu2", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": true, "vocab_size": 256}"#;

fn scratch(name: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "ternbench-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
    dir.join(name)
}

fn read_everything(source: &dyn WeightSource, config: &super::ModelConfig) {
    if (config.params_per_layer() as usize).saturating_mul(config.layers) > MAX_WORK
        || config.vocab.saturating_mul(config.hidden) > MAX_WORK
    {
        return;
    }
    let _ = source.embedding();
    for format in [Format::Q8_0, Format::Q4_0, Format::Q6K] {
        let _ = source.embedding_as(format);
    }
    let _ = source.norm(None, "norm");
    for layer in 0..config.layers {
        for (name, _, _) in config.linear_shapes() {
            let _ = source.linear(layer, name);
        }
        for norm in [
            "input_layernorm",
            "post_attention_layernorm",
            "attn_sub_norm",
            "ffn_sub_norm",
        ] {
            let _ = source.norm(Some(layer), norm);
        }
    }
}

/// Opens `data` as a GGUF file (both dialects) and reads its model's tensors.
pub fn gguf(data: &[u8]) {
    let path = scratch("fuzz.gguf");
    std::fs::write(&path, data).expect("write the fuzz input");
    for dialect in [None, Some(Dialect::BitnetCpp)] {
        if let Ok(f) = GgufFile::open(&path, dialect) {
            for t in &f.tensors {
                let _ = f.data(t).len();
            }
            let _ = f.string_array("tokenizer.ggml.tokens");
        }
        if let Ok(m) = GgufModel::open(&path, dialect) {
            read_everything(&m, &m.config);
        }
    }
}

/// Opens `data` as model.safetensors beside a fixed tiny config.json and reads its tensors.
pub fn safetensors(data: &[u8]) {
    let path = scratch("model.safetensors");
    std::fs::write(&path, data).expect("write the fuzz input");
    let config = path.with_file_name("config.json");
    if !config.exists() {
        std::fs::write(&config, HF_CONFIG).expect("write the fuzz config");
    }
    if let Ok(st) = SafeTensors::open(&path) {
        let names: Vec<String> = st.names().map(str::to_string).collect();
        for n in names.iter().take(64) {
            if let Some(info) = st.info(n) {
                let shape = info.shape.clone();
                let _ = st.f32_values(n, &shape);
            }
        }
    }
    if let Ok(m) = HfCheckpoint::open(&path) {
        if m.check_shapes().is_ok() {
            read_everything(&m, &m.config);
        }
    }
}
