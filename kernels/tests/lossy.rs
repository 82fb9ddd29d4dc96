//! The lossy LUT kernels (`-lossy`, int8 tables, see `ternbench_kernels::lossy`):
//! every SIMD one equals the scalar lossy kernel of its format bit for bit
//! (odd shapes, batch 1 and 3, extreme activations, long rows, threaded);
//! every one stays within the documented error bound of the exact product;
//! the bound is attained by a constructed input, is a small fraction of the
//! output's magnitude on BitNet-like inputs, and verification refuses
//! outputs that break it (or, for SIMD kernels, differ from the scalar lossy
//! kernel at all).

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use ternbench_kernels::activations::{Activations, TokenQ8};
use ternbench_kernels::formats::{DenseMatrix, Format, TernaryMatrix, Weights};
use ternbench_kernels::kernel::{pack_standard, Isa};
use ternbench_kernels::lossy::{self, CodeTables};
use ternbench_kernels::parallel::{matmul, Executor, Threading};
use ternbench_kernels::registry;
use ternbench_kernels::verify::{verify, Expected};
use ternbench_kernels::Kernel;

const LUT: [Format; 3] = [Format::Tl1, Format::Tl2, Format::Tmac];

fn lossy_kernels(format: Format) -> Vec<&'static dyn Kernel> {
    registry::resolve("all")
        .unwrap()
        .into_iter()
        .filter(|k| k.info().format == format && k.info().is_lossy())
        .collect()
}

fn run(kernel: &dyn Kernel, w: &Weights, act: &Activations, exec: &Executor) -> Vec<f32> {
    let prepared = kernel.prepare(w).expect("prepare");
    let input = kernel.prepare_input(act.clone());
    let mut y = vec![f32::NAN; act.batch() * w.rows()];
    matmul(kernel, &prepared, &input, exec, &mut y).expect("matmul");
    y
}

fn ternary(rows: usize, cols: usize, rng: &mut Pcg64) -> TernaryMatrix {
    let dense: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    TernaryMatrix::from_absmean(&DenseMatrix::new(rows, cols, dense).unwrap())
}

/// Roughly Gaussian activations (sum of 4 uniforms), absmax-quantized per token.
fn bitnet_like(batch: usize, cols: usize, rng: &mut Pcg64) -> Activations {
    let x: Vec<f32> = (0..batch * cols)
        .map(|_| (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum())
        .collect();
    Activations::quantize(Format::Tl1.activation_scheme(), &x, batch, cols)
}

#[derive(Clone, Copy, Debug)]
enum Pattern {
    Random,
    AllMin,
    AllMax,
    Alternating,
}

/// Quantized activations of a pattern, with per-token scales not equal to 1.
fn pattern(p: Pattern, batch: usize, cols: usize, rng: &mut Pcg64) -> Activations {
    let q: Vec<i8> = (0..batch * cols)
        .map(|i| match p {
            Pattern::Random => rng.random_range(-128..=127),
            Pattern::AllMin => -128,
            Pattern::AllMax => 127,
            Pattern::Alternating => [127, -128][i % 2],
        })
        .collect();
    let scale: Vec<f32> = (0..batch).map(|b| 3.7 + b as f32).collect();
    Activations::TokenQ8(TokenQ8::from_quantized(batch, cols, &q, &scale))
}

fn first_difference(got: &[f32], want: &[f32]) -> Option<usize> {
    got.iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
}

#[test]
fn simd_lossy_kernels_equal_the_scalar_lossy_kernel_bit_for_bit() {
    let mut rng = Pcg64::seed_from_u64(0x1055);
    let threaded = Executor::new(Threading::Pool, 3, false).unwrap();
    let serial = Executor::serial();
    let mut checked = 0;
    for format in LUT {
        let scalar = registry::lossy_reference(format).unwrap();
        let simd: Vec<_> = lossy_kernels(format)
            .into_iter()
            .filter(|k| k.info().isa != Isa::Scalar)
            .collect();
        // Rows and columns that fill no tile or chunk, TL2 leftovers of 1..5
        // columns, and rows longer than the int16 flush interval (256 chunks).
        let shapes = [
            (37, 100),
            (1, 1),
            (33, 7),
            (31, 11),
            (64, 6),
            (65, 130),
            (3, 257),
            (40, 1031),
            (5, 2100),
        ];
        for (n, &(rows, cols)) in shapes.iter().enumerate() {
            for batch in [1, 3] {
                let p = [
                    Pattern::Random,
                    Pattern::AllMin,
                    Pattern::AllMax,
                    Pattern::Alternating,
                ][(n + batch) % 4];
                let w = Weights::Ternary(ternary(rows, cols, &mut rng));
                for act in [
                    bitnet_like(batch, cols, &mut rng),
                    pattern(p, batch, cols, &mut rng),
                ] {
                    let want = run(scalar, &w, &act, &serial);
                    for kernel in &simd {
                        for exec in [&serial, &threaded] {
                            let got = run(*kernel, &w, &act, exec);
                            let bad = first_difference(&got, &want);
                            assert!(
                                bad.is_none(),
                                "{} {rows}x{cols} batch {batch} {p:?} x{}: y[{}] = {:e}, scalar lossy {:e}",
                                kernel.info().name,
                                exec.n_threads(),
                                bad.unwrap(),
                                got[bad.unwrap()],
                                want[bad.unwrap()]
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    println!("{checked} SIMD lossy outputs compared");
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    assert!(checked > 0, "no SIMD lossy kernel ran");
}

/// The 1bitLLM 3B shapes (8640 = 6 * 1440; 3200 = 6 * 533 + 2, a TL2
/// leftover pair), batch 1, threaded: SIMD lossy = scalar lossy.
#[test]
fn simd_lossy_kernels_match_on_the_3b_model_shapes() {
    let mut rng = Pcg64::seed_from_u64(0x3b1);
    let threaded = Executor::new(Threading::Pool, 2, false).unwrap();
    for (rows, cols) in [(3200, 8640), (8640, 3200)] {
        let w = Weights::Ternary(ternary(rows, cols, &mut rng));
        let act = bitnet_like(1, cols, &mut rng);
        for format in LUT {
            let simd: Vec<_> = lossy_kernels(format)
                .into_iter()
                .filter(|k| k.info().isa != Isa::Scalar)
                .collect();
            if simd.is_empty() {
                continue;
            }
            let want = run(
                registry::lossy_reference(format).unwrap(),
                &w,
                &act,
                &threaded,
            );
            for kernel in simd {
                let got = run(kernel, &w, &act, &threaded);
                let bad = first_difference(&got, &want);
                assert!(
                    bad.is_none(),
                    "{} {rows}x{cols}: y[{}] differs from the scalar lossy kernel",
                    kernel.info().name,
                    bad.unwrap()
                );
            }
        }
    }
}

/// sum |w a| * |w_scale / s_b| per output: the size the bound is compared with.
fn l1_magnitude(t: &TernaryMatrix, act: &TokenQ8) -> Vec<f64> {
    let (rows, cols) = (t.rows(), t.cols());
    let mut out = Vec::with_capacity(act.batch * rows);
    for b in 0..act.batch {
        let factor = t.scale() as f64 / act.scale[b] as f64;
        for r in 0..rows {
            let s: i64 = t
                .row(r)
                .iter()
                .zip(&act.row(b)[..cols])
                .map(|(&w, &q)| (w as i64 * q as i64).abs())
                .sum();
            out.push(s as f64 * factor);
        }
    }
    out
}

#[test]
fn lossy_kernels_stay_within_a_bound_that_is_not_vacuous() {
    let mut rng = Pcg64::seed_from_u64(0xb0d);
    let exec = Executor::new(Threading::Pool, 2, false).unwrap();
    // A 2B4T-like row length, batch 3.
    let (rows, cols, batch) = (96, 2560, 3);
    let t = ternary(rows, cols, &mut rng);
    let w = Weights::Ternary(t.clone());
    let act = bitnet_like(batch, cols, &mut rng);
    let mag = l1_magnitude(&t, act.token_q8());
    for format in LUT {
        let standard = pack_standard("test", format, &w).unwrap();
        let expected = Expected::new(&standard, &act);
        // These activations need the lossy scale on every token.
        let codes = CodeTables::new(format, act.token_q8());
        assert!(codes.scale.iter().all(|s| s.den == lossy::MAX_CODE));
        let exact = run(registry::reference(format), &w, &act, &exec);
        for kernel in lossy_kernels(format) {
            let name = kernel.info().name;
            let y = run(kernel, &w, &act, &exec);
            let v = expected.check(kernel, &y);
            assert!(v.ok, "{:?}", v.first_failure);
            assert_eq!(v.bitwise, kernel.info().isa != Isa::Scalar);
            // The int8 tables do change the output (the lossy path ran) ...
            assert!(
                first_difference(&y, &exact).is_some(),
                "{name}: output is exact"
            );
            let (mut worst_bound, mut worst_err) = (0.0f64, 0.0f64);
            for i in 0..y.len() {
                let bound = expected.lossy_bound(i);
                let err = (y[i] as f64 - exact[i] as f64).abs();
                // ... the bound is a small fraction of the output's size ...
                assert!(
                    bound < 0.1 * mag[i],
                    "{name}: y[{i}] bound {bound:e} vs sum |w a| {:e}",
                    mag[i]
                );
                worst_bound = worst_bound.max(bound / mag[i]);
                worst_err = worst_err.max(err / bound);
            }
            // ... and the error actually seen stays well inside it.
            assert!(
                worst_err < 0.5,
                "{name}: error reaches {worst_err} of the bound"
            );
            println!(
                "{name}: bound <= {:.2}% of sum |w a|; largest error {:.1}% of the bound",
                100.0 * worst_bound,
                100.0 * worst_err
            );
        }
    }
}

/// TL1 with all weights +1: the first pair (127, 127) sets M = 254 (D = 127,
/// half step 1), every other pair (1, 0) looks up the entry 1, which lies
/// halfway between the codes 0 and 1 and rounds up to 1 = 2 in table units:
/// each of those lookups is off by exactly the half step, in the same
/// direction, so the error is (lookups - 1) * half step: the bound's table
/// term minus one lookup.
#[test]
fn lossy_bound_is_attained() {
    let cols = 400;
    let t = TernaryMatrix::new(2, cols, vec![1; 2 * cols], 1.0).unwrap();
    let w = Weights::Ternary(t);
    let q: Vec<i8> = (0..cols)
        .map(|i| match i {
            0 | 1 => 127,
            i if i % 2 == 0 => 1,
            _ => 0,
        })
        .collect();
    let act = Activations::TokenQ8(TokenQ8::from_quantized(1, cols, &q, &[1.0]));
    let standard = pack_standard("test", Format::Tl1, &w).unwrap();
    let expected = Expected::new(&standard, &act);
    let lookups = lossy::weighted_lookups(Format::Tl1, cols);
    assert_eq!(lookups, cols / 2);
    let exact = 254.0 + (lookups - 1) as f64;
    for kernel in lossy_kernels(Format::Tl1) {
        let y = run(kernel, &w, &act, &Executor::serial());
        for (i, &y) in y.iter().enumerate() {
            let want = exact + (lookups - 1) as f64;
            assert!(
                (y as f64 - want).abs() < 1e-3,
                "{}: {y}, want {want}",
                kernel.info().name
            );
            let bound = expected.lossy_bound(i);
            assert!((y as f64 - exact) <= bound);
            assert!((y as f64 - exact) >= bound * (lookups - 1) as f64 / lookups as f64 - 1e-3);
        }
        assert!(expected.check(kernel, &y).ok);
    }
}

#[test]
fn lossy_is_lossless_when_every_table_entry_fits_int8() {
    // |a| <= 31: T-MAC's largest entry 4 * 31 = 124 <= 127, so M = D = 1.
    let mut rng = Pcg64::seed_from_u64(0x31);
    let (rows, cols, batch) = (45, 333, 3);
    let w = Weights::Ternary(ternary(rows, cols, &mut rng));
    let q: Vec<i8> = (0..batch * cols)
        .map(|_| rng.random_range(-31..=31))
        .collect();
    let act = Activations::TokenQ8(TokenQ8::from_quantized(batch, cols, &q, &[2.5, 7.0, 0.3]));
    for format in LUT {
        let exact = run(registry::reference(format), &w, &act, &Executor::serial());
        for kernel in lossy_kernels(format) {
            let y = run(kernel, &w, &act, &Executor::serial());
            assert!(
                first_difference(&y, &exact).is_none(),
                "{}: not the exact output",
                kernel.info().name
            );
        }
    }
}

#[test]
fn verification_refuses_lossy_outputs_off_the_bound_or_off_the_scalar_lossy_kernel() {
    let mut rng = Pcg64::seed_from_u64(0xbad);
    let (rows, cols, batch) = (40, 700, 2);
    let w = Weights::Ternary(ternary(rows, cols, &mut rng));
    let act = bitnet_like(batch, cols, &mut rng);
    for format in LUT {
        let standard = pack_standard("test", format, &w).unwrap();
        let expected = Expected::new(&standard, &act);
        let exact = run(registry::reference(format), &w, &act, &Executor::serial());
        for kernel in lossy_kernels(format) {
            let name = kernel.info().name;
            let mut y = run(kernel, &w, &act, &Executor::serial());
            assert!(verify(kernel, &standard, &act, &y).ok, "{name}");
            let i = rows + 3; // y[1][3]
            let good = y[i];
            // Just past the bound: refused, naming the output and the bound.
            let bound = expected.lossy_bound(i);
            y[i] = (exact[i] as f64 + 1.01 * bound) as f32;
            let v = verify(kernel, &standard, &act, &y);
            assert!(!v.ok, "{name}: an output past the bound passed");
            let why = v.first_failure.unwrap();
            assert!(why.contains("y[1][3]"), "{why}");
            if kernel.info().isa == Isa::Scalar {
                assert!(why.contains("lossy bound"), "{why}");
            }
            // The exact output itself is refused from a SIMD lossy kernel
            // (it is not the lossy arithmetic), accepted from the scalar one
            // (it is within the bound).
            let v = verify(kernel, &standard, &act, &exact);
            assert_eq!(v.ok, kernel.info().isa == Isa::Scalar, "{name}");
            // One ulp off the scalar lossy kernel: refused from a SIMD kernel.
            y[i] = f32::from_bits(good.to_bits() + 1);
            let v = verify(kernel, &standard, &act, &y);
            if kernel.info().isa != Isa::Scalar {
                assert!(!v.ok, "{name}: an output one ulp off passed");
                assert!(v.first_failure.unwrap().contains("bit for bit"));
            }
            y[i] = f32::NAN;
            assert!(
                !verify(kernel, &standard, &act, &y).ok,
                "{name}: NaN passed"
            );
        }
    }
}
