//! Building blocks shared by the architectures, one concept a file:
//! [`rope`] (angles and rotation), [`attention`] (the attention block over
//! the paged KV cache), [`mla`] (DeepSeek's latent attention), [`ffn`]
//! (the gated feed-forward), [`moe`] (the
//! mixture-of-experts feed-forward and its routers), [`mtp`] (DeepSeek's
//! multi-token-prediction modules, kept for speculative decoding) and
//! [`transformer`] (the decoder stack every architecture fills with its own
//! layer function).

pub mod attention;
pub mod ffn;
pub mod mla;
pub mod moe;
pub mod mtp;
pub mod rope;
pub mod scratch;
pub mod transformer;

pub use attention::{attend, self_attention};
pub use ffn::{feed_forward, gated_ffn, Ffn, Mlp};
pub use mla::{latent_attention, Mla, MlaConfig, MlaPrefill};
pub use moe::{Gating, Moe, Router};
pub use mtp::Mtp;
pub use rope::{rope_angles, rope_rows, RopeAngles};
pub use transformer::{Layer, LayerFn, Transformer};

use suanli_kernels::{ops, pool};
use suanli_kernels::{Acts, QMatrix};

/// `y = x Wᵀ (+ b)` for `n` rows of `x`.
pub fn linear(w: &QMatrix, b: Option<&[f32]>, x: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * w.rows];
    w.matmul(x, n, &mut y);
    if let Some(b) = b {
        for row in y.chunks_exact_mut(w.rows) {
            ops::add_inplace(row, b);
        }
    }
    y
}

/// A block's input rows: as they are, or RMS-normalized as they are
/// quantized for the block's first products (the norm's output never
/// makes a pass through memory: 512 prompt rows of Qwen2.5-1.5B are 3 MiB).
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Rows(&'a [f32]),
    /// Each row of `x` (`w.len()` wide) divided by its RMS, times `w`.
    RmsNorm {
        x: &'a [f32],
        w: &'a [f32],
        eps: f32,
    },
}

impl<'a> Input<'a> {
    /// `x`'s rows normalized by `w`, made as they are used.
    pub fn rms_norm(x: &'a [f32], w: &'a [f32], eps: f32) -> Self {
        Input::RmsNorm { x, w, eps }
    }

    /// The rows themselves (made, for a fused op).
    pub fn rows(&self) -> std::borrow::Cow<'a, [f32]> {
        match *self {
            Input::Rows(x) => x.into(),
            Input::RmsNorm { x, w, eps } => rms_norm_rows(x, w, eps).into(),
        }
    }

    /// `f` over these rows as the kernels' [`Acts`] (a norm made row by
    /// row as the rows are quantized).
    pub fn with_acts<R>(self, f: impl FnOnce(Acts) -> R) -> R {
        match self {
            Input::Rows(x) => f(Acts::Rows(x)),
            Input::RmsNorm { x, w, eps } => {
                let d = w.len();
                let row =
                    |t: usize, out: &mut [f32]| ops::rms_norm(&x[t * d..(t + 1) * d], w, eps, out);
                f(Acts::Each(&row))
            }
        }
    }
}

/// [`linear`] for several matrices over the same input: one quantization
/// per format and, when decoding, one pass over the thread pool.
pub fn linear_many<const K: usize>(
    ws: [(&QMatrix, Option<&[f32]>); K],
    x: Input,
    n: usize,
) -> [Vec<f32>; K] {
    let mut ys: [Vec<f32>; K] = std::array::from_fn(|i| vec![0f32; n * ws[i].0.rows]);
    let mut parts: Vec<(&QMatrix, &mut [f32])> = ws
        .iter()
        .zip(ys.iter_mut())
        .map(|((w, _), y)| (*w, y.as_mut_slice()))
        .collect();
    x.with_acts(|acts| suanli_kernels::matmul_many_acts(acts, n, &mut parts));
    for ((w, b), y) in ws.iter().zip(ys.iter_mut()) {
        if let Some(b) = b {
            for row in y.chunks_exact_mut(w.rows) {
                ops::add_inplace(row, b);
            }
        }
    }
    ys
}

/// RMSNorm of each `w.len()`-wide row of `x`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let d = w.len();
    pool::for_each_row(&mut y, d, |i, yr| {
        ops::rms_norm(&x[i * d..(i + 1) * d], w, eps, yr)
    });
    y
}
