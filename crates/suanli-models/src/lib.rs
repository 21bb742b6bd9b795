//! suanli-models: transformer building blocks and architectures.
//!
//! - [`config`]: [`ModelConfig`], filled from GGUF metadata or a Hugging Face
//!   `config.json` by the same code path.
//! - [`loader`]: [`loader::WeightSource`], the one interface through which a
//!   model gets its weights (GGUF and safetensors alike, GGUF tensor names).
//! - [`nn`]: RMSNorm, RoPE, grouped-query attention over the [`kv::KvCache`],
//!   gated feed-forward.
//! - [`arch`]: one file per architecture and the [`arch::REGISTRY`].
//!
//! A model never sees a file format or a KV block table: it gets weights from
//! a `WeightSource` and K/V through [`ForwardCtx`].

pub mod arch;
pub mod config;
pub mod kv;
pub mod loader;
pub mod nn;
pub mod tiny;

use std::path::PathBuf;

pub use config::ModelConfig;
pub use kv::{KvCache, KvDtype};
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
}

pub type Result<T> = std::result::Result<T, ModelError>;

/// Which positions of a forward pass need logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token (generation).
    Last,
    /// Every token (perplexity, prompt logprobs, tests).
    All,
}

/// A trace hook: (step name, layer, values).
pub type TraceFn<'a> = &'a mut dyn FnMut(&str, usize, &[f32]);

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

/// A loaded model: run a batch of tokens, get logits.
pub trait Model: Send + Sync {
    fn config(&self) -> &ModelConfig;

    /// Process `tokens` at positions `kv.len()..`, append their K/V to the
    /// cache and return logits (`n_vocab` per requested position, row-major).
    fn forward(&self, tokens: &[u32], ctx: &mut ForwardCtx) -> Result<Vec<f32>>;

    /// A KV cache sized for `n_ctx` positions.
    fn new_cache(&self, n_ctx: usize, dtype: KvDtype) -> KvCache {
        let c = self.config();
        KvCache::new(
            c.n_layer,
            n_ctx,
            c.n_head_kv * c.head_dim,
            c.n_head_kv * c.head_dim_v,
            dtype,
        )
    }

    /// Bytes of weights read to generate one token.
    fn bytes_per_token(&self) -> u64;
}

/// Open a model: a `.gguf` file or a directory with `config.json` and safetensors.
pub fn load(path: &std::path::Path) -> Result<Box<dyn Model>> {
    let src = loader::open(path)?;
    arch::build(src.as_ref())
}

/// Build a model from an open weight source.
pub fn load_source(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    arch::build(src)
}
