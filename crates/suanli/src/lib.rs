//! The `suanli` command's library side: what the CLI and the integration
//! tests share.
//!
//! - [`eval`]: benchmark tasks (GSM8K, GPQA-diamond, AIME 2025) and
//!   their scoring.
//! - [`hub`]: named models, fetched and sha256-checked into a local cache.
//! - [`lineage`]: whether one model's weights were derived from another's.
//! - [`membw`]: memory read bandwidth, the decode roofline's.
//! - [`pull`]: models from the Hugging Face Hub and ModelScope.
//! - [`perplexity`]: perplexity and KL divergence as llama-perplexity
//!   defines them.

pub mod eval;
pub mod hub;
pub mod lineage;
pub mod membw;
pub mod perplexity;
pub mod pull;

/// The first `n` bytes of `text`, extended to the end of the line (a slice
/// of a corpus that tests and benchmarks agree on).
pub fn corpus_prefix(text: &[u8], n: usize) -> &[u8] {
    if text.len() <= n {
        return text;
    }
    match text[n..].iter().position(|&b| b == b'\n') {
        Some(i) => &text[..n + i + 1],
        None => text,
    }
}
