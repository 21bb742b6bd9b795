//! The single-sequence generation loop.

use std::time::{Duration, Instant};

use suanli_models::{ForwardCtx, KvCache, Logits, Model};

use crate::sampler::Sampler;
use crate::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token.
    Eog,
    /// `max_tokens` reached.
    Length,
    /// The callback asked to stop (a stop string, a closed connection).
    Callback,
    /// The KV cache is full.
    Context,
}

#[derive(Debug, Clone)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub gen_tokens: usize,
    pub gen_time: Duration,
    pub stop: StopReason,
}

impl GenStats {
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }
    pub fn gen_tps(&self) -> f64 {
        // The first token comes out of the prompt pass; rate the decode steps.
        (self.gen_tokens.saturating_sub(1)) as f64 / self.gen_time.as_secs_f64().max(1e-9)
    }
}

/// Run `prompt` through `model` and sample up to `max_tokens` tokens, calling
/// `on_token(id)` for each; it returns false to stop. End-of-generation
/// tokens (`is_eog`) stop without being passed on.
pub fn generate(
    model: &dyn Model,
    kv: &mut KvCache,
    prompt: &[u32],
    sampler: &mut Sampler,
    max_tokens: usize,
    is_eog: &dyn Fn(u32) -> bool,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<GenStats> {
    check_prompt(prompt, kv)?;
    sampler.accept(prompt);
    let t0 = Instant::now();
    let mut logits = model.forward(prompt, &mut ForwardCtx::new(kv, Logits::Last))?;
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();
    let mut n = 0;
    let stop = loop {
        if n >= max_tokens {
            break StopReason::Length;
        }
        let tok = sampler.sample(&mut logits);
        if is_eog(tok) {
            break StopReason::Eog;
        }
        n += 1;
        sampler.accept(&[tok]);
        if !on_token(tok) {
            break StopReason::Callback;
        }
        if n >= max_tokens {
            break StopReason::Length;
        }
        if kv.len() >= kv.capacity {
            break StopReason::Context;
        }
        logits = model.forward(&[tok], &mut ForwardCtx::new(kv, Logits::Last))?;
    };
    Ok(GenStats {
        prompt_tokens: prompt.len(),
        prompt_time,
        gen_tokens: n,
        gen_time: t1.elapsed(),
        stop,
    })
}

/// A prompt the cache can take with room for one generated token, or the
/// error naming by how much it is over.
pub(crate) fn check_prompt(prompt: &[u32], kv: &KvCache) -> Result<()> {
    if prompt.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    let free = kv.capacity - kv.len();
    if prompt.len() >= free {
        return Err(EngineError::PromptTooLong {
            prompt: prompt.len(),
            ctx: kv.capacity,
            over: prompt.len() + 1 - free,
        });
    }
    Ok(())
}
