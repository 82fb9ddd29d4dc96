//! ternbench: the harness around the kernels of `ternbench-kernels`.
//!
//! - [`cli`]: the `ternbench` command line;
//! - [`check`]: `ternbench check`, the CI performance regression gate;
//! - [`layer`]: one-layer benchmarks (verify, then time interleaved);
//! - [`config`]: benchmark configurations (TOML);
//! - [`sweep`]: running a configuration (resume, progress bar, report);
//! - [`model`]: whole models: architectures, weights, forward pass, `ternbench model`;
//! - [`huge_pages`]: the binary's allocator, large allocations on 2 MiB pages;
//! - [`measure`]: timing, statistics, system information;
//! - [`synth`]: seeded synthetic weights and activations of real shapes;
//! - [`output`]: result rows, CSV and tables;
//! - [`report`]: charts, report.html, summary.md, llama-bench import, claims table.

pub mod check;
pub mod cli;
pub mod config;
pub mod huge_pages;
pub mod layer;
pub mod measure;
pub mod model;
pub mod output;
pub mod report;
pub mod sweep;
pub mod synth;
