//! Cross-ISA checks that target layout bugs directly.
//!
//! bitnet.cpp's ARM build decoded I2_S as 64-weight blocks while files hold
//! 128-weight blocks, and every ARM user got wrong output. Random inputs catch
//! such a bug only statistically; the one-hot test below checks every weight
//! position of several blocks by itself: row p has a single nonzero weight at
//! column p, so y[p] must be exactly the activation at p.
//!
//! The AArch64 kernels also promise more than the float bound: their float
//! step per output is the scalar kernel's, lane by lane, so they must equal
//! the scalar kernel bit for bit on real-valued inputs too.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use ternbench_kernels::activations::{Activations, Q8KActivations, TokenQ8};
use ternbench_kernels::formats::{DenseMatrix, Format, TernaryMatrix, Weights};
use ternbench_kernels::kernel::Isa;
use ternbench_kernels::parallel::{matmul, Executor, Threading};
use ternbench_kernels::registry;
use ternbench_kernels::Kernel;

fn available() -> Vec<&'static dyn Kernel> {
    registry::resolve("all").expect("the scalar kernels are always available")
}

fn run(kernel: &dyn Kernel, w: &Weights, act: &Activations, exec: &Executor) -> Vec<f32> {
    let prepared = kernel.prepare(w).expect("prepare");
    let input = kernel.prepare_input(act.clone());
    let mut y = vec![f32::NAN; act.batch() * w.rows()];
    matmul(kernel, &prepared, &input, exec, &mut y).expect("matmul");
    y
}

/// Activation `i` of batch item `b`: distinct neighbours, the full int8 range
/// of the scheme (TokenQ8 reaches -128).
fn one_hot_activation(b: usize, i: usize, min: i32) -> i8 {
    let span = 127 - min + 1;
    (((i * 37 + b * 101) as i32 % span) + min) as i8
}

#[test]
fn ternary_layouts_place_every_weight_where_the_format_says() {
    // 512 columns: four i2s blocks, two tq blocks. Row p holds +1 or -1 at
    // column p only, so y[b][p] = sign(p) * a_b[p] exactly (all scales 1).
    let n = 512;
    let batch = 3;
    let sign = |p: usize| if p % 3 == 1 { -1i8 } else { 1 };
    let mut values = vec![0i8; n * n];
    for p in 0..n {
        values[p * n + p] = sign(p);
    }
    let w = Weights::Ternary(TernaryMatrix::new(n, n, values, 1.0).unwrap());
    let exec = Executor::serial();
    for format in [Format::I2s, Format::Tq2, Format::Tq1] {
        let min = if format == Format::I2s { -128 } else { -127 };
        let q: Vec<i8> = (0..batch * n)
            .map(|i| one_hot_activation(i / n, i % n, min))
            .collect();
        let act = if format == Format::I2s {
            Activations::TokenQ8(TokenQ8::from_quantized(batch, n, &q, &[1.0; 3]))
        } else {
            let blocks = batch * n / 256;
            Activations::Q8K(Q8KActivations::from_quantized(
                batch,
                n,
                &q,
                &vec![1.0; blocks],
            ))
        };
        for kernel in available().iter().filter(|k| k.info().format == format) {
            let y = run(*kernel, &w, &act, &exec);
            for b in 0..batch {
                for p in 0..n {
                    let want = (sign(p) as i32 * q[b * n + p] as i32) as f32;
                    assert_eq!(
                        y[b * n + p],
                        want,
                        "{}: batch {b}, weight at position {p} (block {}, offset {}) \
                         read the wrong activation",
                        kernel.info().name,
                        p / format.block_len(),
                        p % format.block_len()
                    );
                }
            }
        }
    }
}

fn is_aarch64_simd(kernel: &dyn Kernel) -> bool {
    matches!(kernel.info().isa, Isa::Neon | Isa::Dotprod | Isa::I8mm)
}

#[test]
fn aarch64_integer_kernels_equal_the_scalar_kernel_bit_for_bit() {
    let kernels: Vec<_> = available()
        .into_iter()
        .filter(|k| is_aarch64_simd(*k) && k.info().exact)
        .collect();
    println!("{} aarch64 integer kernels available", kernels.len());
    let threaded = Executor::new(Threading::Pool, 3, false).unwrap();
    let mut rng = Pcg64::seed_from_u64(0xa64);
    for kernel in kernels {
        let format = kernel.info().format;
        let scalar = registry::reference(format);
        // q6_k refuses K that is not whole super-blocks; it gets 256 and 512.
        let widths = [1, 100, 128, 255, 256, 300, 512, 513, 1000];
        for cols in widths.into_iter().filter(|&c| format.accepts_cols(c)) {
            for &(rows, batch) in &[(1, 1), (3, 2), (4, 3), (5, 4), (9, 1), (13, 5)] {
                let dense: Vec<f32> = (0..rows * cols)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect();
                let dense = DenseMatrix::new(rows, cols, dense).unwrap();
                let w = if format.is_ternary() {
                    Weights::Ternary(TernaryMatrix::from_absmean(&dense))
                } else {
                    Weights::Dense(dense)
                };
                let x: Vec<f32> = (0..batch * cols)
                    .map(|_| rng.random_range(-3.0f32..3.0))
                    .collect();
                let act = Activations::quantize(format.activation_scheme(), &x, batch, cols);
                let want = run(scalar, &w, &act, &Executor::serial());
                for exec in [&Executor::serial(), &threaded] {
                    let got = run(kernel, &w, &act, exec);
                    let bad = got
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a.to_bits() != b.to_bits());
                    assert!(
                        bad.is_none(),
                        "{} {rows}x{cols} batch {batch} x{}: y[{}] = {:e}, scalar {:e}",
                        kernel.info().name,
                        exec.n_threads(),
                        bad.unwrap(),
                        got[bad.unwrap()],
                        want[bad.unwrap()]
                    );
                }
            }
        }
    }
}
