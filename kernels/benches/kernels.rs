//! Criterion benches: every available kernel on the real model shapes, at
//! batch 1 (GEMV, token generation; throughput in bytes of packed weights)
//! and, for the ternary formats, batch 128 (GEMM, prompt processing;
//! throughput in elements = 2 ops per multiply-add, so "Gelem/s" reads GOP/s).
//!
//! Every kernel's output is verified against the reference before it is
//! timed; a wrong kernel panics instead of looking fast. One thread, weights
//! cache-hot (as far as the shape fits the caches). Setup is lazy, so a
//! filter such as `-- 'i2s.*6912x2560'` only builds what it runs.
//!
//! `cargo bench -p ternbench-kernels` runs everything (a few minutes);
//! `TERNBENCH_BENCH_LONG=1` uses criterion's longer default timings.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::time::Duration;
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::{DenseMatrix, Format, TernaryMatrix, Weights};
use ternbench_kernels::kernel::{pack_standard, Isa, PreparedInput, PreparedWeights};
use ternbench_kernels::parallel::{matmul, Executor};
use ternbench_kernels::registry;
use ternbench_kernels::verify::Expected;
use ternbench_kernels::Kernel;

/// (name, rows = out features, cols = in features).
const SHAPES: [(&str, usize, usize); 8] = [
    ("2560x2560", 2560, 2560),
    ("640x2560", 640, 2560),
    ("6912x2560", 6912, 2560),
    ("2560x6912", 2560, 6912),
    ("1536x1536", 1536, 1536),
    ("4096x1536", 4096, 1536),
    ("1536x4096", 1536, 4096),
    ("lm_head-128256x2560", 128256, 2560),
];
const GEMM_BATCH: usize = 128;

/// Weights and inputs of one shape, built on first use.
struct ShapeData {
    rows: usize,
    cols: usize,
    ternary: OnceCell<Weights>,
    dense: OnceCell<Weights>,
    x: HashMap<usize, Vec<f32>>,
}

impl ShapeData {
    fn new(rows: usize, cols: usize) -> Self {
        let mut rng = Pcg64::seed_from_u64(0xbe7c4 ^ (rows * 31 + cols) as u64);
        let x = [1, GEMM_BATCH]
            .into_iter()
            .map(|batch| {
                let v = (0..batch * cols)
                    .map(|_| rng.random_range(-3.0f32..3.0))
                    .collect();
                (batch, v)
            })
            .collect();
        ShapeData {
            rows,
            cols,
            ternary: OnceCell::new(),
            dense: OnceCell::new(),
            x,
        }
    }

    fn weights(&self, format: Format) -> &Weights {
        let seed = (self.rows * 7919 + self.cols) as u64;
        if format.is_ternary() {
            self.ternary.get_or_init(|| {
                let mut rng = Pcg64::seed_from_u64(seed);
                let v = (0..self.rows * self.cols)
                    .map(|_| rng.random_range(-1..=1i8))
                    .collect();
                Weights::Ternary(TernaryMatrix::new(self.rows, self.cols, v, 0.37).unwrap())
            })
        } else {
            self.dense.get_or_init(|| {
                let mut rng = Pcg64::seed_from_u64(seed);
                let v = (0..self.rows * self.cols)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect();
                Weights::Dense(DenseMatrix::new(self.rows, self.cols, v).unwrap())
            })
        }
    }
}

/// One (kernel, shape, batch) ready to run: packed weights, prepared input, output.
struct Case {
    w: PreparedWeights,
    x: PreparedInput,
    y: Vec<f32>,
}

/// Bytes of packed weights in the format's standard layout (what a GEMV reads).
fn standard_bytes(format: Format, rows: usize, cols: usize) -> usize {
    let len = format.block_len();
    let block_bytes = (len as f64 * format.bits_per_weight() / 8.0) as usize;
    rows * cols.div_ceil(len) * block_bytes
}

fn setup(kernel: &dyn Kernel, data: &ShapeData, batch: usize) -> Case {
    let format = kernel.info().format;
    let weights = data.weights(format);
    let act = Activations::quantize(
        format.activation_scheme(),
        &data.x[&batch],
        batch,
        data.cols,
    );
    let w = kernel.prepare(weights).expect("prepare");
    assert_eq!(
        w.weight_bytes,
        standard_bytes(format, data.rows, data.cols),
        "{}: throughput assumes the standard layout's size",
        kernel.info().name
    );
    let x = kernel.prepare_input(act.clone());
    let mut y = vec![0.0f32; batch * data.rows];
    matmul(kernel, &w, &x, &Executor::serial(), &mut y).expect("matmul");
    let standard = pack_standard("bench", format, weights).expect("pack");
    let v = Expected::new(&standard, &act).check(kernel, &y);
    assert!(
        v.ok,
        "{} {}x{} batch {batch} is wrong: {}",
        kernel.info().name,
        data.rows,
        data.cols,
        v.first_failure.unwrap_or_default()
    );
    Case { w, x, y }
}

fn benches(c: &mut Criterion) {
    let kernels = registry::resolve("all").expect("kernels");
    let exec = Executor::serial();
    for (name, rows, cols) in SHAPES {
        let data = ShapeData::new(rows, cols);
        let lm_head = rows > 100_000;
        for batch in [1, GEMM_BATCH] {
            for &kernel in &kernels {
                let info = kernel.info();
                let scalar = info.isa == Isa::Scalar;
                // Scalar kernels are too slow for lm_head and batch 128; GEMM
                // is benchmarked for the ternary formats (prompt processing).
                if (scalar && (lm_head || batch > 1))
                    || (batch > 1 && (lm_head || !info.format.is_ternary()))
                {
                    continue;
                }
                let case: OnceCell<Case> = OnceCell::new();
                let throughput = if batch == 1 {
                    Throughput::Bytes(standard_bytes(info.format, rows, cols) as u64)
                } else {
                    Throughput::Elements((2 * rows * cols * batch) as u64)
                };
                let mut group = c.benchmark_group(info.name);
                group.throughput(throughput);
                group.bench_function(BenchmarkId::new(name, format!("b{batch}")), |b| {
                    let case = case.get_or_init(|| setup(kernel, &data, batch));
                    let mut y = case.y.clone();
                    b.iter(|| matmul(kernel, &case.w, &case.x, &exec, &mut y).unwrap());
                });
                group.finish();
            }
        }
    }
}

fn config() -> Criterion {
    let c = Criterion::default();
    if std::env::var_os("TERNBENCH_BENCH_LONG").is_some() {
        c
    } else {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
    }
}

criterion_group! {
    name = kernel_benches;
    config = config();
    targets = benches
}
criterion_main!(kernel_benches);
