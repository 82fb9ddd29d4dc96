//! A read-bandwidth probe: the memory roofline that token generation, which
//! reads every weight once per token, cannot beat.
//!
//! Each thread of the same worker pool the kernels use sums its share of a
//! buffer much larger than the last-level cache; the best of several passes
//! is reported (the figure a kernel could reach, not an average disturbed by
//! other load).

use std::time::Instant;
use ternbench_kernels::parallel::{Executor, ExecutorError, Threading};
use ternbench_kernels::peak::sum_words;

/// Bytes read per pass: at least 8x the last-level cache and 512 MiB, or
/// `TERNBENCH_PROBE_MIB` MiB when that variable is set (for the end-to-end
/// tests, whose unoptimised binary would spend most of its time here; a
/// buffer that fits in cache gives a cache bandwidth, not the DRAM one).
pub fn probe_bytes(last_level_cache: u64) -> usize {
    if let Some(mib) = std::env::var("TERNBENCH_PROBE_MIB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&m| m > 0)
    {
        return mib << 20;
    }
    (last_level_cache.saturating_mul(8)).max(512 << 20) as usize
}

/// Read bandwidth in GB/s with `threads` threads, best of `passes` passes over `buffer`.
pub fn read_bandwidth(buffer: &[u64], threads: usize, passes: usize) -> Result<f64, ExecutorError> {
    let exec = Executor::new(Threading::Pool, threads, false)?;
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) + 1 {
        let start = Instant::now();
        read_words(buffer, &exec);
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(buffer.len() as f64 * 8.0 / best / 1e9)
}

/// Sums `words` with every thread of `exec`, in chunks of 1 MiB shared out
/// dynamically like kernel rows.
fn read_words(words: &[u64], exec: &Executor) {
    read_words_in_chunks(words, exec, (1 << 20) / 8);
}

/// Sums `words` with every thread of `exec`, `chunk` words at a time.
fn read_words_in_chunks(words: &[u64], exec: &Executor, chunk: usize) {
    let total = std::sync::atomic::AtomicU64::new(0);
    exec.for_each_chunk(words.len(), chunk, &|r| {
        total.fetch_add(sum_words(&words[r]), std::sync::atomic::Ordering::Relaxed);
    });
    std::hint::black_box(total.into_inner());
}

/// The read probe as an operation to time beside kernels (see
/// [`crate::measure::stats::time_interleaved`]): each call sums the next
/// slice of a buffer on the caller's worker pool, so its rate is sampled at
/// the same moments as theirs. On a shared machine DRAM bandwidth drifts
/// within seconds; a kernel's fraction of it is only meaningful against a
/// probe taken at the same time.
pub struct ReadProbe<'a> {
    buffer: &'a [u64],
    /// Words per call.
    slice: usize,
    next: usize,
}

impl<'a> ReadProbe<'a> {
    /// Calls read `slice_bytes` (rounded down to whole words, at least one
    /// slice fits), cycling through `buffer`, which should exceed the
    /// last-level cache by several times so every read comes from DRAM.
    pub fn new(buffer: &'a [u64], slice_bytes: usize) -> Self {
        let slice = (slice_bytes / 8).clamp(1, buffer.len().max(1));
        ReadProbe {
            buffer,
            slice,
            next: 0,
        }
    }

    pub fn bytes_per_call(&self) -> usize {
        self.slice * 8
    }

    /// Reads the next slice with every thread of `exec`.
    pub fn read(&mut self, exec: &Executor) {
        if self.next + self.slice > self.buffer.len() {
            self.next = 0;
        }
        let part = &self.buffer[self.next..(self.next + self.slice).min(self.buffer.len())];
        self.next += self.slice;
        read_words(part, exec);
    }
}

/// The read roof of cache-hot weights: a buffer the size of a kernel's
/// packed weights, read whole on every call. Timed interleaved with the
/// kernels of a hot `layer` group, it sits in the same cache level as their
/// weights (L2, L3 or, past the last-level cache, DRAM), so the rate it
/// reads at is what a kernel that only streams its weights could reach.
pub struct CacheProbe {
    words: Vec<u64>,
}

impl CacheProbe {
    pub fn new(bytes: usize) -> Self {
        CacheProbe {
            words: probe_buffer(bytes.max(8)),
        }
    }

    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Reads the whole buffer with every thread of `exec`, split like a
    /// kernel's rows: about 8 chunks per thread, whole 512-byte steps.
    pub fn read(&self, exec: &Executor) {
        let chunk = self
            .words
            .len()
            .div_ceil(8 * exec.n_threads())
            .next_multiple_of(64);
        read_words_in_chunks(&self.words, exec, chunk);
    }
}

/// A buffer of `bytes` with every page touched (so the probe measures reads, not page faults).
pub fn probe_buffer(bytes: usize) -> Vec<u64> {
    (0..bytes / 8).map(|i| i as u64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_and_bandwidth_positive() {
        let words: Vec<u64> = (0..1001).collect();
        assert_eq!(sum_words(&words), 1000 * 1001 / 2);
        let buf = probe_buffer(4 << 20);
        let gbs = read_bandwidth(&buf, 2, 2).unwrap();
        assert!(gbs.is_finite() && gbs > 0.0);
        let exec = Executor::new(Threading::Pool, 2, false).unwrap();
        let mut probe = ReadProbe::new(&buf, 3 << 20);
        assert_eq!(probe.bytes_per_call(), 3 << 20);
        // A slice past the end starts over at the buffer's beginning.
        for _ in 0..3 {
            probe.read(&exec);
        }
        assert_eq!(probe.next, 3 << 17);
        assert_eq!(ReadProbe::new(&buf, 1 << 30).bytes_per_call(), 4 << 20);
        let cache = CacheProbe::new(100_000);
        assert_eq!(cache.bytes(), 100_000);
        cache.read(&exec);
        assert_eq!(CacheProbe::new(0).bytes(), 8);
        if std::env::var_os("TERNBENCH_PROBE_MIB").is_none() {
            assert_eq!(probe_bytes(32 << 20), 512 << 20);
            assert_eq!(probe_bytes(128 << 20), 1 << 30);
        }
    }
}
