//! Quick interleaved timing for kernel development, robust to a busy machine:
//! every selected kernel runs in turn, round after round (`REPS` calls in a
//! row per round, so its weights are as cache-hot as they can be), and the
//! minimum and median time per call are printed (the minimum is the least
//! disturbed). The first kernel is the anchor: each kernel's time relative to
//! it is also printed as the median of the per-round ratios, which cancels
//! most of the load other processes put on the machine.
//!
//! `cargo bench -p ternbench-kernels --bench quick -- [KERNELS] [ROWSxCOLS] [BATCH] [ROUNDS] [REPS]`
//! e.g. `-- i2s-avx2,i2s-avx512 6912x2560 1 200 3`. Outputs are verified first.
//!
//! The pseudo-kernel `stream` (x86-64 with AVX2) times a plain read of as
//! many bytes as an f16 matrix of the shape (`stream-WIDTH` for another
//! weight width in bits, e.g. `stream-2`): the read-bandwidth roof a GEMV of
//! those bytes cannot beat in the same cache state.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::time::Instant;
use ternbench_kernels::activations::Activations;
use ternbench_kernels::formats::{
    aligned_from_iter, AlignedVec, DenseMatrix, TernaryMatrix, Weights,
};
use ternbench_kernels::kernel::{pack_standard, Kernel, PreparedInput, PreparedWeights};
use ternbench_kernels::parallel::{matmul, Executor};
use ternbench_kernels::registry;
use ternbench_kernels::verify::verify;

enum Case {
    Kernel {
        k: &'static dyn Kernel,
        w: PreparedWeights,
        x: PreparedInput,
        y: Vec<f32>,
    },
    Stream {
        name: String,
        buf: AlignedVec<u8>,
    },
}

impl Case {
    fn name(&self) -> String {
        match self {
            Case::Kernel { k, .. } => k.info().name.to_string(),
            Case::Stream { name, .. } => name.clone(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Case::Kernel { w, .. } => w.weight_bytes,
            Case::Stream { buf, .. } => buf.len(),
        }
    }

    fn run(&mut self, exec: &Executor) {
        match self {
            Case::Kernel { k, w, x, y } => matmul(*k, w, x, exec, y).unwrap(),
            Case::Stream { buf, .. } => {
                std::hint::black_box(stream_sum(buf));
            }
        }
    }
}

/// Sums the bytes as 64-bit words with 8 independent vector accumulators.
fn stream_sum(buf: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected.
        return unsafe { stream_sum_avx2(buf) };
    }
    buf.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .fold(0, u64::wrapping_add)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn stream_sum_avx2(buf: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 8];
    for c in buf.chunks_exact(256) {
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: c holds 256 bytes, so bytes 32i..32i+32 are readable.
            let v = unsafe { _mm256_loadu_si256(c.as_ptr().add(32 * i) as *const _) };
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let mut words = [0u64; 4];
    let s = acc
        .iter()
        .fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi64(s, a));
    // SAFETY: `words` holds 32 bytes.
    unsafe { _mm256_storeu_si256(words.as_mut_ptr() as *mut _, s) };
    words.iter().fold(0, |s, &w| s.wrapping_add(w))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let spec = args.first().map_or("i2s-avx512", String::as_str);
    let shape = args.get(1).map_or("6912x2560", String::as_str);
    let batch: usize = args.get(2).map_or(1, |s| s.parse().expect("batch"));
    let rounds: usize = args.get(3).map_or(100, |s| s.parse().expect("rounds"));
    let reps: usize = args.get(4).map_or(3, |s| s.parse().expect("reps"));
    let (rows, cols) = shape.split_once('x').expect("ROWSxCOLS");
    let (rows, cols): (usize, usize) = (rows.parse().unwrap(), cols.parse().unwrap());
    let mut rng = Pcg64::seed_from_u64(42);
    let x: Vec<f32> = (0..batch * cols)
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect();
    let exec = Executor::serial();
    let mut cases = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(rest) = item.strip_prefix("stream") {
            let bits: usize = rest
                .strip_prefix('-')
                .map_or(16, |b| b.parse().expect("bits"));
            let bytes = (rows * cols * bits / 8).next_multiple_of(256);
            let buf = aligned_from_iter((0..bytes).map(|i| (i * 7) as u8));
            cases.push(Case::Stream {
                name: item.to_string(),
                buf,
            });
            continue;
        }
        let k = registry::resolve(item).expect("kernels")[0];
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
        cases.push(Case::Kernel { k, w: pw, x: px, y });
    }
    // times[case][round]: the best of the round's `reps` calls.
    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (case, t) in cases.iter_mut().zip(times.iter_mut()) {
            let mut best = f64::INFINITY;
            for _ in 0..reps.max(1) {
                let start = Instant::now();
                case.run(&exec);
                best = best.min(start.elapsed().as_secs_f64() * 1e6);
            }
            t.push(best);
        }
    }
    let ops = 2.0 * (rows * cols * batch) as f64;
    let anchor = times[0].clone();
    for (case, t) in cases.iter().zip(times.iter()) {
        let mut ratios: Vec<f64> = t.iter().zip(&anchor).map(|(a, b)| a / b).collect();
        ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut sorted = t.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (min, med) = (sorted[0], sorted[sorted.len() / 2]);
        println!(
            "{:<14} {shape} b{batch}: min {min:9.1} us  median {med:9.1} us  x{:5.3} of {} (median ratio)  {:7.1} GB/s  {:7.1} GOP/s (min)",
            case.name(),
            ratios[ratios.len() / 2],
            cases[0].name(),
            case.bytes() as f64 / min / 1e3,
            ops / min / 1e3
        );
    }
}
