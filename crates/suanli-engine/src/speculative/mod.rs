//! Speculative decoding: a cheap drafter proposes the next few tokens, the
//! target model checks them all in one forward pass — its weights read
//! once for every token that pass keeps, which is what lifts decode past
//! the memory-bandwidth wall.
//!
//! - [`ngram`]: prompt lookup (the continuation of the context's own latest
//!   n-gram that matches its tail), no second model;
//! - [`draft`]: a smaller model of the same vocabulary, decoding greedily.
//!
//! Verification keeps the target's output distribution: greedy keeps a
//! drafted token only where it is the target's argmax (the output is the
//! non-speculative one token for token, given the same logits — which the
//! batch-invariant numerics give, a pass of many tokens computing each
//! row's bits as a pass of one does); sampling keeps a drafted token `x`
//! with probability p(x) (the drafts are deterministic, q = δₓ) and on a
//! rejection draws from p with `x` removed — the standard scheme's
//! residual max(p − q, 0) for a one-hot q ([`verify_row`]).
//!
//! [`Adaptive`] picks each step's draft length from the measured
//! acceptance and pass times, and drafts nothing where that pays more.

pub mod draft;
pub mod ngram;

use std::time::{Duration, Instant};

use suanli_models::{ForwardCtx, KvCache, Logits, Model};

use crate::generate::{GenStats, StopReason};
use crate::sampler::{Pick, Sampler};
use crate::Result;

pub use draft::ModelDrafter;
pub use ngram::NgramDrafter;

/// Proposes tokens to follow a context.
pub trait Drafter {
    /// Up to `k` tokens to follow `context` (every token so far; the last
    /// one not yet through the target). With `k` 0, only reads the context.
    fn draft(&mut self, context: &[u32], k: usize) -> Result<Vec<u32>>;
    /// The target kept the first `n` tokens of the context: forget any
    /// state past them.
    fn rewind(&mut self, n: usize);
}

/// What speculation did over a generation.
#[derive(Debug, Clone, Default)]
pub struct SpecStats {
    /// Target passes that verified drafts, and all target passes after the
    /// prompt.
    pub verify_passes: usize,
    pub passes: usize,
    pub drafted: usize,
    pub accepted: usize,
    /// Time spent drafting.
    pub draft_time: Duration,
}

impl SpecStats {
    /// Accepted drafted tokens per drafted token.
    pub fn acceptance_rate(&self) -> f64 {
        self.accepted as f64 / self.drafted.max(1) as f64
    }

    /// Tokens each verifying pass produced: the accepted drafts and the
    /// target's own token after them.
    pub fn mean_accepted_length(&self) -> f64 {
        (self.accepted + self.verify_passes) as f64 / self.verify_passes.max(1) as f64
    }
}

/// The draft length each step, from what the last steps measured: the
/// acceptance rate α of drafted tokens (an exponential average), the time
/// of a one-token target pass, what each extra token adds to a pass, and
/// the drafter's time per token. Drafting `k` gives (1 − α^{k+1}) / (1 − α)
/// tokens a pass; the `k` with the most tokens per second wins, 0 (no
/// drafting) included. When 0 wins, a short draft is still tried after
/// [`PROBE`] steps so the estimate can recover, and after twice as many
/// each time that probe does not bring drafting back (up to
/// [`MAX_PROBE`]): on text that drafts never match, probing costs next
/// to nothing.
pub struct Adaptive {
    pub max: usize,
    alpha: f64,
    t_one: Option<f64>,
    t_extra: f64,
    t_draft: f64,
    idle: usize,
    /// Steps before the next probe.
    probe_after: usize,
}

/// Steps before the first probe while drafting does not pay.
pub const PROBE: usize = 16;
/// The most steps between probes.
pub const MAX_PROBE: usize = 256;

impl Adaptive {
    pub fn new(max: usize) -> Adaptive {
        Adaptive {
            max,
            alpha: 0.5,
            t_one: None,
            t_extra: 0.0,
            t_draft: 0.0,
            idle: 0,
            probe_after: PROBE,
        }
    }

    /// Tokens a second the target makes with drafts of `k`.
    fn rate(&self, k: usize, t_one: f64) -> f64 {
        let a = self.alpha.clamp(0.0, 0.999);
        let tokens = (1.0 - a.powi(k as i32 + 1)) / (1.0 - a);
        tokens / (t_one + k as f64 * (self.t_extra + self.t_draft))
    }

    /// This step's draft length.
    pub fn choose(&mut self) -> usize {
        let Some(t1) = self.t_one else {
            // No plain pass measured yet: measure one.
            return 0;
        };
        let best = (1..=self.max)
            .map(|k| (k, self.rate(k, t1)))
            .fold((0, 1.0 / t1), |b, c| if c.1 > b.1 * 1.02 { c } else { b });
        if best.0 == 0 {
            self.idle += 1;
            if self.idle >= self.probe_after {
                self.idle = 0;
                self.probe_after = (2 * self.probe_after).min(MAX_PROBE);
                return 2.min(self.max);
            }
        } else {
            self.idle = 0;
            self.probe_after = PROBE;
        }
        best.0
    }

    /// A target pass over `tokens` tokens took `secs`.
    pub fn pass(&mut self, tokens: usize, secs: f64) {
        const W: f64 = 0.2;
        match (tokens, self.t_one) {
            (1, None) => self.t_one = Some(secs),
            (1, Some(t)) => self.t_one = Some(t + W * (secs - t)),
            (n, Some(t)) if n > 1 => {
                let extra = ((secs - t) / (n - 1) as f64).max(0.0);
                self.t_extra += W * (extra - self.t_extra);
            }
            _ => {}
        }
    }

    /// A draft of `k` tokens took `secs`, and the target kept `kept`.
    pub fn drafted(&mut self, k: usize, kept: usize, secs: f64) {
        const W: f64 = 0.3;
        if k == 0 {
            return;
        }
        self.alpha += W * (kept as f64 / k as f64 - self.alpha);
        self.t_draft += W * (secs / k as f64 - self.t_draft);
    }
}

/// The verdict on one drafted token against the target's logits for its
/// position: `Ok(())` keeps it; `Err(t)` rejects it for the target's own
/// token `t`. Greedy keeps the argmax; sampling keeps `draft` with
/// probability p(draft) and otherwise draws from p without it.
pub fn verify_row(
    sampler: &mut Sampler,
    logits: &mut [f32],
    draft: u32,
) -> std::result::Result<(), u32> {
    match sampler.distribution(logits) {
        Pick::Token(t) if t == draft => Ok(()),
        Pick::Token(t) => Err(t),
        Pick::Weights(tokens, mut w) => {
            let total: f32 = w.iter().sum();
            let at = tokens.iter().position(|&t| t == draft);
            let p = at.map_or(0.0, |i| w[i] / total);
            if sampler.uniform() < p {
                return Ok(());
            }
            if let Some(i) = at {
                w[i] = 0.0;
            }
            if w.iter().all(|&x| x == 0.0) {
                // Only the draft had mass (p = 1 and the draw fell on the
                // boundary): it is the target's token after all.
                return Ok(());
            }
            Err(sampler.draw(&tokens, &w))
        }
    }
}

/// [`crate::generate`] with speculation: the same arguments, the tokens
/// whose K/V `kv` already holds before `prompt` (`history`, empty for a
/// fresh cache: drafters read the whole context, a chat's earlier turns
/// too), a drafter and its step controller.
#[allow(clippy::too_many_arguments)]
pub fn generate_speculative(
    model: &dyn Model,
    kv: &mut KvCache,
    history: &[u32],
    prompt: &[u32],
    sampler: &mut Sampler,
    max_tokens: usize,
    is_eog: &dyn Fn(u32) -> bool,
    on_token: &mut dyn FnMut(u32) -> bool,
    drafter: &mut dyn Drafter,
    control: &mut Adaptive,
) -> Result<(GenStats, SpecStats)> {
    crate::generate::check_prompt(prompt, kv)?;
    let vocab = model.config().n_vocab;
    let mut spec = SpecStats::default();
    sampler.accept(prompt);
    let t0 = Instant::now();
    let mut logits = model.forward(prompt, &mut ForwardCtx::new(kv, Logits::Last))?;
    let mut context = history.to_vec();
    context.extend_from_slice(prompt);
    // The drafter reads the context too (a draft model's prefill), counted
    // with the prompt rather than with the first draft.
    drafter.rewind(history.len());
    drafter.draft(&context, 0)?;
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();
    let mut pending = sampler.sample(&mut logits);
    let mut n = 0;
    // Emits `t`: Some(reason) when generation stops at it.
    let mut emit = |t: u32, n: &mut usize, context: &mut Vec<u32>, sampler: &mut Sampler| {
        if is_eog(t) {
            return Some(StopReason::Eog);
        }
        *n += 1;
        sampler.accept(&[t]);
        context.push(t);
        if !on_token(t) {
            return Some(StopReason::Callback);
        }
        (*n >= max_tokens).then_some(StopReason::Length)
    };
    let stop = 'gen: loop {
        if max_tokens == 0 {
            break StopReason::Length;
        }
        if let Some(r) = emit(pending, &mut n, &mut context, sampler) {
            break r;
        }
        let room = kv.capacity.saturating_sub(kv.len());
        if room == 0 {
            break StopReason::Context;
        }
        // Drafts beyond what may still be emitted, or beyond the cache,
        // would be work thrown away.
        let k = control.choose().min(max_tokens - n).min(room - 1);
        let td = Instant::now();
        let mut drafts = if k > 0 {
            drafter.draft(&context, k)?
        } else {
            Vec::new()
        };
        drafts.truncate(k);
        // A drafter's token the target does not have ends the draft.
        if let Some(i) = drafts.iter().position(|&t| t as usize >= vocab) {
            drafts.truncate(i);
        }
        let draft_secs = td.elapsed().as_secs_f64();
        spec.draft_time += td.elapsed();
        let mut batch = Vec::with_capacity(1 + drafts.len());
        batch.push(pending);
        batch.extend_from_slice(&drafts);
        let before = kv.len();
        let tp = Instant::now();
        let rows = if drafts.is_empty() {
            model.forward(&batch, &mut ForwardCtx::new(kv, Logits::Last))?
        } else {
            model.forward(&batch, &mut ForwardCtx::new(kv, Logits::All))?
        };
        control.pass(batch.len(), tp.elapsed().as_secs_f64());
        spec.passes += 1;
        let mut kept = 0;
        let mut next = None;
        for (i, &d) in drafts.iter().enumerate() {
            let row = &mut rows[i * vocab..(i + 1) * vocab].to_vec();
            match verify_row(sampler, row, d) {
                Ok(()) => {
                    kept += 1;
                    if let Some(r) = emit(d, &mut n, &mut context, sampler) {
                        break 'gen r;
                    }
                }
                Err(t) => {
                    next = Some(t);
                    break;
                }
            }
        }
        if !drafts.is_empty() {
            spec.verify_passes += 1;
            spec.drafted += drafts.len();
            spec.accepted += kept;
            control.drafted(drafts.len(), kept, draft_secs);
        }
        let next = match next {
            Some(t) => t,
            None => {
                let at = kept * vocab;
                let mut row = rows[at..at + vocab].to_vec();
                sampler.sample(&mut row)
            }
        };
        // The pass appended every drafted token; keep the pending one and
        // the drafts kept.
        kv.truncate(before + 1 + kept);
        drafter.rewind(context.len());
        pending = next;
    };
    Ok((
        GenStats {
            prompt_tokens: prompt.len(),
            prompt_time,
            gen_tokens: n,
            gen_time: t1.elapsed(),
            stop,
        },
        spec,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SamplingParams;

    /// Kept drafts and replacements together follow the target's
    /// distribution, whatever is drafted (chi-square over 40,000 draws).
    #[test]
    fn verification_preserves_the_distribution() {
        let logits = [1.0f32, 0.5, 0.0, -0.5, 2.0, -1.0];
        let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        let p: Vec<f64> = logits.iter().map(|&l| (l as f64).exp() / z).collect();
        for draft in [0u32, 4, 5] {
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed: 7 + draft as u64,
                ..SamplingParams::default()
            });
            let n = 40_000;
            let mut counts = [0usize; 6];
            for _ in 0..n {
                let mut row = logits.to_vec();
                let t = match verify_row(&mut s, &mut row, draft) {
                    Ok(()) => draft,
                    Err(t) => t,
                };
                counts[t as usize] += 1;
            }
            let chi2: f64 = (0..6)
                .map(|i| {
                    let e = n as f64 * p[i];
                    (counts[i] as f64 - e).powi(2) / e
                })
                .sum();
            // χ²(5) at p = 0.001 is 20.5.
            assert!(
                chi2 < 20.5,
                "draft {draft}: counts {counts:?}, χ² {chi2:.1}"
            );
        }
    }

    #[test]
    fn greedy_keeps_only_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        let mut row = vec![0.0f32, 3.0, 1.0];
        assert_eq!(verify_row(&mut s, &mut row.clone(), 1), Ok(()));
        assert_eq!(verify_row(&mut s, &mut row, 2), Err(1));
    }

    #[test]
    fn the_controller_stops_drafting_when_it_does_not_pay() {
        let mut c = Adaptive::new(8);
        assert_eq!(c.choose(), 0, "a plain pass is measured first");
        c.pass(1, 0.030);
        // Nothing kept, and each drafted token costs as much as a pass.
        for _ in 0..20 {
            c.drafted(4, 0, 0.120);
            c.pass(5, 0.034);
        }
        let ks: Vec<usize> = (0..PROBE).map(|_| c.choose()).collect();
        assert_eq!(
            ks.iter().filter(|&&k| k > 0).count(),
            1,
            "{ks:?}: one probe"
        );
        // The probe failed too: the next one only after twice as long.
        c.drafted(2, 0, 0.060);
        let ks: Vec<usize> = (0..2 * PROBE).map(|_| c.choose()).collect();
        assert_eq!(
            ks.iter().position(|&k| k > 0),
            Some(2 * PROBE - 1),
            "{ks:?}"
        );
        // Most drafts kept, drafting cheap: long drafts.
        for _ in 0..20 {
            c.drafted(6, 6, 0.0001);
            c.pass(7, 0.036);
        }
        assert!(c.choose() >= 6);
    }
}
