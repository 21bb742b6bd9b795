//! suanli-engine: turning logits into text.
//!
//! - [`sampler`]: greedy, temperature, top-k, top-p, min-p, repetition /
//!   presence / frequency penalties, seeded.
//! - [`generate`]: the single-sequence loop (prefill the prompt, then decode
//!   one token at a time) shared by `run`, `chat` and the tests.

pub mod generate;
pub mod sampler;

pub use generate::{generate, GenStats, StopReason};
pub use sampler::{Sampler, SamplingParams};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] suanli_models::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] suanli_tokenizer::TokenizerError),
    #[error("the prompt is {prompt} tokens, {over} more than the context of {ctx} allows (leave room for at least one generated token)")]
    PromptTooLong {
        prompt: usize,
        ctx: usize,
        over: usize,
    },
    #[error("the prompt is empty")]
    EmptyPrompt,
}

pub type Result<T> = std::result::Result<T, EngineError>;
