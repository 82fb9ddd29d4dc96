//! How the rows of a matrix multiply are split between threads.
//!
//! The default is a persistent worker pool: threads are created once, wait
//! for work by spinning briefly and then parking, and take chunks of rows
//! from an atomic counter. A batch-1 product of a 2B model's layer takes tens
//! of microseconds, about what spawning or waking threads per call costs, so
//! fork-join per call would measure the threading, not the kernel. rayon is
//! kept as a second strategy so that difference can be measured.

use crate::activations::Activations;
use crate::kernel::{Kernel, KernelError, OutputMatrix, PreparedInput, PreparedWeights};
use std::any::Any;
use std::fmt;
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which threading strategy an [`Executor`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threading {
    /// The persistent spin-then-park worker pool (default).
    Pool,
    /// A rayon thread pool of the same size.
    Rayon,
}

impl Threading {
    pub fn name(self) -> &'static str {
        match self {
            Threading::Pool => "pool",
            Threading::Rayon => "rayon",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pool" => Some(Threading::Pool),
            "rayon" => Some(Threading::Rayon),
            _ => None,
        }
    }
}

impl fmt::Display for Threading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("thread count must be at least 1, got 0")]
    ZeroThreads,
    #[error("could not start the rayon thread pool: {0}")]
    Rayon(String),
    #[error("could not start a worker thread: {0}")]
    Spawn(String),
}

/// Runs a function over chunks of an index range on a fixed number of threads.
pub struct Executor {
    threading: Threading,
    n_threads: usize,
    pinned: bool,
    inner: Inner,
}

enum Inner {
    Serial,
    Pool(WorkerPool),
    Rayon(rayon::ThreadPool),
}

impl Executor {
    /// `n_threads` counts the calling thread (a pool of 2 starts one worker).
    /// With `pin`, thread i is pinned to core i (when the OS allows it).
    pub fn new(threading: Threading, n_threads: usize, pin: bool) -> Result<Self, ExecutorError> {
        if n_threads == 0 {
            return Err(ExecutorError::ZeroThreads);
        }
        let cores = if pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let core_for = move |i: usize| (!cores.is_empty()).then(|| cores[i % cores.len()]);
        let pinned = pin && core_for(0).is_some();
        let inner = match threading {
            Threading::Pool if n_threads == 1 => {
                if let Some(core) = core_for(0) {
                    core_affinity::set_for_current(core);
                }
                Inner::Serial
            }
            Threading::Pool => {
                if let Some(core) = core_for(0) {
                    core_affinity::set_for_current(core);
                }
                Inner::Pool(WorkerPool::new(n_threads - 1, |i| core_for(i + 1))?)
            }
            Threading::Rayon => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n_threads)
                    .start_handler(move |i| {
                        if let Some(core) = core_for(i) {
                            core_affinity::set_for_current(core);
                        }
                    })
                    .build()
                    .map_err(|e| ExecutorError::Rayon(e.to_string()))?;
                Inner::Rayon(pool)
            }
        };
        Ok(Executor {
            threading,
            n_threads,
            pinned,
            inner,
        })
    }

    /// A single-threaded executor.
    pub fn serial() -> Self {
        Executor {
            threading: Threading::Pool,
            n_threads: 1,
            pinned: false,
            inner: Inner::Serial,
        }
    }

    pub fn threading(&self) -> Threading {
        self.threading
    }
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }
    pub fn pinned(&self) -> bool {
        self.pinned
    }

    /// Runs `f(i, &mut tasks[i])` once for each task, the tasks spread over
    /// the threads (each taken by one of them): work on disjoint pieces of
    /// a buffer, such as the tokens of an activation matrix.
    pub fn for_each_task<T: Send>(&self, tasks: Vec<T>, f: impl Fn(usize, &mut T) + Sync) {
        let tasks: Vec<Mutex<T>> = tasks.into_iter().map(Mutex::new).collect();
        self.for_each_chunk(tasks.len(), 1, &|range| {
            for i in range {
                f(i, &mut tasks[i].lock().unwrap_or_else(|e| e.into_inner()));
            }
        });
    }

    /// Calls `f` on the chunks `[i*chunk, min((i+1)*chunk, n))` of `0..n`, each
    /// exactly once, spread over the executor's threads; returns when all are
    /// done. A panic in `f` is propagated after every thread has stopped.
    pub fn for_each_chunk(&self, n: usize, chunk: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
        let chunk = chunk.max(1);
        let n_chunks = n.div_ceil(chunk);
        let range = |c: usize| c * chunk..((c + 1) * chunk).min(n);
        match &self.inner {
            // One chunk runs here: waking the workers would only add latency.
            _ if n_chunks <= 1 => (0..n_chunks).for_each(|c| f(range(c))),
            Inner::Serial => (0..n_chunks).for_each(|c| f(range(c))),
            Inner::Pool(pool) => pool.run(n_chunks, &|c| f(range(c))),
            Inner::Rayon(pool) => pool.install(|| {
                use rayon::prelude::*;
                (0..n_chunks).into_par_iter().for_each(|c| f(range(c)))
            }),
        }
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("threading", &self.threading)
            .field("n_threads", &self.n_threads)
            .field("pinned", &self.pinned)
            .finish()
    }
}

/// How long an idle worker spins before it parks.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(200);

/// One published job: a function over chunk indices and the counter threads
/// take chunks from. It lives on the stack of [`WorkerPool::run`], which does
/// not return before every worker has finished with it.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n_chunks: usize,
    next: AtomicUsize,
}

impl Job<'_> {
    fn work(&self) {
        loop {
            let c = self.next.fetch_add(1, Ordering::Relaxed);
            if c >= self.n_chunks {
                break;
            }
            (self.f)(c);
        }
    }
}

struct Shared {
    /// Bumped once per job; workers wait for it to change.
    generation: AtomicUsize,
    /// The current job; valid while `pending` is non-zero.
    job: AtomicPtr<Job<'static>>,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    /// Workers parked on `wake`.
    sleepers: AtomicUsize,
    shutdown: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    lock: Mutex<()>,
    wake: Condvar,
}

/// A persistent pool of worker threads (the calling thread works too).
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes `run` calls from different threads.
    run_lock: Mutex<()>,
}

impl WorkerPool {
    /// Starts `n_workers` threads; worker i is pinned to `core(i)` if given.
    pub fn new(
        n_workers: usize,
        core: impl Fn(usize) -> Option<core_affinity::CoreId>,
    ) -> Result<Self, ExecutorError> {
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut pool = WorkerPool {
            shared: shared.clone(),
            workers: Vec::with_capacity(n_workers),
            run_lock: Mutex::new(()),
        };
        for i in 0..n_workers {
            let shared = shared.clone();
            let core = core(i);
            let handle = std::thread::Builder::new()
                .name(format!("ternbench-worker-{i}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    worker_loop(&shared)
                })
                .map_err(|e| ExecutorError::Spawn(e.to_string()))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Runs `f(c)` for every c in 0..n_chunks on all threads; returns when done.
    pub fn run(&self, n_chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        let _exclusive = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let job = Job {
            f,
            n_chunks,
            next: AtomicUsize::new(0),
        };
        let shared = &*self.shared;
        shared.pending.store(self.workers.len(), Ordering::Release);
        // Workers only dereference the pointer between seeing the new
        // generation and decrementing `pending`; we wait for `pending` to
        // reach zero below before `job` goes out of scope.
        shared.job.store(
            &job as *const Job<'_> as *mut Job<'static>,
            Ordering::Release,
        );
        shared.generation.fetch_add(1, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        let own = catch_unwind(AssertUnwindSafe(|| job.work()));
        let start = Instant::now();
        while shared.pending.load(Ordering::Acquire) != 0 {
            if start.elapsed() < SPIN_BEFORE_PARK {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        shared.job.store(std::ptr::null_mut(), Ordering::Release);
        let worker_panic = shared
            .panic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Err(payload) = own {
            resume_unwind(payload);
        }
        if let Some(payload) = worker_panic {
            resume_unwind(payload);
        }
    }
}

fn worker_loop(shared: &Shared) {
    let mut seen = 0usize;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if shared.generation.load(Ordering::Acquire) != seen
                || shared.shutdown.load(Ordering::Acquire)
            {
                break;
            }
            spins = spins.wrapping_add(1);
            // Reading the clock costs more than a spin; look at it rarely.
            if !spins.is_multiple_of(256) || start.elapsed() < SPIN_BEFORE_PARK {
                std::hint::spin_loop();
                continue;
            }
            let mut guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            while shared.generation.load(Ordering::SeqCst) == seen
                && !shared.shutdown.load(Ordering::SeqCst)
            {
                guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = shared.generation.load(Ordering::Acquire);
        let job = shared.job.load(Ordering::Acquire);
        // SAFETY: `run` published `job` before bumping the generation we just
        // saw, and keeps it alive until `pending` (which counts this worker)
        // drops to zero, which happens only after the decrement below.
        let job = unsafe { &*job };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job.work())) {
            *shared.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
        }
        shared.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Rows per parallel chunk: about 8 chunks per thread so a slow thread does
/// not hold up the rest, rounded to the kernel's row tile.
pub fn chunk_rows(rows: usize, n_threads: usize, row_tile: usize) -> usize {
    let tile = row_tile.max(1);
    let target = rows.div_ceil(n_threads.max(1) * 8);
    target.div_ceil(tile).max(1) * tile
}

/// `kernel`'s input for `x` (`batch` rows of `cols` values), the tokens'
/// quantization spread over `exec`'s threads: the same input as
/// [`Kernel::prepare_input_f32`], which quantizes on the caller's thread.
pub fn prepare_input_on(
    kernel: &dyn Kernel,
    exec: &Executor,
    x: &[f32],
    batch: usize,
    cols: usize,
) -> PreparedInput {
    let scheme = kernel.info().format.activation_scheme();
    kernel.prepare_input(Activations::quantize_on(exec, scheme, x, batch, cols))
}

/// y = W x with `kernel`, rows split over `exec`'s threads. `y` is `[batch][rows]`.
///
/// Checks that the weights and the input belong to the kernel's format and
/// agree in shape before any kernel code runs.
pub fn matmul(
    kernel: &dyn Kernel,
    w: &PreparedWeights,
    x: &PreparedInput,
    exec: &Executor,
    y: &mut [f32],
) -> Result<(), KernelError> {
    let info = kernel.info();
    if w.format != info.format {
        return Err(KernelError::WrongFormat {
            kernel: info.name,
            expected: info.format,
            got: w.format,
        });
    }
    let expected_scheme = info.format.activation_scheme();
    if x.act.scheme() != expected_scheme {
        return Err(KernelError::WrongActivations {
            kernel: info.name,
            expected: expected_scheme,
            got: x.act.scheme(),
        });
    }
    if x.cols() != w.cols {
        return Err(KernelError::Shape(format!(
            "input has {} columns, weights {}x{} need {}",
            x.cols(),
            w.rows,
            w.cols,
            w.cols
        )));
    }
    if y.len() != x.batch() * w.rows {
        return Err(KernelError::Shape(format!(
            "output holds {} values, batch {} x rows {} needs {}",
            y.len(),
            x.batch(),
            w.rows,
            x.batch() * w.rows
        )));
    }
    let out = OutputMatrix::new(y, x.batch(), w.rows);
    let chunk = chunk_rows(w.rows, exec.n_threads(), info.row_tile);
    exec.for_each_chunk(w.rows, chunk, &|rows| {
        // SAFETY: for_each_chunk hands every chunk to exactly one thread and
        // chunks are disjoint, so live tiles never overlap.
        let mut tile = unsafe { out.tile_shared(rows) };
        kernel.compute(w, x, &mut tile);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn sum_of_chunks(exec: &Executor, n: usize, chunk: usize) -> (u64, u64) {
        let sum = AtomicU64::new(0);
        let calls = AtomicU64::new(0);
        exec.for_each_chunk(n, chunk, &|r| {
            sum.fetch_add(r.map(|i| i as u64).sum(), Ordering::Relaxed);
            calls.fetch_add(1, Ordering::Relaxed);
        });
        (sum.into_inner(), calls.into_inner())
    }

    #[test]
    fn every_index_is_visited_once_by_every_strategy() {
        for threading in [Threading::Pool, Threading::Rayon] {
            for threads in [1, 2, 3, 5] {
                let exec = Executor::new(threading, threads, false).unwrap();
                for (n, chunk) in [(0usize, 4), (1, 4), (100, 7), (1000, 1), (64, 64)] {
                    let expected = (n as u64 * n.saturating_sub(1) as u64) / 2;
                    let (sum, calls) = sum_of_chunks(&exec, n, chunk);
                    assert_eq!(sum, expected, "{threading} x{threads} n={n}");
                    assert_eq!(calls, n.div_ceil(chunk) as u64);
                }
            }
        }
    }

    #[test]
    fn pool_survives_many_jobs_and_idle_parking() {
        let exec = Executor::new(Threading::Pool, 3, false).unwrap();
        for i in 0..2000 {
            assert_eq!(sum_of_chunks(&exec, 50, 3).0, 1225);
            if i == 1000 {
                // Long enough for the workers to park.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn worker_panic_is_propagated_and_pool_stays_usable() {
        let exec = Executor::new(Threading::Pool, 2, false).unwrap();
        let result = catch_unwind(AssertUnwindSafe(|| {
            exec.for_each_chunk(100, 1, &|r| assert!(r.start != 57, "chunk 57"));
        }));
        assert!(result.is_err());
        assert_eq!(sum_of_chunks(&exec, 10, 1).0, 45);
    }

    #[test]
    fn zero_threads_is_an_error() {
        assert!(matches!(
            Executor::new(Threading::Pool, 0, false),
            Err(ExecutorError::ZeroThreads)
        ));
    }

    #[test]
    fn chunks_are_multiples_of_the_row_tile() {
        assert_eq!(chunk_rows(2560, 2, 4), 160);
        assert_eq!(chunk_rows(10, 4, 8), 8);
        assert_eq!(chunk_rows(1, 1, 1), 1);
    }
}
