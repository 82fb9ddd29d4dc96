//! A libFuzzer-free fuzzer for the checkpoint loaders, for toolchains where
//! `cargo fuzz` cannot run: random mutations (bit flips, byte sets,
//! "interesting" 32/64-bit values over length and count fields, truncation,
//! insertion, deletion, splices) of seed files, biased toward the header,
//! fed to the same entry points as the `cargo fuzz` targets
//! (`ternbench::model::fuzz`). A panic is a failure: the input is saved and
//! the run exits 1. Prints executions, time and the slowest execution.
//!
//! `cargo run --release -p ternbench --example fuzz_loaders -- gguf|safetensors SECONDS SEED...`

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;
use std::time::{Duration, Instant};

const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    7,
    31,
    32,
    255,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    i64::MAX as u64,
    u64::MAX,
];

fn mutate(rng: &mut Pcg64, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..rng.random_range(1..=6) {
        let len = data.len().max(1);
        // Half of the mutations hit the first 4 KiB, where the headers live.
        let pos = if rng.random_bool(0.5) {
            rng.random_range(0..len.min(4096))
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..8) {
            0 if !data.is_empty() => {
                let at = pos.min(data.len() - 1);
                data[at] ^= 1 << rng.random_range(0..8);
            }
            1 if !data.is_empty() => {
                let at = pos.min(data.len() - 1);
                data[at] = rng.random();
            }
            2 | 3 => {
                let v = if rng.random_bool(0.2) {
                    data.len() as u64 + rng.random_range(0..64)
                } else {
                    INTERESTING[rng.random_range(0..INTERESTING.len())]
                };
                let bytes = v.to_le_bytes();
                let n = if rng.random_bool(0.5) { 4 } else { 8 };
                for (i, b) in bytes[..n].iter().enumerate() {
                    if let Some(slot) = data.get_mut(pos + i) {
                        *slot = *b;
                    }
                }
            }
            4 => data.truncate(pos),
            5 => {
                let n = rng.random_range(1..64);
                let at = pos.min(data.len());
                let fill: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                data.splice(at..at, fill);
            }
            6 => {
                let end = (pos + rng.random_range(1..64)).min(data.len());
                if pos < end {
                    data.drain(pos..end);
                }
            }
            _ => {
                // Splice in a piece of another seed at the same offset.
                let other = &seeds[rng.random_range(0..seeds.len())];
                if pos < other.len() {
                    let end = (pos + rng.random_range(1..256))
                        .min(other.len())
                        .min(data.len());
                    if pos < end {
                        data[pos..end].copy_from_slice(&other[pos..end]);
                    }
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: fuzz_loaders gguf|safetensors SECONDS SEED_FILE...");
        std::process::exit(2);
    }
    let target: fn(&[u8]) = match args[1].as_str() {
        "gguf" => ternbench::model::fuzz::gguf,
        "safetensors" => ternbench::model::fuzz::safetensors,
        other => {
            eprintln!("error: target '{other}'; expected gguf or safetensors");
            std::process::exit(2);
        }
    };
    let seconds: u64 = args[2].parse().unwrap_or_else(|_| {
        eprintln!("error: '{}': expected a number of seconds", args[2]);
        std::process::exit(2);
    });
    let seeds: Vec<Vec<u8>> = args[3..]
        .iter()
        .map(|p| {
            std::fs::read(p).unwrap_or_else(|e| {
                eprintln!("error: {p}: {e}");
                std::process::exit(2)
            })
        })
        .collect();
    // Quiet panics: they are counted and their inputs saved.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
    let mut rng = Pcg64::seed_from_u64(
        std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1),
    );
    let start = Instant::now();
    let deadline = Duration::from_secs(seconds);
    let (mut execs, mut slowest) = (0u64, Duration::ZERO);
    for s in &seeds {
        target(s);
    }
    while start.elapsed() < deadline {
        let mut data = seeds[rng.random_range(0..seeds.len())].clone();
        mutate(&mut rng, &mut data, &seeds);
        let t = Instant::now();
        let ok = std::panic::catch_unwind(|| target(&data)).is_ok();
        slowest = slowest.max(t.elapsed());
        execs += 1;
        if !ok {
            let path = format!("fuzz-crash-{}-{execs}.bin", args[1]);
            std::fs::write(&path, &data).expect("save the crashing input");
            eprintln!(
                "error: {} panicked after {execs} executions; input saved to {path}",
                args[1]
            );
            std::process::exit(1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: {execs} executions in {secs:.0} s ({:.0}/s), no panics; slowest execution {:.1} ms",
        args[1],
        execs as f64 / secs,
        slowest.as_secs_f64() * 1e3
    );
}
