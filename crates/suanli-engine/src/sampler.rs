//! Token sampling, in llama.cpp's default order: penalties, top-k, top-p,
//! min-p, temperature, then a seeded draw. Temperature 0 is greedy.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables; divides positive logits, multiplies negative ones.
    pub repeat_penalty: f32,
    /// Tokens looked back for penalties (0: none, usize::MAX: all).
    pub repeat_last_n: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    /// Whether a penalty reads the tokens generated so far.
    pub fn penalized(&self) -> bool {
        (self.repeat_penalty != 1.0 && self.repeat_last_n > 0)
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: StdRng,
    /// Tokens seen so far (prompt and output), for penalties.
    history: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Sampler {
            rng: StdRng::seed_from_u64(params.seed),
            params,
            history: Vec::new(),
        }
    }

    /// Record tokens that count for penalties (prompt tokens, accepted outputs).
    pub fn accept(&mut self, tokens: &[u32]) {
        self.history.extend_from_slice(tokens);
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        if p.repeat_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0 {
            return;
        }
        let n = p.repeat_last_n.min(self.history.len());
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in &self.history[self.history.len() - n..] {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &c) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if *l <= 0.0 {
                *l *= p.repeat_penalty;
            } else {
                *l /= p.repeat_penalty;
            }
            *l -= c as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }

    /// Pick the next token from `logits` (consumed as scratch).
    ///
    /// Candidates are ordered by logit (descending, then id) only as far as
    /// a truncation needs: top-k selects its k, top-p sorts a growing head
    /// of the list until it holds the mass; with no truncation at all the
    /// draw walks the vocabulary in id order (the same distribution without
    /// sorting 150k entries per token).
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        match self.distribution(logits) {
            Pick::Token(t) => t,
            Pick::Weights(cand, e) => self.draw(&cand, &e),
        }
    }

    /// The token a greedy sampler takes, or the candidates and their
    /// unnormalized weights a drawing one draws from (penalties, top-k,
    /// top-p, min-p and temperature applied): what [`Sampler::sample`]
    /// draws from, for speculative decoding's acceptance test.
    pub fn distribution(&mut self, logits: &mut [f32]) -> Pick {
        self.apply_penalties(logits);
        let p = self.params.clone();
        if p.temperature <= 0.0 {
            return Pick::Token(argmax(logits));
        }
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        // Tokens at −∞ (masked by a grammar) are never candidates.
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, &l)| l != f32::NEG_INFINITY)
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if cand.is_empty() {
            return Pick::Token(argmax(logits));
        }
        // `sorted`: the first `sorted` candidates are in order and are the
        // best ones.
        let mut sorted = 0;
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            cand.truncate(p.top_k);
            cand.sort_by(by_logit);
            sorted = cand.len();
        }
        let max = cand.iter().fold(f32::NEG_INFINITY, |a, c| a.max(c.1));
        if p.top_p < 1.0 {
            let z: f64 = cand.iter().map(|c| ((c.1 - max) as f64).exp()).sum();
            let mut head = 64.min(cand.len());
            loop {
                if sorted < head {
                    if head < cand.len() {
                        cand.select_nth_unstable_by(head - 1, by_logit);
                    }
                    cand[..head].sort_by(by_logit);
                    sorted = head;
                }
                let mut cum = 0.0;
                let keep = cand[..head].iter().position(|c| {
                    cum += ((c.1 - max) as f64).exp() / z;
                    cum >= p.top_p as f64
                });
                match keep {
                    Some(k) => {
                        cand.truncate(k + 1);
                        break;
                    }
                    None if head == cand.len() => break,
                    None => head = (head * 4).min(cand.len()),
                }
            }
        }
        if p.min_p > 0.0 {
            let threshold = max + p.min_p.ln();
            cand.retain(|c| c.1 >= threshold);
            sorted = sorted.min(cand.len());
        }
        if sorted > 0 && sorted < cand.len() {
            cand.sort_by(by_logit);
        }
        let inv_t = 1.0 / p.temperature;
        let m = max * inv_t;
        let e: Vec<f32> = cand.iter().map(|c| (c.1 * inv_t - m).exp()).collect();
        Pick::Weights(cand.into_iter().map(|c| c.0).collect(), e)
    }

    /// One draw from `tokens` by `weights` (unnormalized), taking one
    /// number from the sampler's generator.
    pub fn draw(&mut self, tokens: &[u32], weights: &[f32]) -> u32 {
        let total: f32 = weights.iter().sum();
        let r: f32 = self.rng.random::<f32>() * total;
        let mut cum = 0.0;
        for (&t, q) in tokens.iter().zip(weights) {
            cum += q;
            if r < cum {
                return t;
            }
        }
        tokens[tokens.len() - 1]
    }

    /// A uniform number in [0, 1) from the sampler's generator.
    pub fn uniform(&mut self) -> f32 {
        self.rng.random::<f32>()
    }
}

/// What [`Sampler::distribution`] leaves to pick from.
#[derive(Debug, Clone)]
pub enum Pick {
    /// Greedy: this token.
    Token(u32),
    /// Candidates and their unnormalized weights.
    Weights(Vec<u32>, Vec<f32>),
}

/// Index of the largest value (first on ties).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}
