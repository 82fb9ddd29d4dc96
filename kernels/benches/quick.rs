//! Quick interleaved timing for kernel development, robust to a busy machine:
//! every selected kernel runs in turn, round after round, and the minimum and
//! median time per call are printed (the minimum is the least disturbed).
//!
//! `cargo bench -p ternbench-kernels --bench quick -- [KERNELS] [ROWSxCOLS] [BATCH] [ROUNDS]`
//! e.g. `-- i2s-avx2,i2s-avx512 6912x2560 1 200`. Outputs are verified first.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::time::Instant;
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::{DenseMatrix, TernaryMatrix, Weights};
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::parallel::{matmul, Executor};
use ternbench_kernels::registry;
use ternbench_kernels::verify::verify;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let spec = args.first().map_or("i2s-avx512", String::as_str);
    let shape = args.get(1).map_or("6912x2560", String::as_str);
    let batch: usize = args.get(2).map_or(1, |s| s.parse().expect("batch"));
    let rounds: usize = args.get(3).map_or(100, |s| s.parse().expect("rounds"));
    let (rows, cols) = shape.split_once('x').expect("ROWSxCOLS");
    let (rows, cols): (usize, usize) = (rows.parse().unwrap(), cols.parse().unwrap());
    let kernels = registry::resolve(spec).expect("kernels");
    let mut rng = Pcg64::seed_from_u64(42);
    let x: Vec<f32> = (0..batch * cols)
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect();
    let exec = Executor::serial();
    let mut cases = Vec::new();
    for &k in &kernels {
        let f = k.info().format;
        let w = if f.is_ternary() {
            let v = (0..rows * cols)
                .map(|_| rng.random_range(-1..=1i8))
                .collect();
            Weights::Ternary(TernaryMatrix::new(rows, cols, v, 0.4).unwrap())
        } else {
            let v = (0..rows * cols)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            Weights::Dense(DenseMatrix::new(rows, cols, v).unwrap())
        };
        let act = Activations::quantize(f.activation_scheme(), &x, batch, cols);
        let pw = k.prepare(&w).unwrap();
        let px = k.prepare_input(act.clone());
        let mut y = vec![0.0f32; batch * rows];
        matmul(k, &pw, &px, &exec, &mut y).unwrap();
        let standard = pack_standard("quick", f, &w).unwrap();
        let v = verify(k, &standard, &act, &y);
        assert!(v.ok, "{}: {:?}", k.info().name, v.first_failure);
        cases.push((k, pw, px, y, Vec::with_capacity(rounds)));
    }
    for _ in 0..rounds {
        for (k, pw, px, y, times) in cases.iter_mut() {
            let t = Instant::now();
            matmul(*k, pw, px, &exec, y).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let ops = 2.0 * (rows * cols * batch) as f64;
    for (k, pw, _, _, times) in cases.iter_mut() {
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (min, med) = (times[0], times[times.len() / 2]);
        println!(
            "{:<14} {shape} b{batch}: min {min:9.1} us  median {med:9.1} us  {:7.1} GB/s  {:7.1} GOP/s (min)",
            k.info().name,
            pw.weight_bytes as f64 / min / 1e3,
            ops / min / 1e3
        );
    }
}
