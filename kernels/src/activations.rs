//! Quantized input activations, one representation per [`ActivationScheme`].
//!
//! Activations are quantized once per input (not once per thread) and then
//! shared read-only by every thread of a matrix multiply. Each type can also
//! be built from already-quantized integers, so tests can feed values the
//! float path never produces (such as -128) straight into every kernel.

use crate::formats::q8_0::BlockQ8_0;
use crate::formats::{aligned_filled, aligned_from_iter, padded_len, ActivationScheme, AlignedVec};
use crate::parallel::Executor;
use crate::quant::{quantize_block_absmax_q8, quantize_token_q8, sum_i8};
use half::f16;

/// Rows of token-quantized activations are padded with zeros to a multiple of
/// this, so kernels with blocks up to this length never read past a row.
pub const TOKEN_ROW_ALIGN: usize = 256;

/// Rows of f32 activations are padded with zeros to a multiple of this.
pub const F32_ROW_ALIGN: usize = crate::formats::f16::ROW_ALIGN;

/// Elements per Q8_K block.
pub const Q8K_BLOCK_LEN: usize = 256;

/// BitNet b1.58 activations: int8 per token with one absmax scale per token.
#[derive(Clone, Debug)]
pub struct TokenQ8 {
    pub batch: usize,
    pub cols: usize,
    /// Elements per row in `q` (cols padded to [`TOKEN_ROW_ALIGN`]).
    pub stride: usize,
    pub q: AlignedVec<i8>,
    /// s per token: the real activation is q / s.
    pub scale: Vec<f32>,
    /// Sum of q per token, which removes the +1 offset of unsigned weight codes.
    pub sum: Vec<i32>,
}

impl TokenQ8 {
    pub fn quantize(x: &[f32], batch: usize, cols: usize) -> Self {
        Self::quantize_on(&Executor::serial(), x, batch, cols)
    }

    /// [`TokenQ8::quantize`] with the tokens spread over `exec`'s threads
    /// (the same values: each token is quantized on its own).
    pub fn quantize_on(exec: &Executor, x: &[f32], batch: usize, cols: usize) -> Self {
        assert_eq!(x.len(), batch * cols, "activation length != batch * cols");
        let stride = padded_len(cols, TOKEN_ROW_ALIGN);
        let mut q = aligned_filled(batch * stride, 0i8);
        let mut scale = vec![0.0f32; batch];
        let per = tokens_per_task(exec, batch);
        let tasks = q
            .chunks_mut(per * stride.max(1))
            .zip(scale.chunks_mut(per))
            .collect();
        exec.for_each_task(tasks, |i, (q, scale)| {
            for (t, s) in scale.iter_mut().enumerate() {
                let b = i * per + t;
                let row = &mut q[t * stride..t * stride + cols];
                *s = quantize_token_q8(&x[b * cols..(b + 1) * cols], row);
            }
        });
        Self::finish(batch, cols, stride, q, scale)
    }

    /// Builds from int8 values (`batch * cols`, any of -128..=127) and per-token scales.
    pub fn from_quantized(batch: usize, cols: usize, q: &[i8], scale: &[f32]) -> Self {
        assert_eq!(q.len(), batch * cols);
        assert_eq!(scale.len(), batch);
        let stride = padded_len(cols, TOKEN_ROW_ALIGN);
        let mut padded = aligned_filled(batch * stride, 0i8);
        for b in 0..batch {
            padded[b * stride..b * stride + cols].copy_from_slice(&q[b * cols..(b + 1) * cols]);
        }
        Self::finish(batch, cols, stride, padded, scale.to_vec())
    }

    fn finish(
        batch: usize,
        cols: usize,
        stride: usize,
        q: AlignedVec<i8>,
        scale: Vec<f32>,
    ) -> Self {
        let sum = (0..batch)
            .map(|b| sum_i8(&q[b * stride..(b + 1) * stride]))
            .collect();
        TokenQ8 {
            batch,
            cols,
            stride,
            q,
            scale,
            sum,
        }
    }

    pub fn row(&self, b: usize) -> &[i8] {
        &self.q[b * self.stride..(b + 1) * self.stride]
    }

    /// The factor that turns an integer dot product with token `b` into y:
    /// y = acc * (w_scale / s_b). Every kernel uses exactly this expression, so
    /// equal integer accumulators give bit-identical outputs.
    #[inline]
    pub fn output_factor(&self, b: usize, w_scale: f32) -> f32 {
        w_scale / self.scale[b]
    }
}

/// One llama.cpp Q8_K block: 256 int8 values, an f32 scale and the sums of each 16.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; Q8K_BLOCK_LEN],
    pub bsums: [i16; Q8K_BLOCK_LEN / 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockQ8K {
    fn new(d: f32, qs: [i8; Q8K_BLOCK_LEN]) -> Self {
        let mut bsums = [0i16; 16];
        for (s, chunk) in bsums.iter_mut().zip(qs.chunks_exact(16)) {
            *s = chunk.iter().map(|&v| v as i16).sum();
        }
        BlockQ8K { d, qs, bsums }
    }
}

/// Activations quantized in fixed-length blocks, each with its own scale.
#[derive(Clone, Debug)]
pub struct BlockActivations<B> {
    pub batch: usize,
    pub cols: usize,
    pub blocks_per_row: usize,
    pub blocks: AlignedVec<B>,
}

impl<B> BlockActivations<B> {
    pub fn row(&self, b: usize) -> &[B] {
        &self.blocks[b * self.blocks_per_row..(b + 1) * self.blocks_per_row]
    }
}

/// Splits each row of `x` into blocks of `len` (the last one zero-padded) and
/// builds one block per piece, the tokens spread over `exec`'s threads.
fn quantize_blocks<B: Copy + Send>(
    exec: &Executor,
    x: &[f32],
    batch: usize,
    cols: usize,
    len: usize,
    zero: B,
    make: impl Fn(&[f32]) -> B + Sync,
) -> BlockActivations<B> {
    assert_eq!(x.len(), batch * cols, "activation length != batch * cols");
    let blocks_per_row = cols.div_ceil(len);
    let mut blocks = aligned_filled(batch * blocks_per_row, zero);
    let per = tokens_per_task(exec, batch);
    let tasks = blocks.chunks_mut(per * blocks_per_row.max(1)).collect();
    exec.for_each_task(tasks, |i, task: &mut &mut [B]| {
        for (j, block) in task.iter_mut().enumerate() {
            let (b, k) = (i * per + j / blocks_per_row, j % blocks_per_row);
            let row = &x[b * cols..(b + 1) * cols];
            *block = make(&row[k * len..((k + 1) * len).min(cols)]);
        }
    });
    BlockActivations {
        batch,
        cols,
        blocks_per_row,
        blocks,
    }
}

/// Tokens per quantization task: one task per thread, none for a single
/// token or thread (then the caller's thread does it all).
fn tokens_per_task(exec: &Executor, batch: usize) -> usize {
    batch.div_ceil(exec.n_threads().max(1)).max(1)
}

/// Builds block activations from int8 values (`batch * cols`) and one scale
/// per block (`batch * blocks_per_row`).
fn blocks_from_quantized<B, const N: usize>(
    batch: usize,
    cols: usize,
    q: &[i8],
    d: &[f32],
    make: impl Fn(f32, [i8; N]) -> B,
) -> BlockActivations<B> {
    assert_eq!(q.len(), batch * cols);
    let blocks_per_row = cols.div_ceil(N);
    assert_eq!(d.len(), batch * blocks_per_row);
    let blocks = aligned_from_iter((0..batch * blocks_per_row).map(|i| {
        let (b, blk) = (i / blocks_per_row, i % blocks_per_row);
        let row = &q[b * cols..(b + 1) * cols];
        let mut qs = [0i8; N];
        let piece = &row[blk * N..((blk + 1) * N).min(cols)];
        qs[..piece.len()].copy_from_slice(piece);
        make(d[i], qs)
    }));
    BlockActivations {
        batch,
        cols,
        blocks_per_row,
        blocks,
    }
}

pub type Q8KActivations = BlockActivations<BlockQ8K>;
pub type Q8_0Activations = BlockActivations<BlockQ8_0>;

impl Q8KActivations {
    pub fn quantize(x: &[f32], batch: usize, cols: usize) -> Self {
        Self::quantize_on(&Executor::serial(), x, batch, cols)
    }

    /// [`Q8KActivations::quantize`] with the tokens spread over `exec`'s threads.
    pub fn quantize_on(exec: &Executor, x: &[f32], batch: usize, cols: usize) -> Self {
        let zero = BlockQ8K::new(0.0, [0; Q8K_BLOCK_LEN]);
        quantize_blocks(exec, x, batch, cols, Q8K_BLOCK_LEN, zero, |piece| {
            let mut qs = [0i8; Q8K_BLOCK_LEN];
            let d = quantize_block_absmax_q8(piece, &mut qs);
            BlockQ8K::new(d, qs)
        })
    }

    pub fn from_quantized(batch: usize, cols: usize, q: &[i8], d: &[f32]) -> Self {
        blocks_from_quantized(batch, cols, q, d, BlockQ8K::new)
    }
}

impl Q8_0Activations {
    pub fn quantize(x: &[f32], batch: usize, cols: usize) -> Self {
        Self::quantize_on(&Executor::serial(), x, batch, cols)
    }

    /// [`Q8_0Activations::quantize`] with the tokens spread over `exec`'s threads.
    pub fn quantize_on(exec: &Executor, x: &[f32], batch: usize, cols: usize) -> Self {
        const LEN: usize = crate::formats::q8_0::BLOCK_LEN;
        let zero = BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; LEN],
        };
        quantize_blocks(exec, x, batch, cols, LEN, zero, |piece| {
            let mut qs = [0i8; LEN];
            let d = quantize_block_absmax_q8(piece, &mut qs);
            BlockQ8_0 {
                d: f16::from_f32(d),
                qs,
            }
        })
    }

    pub fn from_quantized(batch: usize, cols: usize, q: &[i8], d: &[f32]) -> Self {
        blocks_from_quantized(batch, cols, q, d, |d, qs| BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        })
    }
}

/// Unquantized activations, rows zero-padded to [`F32_ROW_ALIGN`].
#[derive(Clone, Debug)]
pub struct F32Activations {
    pub batch: usize,
    pub cols: usize,
    pub stride: usize,
    pub x: AlignedVec<f32>,
}

impl F32Activations {
    pub fn new(x: &[f32], batch: usize, cols: usize) -> Self {
        assert_eq!(x.len(), batch * cols, "activation length != batch * cols");
        let stride = padded_len(cols, F32_ROW_ALIGN);
        let mut padded = aligned_filled(batch * stride, 0.0f32);
        for b in 0..batch {
            padded[b * stride..b * stride + cols].copy_from_slice(&x[b * cols..(b + 1) * cols]);
        }
        F32Activations {
            batch,
            cols,
            stride,
            x: padded,
        }
    }

    pub fn row(&self, b: usize) -> &[f32] {
        &self.x[b * self.stride..(b + 1) * self.stride]
    }
}

/// Activations in the representation a format's kernels read.
#[derive(Clone, Debug)]
pub enum Activations {
    TokenQ8(TokenQ8),
    Q8K(Q8KActivations),
    Q8_0(Q8_0Activations),
    F32(F32Activations),
}

impl Activations {
    /// Quantizes `x` (`batch` rows of `cols`) the way `scheme` prescribes.
    pub fn quantize(scheme: ActivationScheme, x: &[f32], batch: usize, cols: usize) -> Self {
        Self::quantize_on(&Executor::serial(), scheme, x, batch, cols)
    }

    /// [`Activations::quantize`] with the tokens spread over `exec`'s threads
    /// (the same values; a batch's quantization would otherwise stay serial
    /// while the matrix products around it scale with the threads).
    pub fn quantize_on(
        exec: &Executor,
        scheme: ActivationScheme,
        x: &[f32],
        batch: usize,
        cols: usize,
    ) -> Self {
        match scheme {
            ActivationScheme::TokenQ8 => {
                Activations::TokenQ8(TokenQ8::quantize_on(exec, x, batch, cols))
            }
            ActivationScheme::Q8K => {
                Activations::Q8K(Q8KActivations::quantize_on(exec, x, batch, cols))
            }
            ActivationScheme::Q8_0 => {
                Activations::Q8_0(Q8_0Activations::quantize_on(exec, x, batch, cols))
            }
            ActivationScheme::F32 => Activations::F32(F32Activations::new(x, batch, cols)),
        }
    }

    pub fn scheme(&self) -> ActivationScheme {
        match self {
            Activations::TokenQ8(_) => ActivationScheme::TokenQ8,
            Activations::Q8K(_) => ActivationScheme::Q8K,
            Activations::Q8_0(_) => ActivationScheme::Q8_0,
            Activations::F32(_) => ActivationScheme::F32,
        }
    }

    pub fn batch(&self) -> usize {
        match self {
            Activations::TokenQ8(a) => a.batch,
            Activations::Q8K(a) => a.batch,
            Activations::Q8_0(a) => a.batch,
            Activations::F32(a) => a.batch,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Activations::TokenQ8(a) => a.cols,
            Activations::Q8K(a) => a.cols,
            Activations::Q8_0(a) => a.cols,
            Activations::F32(a) => a.cols,
        }
    }

    // Accessors for kernels: the matmul driver checks the scheme before a
    // kernel runs, so the panics below are kernel bugs, not input errors.

    pub fn token_q8(&self) -> &TokenQ8 {
        match self {
            Activations::TokenQ8(a) => a,
            other => panic!("expected TokenQ8 activations, got {:?}", other.scheme()),
        }
    }

    pub fn q8k(&self) -> &Q8KActivations {
        match self {
            Activations::Q8K(a) => a,
            other => panic!("expected Q8K activations, got {:?}", other.scheme()),
        }
    }

    pub fn q8_0(&self) -> &Q8_0Activations {
        match self {
            Activations::Q8_0(a) => a,
            other => panic!("expected Q8_0 activations, got {:?}", other.scheme()),
        }
    }

    pub fn f32(&self) -> &F32Activations {
        match self {
            Activations::F32(a) => a,
            other => panic!("expected F32 activations, got {:?}", other.scheme()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rows_are_padded_and_summed() {
        let a = TokenQ8::from_quantized(2, 3, &[1, -128, 127, 5, 5, 5], &[1.0, 2.0]);
        assert_eq!(a.stride, TOKEN_ROW_ALIGN);
        assert_eq!(&a.row(0)[..4], &[1, -128, 127, 0]);
        assert_eq!(a.sum, vec![0, 15]);
    }

    #[test]
    fn q8k_blocks_carry_partial_sums() {
        let x: Vec<f32> = (0..300).map(|i| (i % 7) as f32 - 3.0).collect();
        let a = Q8KActivations::quantize(&x, 1, 300);
        assert_eq!(a.blocks_per_row, 2);
        let b = &a.blocks[0];
        assert_eq!(b.d, 3.0 / 127.0);
        for (s, chunk) in b.bsums.iter().zip(b.qs.chunks(16)) {
            assert_eq!(*s, chunk.iter().map(|&v| v as i16).sum::<i16>());
        }
        // The tail block holds 44 values and zero padding.
        assert!(a.blocks[1].qs[44..].iter().all(|&v| v == 0));
    }

    #[test]
    fn quantizing_on_threads_gives_the_serial_values() {
        use crate::parallel::Threading;
        let x: Vec<f32> = (0..8 * 300)
            .map(|i| ((i * 37) % 101) as f32 - 50.5)
            .collect();
        for threads in [2, 3] {
            let exec = Executor::new(Threading::Pool, threads, false).unwrap();
            for batch in [1, 2, 3, 5, 8] {
                let x = &x[..batch * 300];
                let (a, b) = (
                    TokenQ8::quantize(x, batch, 300),
                    TokenQ8::quantize_on(&exec, x, batch, 300),
                );
                assert_eq!((&a.q[..], &a.scale, &a.sum), (&b.q[..], &b.scale, &b.sum));
                let (a, b) = (
                    Q8KActivations::quantize(x, batch, 300),
                    Q8KActivations::quantize_on(&exec, x, batch, 300),
                );
                assert_eq!(&a.blocks[..], &b.blocks[..]);
                let (a, b) = (
                    Q8_0Activations::quantize(x, batch, 300),
                    Q8_0Activations::quantize_on(&exec, x, batch, 300),
                );
                assert_eq!(&a.blocks[..], &b.blocks[..]);
            }
        }
    }

    #[test]
    fn quantize_dispatches_on_scheme() {
        let x = vec![1.0f32; 64];
        for scheme in [
            ActivationScheme::TokenQ8,
            ActivationScheme::Q8K,
            ActivationScheme::Q8_0,
            ActivationScheme::F32,
        ] {
            let a = Activations::quantize(scheme, &x, 2, 32);
            assert_eq!((a.scheme(), a.batch(), a.cols()), (scheme, 2, 32));
        }
    }
}
