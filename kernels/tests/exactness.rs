//! The exactness matrix: every kernel this CPU can run, against the scalar
//! and f64 references, over shapes around block and vector widths, batch 1
//! and batch > 1, saturating and constant inputs, serial and threaded.
//!
//! Two kinds of check:
//! - exact-scale inputs (all weight and activation scales 1, integer values):
//!   every float operation is then exact, so every kernel's output must equal
//!   the integer dot product bit for bit. This tests the integer
//!   accumulators of every kernel without access to its internals.
//! - real-valued random inputs: [`verify`] (bitwise for i2s, within the
//!   float-rounding bound of the f64 reference otherwise, within the lossy
//!   bound and bitwise against the scalar lossy kernel for `-lossy` kernels).
//!
//! The lossy LUT kernels are left out of the bit-exact checks against the
//! integer dot product (their int8 tables round by design); `lossy.rs`
//! checks them against their scalar lossy kernel and their error bound.

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use ternbench_kernels::activations::{
    Activations, F32Activations, Q8KActivations, Q8_0Activations, TokenQ8,
};
use ternbench_kernels::formats::{ActivationScheme, DenseMatrix, Format, TernaryMatrix, Weights};
use ternbench_kernels::kernel::pack_standard;
use ternbench_kernels::kernel::Isa;
use ternbench_kernels::parallel::{matmul, Executor, Threading};
use ternbench_kernels::reference::reference;
use ternbench_kernels::registry;
use ternbench_kernels::verify::verify;
use ternbench_kernels::Kernel;

const COLS: [usize; 14] = [
    1, 31, 32, 33, 63, 127, 128, 129, 255, 256, 257, 511, 513, 800,
];
const ROWS: [usize; 9] = [1, 2, 3, 4, 5, 8, 9, 17, 33];
const BATCHES: [usize; 3] = [1, 2, 5];

fn available() -> Vec<&'static dyn Kernel> {
    registry::resolve("all").expect("the scalar kernels are always available")
}

/// The available kernels that promise an exact integer dot product (all but `-lossy`).
fn available_lossless() -> Vec<&'static dyn Kernel> {
    available()
        .into_iter()
        .filter(|k| !k.info().is_lossy())
        .collect()
}

/// `cols` rounded up to the multiple a format requires (Q6_K: 256), so every
/// shape of the lists below is also tried on formats that refuse to pad.
fn fit_cols(format: Format, cols: usize) -> usize {
    format
        .required_col_multiple()
        .map_or(cols, |m| cols.div_ceil(m) * m)
}

#[derive(Clone, Copy, Debug)]
enum WeightPattern {
    Random,
    AllNegative,
    AllPositive,
    AllZero,
}

#[derive(Clone, Copy, Debug)]
enum ActPattern {
    Random,
    AllMax,
    AllMin,
    Alternating,
}

/// Weights whose standard packing has every scale equal to 1 and small integer values.
fn exact_scale_weights(
    format: Format,
    rows: usize,
    cols: usize,
    p: WeightPattern,
    rng: &mut Pcg64,
) -> Weights {
    let n = rows * cols;
    if format.is_ternary() {
        let values = (0..n)
            .map(|_| match p {
                WeightPattern::Random => rng.random_range(-1..=1),
                WeightPattern::AllNegative => -1,
                WeightPattern::AllPositive => 1,
                WeightPattern::AllZero => 0,
            })
            .collect();
        return Weights::Ternary(TernaryMatrix::new(rows, cols, values, 1.0).unwrap());
    }
    // (lowest, highest) integer weight, and the value that pins each block's scale to 1.
    let (lo, hi, pin) = match format {
        Format::Q8_0 => (-127, 127, Some(127.0)),
        Format::Q4_0 => (-8, 7, Some(-8.0)),
        // -32 in every 16-weight sub-block: s_j = 1, d = -1/128, scales -128.
        Format::Q6K => (-32, 31, Some(-32.0)),
        Format::F16 => (-8, 8, None),
        _ => unreachable!(),
    };
    let mut values: Vec<f32> = (0..n)
        .map(|_| match p {
            WeightPattern::Random => rng.random_range(lo..=hi) as f32,
            WeightPattern::AllNegative => lo as f32,
            WeightPattern::AllPositive => hi as f32,
            WeightPattern::AllZero => 0.0,
        })
        .collect();
    if let (Some(pin), false) = (pin, matches!(p, WeightPattern::AllZero)) {
        let block = if format == Format::Q6K {
            16
        } else {
            format.block_len()
        };
        for r in 0..rows {
            for start in (0..cols).step_by(block) {
                values[r * cols + start] = pin;
            }
        }
    }
    Weights::Dense(DenseMatrix::new(rows, cols, values).unwrap())
}

/// Activations with every scale 1 and integer values, in the scheme's full range.
fn exact_scale_activations(
    scheme: ActivationScheme,
    batch: usize,
    cols: usize,
    p: ActPattern,
    rng: &mut Pcg64,
) -> Activations {
    // TokenQ8 (BitNet) clamps to [-128, 127]; Q8_K and Q8_0 are symmetric.
    let min = if scheme == ActivationScheme::TokenQ8 {
        -128
    } else {
        -127
    };
    let q: Vec<i8> = (0..batch * cols)
        .map(|i| match p {
            ActPattern::Random => rng.random_range(min..=127),
            ActPattern::AllMax => 127,
            ActPattern::AllMin => min,
            ActPattern::Alternating => [127, min][i % 2],
        })
        .collect();
    match scheme {
        ActivationScheme::TokenQ8 => {
            Activations::TokenQ8(TokenQ8::from_quantized(batch, cols, &q, &vec![1.0; batch]))
        }
        ActivationScheme::Q8K => {
            let blocks = batch * cols.div_ceil(256);
            Activations::Q8K(Q8KActivations::from_quantized(
                batch,
                cols,
                &q,
                &vec![1.0; blocks],
            ))
        }
        ActivationScheme::Q8_0 => {
            let blocks = batch * cols.div_ceil(32);
            Activations::Q8_0(Q8_0Activations::from_quantized(
                batch,
                cols,
                &q,
                &vec![1.0; blocks],
            ))
        }
        ActivationScheme::F32 => {
            let x: Vec<f32> = q.iter().map(|&v| v as f32).collect();
            Activations::F32(F32Activations::new(&x, batch, cols))
        }
    }
}

/// The reference's y for `w` in `format`, as the f32 values kernels must give.
fn reference_y(format: Format, w: &Weights, act: &Activations) -> Vec<f32> {
    let standard = pack_standard("test", format, w).unwrap();
    reference(&standard, act)
        .y
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// Runs `kernel` on the given executor and returns y ([batch][rows]).
fn run(kernel: &dyn Kernel, w: &Weights, act: &Activations, exec: &Executor) -> Vec<f32> {
    let prepared = kernel.prepare(w).expect("prepare");
    let input = kernel.prepare_input(act.clone());
    let mut y = vec![f32::NAN; act.batch() * w.rows()];
    matmul(kernel, &prepared, &input, exec, &mut y).expect("matmul");
    y
}

/// Panics, naming the first differing element, unless `got` and `want` are
/// equal bit for bit.
fn assert_same_bits(got: &[f32], want: &[f32], context: impl Fn() -> String) {
    assert_eq!(got.len(), want.len(), "{}: output length", context());
    if let Some(i) = got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!("{}: y[{i}] = {} want {}", context(), got[i], want[i]);
    }
}

#[test]
fn exact_scale_inputs_give_bit_identical_outputs_for_every_kernel() {
    let mut rng = Pcg64::seed_from_u64(0x7e57);
    let threaded = Executor::new(Threading::Pool, 3, false).unwrap();
    let serial = Executor::serial();
    let kernels = available_lossless();
    let mut checked = 0;
    for format in Format::ALL {
        let scheme = format.activation_scheme();
        for cols in COLS.map(|c| fit_cols(format, c)) {
            for &rows in &ROWS {
                for &batch in &BATCHES {
                    let wp = [
                        WeightPattern::Random,
                        WeightPattern::AllNegative,
                        WeightPattern::AllPositive,
                        WeightPattern::AllZero,
                    ][(rows + cols + batch) % 4];
                    let ap = [
                        ActPattern::Random,
                        ActPattern::AllMax,
                        ActPattern::AllMin,
                        ActPattern::Alternating,
                    ][(rows * 3 + cols + batch) % 4];
                    let w = exact_scale_weights(format, rows, cols, wp, &mut rng);
                    let act = exact_scale_activations(scheme, batch, cols, ap, &mut rng);
                    let want = reference_y(format, &w, &act);
                    for kernel in kernels.iter().filter(|k| k.info().format == format) {
                        for exec in [&serial, &threaded] {
                            let got = run(*kernel, &w, &act, exec);
                            assert_same_bits(&got, &want, || {
                                format!(
                                    "{} {rows}x{cols} batch {batch} {wp:?}/{ap:?} x{}",
                                    kernel.info().name,
                                    exec.n_threads()
                                )
                            });
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked >= Format::ALL.len() * COLS.len() * ROWS.len() * BATCHES.len() * 2);
}

/// Real-valued weights and activations drawn from a seeded generator.
fn random_case(
    format: Format,
    rows: usize,
    cols: usize,
    batch: usize,
    seed: u64,
) -> (Weights, Vec<f32>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let dense: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let dense = DenseMatrix::new(rows, cols, dense).unwrap();
    let w = if format.is_ternary() {
        Weights::Ternary(TernaryMatrix::from_absmean(&dense))
    } else {
        Weights::Dense(dense)
    };
    let x = (0..batch * cols)
        .map(|_| rng.random_range(-4.0f32..4.0))
        .collect();
    (w, x)
}

fn check_random(
    kernel: &dyn Kernel,
    rows: usize,
    cols: usize,
    batch: usize,
    seed: u64,
    exec: &Executor,
) -> Result<(), String> {
    let format = kernel.info().format;
    let cols = fit_cols(format, cols);
    let (w, x) = random_case(format, rows, cols, batch, seed);
    let act = Activations::quantize(format.activation_scheme(), &x, batch, cols);
    let y = run(kernel, &w, &act, exec);
    let standard = pack_standard("test", format, &w).unwrap();
    let v = verify(kernel, &standard, &act, &y);
    match v.first_failure {
        None => Ok(()),
        Some(why) => Err(format!("{rows}x{cols} batch {batch} seed {seed}: {why}")),
    }
}

/// Batches of 16 tokens and more (the AMX kernels' tiles, 2 x 16 rows by
/// 2 x 16 tokens; partial tiles of both; f16-avx512's 32-row panels),
/// bit for bit against the reference, extreme activations included.
#[test]
fn tile_sized_batches_are_exact() {
    use ActPattern::{AllMax, AllMin, Random as RandomActs};
    use WeightPattern::{AllNegative, AllPositive, Random};
    let mut rng = Pcg64::seed_from_u64(0x711e);
    let threaded = Executor::new(Threading::Pool, 3, false).unwrap();
    let kernels = available_lossless();
    let cases = [
        (Format::I2s, 33, 256, 16, Random, RandomActs),
        (Format::I2s, 40, 384, 33, Random, RandomActs),
        (Format::Tq2, 70, 1000, 50, Random, RandomActs),
        (Format::I2s, 70, 1000, 50, Random, RandomActs),
        (Format::F16, 70, 1000, 50, Random, RandomActs),
        (Format::I2s, 16, 6912, 17, Random, RandomActs),
        (Format::I2s, 34, 2560, 20, AllPositive, AllMin),
        (Format::I2s, 34, 2560, 20, AllNegative, AllMax),
    ];
    for (format, rows, cols, batch, wp, ap) in cases {
        let cols = fit_cols(format, cols);
        let w = exact_scale_weights(format, rows, cols, wp, &mut rng);
        let act = exact_scale_activations(format.activation_scheme(), batch, cols, ap, &mut rng);
        let want = reference_y(format, &w, &act);
        for kernel in kernels.iter().filter(|k| k.info().format == format) {
            for exec in [&Executor::serial(), &threaded] {
                let got = run(*kernel, &w, &act, exec);
                let name = kernel.info().name;
                let threads = exec.n_threads();
                assert_same_bits(&got, &want, || {
                    format!("{name} {rows}x{cols} batch {batch} {wp:?}/{ap:?} x{threads}")
                });
            }
        }
    }
}

#[test]
fn random_inputs_verify_for_every_kernel() {
    let exec = Executor::new(Threading::Pool, 2, false).unwrap();
    for kernel in available() {
        for (i, &cols) in COLS.iter().enumerate() {
            for &rows in &[1, 7, 33] {
                for &batch in &[1, 3] {
                    check_random(kernel, rows, cols, batch, i as u64, &exec).unwrap();
                }
            }
        }
    }
}

/// The x86 AVX2 and AVX-512 kernels of the block formats with one scale per
/// block (tq2, tq1, q8_0, q4_0, q6_k; one shared driver) add
/// `isum as f32 * (d_w * d_a)` in block order, as the scalar kernels do, so
/// their outputs equal the scalar kernel's bit for bit on real-valued inputs: GEMV with row counts around the row tile
/// (threaded: tiles with tails), GEMM with token counts around its 4.
#[cfg(target_arch = "x86_64")]
#[test]
fn block_scaled_simd_kernels_equal_their_scalar_kernel_bit_for_bit() {
    let exec = Executor::new(Threading::Pool, 2, false).unwrap();
    let kernels = available();
    // (rows, batch)
    let cases = [
        (1, 1),
        (3, 1),
        (4, 1),
        (5, 1),
        (9, 1),
        (33, 1),
        (3, 2),
        (5, 5),
        (2, 8),
    ];
    let mut checked = 0;
    for kernel in kernels.iter().filter(|k| {
        matches!(k.info().isa, Isa::Avx2 | Isa::Avx512)
            && matches!(
                k.info().format,
                Format::Tq2 | Format::Tq1 | Format::Q8_0 | Format::Q4_0 | Format::Q6K
            )
    }) {
        let format = kernel.info().format;
        let scalar = kernels
            .iter()
            .find(|k| k.info().format == format && k.info().isa == Isa::Scalar)
            .expect("every format has a scalar kernel");
        for (seed, &(rows, batch)) in cases.iter().enumerate() {
            let cols = fit_cols(format, 2560);
            let (w, x) = random_case(format, rows, cols, batch, seed as u64);
            let act = Activations::quantize(format.activation_scheme(), &x, batch, cols);
            let want = run(*scalar, &w, &act, &exec);
            let got = run(*kernel, &w, &act, &exec);
            assert_same_bits(&got, &want, || {
                format!(
                    "{} {rows}x{cols} batch {batch} (scalar)",
                    kernel.info().name
                )
            });
            checked += 1;
        }
    }
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        assert!(checked >= 5 * cases.len(), "one AVX2 kernel per format");
    }
}

fn v_is_bitwise(kernel: &dyn Kernel) -> bool {
    kernel.info().exact && kernel.info().format.activation_scheme() == ActivationScheme::TokenQ8
}

#[test]
fn verify_catches_a_wrong_output() {
    // (lossy.rs does this for the lossy kernels, against their own bound.)
    for kernel in available_lossless() {
        let format = kernel.info().format;
        let cols = fit_cols(format, 300);
        let (w, x) = random_case(format, 5, cols, 2, 9);
        let act = Activations::quantize(format.activation_scheme(), &x, 2, cols);
        let mut y = run(kernel, &w, &act, &Executor::serial());
        let standard = pack_standard("test", format, &w).unwrap();
        assert!(
            verify(kernel, &standard, &act, &y).ok,
            "{}",
            kernel.info().name
        );
        // The allowed difference must stay far below the output's size, or
        // it would hide wrong kernels.
        let r = reference(&standard, &act);
        assert!(
            r.tolerance(7) < 1e-3 * r.magnitude[7] + 1e-30,
            "{}",
            kernel.info().name
        );
        // Move one output just past its bound (one ulp for bitwise checks).
        let step = (2.0 * r.tolerance(7)) as f32;
        y[7] = if v_is_bitwise(kernel) {
            f32::from_bits(y[7].to_bits() + 1)
        } else {
            y[7] + step.max(y[7].abs() * 1e-6)
        };
        let v = verify(kernel, &standard, &act, &y);
        assert!(
            !v.ok,
            "{}: a changed output passed verification",
            kernel.info().name
        );
        assert!(v.first_failure.unwrap().contains("y[1][2]"));
        y[7] = f32::NAN;
        assert!(!verify(kernel, &standard, &act, &y).ok);
    }
}

#[test]
fn threading_strategies_agree_bit_for_bit() {
    let pool = Executor::new(Threading::Pool, 4, false).unwrap();
    let rayon = Executor::new(Threading::Rayon, 3, false).unwrap();
    for kernel in available() {
        let format = kernel.info().format;
        let cols = fit_cols(format, 384);
        let (w, x) = random_case(format, 67, cols, 3, 5);
        let act = Activations::quantize(format.activation_scheme(), &x, 3, cols);
        let serial = run(kernel, &w, &act, &Executor::serial());
        for exec in [&pool, &rayon] {
            let got = run(kernel, &w, &act, exec);
            assert!(
                got.iter()
                    .zip(&serial)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} differs under {:?}",
                kernel.info().name,
                exec
            );
        }
    }
}

#[test]
fn scalar_references_agree_with_the_f64_reference() {
    // The scalar kernels decode packed bytes themselves; the f64 reference
    // decodes through the formats' unpack functions. Agreement cross-checks both.
    for format in Format::ALL {
        let scalar = registry::reference(format);
        for seed in 0..4 {
            check_random(scalar, 9, 700, 2, seed, &Executor::serial()).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_shapes_verify(rows in 1usize..40, cols in 1usize..700, batch in 1usize..5, seed in any::<u64>(), which in any::<prop::sample::Index>()) {
        let kernels = available();
        let kernel = kernels[which.index(kernels.len())];
        let exec = Executor::new(Threading::Pool, 2, false).unwrap();
        prop_assert_eq!(check_random(kernel, rows, cols, batch, seed, &exec), Ok(()));
    }
}

/// Long rows (16-bit partial sums and 32-bit lanes near their bounds with
/// extreme activations) and batches larger than the SIMD kernels' token tiles
/// (6 for i2s-avx512), with row counts around their row tiles.
#[test]
fn long_rows_and_wide_batches_are_exact() {
    let mut rng = Pcg64::seed_from_u64(0x10e6);
    let serial = Executor::serial();
    let kernels = available_lossless();
    // Q8_0's (and Q6_K's) outputs exceed 2^24 on such rows, where f32 sums stop being
    // exact; its integer sums are per 32-element block, so length adds no risk.
    // (Q6_K widens every 32 products to 32 bits at once; Q6_K at real
    // model shapes is checked below.)
    for format in Format::ALL
        .into_iter()
        .filter(|&f| f != Format::Q8_0 && f != Format::Q6K)
    {
        let scheme = format.activation_scheme();
        for (cols, rows, batch) in [(4224, 5, 13), (8320, 12, 7), (6912, 9, 1), (384, 4, 8)] {
            for (wp, ap) in [
                (WeightPattern::AllPositive, ActPattern::AllMin),
                (WeightPattern::AllNegative, ActPattern::AllMax),
                (WeightPattern::AllPositive, ActPattern::AllMax),
                (WeightPattern::Random, ActPattern::Random),
            ] {
                let w = exact_scale_weights(format, rows, cols, wp, &mut rng);
                let act = exact_scale_activations(scheme, batch, cols, ap, &mut rng);
                let standard = pack_standard("test", format, &w).unwrap();
                let want: Vec<f32> = reference(&standard, &act)
                    .y
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                for kernel in kernels.iter().filter(|k| k.info().format == format) {
                    let got = run(*kernel, &w, &act, &serial);
                    assert_same_bits(&got, &want, || {
                        format!(
                            "{} {rows}x{cols} batch {batch} {wp:?}/{ap:?}",
                            kernel.info().name
                        )
                    });
                }
            }
        }
    }
}

/// The LUT formats on the 1bitLLM 3B model's shapes, which bitnet.cpp's
/// shape-generated TL kernels refuse: 3200 x 8640 (8640 = 6 * 1440: no TL2
/// leftover) and 8640 x 3200 (3200 = 6 * 533 + 2: a leftover TL1 pair;
/// 270 row tiles). Every SIMD LUT kernel must match the integer dot product
/// bit for bit (exact-scale inputs), threaded. The scalar references are
/// left out here (they are checked on long rows above) to keep this cheap
/// under emulation.
#[test]
fn lut_kernels_handle_the_3b_model_shapes_exactly() {
    let mut rng = Pcg64::seed_from_u64(0x3b);
    let threaded = Executor::new(Threading::Pool, 2, false).unwrap();
    let kernels = available_lossless();
    for format in [Format::Tl1, Format::Tl2, Format::Tmac] {
        for (rows, cols) in [(3200, 8640), (8640, 3200)] {
            let w = exact_scale_weights(format, rows, cols, WeightPattern::Random, &mut rng);
            let act = exact_scale_activations(
                ActivationScheme::TokenQ8,
                1,
                cols,
                ActPattern::Random,
                &mut rng,
            );
            // All scales are 1: y is the integer dot product (computed here
            // directly from the values, which is cheap even under emulation).
            let Weights::Ternary(t) = &w else {
                unreachable!("LUT formats are ternary")
            };
            let a = act.token_q8().row(0);
            let want: Vec<f32> = (0..rows)
                .map(|r| {
                    let acc: i64 = t
                        .row(r)
                        .iter()
                        .zip(a)
                        .map(|(&w, &q)| w as i64 * q as i64)
                        .sum();
                    acc as f32
                })
                .collect();
            for kernel in kernels
                .iter()
                .filter(|k| k.info().format == format && k.info().isa != Isa::Scalar)
            {
                let got = run(*kernel, &w, &act, &threaded);
                assert_same_bits(&got, &want, || {
                    format!("{} {rows}x{cols}", kernel.info().name)
                });
            }
        }
    }
}

/// Q6_K needs whole 256-weight super-blocks: every q6_k kernel refuses other
/// K with an error naming the rule (no panic), and handles the BitNet 2B
/// shapes' K (2560, 6912) and an odd row count, batch 1 and 3, bit for bit on
/// exact-scale inputs (outputs stay below 2^24 with random values).
#[test]
fn q6_k_kernels_refuse_partial_super_blocks_and_handle_model_shapes() {
    let mut rng = Pcg64::seed_from_u64(0x66);
    let kernels: Vec<_> = available()
        .into_iter()
        .filter(|k| k.info().format == Format::Q6K)
        .collect();
    assert!(kernels.iter().any(|k| k.info().isa == Isa::Scalar));
    for kernel in &kernels {
        for cols in [1, 100, 255, 257, 2561] {
            let w = Weights::Dense(DenseMatrix::new(3, cols, vec![0.5; 3 * cols]).unwrap());
            let err = kernel.prepare(&w).unwrap_err().to_string();
            assert!(
                err.contains("multiple of 256"),
                "{}: {err}",
                kernel.info().name
            );
        }
    }
    let threaded = Executor::new(Threading::Pool, 2, false).unwrap();
    for (rows, cols) in [(7, 2560), (5, 6912), (3, 1536)] {
        for batch in [1, 3] {
            let w = exact_scale_weights(Format::Q6K, rows, cols, WeightPattern::Random, &mut rng);
            let act = exact_scale_activations(
                ActivationScheme::Q8K,
                batch,
                cols,
                ActPattern::Random,
                &mut rng,
            );
            let standard = pack_standard("test", Format::Q6K, &w).unwrap();
            let want: Vec<f32> = reference(&standard, &act)
                .y
                .iter()
                .map(|&v| v as f32)
                .collect();
            for kernel in &kernels {
                let got = run(*kernel, &w, &act, &threaded);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{} {rows}x{cols} batch {batch}",
                    kernel.info().name
                );
            }
        }
    }
}
