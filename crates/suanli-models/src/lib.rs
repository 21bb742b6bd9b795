//! suanli-models: transformer building blocks and architectures.
//!
//! - [`config`]: [`ModelConfig`], filled from GGUF metadata or a Hugging Face
//!   `config.json` by the same code path.
//! - [`loader`]: [`loader::WeightSource`], the one interface through which a
//!   model gets its weights (GGUF and safetensors alike, GGUF tensor names).
//! - [`nn`]: RMSNorm, RoPE, grouped-query attention over the [`kv::KvCache`],
//!   gated feed-forward.
//! - [`arch`]: one file per architecture and the [`arch::REGISTRY`].
//! - [`plan`]: parameters, weight, decode and KV-cache bytes of a model from
//!   its hyper-parameters alone (`suanli plan`).
//!
//! A model never sees a file format or a KV block table: it gets weights from
//! a `WeightSource` and K/V through [`ForwardCtx`].

pub mod arch;
pub mod config;
pub mod kv;
pub mod loader;
pub mod nn;
pub mod plan;
pub mod tiny;

use std::path::PathBuf;

pub use config::ModelConfig;
pub use kv::{KvCache, KvDtype, KvPool, Pages};
pub use loader::WeightSource;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] suanli_formats::FormatError),
    #[error("{path}: unknown architecture '{arch}'; supported: {known}")]
    UnknownArch {
        path: PathBuf,
        arch: String,
        known: String,
    },
    #[error("{path}: missing tensor '{name}'")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor '{name}': {why}")]
    BadTensor {
        path: PathBuf,
        name: String,
        why: String,
    },
    #[error("{path}: config '{key}': {why}")]
    Config {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("context full: {needed} positions needed, the KV cache holds {capacity}")]
    ContextFull { needed: usize, capacity: usize },
    #[error("token id {id} is out of the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("bad batch: {0}")]
    BadBatch(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Which positions of a forward pass need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token (generation).
    Last,
    /// Every token (perplexity, prompt logprobs, tests).
    All,
    /// None (a prompt chunk that is not the last).
    None,
    /// The last `k` tokens of the span (perplexity scores the second half
    /// of each chunk, and the output matrix over the first half would be
    /// work thrown away).
    Tail(usize),
}

impl Logits {
    /// Rows of logits for a span of `n` tokens.
    pub fn rows(self, n: usize) -> usize {
        match self {
            Logits::Last => n.min(1),
            Logits::All => n,
            Logits::None => 0,
            Logits::Tail(k) => k.min(n),
        }
    }
}

/// A trace hook: (step name, layer, values).
pub type TraceFn<'a> = &'a mut dyn FnMut(&str, usize, &[f32]);

/// Tokens per pass of [`Model::forward`]: llama.cpp's default micro-batch
/// (`n_ubatch`).
pub const UBATCH: usize = 512;

/// Per-call state of a forward pass: where the tokens sit and where K/V go.
pub struct ForwardCtx<'a> {
    /// K/V of earlier positions; the new tokens' K/V are appended.
    pub kv: &'a mut KvCache,
    pub logits: Logits,
    /// Called after each named step with (name, layer, values), like
    /// llama.cpp's graph callback, so any layer can be dumped and diffed.
    pub trace: Option<TraceFn<'a>>,
}

impl<'a> ForwardCtx<'a> {
    /// A pass that appends to `kv` and returns the `logits` asked for, untraced.
    pub fn new(kv: &'a mut KvCache, logits: Logits) -> Self {
        ForwardCtx {
            kv,
            logits,
            trace: None,
        }
    }

    pub fn trace(&mut self, name: &str, layer: usize, x: &[f32]) {
        if let Some(t) = self.trace.as_mut() {
            t(name, layer, x);
        }
    }
}

/// One sequence's share of a batched forward pass: `n` consecutive tokens
/// of the batch at positions `pos0..pos0 + n`, earlier positions already
/// in the pool under the same block table.
#[derive(Clone, Copy, Debug)]
pub struct SeqSpan<'a> {
    pub n: usize,
    pub pos0: usize,
    pub pages: Pages<'a>,
    pub logits: Logits,
}

/// A forward pass over several sequences at once (continuous batching):
/// matmuls see every token of every sequence, attention runs per sequence
/// over its own blocks of the shared [`KvPool`].
pub struct Batch<'a> {
    pub kv: &'a mut KvPool,
    pub seqs: &'a [SeqSpan<'a>],
    /// Position of each token of the batch.
    pub pos: Vec<usize>,
    /// Cache row each token's K/V goes to.
    pub rows: Vec<usize>,
    pub trace: Option<TraceFn<'a>>,
    /// RoPE's sines and cosines per token, made once per forward pass for
    /// each set of angle parameters ([`nn::rope_angles`]).
    pub(crate) rope: Vec<nn::RopeAngles>,
}

impl<'a> Batch<'a> {
    /// Checks the spans against the pool and lays out positions and rows.
    pub fn new(
        kv: &'a mut KvPool,
        seqs: &'a [SeqSpan<'a>],
        trace: Option<TraceFn<'a>>,
    ) -> Result<Self> {
        let n: usize = seqs.iter().map(|s| s.n).sum();
        let (mut pos, mut rows) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (i, s) in seqs.iter().enumerate() {
            if s.n == 0 {
                return Err(ModelError::BadBatch(format!("sequence {i} has no tokens")));
            }
            let end = s.pos0 + s.n;
            let limit = if s.pages.table.is_empty() {
                kv.rows()
            } else {
                s.pages.table.len() << s.pages.shift
            };
            if end > limit {
                return Err(ModelError::ContextFull {
                    needed: end,
                    capacity: limit,
                });
            }
            if !s.pages.table.is_empty()
                && (1usize << s.pages.shift != kv.block_size
                    || s.pages.table.iter().any(|&b| b as usize >= kv.n_blocks))
            {
                return Err(ModelError::BadBatch(format!(
                    "sequence {i}: block table does not fit the pool of {} blocks of {}",
                    kv.n_blocks, kv.block_size
                )));
            }
            for p in s.pos0..end {
                pos.push(p);
                rows.push(s.pages.row(p));
            }
        }
        Ok(Batch {
            kv,
            seqs,
            pos,
            rows,
            trace,
            rope: Vec::new(),
        })
    }

    /// Tokens in the batch.
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }

    pub fn trace(&mut self, name: &str, layer: usize, x: &[f32]) {
        if let Some(t) = self.trace.as_mut() {
            t(name, layer, x);
        }
    }

    /// Whether intermediate tensors are traced (fused ops then also make
    /// what they would skip, to show it).
    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }
}

/// A loaded model: run a batch of tokens, get logits.
pub trait Model: Send + Sync {
    fn config(&self) -> &ModelConfig;

    /// Process `tokens` at positions `kv.len()..`, append their K/V to the
    /// cache and return logits (`n_vocab` per requested position, row-major).
    /// More than [`UBATCH`] tokens go through in passes of that many, as
    /// llama.cpp's micro-batches: the kernels (and so the bits) are those it
    /// runs for the same prompt, and activation memory stays bounded.
    fn forward(&self, tokens: &[u32], ctx: &mut ForwardCtx) -> Result<Vec<f32>> {
        let kv = &mut *ctx.kv;
        let pos0 = kv.len();
        if pos0 + tokens.len() > kv.capacity {
            return Err(ModelError::ContextFull {
                needed: pos0 + tokens.len(),
                capacity: kv.capacity,
            });
        }
        let passes = tokens.len().div_ceil(UBATCH).max(1);
        let mut out = Vec::new();
        for i in 0..passes {
            let part =
                &tokens[(i * UBATCH).min(tokens.len())..((i + 1) * UBATCH).min(tokens.len())];
            let logits = match ctx.logits {
                Logits::Last if i + 1 < passes => Logits::None,
                // The tail of the whole call that falls in this pass.
                Logits::Tail(k) => {
                    let end = (i * UBATCH + part.len()) as isize;
                    let from = tokens.len() as isize - k.min(tokens.len()) as isize;
                    Logits::Tail((end - from).clamp(0, part.len() as isize) as usize)
                }
                l => l,
            };
            let seqs = [SeqSpan {
                n: part.len(),
                pos0: kv.len(),
                pages: Pages::CONTIGUOUS,
                logits,
            }];
            let trace: Option<TraceFn> = match ctx.trace.as_mut() {
                Some(t) => Some(&mut **t),
                None => None,
            };
            let mut batch = Batch::new(&mut kv.pool, &seqs, trace)?;
            let logits = self.forward_batch(part, &mut batch)?;
            kv.advance(part.len());
            if passes == 1 {
                return Ok(logits);
            }
            out.extend(logits);
        }
        Ok(out)
    }

    /// Process the tokens of several sequences (`tokens` holds each span's
    /// tokens in turn), writing their K/V into the pool; returns the logits
    /// each span asked for, in span order.
    fn forward_batch(&self, tokens: &[u32], batch: &mut Batch) -> Result<Vec<f32>>;

    /// A KV cache sized for `n_ctx` positions.
    fn new_cache(&self, n_ctx: usize, dtype: KvDtype) -> KvCache {
        let c = self.config();
        let (kw, vw) = c.kv_widths();
        KvCache::new(c.n_layer, n_ctx, kw, vw, dtype)
    }

    /// A paged pool of `n_blocks` blocks of `block_size` positions.
    fn new_pool(&self, n_blocks: usize, block_size: usize, dtype: KvDtype) -> KvPool {
        let c = self.config();
        let (kw, vw) = c.kv_widths();
        KvPool::new(c.n_layer, n_blocks, block_size, kw, vw, dtype)
    }

    /// The weight bytes that generating one token reads once each: the
    /// roofline of decode is the time to stream them.
    fn decode_weights(&self) -> Vec<&[u8]>;

    /// Bytes of weights read to generate one token: the weights every
    /// token reads, plus for a mixture of experts the bytes of as many
    /// experts as a token is routed to (each layer's average expert).
    fn bytes_per_token(&self) -> u64 {
        self.decode_weights()
            .iter()
            .map(|s| s.len() as u64)
            .sum::<u64>()
            + self.active_expert_bytes()
    }

    /// Bytes of the routed experts one token reads, on average (0 for a
    /// dense model).
    fn active_expert_bytes(&self) -> u64 {
        0
    }

    /// Routed-expert weight bytes streamed by every pass so far: over a
    /// run of decode steps, the difference is what the experts the tokens
    /// were actually routed to cost (0 for a dense model).
    fn expert_bytes_read(&self) -> u64 {
        0
    }

    /// Multi-token-prediction modules loaded and kept for speculative
    /// decoding (DeepSeek-V3's `nextn`; never run by a forward pass).
    fn mtp_layers(&self) -> usize {
        0
    }
}

/// Open a model: a `.gguf` file or a directory with `config.json` and safetensors.
pub fn load(path: &std::path::Path) -> Result<Box<dyn Model>> {
    let src = loader::open(path)?;
    load_source(src.as_ref())
}

/// Build a model from an open weight source. The decode kernels' weight
/// prefetch is set for its size (where the weights a token reads come
/// from: [`suanli_kernels::dispatch::prefetch_for_weights`]).
pub fn load_source(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let m = arch::build(src)?;
    suanli_kernels::dispatch::prefetch_for_weights(m.bytes_per_token());
    Ok(m)
}
