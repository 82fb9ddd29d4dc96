//! The non-matmul operations of a BitNet b1.58 block, in f32: RMSNorm, RoPE
//! (rotate-half pairing, as in HF transformers), the FFN gate activations,
//! and causal attention over a KV cache. Sums run in a fixed order for a
//! given CPU (attention takes an AVX2 + FMA path where the CPU has one), so
//! the reference forward, which calls the same functions, reproduces them
//! exactly.

use half::f16;
use half::slice::HalfFloatSliceExt;
use std::ops::Range;
use ternbench_kernels::parallel::Executor;

ternbench_kernels::avx2_where_available! {
    /// y = x / sqrt(mean(x^2) + eps) * w, in place, for one row.
    pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32);
    baseline rms_norm_baseline {
        let mean_sq = dot(x, x) / x.len() as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for (v, &g) in x.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    }
}

/// Inverse frequencies of RoPE: theta^(-2i/d) for i < d/2.
pub fn rope_inv_freq(head_dim: usize, theta: f32) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32))
        .collect()
}

/// The (sin, cos) of each RoPE angle at position `pos`: the same for every
/// head and layer, so computed once per token.
pub fn rope_angles(pos: usize, inv_freq: &[f32]) -> Vec<(f32, f32)> {
    inv_freq
        .iter()
        .map(|&f| (pos as f32 * f).sin_cos())
        .collect()
}

/// Rotates each head of `x` (heads x head_dim) by the angles of one position
/// ([`rope_angles`]): dimension i is paired with i + head_dim/2 (HF's
/// rotate_half), not with its neighbour.
pub fn rope(x: &mut [f32], head_dim: usize, angles: &[(f32, f32)]) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(sin, cos)) in angles[..half].iter().enumerate() {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos - b * sin;
            head[i + half] = b * cos + a * sin;
        }
    }
}

/// g = relu(g)^2 * u (BitNet b1.58 2B4T).
pub fn relu2_gate(g: &mut [f32], u: &[f32]) {
    for (g, &u) in g.iter_mut().zip(u) {
        let r = g.max(0.0);
        *g = r * r * u;
    }
}

/// g = silu(g) * u (llama-like models).
pub fn silu_gate(g: &mut [f32], u: &[f32]) {
    for (g, &u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Keys and values of every position so far, per layer, in f32 or f16.
pub enum KvStore {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl KvStore {
    fn new(len: usize, half: bool) -> KvStore {
        if half {
            KvStore::F16(vec![f16::ZERO; len])
        } else {
            KvStore::F32(vec![0.0; len])
        }
    }

    fn write(&mut self, at: usize, values: &[f32]) {
        match self {
            KvStore::F32(v) => v[at..at + values.len()].copy_from_slice(values),
            KvStore::F16(v) => {
                for (d, &s) in v[at..at + values.len()].iter_mut().zip(values) {
                    *d = f16::from_f32(s);
                }
            }
        }
    }

    /// Values at..at+len as f32: borrowed when stored in f32, else converted into `scratch`.
    #[inline(always)]
    fn row<'a>(&'a self, at: usize, len: usize, scratch: &'a mut [f32]) -> &'a [f32] {
        match self {
            KvStore::F32(v) => &v[at..at + len],
            KvStore::F16(v) => {
                v[at..at + len].convert_to_f32_slice(&mut scratch[..len]);
                &scratch[..len]
            }
        }
    }

    /// Prefetches values at..at+len (see [`ternbench_kernels::cpu::prefetch`]).
    #[inline(always)]
    fn prefetch(&self, at: usize, len: usize) {
        match self {
            KvStore::F32(v) => ternbench_kernels::cpu::prefetch(&v[at..at + len]),
            KvStore::F16(v) => ternbench_kernels::cpu::prefetch(&v[at..at + len]),
        }
    }

    fn len(&self) -> usize {
        match self {
            KvStore::F32(v) => v.len(),
            KvStore::F16(v) => v.len(),
        }
    }

    fn is_f32(&self) -> bool {
        matches!(self, KvStore::F32(_))
    }

    fn bytes(&self) -> usize {
        match self {
            KvStore::F32(v) => v.len() * 4,
            KvStore::F16(v) => v.len() * 2,
        }
    }
}

/// The KV cache of a model: for each layer, `capacity` positions of
/// kv_heads x head_dim keys and values.
pub struct KvCache {
    pub capacity: usize,
    pub kv_dim: usize,
    keys: Vec<KvStore>,
    values: Vec<KvStore>,
}

impl KvCache {
    pub fn new(layers: usize, capacity: usize, kv_dim: usize, half: bool) -> KvCache {
        KvCache {
            capacity,
            kv_dim,
            keys: (0..layers)
                .map(|_| KvStore::new(capacity * kv_dim, half))
                .collect(),
            values: (0..layers)
                .map(|_| KvStore::new(capacity * kv_dim, half))
                .collect(),
        }
    }

    /// Stores the keys and values of position `pos` of `layer`.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        assert!(
            pos < self.capacity,
            "KV cache of {} positions is full",
            self.capacity
        );
        self.keys[layer].write(pos * self.kv_dim, k);
        self.values[layer].write(pos * self.kv_dim, v);
    }

    pub fn bytes(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.values)
            .map(KvStore::bytes)
            .sum()
    }
}

/// Positions ahead whose cached key or value row attention prefetches.
const KV_PREFETCH_AHEAD: usize = 4;

/// Geometry of attention.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Causal attention of the query heads that share KV head `kv_head` (the
/// `heads / kv_heads` rows of `q`, head_dim values each) at position `pos`
/// over positions 0..=pos of `layer`'s cache: per head,
/// out = softmax(q k^T / sqrt(d)) v. Each cached key and value is read (and
/// converted from f16) once for the whole group; each head's result is the
/// same as computed alone. With AVX2, FMA and F16C (and head_dim a multiple
/// of 8) [`avx2::attend_group`] runs, otherwise [`attend_group_baseline`]:
/// their sums run in different orders, so their results differ in the last
/// bits; the engine and the reference forward both call this function.
pub fn attend_group(
    cache: &KvCache,
    layer: usize,
    shape: AttentionShape,
    kv_head: usize,
    pos: usize,
    q: &[f32],
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::usable(shape.head_dim) {
        // SAFETY: `usable` checked every feature the function enables.
        return unsafe { avx2::attend_group(cache, layer, shape, kv_head, pos, q, out) };
    }
    attend_group_baseline(cache, layer, shape, kv_head, pos, q, out)
}

ternbench_kernels::avx2_where_available! {
    /// [`attend_group`] in portable code (8-lane dot products, one
    /// multiply-add per value and head).
    pub fn attend_group_baseline(
        cache: &KvCache,
        layer: usize,
        shape: AttentionShape,
        kv_head: usize,
        pos: usize,
        q: &[f32],
        out: &mut [f32],
    );
    baseline attend_group_portable {
        let d = shape.head_dim;
        let group = shape.heads / shape.kv_heads;
        assert!(q.len() == group * d && out.len() == group * d);
        let keys = &cache.keys[layer];
        let values = &cache.values[layer];
        let scale = 1.0 / (d as f32).sqrt();
        let mut scratch = vec![0.0f32; if keys.is_f32() { 0 } else { d }];
        let n = pos + 1;
        // scores[h * n + p]: head h, position p.
        let mut scores = vec![0.0f32; group * n];
        // In token generation the cache was evicted by the weights read
        // since the last token: rows a few positions ahead are prefetched so
        // their misses overlap.
        let at = |p: usize| p * cache.kv_dim + kv_head * d;
        for p in 0..n {
            if p + KV_PREFETCH_AHEAD < n {
                keys.prefetch(at(p + KV_PREFETCH_AHEAD), d);
            }
            let k = keys.row(at(p), d, &mut scratch);
            for (h, qh) in q.chunks_exact(d).enumerate() {
                scores[h * n + p] = dot(qh, k) * scale;
            }
        }
        let mut sums = vec![0.0f32; group];
        for (s, sum) in scores.chunks_exact_mut(n).zip(sums.iter_mut()) {
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // A vectorized exp (libm's, one call per score, took a quarter
            // of attention's time).
            for s in s.iter_mut() {
                *s = exp(*s - max);
            }
            *sum = s.iter().sum();
        }
        out.fill(0.0);
        for p in 0..n {
            if p + KV_PREFETCH_AHEAD < n {
                values.prefetch(at(p + KV_PREFETCH_AHEAD), d);
            }
            let v = values.row(at(p), d, &mut scratch);
            for (h, oh) in out.chunks_exact_mut(d).enumerate() {
                let w = scores[h * n + p] / sums[h];
                for (o, &vi) in oh.iter_mut().zip(v) {
                    *o += w * vi;
                }
            }
        }
    }
}

/// [`attend_group`] with AVX2 + FMA + F16C intrinsics. The portable build's
/// dot products each wait on one chain of vector adds and its value sums
/// go through memory for every position; here the heads of a tile (up to 4)
/// keep one accumulator each, so 4 chains run side by side, and the value
/// sums are taken 8 columns at a time over all positions in registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{exp, AttentionShape, KvCache, KvStore, KV_PREFETCH_AHEAD};
    use core::arch::x86_64::*;
    use ternbench_kernels::cpu::{features, CpuFeature};

    /// True when this CPU can run [`attend_group`] for rows of `head_dim`.
    pub(super) fn usable(head_dim: usize) -> bool {
        let f = features();
        head_dim.is_multiple_of(8)
            && [CpuFeature::Avx2, CpuFeature::Fma, CpuFeature::F16c]
                .iter()
                .all(|&c| f.has(c))
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C, and `shape.head_dim` must be a
    /// multiple of 8 (see [`usable`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn attend_group(
        cache: &KvCache,
        layer: usize,
        shape: AttentionShape,
        kv_head: usize,
        pos: usize,
        q: &[f32],
        out: &mut [f32],
    ) {
        let d = shape.head_dim;
        let group = shape.heads / shape.kv_heads;
        assert!(q.len() == group * d && out.len() == group * d && d.is_multiple_of(8));
        let n = pos + 1;
        let first = kv_head * d;
        let (keys, values) = (&cache.keys[layer], &cache.values[layer]);
        let end = pos * cache.kv_dim + first + d;
        assert!(first + d <= cache.kv_dim && end <= keys.len() && end <= values.len());
        let (k, v, half): (*const u8, *const u8, bool) = match (keys, values) {
            (KvStore::F32(k), KvStore::F32(v)) => (k.as_ptr().cast(), v.as_ptr().cast(), false),
            (KvStore::F16(k), KvStore::F16(v)) => (k.as_ptr().cast(), v.as_ptr().cast(), true),
            _ => unreachable!("keys and values share one element type"),
        };
        let mut h = 0;
        while h < group {
            let g = (group - h).min(4);
            let (qt, ot) = (&q[h * d..(h + g) * d], &mut out[h * d..(h + g) * d]);
            let kv_dim = cache.kv_dim;
            // SAFETY: the CPU features are the caller's; the assert above
            // bounds every row read (positions 0..n of the head's d columns);
            // q and out hold g rows of d.
            unsafe {
                if half {
                    heads::<true>(k, v, kv_dim, first, d, n, g, qt, ot)
                } else {
                    heads::<false>(k, v, kv_dim, first, d, n, g, qt, ot)
                }
            }
            h += g;
        }
    }

    /// 8 values of a cached row from element `at`, as f32.
    ///
    /// # Safety
    /// 8 elements (f32, or f16 with `HALF`) from `at` must be readable.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8<const HALF: bool>(base: *const u8, at: usize) -> __m256 {
        // SAFETY: the caller's bounds.
        unsafe {
            if HALF {
                _mm256_cvtph_ps(_mm_loadu_si128(base.add(2 * at).cast()))
            } else {
                _mm256_loadu_ps(base.add(4 * at).cast())
            }
        }
    }

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// [`tile`] for `g` (1..=4) heads.
    ///
    /// # Safety
    /// As [`tile`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn heads<const HALF: bool>(
        keys: *const u8,
        values: *const u8,
        kv_dim: usize,
        first: usize,
        d: usize,
        n: usize,
        g: usize,
        q: &[f32],
        out: &mut [f32],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match g {
                1 => tile::<HALF, 1>(keys, values, kv_dim, first, d, n, q, out),
                2 => tile::<HALF, 2>(keys, values, kv_dim, first, d, n, q, out),
                3 => tile::<HALF, 3>(keys, values, kv_dim, first, d, n, q, out),
                _ => tile::<HALF, 4>(keys, values, kv_dim, first, d, n, q, out),
            }
        }
    }

    /// Attention of `G` heads over positions 0..n: rows at
    /// `p * kv_dim + first` of the key and value caches.
    ///
    /// # Safety
    /// CPU features as [`attend_group`]; positions 0..n of both caches hold
    /// `first + d` elements from `p * kv_dim`; `q` and `out` hold G rows of d.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<const HALF: bool, const G: usize>(
        keys: *const u8,
        values: *const u8,
        kv_dim: usize,
        first: usize,
        d: usize,
        n: usize,
        q: &[f32],
        out: &mut [f32],
    ) {
        let elem = if HALF { 2 } else { 4 };
        let at = |p: usize| p * kv_dim + first;
        let scale = 1.0 / (d as f32).sqrt();
        // scores[h * n + p], then the softmax weights.
        let mut w = vec![0.0f32; G * n];
        for p in 0..n {
            if p + KV_PREFETCH_AHEAD < n {
                let ahead = at(p + KV_PREFETCH_AHEAD) * elem;
                // Key and value rows: the value sums below read them next.
                for line in (0..d * elem).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(keys.wrapping_add(ahead + line).cast());
                    _mm_prefetch::<_MM_HINT_T0>(values.wrapping_add(ahead + line).cast());
                }
            }
            let mut acc = [_mm256_setzero_ps(); G];
            for c in (0..d).step_by(8) {
                // SAFETY: row p holds d elements from at(p) (caller).
                let k = unsafe { load8::<HALF>(keys, at(p) + c) };
                for (h, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: q holds g rows of d.
                    let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(h * d + c)) };
                    *acc = _mm256_fmadd_ps(qv, k, *acc);
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                w[h * n + p] = hsum(*acc) * scale;
            }
        }
        for s in w.chunks_exact_mut(n) {
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for s in s.iter_mut() {
                *s = exp(*s - max);
            }
            let sum: f32 = s.iter().sum();
            for s in s.iter_mut() {
                *s /= sum;
            }
        }
        // Two 8-column groups per pass over the positions: 2G independent
        // accumulators (one chain per head and group waited on the FMA
        // latency), each weight broadcast once for both groups.
        let mut c = 0;
        while c + 16 <= d {
            // SAFETY: as this function's (c + 16 <= d).
            unsafe { value_sums::<HALF, G, 2>(values, &at, n, &w, c, d, out) };
            c += 16;
        }
        if c < d {
            // SAFETY: as this function's (c + 8 <= d: d is a multiple of 8).
            unsafe { value_sums::<HALF, G, 1>(values, &at, n, &w, c, d, out) };
        }
    }

    /// out[h][c..c + 8C] = sum over positions p of w[h n + p] v_p[c..c + 8C]
    /// for the G heads; each (head, column) sum runs over p in order.
    ///
    /// # Safety
    /// CPU features as [`attend_group`]; the value rows at `at(p)` (p < n)
    /// hold `c + 8C` elements; `w` holds G x n weights and `out` G rows of
    /// d >= c + 8C.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn value_sums<const HALF: bool, const G: usize, const C: usize>(
        values: *const u8,
        at: &impl Fn(usize) -> usize,
        n: usize,
        w: &[f32],
        c: usize,
        d: usize,
        out: &mut [f32],
    ) {
        assert!(w.len() >= G * n && out.len() >= G * d && c + 8 * C <= d);
        let mut acc = [[_mm256_setzero_ps(); C]; G];
        for p in 0..n {
            // SAFETY: row p holds c + 8C elements from at(p) (caller).
            let v: [__m256; C] =
                std::array::from_fn(|j| unsafe { load8::<HALF>(values, at(p) + c + 8 * j) });
            for (h, acc) in acc.iter_mut().enumerate() {
                // SAFETY: h n + p < G n <= w.len() (asserted).
                let weight = _mm256_set1_ps(unsafe { *w.get_unchecked(h * n + p) });
                for (a, v) in acc.iter_mut().zip(&v) {
                    *a = _mm256_fmadd_ps(weight, *v, *a);
                }
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            for (j, a) in acc.iter().enumerate() {
                // SAFETY: out holds G rows of d >= c + 8C (asserted).
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(h * d + c + 8 * j), *a) };
            }
        }
    }
}

/// e^x within 2 ulp for x in [-87, 88] (e^-87 below, e^88 above; NaN stays
/// NaN), without branches or calls so that loops over
/// it vectorize: x = n ln 2 + r with |r| <= ln 2 / 2 (ln 2 split in two parts
/// so n ln 2 is exact), a degree-6 polynomial for e^r (the Cephes `expf`
/// coefficients), times 2^n built in the exponent bits. Rust never contracts
/// a * b + c into an FMA, so every build gives the same bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
                                     // clamp keeps NaN (min/max would replace it).
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    for c in [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = p * r + c;
    }
    let er = p * r * r + r + 1.0;
    // n lies in [-126, 127], so n + 127 is a normal float's biased exponent.
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    er * two_n
}

/// sum(a * b) in 8 interleaved partial sums (which the compiler vectorizes).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (a8, b8) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Rows of a `[n][row_len]` buffer that parallel tasks fill, each row by one task.
pub struct SharedRows {
    ptr: *mut f32,
    n: usize,
    row_len: usize,
}

// SAFETY: SharedRows only hands out rows through `row`, whose callers
// guarantee that no row is accessed by two tasks at once.
unsafe impl Sync for SharedRows {}

impl SharedRows {
    pub fn new(data: &mut [f32], row_len: usize) -> SharedRows {
        assert_eq!(data.len() % row_len, 0);
        SharedRows {
            ptr: data.as_mut_ptr(),
            n: data.len() / row_len,
            row_len,
        }
    }

    /// Row `i`.
    ///
    /// # Safety
    /// No two live references may be to the same row, and the buffer passed
    /// to `new` must outlive them (callers keep the borrow alive).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn row(&self, i: usize) -> &mut [f32] {
        assert!(i < self.n, "row {i} of {}", self.n);
        // SAFETY: i < n keeps the slice inside the buffer; exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.row_len), self.row_len) }
    }
}

/// Runs `f(i, row_i)` for every row of `data` (`row_len` values each) on `exec`.
pub fn par_rows(
    exec: &Executor,
    data: &mut [f32],
    row_len: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let n = data.len() / row_len;
    if n == 1 || exec.n_threads() == 1 {
        data.chunks_exact_mut(row_len)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
        return;
    }
    let rows = SharedRows::new(data, row_len);
    exec.for_each_chunk(n, 1, &|range: Range<usize>| {
        for i in range {
            // SAFETY: for_each_chunk visits each index exactly once, so each row
            // has one user; `data` is borrowed for the whole call.
            f(i, unsafe { rows.row(i) });
        }
    });
}

/// x += y, row by row (`row_len` values each) in parallel: the residual
/// connections of a batch.
pub fn add_rows(exec: &Executor, x: &mut [f32], y: &[f32], row_len: usize) {
    par_rows(exec, x, row_len, &|t, r| {
        r.iter_mut()
            .zip(&y[t * row_len..(t + 1) * row_len])
            .for_each(|(a, b)| *a += b)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_normalizes() {
        let mut x = vec![3.0, 4.0];
        rms_norm(&mut x, &[1.0, 2.0], 0.0);
        // rms = sqrt((9 + 16) / 2) = 3.5355
        assert!((x[0] - 3.0 / 3.535_534).abs() < 1e-6);
        assert!((x[1] - 2.0 * 4.0 / 3.535_534).abs() < 1e-6);
        // A long row: the baseline (SSE2) build gives the same bits.
        let row: Vec<f32> = (0..2563)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let w: Vec<f32> = (0..2563).map(|i| 0.5 + (i % 13) as f32 / 8.0).collect();
        let (mut wide, mut narrow) = (row.clone(), row);
        rms_norm(&mut wide, &w, 1e-5);
        rms_norm_baseline(&mut narrow, &w, 1e-5);
        assert!(narrow
            .iter()
            .zip(&wide)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn rope_rotates_half_pairs_and_keeps_norm() {
        let inv = rope_inv_freq(4, 10000.0);
        assert_eq!(inv[0], 1.0);
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        rope(&mut x, 4, &rope_angles(1, &inv));
        // Dimension 0 pairs with dimension 2: (cos 1, 0, sin 1, 0).
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(x[1], 0.0);
        let mut y = vec![0.3, -1.2, 0.7, 2.0];
        let n0: f32 = y.iter().map(|v| v * v).sum();
        rope(&mut y, 4, &rope_angles(17, &inv));
        let n1: f32 = y.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-5);
        let mut z = vec![0.3, -1.2, 0.7, 2.0];
        rope(&mut z, 4, &rope_angles(0, &inv));
        assert_eq!(z, vec![0.3, -1.2, 0.7, 2.0]);
    }

    #[test]
    fn gates() {
        let mut g = vec![-1.0, 2.0];
        relu2_gate(&mut g, &[5.0, 3.0]);
        assert_eq!(g, vec![0.0, 12.0]);
        let mut s = vec![0.0, 1.0];
        silu_gate(&mut s, &[1.0, 2.0]);
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 2.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn attention_over_one_position_returns_its_value() {
        let shape = AttentionShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 2,
        };
        for half in [false, true] {
            let mut cache = KvCache::new(1, 4, 2, half);
            cache.store(0, 0, &[1.0, 0.0], &[0.5, -2.0]);
            let mut out = vec![0.0; 4];
            attend_group(&cache, 0, shape, 0, 0, &[3.0, 1.0, -1.0, 2.0], &mut out);
            assert_eq!(out, vec![0.5, -2.0, 0.5, -2.0]);
            // Two equal keys average their values.
            cache.store(0, 1, &[1.0, 0.0], &[1.5, 0.0]);
            attend_group(&cache, 0, shape, 0, 1, &[3.0, 1.0, -1.0, 2.0], &mut out);
            assert_eq!(out, vec![1.0, -1.0, 1.0, -1.0]);
        }
    }

    /// Against an f64 softmax attention, over head dims with and without a
    /// tail past the 8 partial sums, for both KV cache types (keys and
    /// values that f16 holds exactly), with GQA (heads 2 and 3 read kv head 1).
    type AttendFn = fn(&KvCache, usize, AttentionShape, usize, usize, &[f32], &mut [f32]);

    #[test]
    fn attention_matches_a_direct_f64_computation() {
        for head_dim in [8, 13, 128] {
            let shape = AttentionShape {
                heads: 4,
                kv_heads: 2,
                head_dim,
            };
            let kv_dim = 2 * head_dim;
            let positions = 20;
            // Multiples of 1/16 below 4: exact in f16.
            let val = |i: usize| ((i * 37 % 127) as f32 - 63.0) / 16.0;
            let keys: Vec<f32> = (0..positions * kv_dim).map(val).collect();
            let values: Vec<f32> = (0..positions * kv_dim).map(|i| val(i + 11)).collect();
            let q: Vec<f32> = (0..2 * head_dim).map(|i| val(i + 5) / 8.0).collect();
            let pos = positions - 1;
            let row =
                |data: &[f32], p: usize| data[p * kv_dim + head_dim..(p + 1) * kv_dim].to_vec();
            let want: Vec<f64> = q
                .chunks_exact(head_dim)
                .flat_map(|q| {
                    let scores: Vec<f64> = (0..=pos)
                        .map(|p| {
                            let k = row(&keys, p);
                            let dot: f64 =
                                q.iter().zip(&k).map(|(&a, &b)| a as f64 * b as f64).sum();
                            dot / (head_dim as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    (0..head_dim)
                        .map(|i| {
                            (0..=pos)
                                .map(|p| weights[p] / total * row(&values, p)[i] as f64)
                                .sum::<f64>()
                        })
                        .collect::<Vec<f64>>()
                })
                .collect();
            for half in [false, true] {
                let mut cache = KvCache::new(1, positions, kv_dim, half);
                for p in 0..positions {
                    let span = p * kv_dim..(p + 1) * kv_dim;
                    cache.store(0, p, &keys[span.clone()], &values[span]);
                }
                let run = |f: AttendFn| {
                    let mut out = vec![0.0; 2 * head_dim];
                    f(&cache, 0, shape, 1, pos, &q, &mut out);
                    out
                };
                // The dispatching function (AVX2 + FMA + F16C where the CPU
                // has them), the portable code's AVX2 build and its baseline
                // (SSE2) build, which CPUs without AVX2 run.
                let portable = run(attend_group_baseline);
                let narrow = run(attend_group_portable);
                assert!(narrow
                    .iter()
                    .zip(&portable)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
                for (name, out) in [("dispatch", run(attend_group)), ("portable", portable)] {
                    for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{name} head_dim {head_dim} f16 {half}: out[{i}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn exp_is_within_2_ulp_of_the_f64_exp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let ulp = f32::EPSILON as f64 * want;
            worst = worst.max((exp(x) as f64 - want).abs() / ulp);
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(1000.0) > 1e38 && exp(1000.0).is_finite());
    }

    #[test]
    fn par_rows_visits_each_row_once() {
        let exec = Executor::new(ternbench_kernels::parallel::Threading::Pool, 3, false).unwrap();
        let mut data = vec![0.0f32; 7 * 5];
        par_rows(&exec, &mut data, 5, &|i, row| {
            row.iter_mut().for_each(|v| *v += i as f32)
        });
        for (i, row) in data.chunks(5).enumerate() {
            assert!(row.iter().all(|&v| v == i as f32));
        }
    }
}
