//! Log-probabilities from logits, as the OpenAI API reports them: the
//! chosen token's log-softmax and the most likely alternatives.

#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// The `top` most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// `log softmax(logits)[token]` and the `top` best tokens, computed in f64.
pub fn token_logprob(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let lp = |i: usize| (logits[i] as f64 - lse) as f32;
    let mut best: Vec<(u32, f32)> = Vec::new();
    if top > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let k = top.min(idx.len());
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, |&a, &b| {
                logits[b as usize]
                    .total_cmp(&logits[a as usize])
                    .then(a.cmp(&b))
            });
            idx.truncate(k);
        }
        idx.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        best = idx.into_iter().map(|i| (i, lp(i as usize))).collect();
    }
    TokenLogprob {
        token,
        logprob: logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |_| lp(token as usize)),
        top: best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_softmax() {
        let l = [1.0f32, 3.0, 2.0, -1.0];
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        let t = token_logprob(&l, 2, 2);
        assert!((t.logprob as f64 - (2f64.exp() / z).ln()).abs() < 1e-6);
        assert_eq!(t.top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((t.top[0].1 as f64 - (3f64.exp() / z).ln()).abs() < 1e-6);
        let p: f64 = (0..4)
            .map(|i| (token_logprob(&l, i, 0).logprob as f64).exp())
            .sum();
        assert!((p - 1.0).abs() < 1e-6);
        assert_eq!(token_logprob(&l, 9, 0).logprob, f32::NEG_INFINITY);
    }
}
