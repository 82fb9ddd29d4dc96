//! Which CPU features this binary detects, and proof that each emulated run
//! exercises the path it is meant to.
//!
//! Under qemu-aarch64 the CI sets `QEMU_CPU` to `cortex-a53` (Armv8.0: NEON
//! only), `neoverse-n1` (+ dotprod) or `max` (+ dotprod + i8mm); this test
//! then asserts the detected set and that the registry offers exactly the
//! kernels of those ISAs, so a run that silently fell back to NEON (or to
//! scalar) fails instead of passing vacuously. Natively, on x86-64, or with
//! another `QEMU_CPU`, it only prints (run with `--nocapture` to see it).

use ternbench_kernels::cpu::{features, CpuFeature};
use ternbench_kernels::kernel::Isa;
use ternbench_kernels::registry;

/// (feature, expected presence) for the CPU models the CI emulates.
fn expected(qemu_cpu: &str) -> Option<[(CpuFeature, bool); 3]> {
    use CpuFeature::{Dotprod, I8mm, Neon};
    match qemu_cpu {
        "cortex-a53" => Some([(Neon, true), (Dotprod, false), (I8mm, false)]),
        "neoverse-n1" => Some([(Neon, true), (Dotprod, true), (I8mm, false)]),
        "max" => Some([(Neon, true), (Dotprod, true), (I8mm, true)]),
        _ => None,
    }
}

/// The CPU feature an ISA's kernels stand or fall with on AArch64.
fn isa_feature(isa: Isa) -> Option<CpuFeature> {
    match isa {
        Isa::Neon => Some(CpuFeature::Neon),
        Isa::Dotprod => Some(CpuFeature::Dotprod),
        Isa::I8mm => Some(CpuFeature::I8mm),
        _ => None,
    }
}

#[test]
fn detected_features_match_the_emulated_cpu() {
    let detected = features();
    println!("target: {}", std::env::consts::ARCH);
    println!("detected CPU features: {}", detected.names().join(" "));
    for k in registry::all() {
        let status = match registry::availability(*k) {
            Ok(()) => "available".to_string(),
            Err(missing) => format!("unavailable (needs {missing})"),
        };
        println!("  {:<14} {status}", k.info().name);
    }

    let Ok(qemu_cpu) = std::env::var("QEMU_CPU") else {
        println!("QEMU_CPU is not set: nothing to assert");
        return;
    };
    if !cfg!(target_arch = "aarch64") {
        println!("QEMU_CPU={qemu_cpu} but this is not an aarch64 build: nothing to assert");
        return;
    }
    let Some(expected) = expected(&qemu_cpu) else {
        println!("no expectations for QEMU_CPU={qemu_cpu}: nothing to assert");
        return;
    };
    for (feature, want) in expected {
        assert_eq!(
            detected.has(feature),
            want,
            "QEMU_CPU={qemu_cpu}: '{feature}' detected = {}, expected {want} (detected: {})",
            detected.has(feature),
            detected.names().join(" ")
        );
    }
    // Every AArch64 ISA has kernels compiled in, and the registry offers them
    // exactly when the emulated CPU has the ISA's feature.
    for isa in [Isa::Neon, Isa::Dotprod, Isa::I8mm] {
        let feature = isa_feature(isa).expect("an aarch64 ISA");
        let want = expected.iter().any(|&(f, present)| f == feature && present);
        let kernels: Vec<_> = registry::all()
            .iter()
            .filter(|k| k.info().isa == isa)
            .collect();
        assert!(!kernels.is_empty(), "no {isa} kernels compiled in");
        for k in kernels {
            assert_eq!(
                registry::availability(*k).is_ok(),
                want,
                "QEMU_CPU={qemu_cpu}: kernel {} available = {}, expected {want}",
                k.info().name,
                registry::availability(*k).is_ok()
            );
        }
    }
}

#[test]
fn kernels_this_cpu_cannot_run_panic_clearly_instead_of_faulting() {
    use ternbench_kernels::activations::Activations;
    use ternbench_kernels::formats::{DenseMatrix, TernaryMatrix, Weights};
    use ternbench_kernels::kernel::OutputMatrix;

    // Kernel::compute is safe: called directly (not through the registry) on
    // a CPU without its features it must panic with the kernel's name and the
    // missing feature, never execute an unsupported instruction.
    // (Checked for the AArch64 kernels, whose modules promise it.)
    let unavailable: Vec<_> = registry::all()
        .iter()
        .filter(|k| isa_feature(k.info().isa).is_some())
        .filter(|k| registry::availability(**k).is_err())
        .collect();
    println!("{} kernels unavailable here", unavailable.len());
    for k in unavailable {
        let info = k.info();
        let missing = registry::availability(*k).unwrap_err();
        let (rows, cols) = (4, 256);
        let w = if info.format.is_ternary() {
            Weights::Ternary(TernaryMatrix::new(rows, cols, vec![1; rows * cols], 1.0).unwrap())
        } else {
            Weights::Dense(DenseMatrix::new(rows, cols, vec![1.0; rows * cols]).unwrap())
        };
        let prepared = k.prepare(&w).expect("packing needs no CPU feature");
        let x = vec![0.5f32; cols];
        let input = k.prepare_input(Activations::quantize(
            info.format.activation_scheme(),
            &x,
            1,
            cols,
        ));
        let mut y = vec![0.0f32; rows];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut out = OutputMatrix::new(&mut y, 1, rows);
            k.compute(&prepared, &input, &mut out.tile(0..rows));
        }));
        let payload = result.expect_err("compute on a CPU without the kernel's features");
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(
            msg.contains(info.name) && msg.contains(missing.name()),
            "{}: panic message should name the kernel and '{missing}': {msg}",
            info.name
        );
    }
}

/// Under `qemu-x86_64 -cpu Nehalem` (SSE4.2, no AVX; `.ci/x86-baseline-tests.sh`
/// sets `TERNBENCH_EXPECT_CPU=nehalem`): the registry must offer only scalar
/// kernels, and calling a SIMD kernel directly must panic with a message,
/// not die of SIGILL. Elsewhere it only prints.
#[test]
fn x86_baseline_cpu_gets_only_scalar_kernels_and_no_sigill() {
    if std::env::var("TERNBENCH_EXPECT_CPU").as_deref() != Ok("nehalem") {
        println!("TERNBENCH_EXPECT_CPU is not nehalem: nothing to assert");
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        panic!("TERNBENCH_EXPECT_CPU=nehalem is for x86-64 runs");
    }
    let detected = features();
    println!("detected CPU features: {}", detected.names().join(" "));
    use CpuFeature::*;
    for f in [
        Avx2, Fma, F16c, Avx512f, Avx512bw, Avx512vl, Avx512vnni, Avx512vbmi, AvxVnni, AmxInt8,
    ] {
        assert!(!detected.has(f), "{f} detected on an emulated Nehalem");
    }
    let simd: Vec<_> = registry::all()
        .iter()
        .filter(|k| k.info().isa != Isa::Scalar)
        .collect();
    assert!(
        !simd.is_empty(),
        "this x86-64 build has SIMD kernels to refuse"
    );
    for k in &simd {
        let name = k.info().name;
        let err = registry::find(name).expect_err("a SIMD kernel must be refused on Nehalem");
        println!("  {name}: {err}");
    }
    for k in registry::resolve("all").unwrap() {
        assert_eq!(
            k.info().isa,
            Isa::Scalar,
            "{} offered on Nehalem",
            k.info().name
        );
    }
    // Bypassing the registry: compute must panic before any AVX instruction runs.
    use ternbench_kernels::formats::{TernaryMatrix, Weights};
    use ternbench_kernels::kernel::{pack_standard, OutputMatrix};
    for k in &simd {
        let info = k.info();
        let w = Weights::Ternary(TernaryMatrix::new(4, 256, vec![1; 1024], 1.0).unwrap());
        let prepared = pack_standard(info.name, info.format, &w).unwrap();
        let input = k.prepare_input_f32(&[0.5; 256], 1, 256);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut y = vec![0.0f32; 4];
            let mut out = OutputMatrix::new(&mut y, 1, 4);
            k.compute(&prepared, &input, &mut out.tile(0..4));
        }));
        assert!(
            result.is_err(),
            "{} ran on a CPU without its features",
            info.name
        );
    }
}
