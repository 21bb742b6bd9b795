//! suanli-engine: turning logits into text.
//!
//! - [`sampler`]: greedy, temperature, top-k, top-p, min-p, repetition /
//!   presence / frequency penalties, seeded.
//! - [`generate`](mod@generate): the single-sequence loop (prefill the prompt, then decode
//!   one token at a time) shared by `run`, `chat` and the tests.
//! - [`blocks`]: the paged KV cache's block manager with prefix caching.
//! - [`scheduler`]: continuous batching as a state machine (token budget,
//!   chunked prefill, preemption), tested without a model.
//! - [`engine`]: the serving loop on its own thread: requests in, batched
//!   forward passes, token events out, cancellation on disconnect.
//! - [`stop`], [`logprobs`]: stop strings over streamed text; logprobs.
//! - [`constrain`]: grammar-constrained decoding (JSON schema, Lark,
//!   regex) through llguidance, one matcher per request.

pub mod blocks;
pub mod constrain;
pub mod engine;
pub mod generate;
pub mod logprobs;
pub mod sampler;
pub mod scheduler;
pub mod speculative;
pub mod stop;

pub use constrain::{Constrainer, Constraint, Grammar, Trigger};
pub use engine::{
    Engine, EngineConfig, EngineStats, Event, FinishReason, Request, SpecConfig, Usage,
};
pub use generate::{generate, GenStats, StopReason};
pub use sampler::{Pick, Sampler, SamplingParams};
pub use speculative::{
    generate_speculative, Adaptive, Drafter, ModelDrafter, NgramDrafter, SpecStats,
};

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
