//! Whole BitNet b1.58 models: architectures, weights, the forward pass with
//! any kernel, a reference forward, and the `ternbench model` benchmark.

pub mod bench;
pub mod cli;
pub mod config;
pub mod engine;
pub mod export;
pub mod fuzz;
pub mod generate;
pub mod gguf;
pub mod gguf_model;
pub mod hf;
pub mod ops;
pub mod reference;
pub mod safetensors;
pub mod weights;

pub use config::ModelConfig;
pub use engine::{Breakdown, Model, ModelSpec, OPS};
pub use weights::{SyntheticSource, WeightSource};
