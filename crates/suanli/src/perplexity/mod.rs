//! Perplexity and KL divergence with llama-perplexity's definitions
//! (`tools/perplexity/perplexity.cpp`), so the numbers compare with the
//! ones people quote.
//!
//! The text is tokenized whole (BOS as the model wants), cut into
//! `n_chunk` chunks of `n_ctx` tokens, and each chunk run from an empty
//! context with its first token replaced by BOS when the model adds one.
//! Only the second half of a chunk is scored: the logits at positions
//! `n_ctx/2 ..= n_ctx − 2` against the tokens that follow, so every scored
//! token has at least half a context behind it. Perplexity is the exp of
//! the mean negative log-likelihood over all scored tokens.
//!
//! - [`Layout`]: the chunks a text of some length makes.
//! - [`eval`]: the chunks through the model, several per forward pass.
//! - [`rows`]: one row's log-softmax, 16-bit log-probabilities, KL divergence.
//! - [`stats`]: the sums over tokens and what is reported from them.
//! - [`logits_file`]: llama.cpp's file of a base model's log-probabilities.

pub mod eval;
pub mod logits_file;
pub mod rows;
pub mod stats;

use std::path::PathBuf;

pub use eval::Eval;
pub use stats::{KldStats, KldSummary, PplStats};

#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error(
        "the text tokenizes to {have} tokens; perplexity with a context of {n_ctx} needs at least {need} (two chunks)"
    )]
    TooShort {
        have: usize,
        need: usize,
        n_ctx: usize,
    },
    #[error("a context of {0} tokens scores none: the context size must be at least 3")]
    BadContext(usize),
    #[error("--chunks 0 scores nothing")]
    NoChunks,
    #[error("{path}: {why}")]
    LogitsFile { path: PathBuf, why: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Model(#[from] suanli_models::ModelError),
}

pub type Result<T> = std::result::Result<T, PerplexityError>;

/// How a text is cut: `n_chunk` chunks of `n_ctx` tokens from its start,
/// each scored from position `first` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub n_ctx: usize,
    pub n_chunk: usize,
    /// The first position whose logits are scored (`n_ctx / 2`).
    pub first: usize,
}

impl Layout {
    /// The chunks of a text of `n_tokens` tokens: as many whole chunks as
    /// it holds, at most `max_chunks`. Like llama-perplexity, it needs
    /// at least two chunks' worth of tokens even when fewer are asked for.
    pub fn new(n_tokens: usize, n_ctx: usize, max_chunks: Option<usize>) -> Result<Layout> {
        if n_ctx < 3 {
            return Err(PerplexityError::BadContext(n_ctx));
        }
        if max_chunks == Some(0) {
            return Err(PerplexityError::NoChunks);
        }
        if n_tokens < 2 * n_ctx {
            return Err(PerplexityError::TooShort {
                have: n_tokens,
                need: 2 * n_ctx,
                n_ctx,
            });
        }
        let all = n_tokens / n_ctx;
        Ok(Layout {
            n_ctx,
            n_chunk: max_chunks.map_or(all, |m| m.min(all)),
            first: n_ctx / 2,
        })
    }

    /// Tokens scored per chunk.
    pub fn scored(&self) -> usize {
        self.n_ctx - 1 - self.first
    }

    /// The tokens chunk `k`'s scored rows predict.
    pub fn targets<'t>(&self, tokens: &'t [u32], k: usize) -> &'t [u32] {
        let s = k * self.n_ctx;
        &tokens[s + self.first + 1..s + self.n_ctx]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_as_llama_perplexity_cuts_them() {
        let l = Layout::new(5000, 512, None).expect("layout");
        assert_eq!((l.n_chunk, l.first, l.scored()), (9, 256, 255));
        assert_eq!(
            Layout::new(5000, 512, Some(3)).map(|l| l.n_chunk).ok(),
            Some(3)
        );
        let e = Layout::new(1000, 512, Some(1)).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("1000 tokens") && e.contains("at least 1024")));
        assert!(Layout::new(5000, 2, None).is_err());
        assert!(Layout::new(5000, 512, Some(0)).is_err());
        let t: Vec<u32> = (0..2048).collect();
        assert_eq!(l.targets(&t, 1), &t[512 + 257..1024]);
    }
}
