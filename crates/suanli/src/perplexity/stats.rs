//! What llama-perplexity reports from the per-token numbers: perplexity
//! with its uncertainty, and against a base model the ratio and difference
//! of perplexities, the KL divergence's mean, uncertainty and percentiles,
//! the spread of the token's probability, and how often the top token
//! agrees. Every formula is `perplexity.cpp`'s (`perplexity`,
//! `kl_divergence`, `mean_and_uncertainty`, `covariance`, `percentile`).

use super::rows::KldRow;

/// Running sums of the scored tokens' negative log-likelihoods.
#[derive(Clone, Copy, Debug, Default)]
pub struct PplStats {
    pub nll: f64,
    pub nll2: f64,
    pub count: usize,
}

impl PplStats {
    pub fn push(&mut self, v: f64) {
        self.nll += v;
        self.nll2 += v * v;
        self.count += 1;
    }

    /// exp of the mean negative log-likelihood (NaN before any token).
    pub fn ppl(&self) -> f64 {
        (self.nll / self.count as f64).exp()
    }

    /// The perplexity and its uncertainty: the standard error of the mean
    /// log-likelihood carried through exp (`Final estimate: PPL = X +/- Y`);
    /// no uncertainty where the variance comes out non-positive (llama.cpp
    /// then reports an error instead).
    pub fn estimate(&self) -> (f64, Option<f64>) {
        let n = self.count as f64;
        let mean = self.nll / n;
        let ppl = mean.exp();
        let var = self.nll2 / n - mean * mean;
        match var > 0.0 && self.count > 1 {
            true => (ppl, Some((var / (n - 1.0)).sqrt() * ppl)),
            false => (ppl, None),
        }
    }
}

/// A mean and its standard error, as llama.cpp's `mean_and_uncertainty`:
/// no error for ten values or fewer.
pub fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    let df = match df > 0.0 && count > 10 {
        true => (df / (n - 1.0)).sqrt(),
        false => 0.0,
    };
    (f, df)
}

/// The covariance of two means (llama.cpp's `covariance`; 0 under ten
/// values).
fn covariance(suma: f64, sumb: f64, sumab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sumab / n - (suma / n) * (sumb / n)) / (n - 1.0)
}

/// The value at `fraction` of sorted `values`, interpolated between
/// neighbours in f32 as llama.cpp's `percentile`.
pub fn percentile(values: &[f32], fraction: f32) -> f32 {
    let (Some(&lo), Some(&hi)) = (values.first(), values.last()) else {
        return f32::NAN;
    };
    if fraction <= 0.0 {
        return lo;
    }
    if fraction >= 1.0 {
        return hi;
    }
    let p = fraction * (values.len() - 1) as f32;
    let ip = p as usize;
    let p = p - ip as f32;
    (1.0 - p) * values[ip] + p * values[(ip + 1).min(values.len() - 1)]
}

/// The middle of sorted `values` (the mean of the two middle ones for an
/// even count).
pub fn median(values: &[f32]) -> f32 {
    let n = values.len();
    match n {
        0 => f32::NAN,
        _ if n.is_multiple_of(2) => 0.5 * (values[n / 2] + values[n / 2 - 1]),
        _ => values[n / 2],
    }
}

/// Running sums of a model's tokens against a base model's, and every
/// token's KL divergence and probability difference (for the percentiles).
#[derive(Clone, Debug, Default)]
pub struct KldStats {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    max_p_diff: f32,
    same_top: usize,
    count: usize,
    kld: Vec<f32>,
    p_diff: Vec<f32>,
}

/// A value and its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Est {
    pub value: f64,
    pub uncertainty: f64,
}

impl Est {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"value": self.value, "uncertainty": self.uncertainty})
    }
}

fn est((value, uncertainty): (f64, f64)) -> Est {
    Est { value, uncertainty }
}

/// The running line llama-perplexity prints after each chunk.
#[derive(Clone, Copy, Debug)]
pub struct KldLine {
    pub ppl: Est,
    /// ln(PPL(model) / PPL(base)).
    pub ln_ppl_ratio: Est,
    pub kld: Est,
    /// Root mean square of the token's probability difference (a fraction).
    pub p_diff_rms: Est,
    /// Fraction of tokens whose top token agrees.
    pub same_top: Est,
}

/// Sorted values at the points llama-perplexity prints: the maximum, 99.9,
/// 99, 95, 90, (75,) median, (25,) 10, 5, 1, 0.1 percent and the minimum.
#[derive(Clone, Debug)]
pub struct Spread {
    pub points: Vec<(String, f32)>,
}

impl Spread {
    pub fn json(&self) -> serde_json::Value {
        let m: serde_json::Map<String, serde_json::Value> = self
            .points
            .iter()
            .map(|(k, v)| (k.trim().to_string(), serde_json::json!(v)))
            .collect();
        serde_json::Value::Object(m)
    }

    fn of(sorted: &[f32], quartiles: bool) -> Spread {
        let mut points = vec![(
            "Maximum".to_string(),
            sorted.last().copied().unwrap_or(f32::NAN),
        )];
        let mut at = |name: &str, f: f32| points.push((name.into(), percentile(sorted, f)));
        for (name, f) in [
            ("99.9%", 0.999),
            ("99.0%", 0.990),
            ("95.0%", 0.950),
            ("90.0%", 0.900),
        ] {
            at(name, f);
        }
        if quartiles {
            at("75.0%", 0.750);
        }
        points.push(("Median".into(), median(sorted)));
        if quartiles {
            points.push(("25.0%".into(), percentile(sorted, 0.250)));
        }
        for (name, f) in [
            ("10.0%", 0.100),
            (" 5.0%", 0.050),
            (" 1.0%", 0.010),
            (" 0.1%", 0.001),
        ] {
            points.push((name.into(), percentile(sorted, f)));
        }
        points.push((
            "Minimum".into(),
            sorted.first().copied().unwrap_or(f32::NAN),
        ));
        Spread { points }
    }
}

/// Everything llama-perplexity prints at the end of a KL-divergence run.
#[derive(Clone, Debug)]
pub struct KldSummary {
    pub tokens: usize,
    pub ppl: Est,
    pub ppl_base: Est,
    /// Correlation of the two mean log-likelihoods.
    pub ln_ppl_correlation: f64,
    pub ln_ppl_ratio: Est,
    pub ppl_ratio: Est,
    pub ppl_diff: Est,
    pub kld: Est,
    pub kld_spread: Spread,
    pub p_diff: Est,
    pub p_diff_spread: Spread,
    pub p_diff_rms: Est,
    pub same_top: Est,
}

impl KldSummary {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "tokens": self.tokens,
            "ppl": self.ppl.json(),
            "ppl_base": self.ppl_base.json(),
            "ln_ppl_correlation": self.ln_ppl_correlation,
            "ln_ppl_ratio": self.ln_ppl_ratio.json(),
            "ppl_ratio": self.ppl_ratio.json(),
            "ppl_diff": self.ppl_diff.json(),
            "kld": self.kld.json(),
            "kld_percentiles": self.kld_spread.json(),
            "p_diff": self.p_diff.json(),
            "p_diff_percentiles": self.p_diff_spread.json(),
            "p_diff_rms": self.p_diff_rms.json(),
            "same_top": self.same_top.json(),
        })
    }
}

impl KldStats {
    pub fn push(&mut self, r: &KldRow) {
        let (nll, base) = (r.nll as f64, r.nll_base as f64);
        self.sum_nll += nll;
        self.sum_nll2 += nll * nll;
        self.sum_nll_base += base;
        self.sum_nll_base2 += base * base;
        self.sum_nll_nll_base += nll * base;
        self.sum_kld += r.kld;
        self.sum_kld2 += r.kld * r.kld;
        let d = r.p_diff as f64;
        self.sum_p_diff += d;
        self.sum_p_diff2 += d * d;
        self.sum_p_diff4 += d * d * d * d;
        self.max_p_diff = self.max_p_diff.max(r.p_diff.abs());
        self.same_top += r.same_top as usize;
        self.count += 1;
        self.kld.push(r.kld as f32);
        self.p_diff.push(r.p_diff);
    }

    pub fn count(&self) -> usize {
        self.count
    }

    fn ln_ppl(&self) -> (f64, f64) {
        mean_and_uncertainty(self.sum_nll, self.sum_nll2, self.count)
    }

    fn ln_ppl_base(&self) -> (f64, f64) {
        mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, self.count)
    }

    fn ln_ratio(&self) -> (f64, f64, f64) {
        let (a, b) = (self.ln_ppl(), self.ln_ppl_base());
        let cov = covariance(
            self.sum_nll,
            self.sum_nll_base,
            self.sum_nll_nll_base,
            self.count,
        );
        let unc = (a.1 * a.1 + b.1 * b.1 - 2.0 * cov).sqrt();
        (a.0 - b.0, unc, cov)
    }

    fn p_diff_rms(&self) -> Est {
        let mse = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, self.count);
        let rms = mse.0.sqrt();
        est((rms, 0.5 / rms * mse.1))
    }

    fn same_top(&self) -> Est {
        let p = self.same_top as f64 / self.count as f64;
        est((p, (p * (1.0 - p) / (self.count as f64 - 1.0)).sqrt()))
    }

    /// The line printed after each chunk.
    pub fn line(&self) -> KldLine {
        let l = self.ln_ppl();
        let ppl = l.0.exp();
        let (ratio, ratio_unc, _) = self.ln_ratio();
        KldLine {
            ppl: est((ppl, ppl * l.1)),
            ln_ppl_ratio: est((ratio, ratio_unc)),
            kld: est(mean_and_uncertainty(
                self.sum_kld,
                self.sum_kld2,
                self.count,
            )),
            p_diff_rms: self.p_diff_rms(),
            same_top: self.same_top(),
        }
    }

    /// The closing statistics; `None` under 100 tokens (llama-perplexity
    /// prints none on so few).
    pub fn summary(&self) -> Option<KldSummary> {
        if self.count < 100 {
            return None;
        }
        let (l, lb) = (self.ln_ppl(), self.ln_ppl_base());
        let (ppl, ppl_base) = (l.0.exp(), lb.0.exp());
        let (ppl_unc, ppl_base_unc) = (ppl * l.1, ppl_base * lb.1);
        let (ratio, ratio_unc, cov) = self.ln_ratio();
        let ppl_cov = ppl * ppl_base * cov;
        let mut kld = self.kld.clone();
        kld.sort_by(f32::total_cmp);
        let mut p_diff = self.p_diff.clone();
        p_diff.sort_by(f32::total_cmp);
        Some(KldSummary {
            tokens: self.count,
            ppl: est((ppl, ppl_unc)),
            ppl_base: est((ppl_base, ppl_base_unc)),
            ln_ppl_correlation: cov / (l.1 * lb.1),
            ln_ppl_ratio: est((ratio, ratio_unc)),
            ppl_ratio: est((ratio.exp(), ratio.exp() * ratio_unc)),
            ppl_diff: est((
                ppl - ppl_base,
                (ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl_cov).sqrt(),
            )),
            kld: est(mean_and_uncertainty(
                self.sum_kld,
                self.sum_kld2,
                self.count,
            )),
            kld_spread: Spread::of(&kld, false),
            p_diff: est(mean_and_uncertainty(
                self.sum_p_diff,
                self.sum_p_diff2,
                self.count,
            )),
            p_diff_spread: Spread::of(&p_diff, true),
            p_diff_rms: self.p_diff_rms(),
            same_top: self.same_top(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_as_llama_cpp() {
        let v: Vec<f32> = (0..11).map(|i| i as f32).collect();
        assert_eq!(percentile(&v, 0.5), 5.0);
        assert_eq!(percentile(&v, 0.95), 9.5);
        assert_eq!(percentile(&v, 0.0), 0.0);
        assert_eq!(percentile(&v, 1.0), 10.0);
        assert_eq!(median(&v[..4]), 1.5);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn estimate_is_the_standard_error_through_exp() {
        let mut s = PplStats::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            s.push(v);
        }
        let (ppl, unc) = s.estimate();
        assert!((ppl - 2.5f64.exp()).abs() < 1e-12);
        // Population variance 1.25, over n − 1 = 3.
        let want = (1.25f64 / 3.0).sqrt() * ppl;
        assert!((unc.unwrap_or(0.0) - want).abs() < 1e-12);
    }

    #[test]
    fn a_model_against_itself_agrees_everywhere() {
        let mut s = KldStats::default();
        for i in 0..200 {
            s.push(&KldRow {
                nll: 1.0 + (i % 7) as f32,
                nll_base: 1.0 + (i % 7) as f32,
                kld: 0.0,
                p_diff: 0.0,
                same_top: true,
            });
        }
        let Some(sum) = s.summary() else {
            panic!("200 tokens make a summary")
        };
        assert_eq!(sum.same_top.value, 1.0);
        assert_eq!(sum.kld.value, 0.0);
        assert!(sum.ln_ppl_ratio.value.abs() < 1e-12);
        assert!((sum.ln_ppl_correlation - 1.0).abs() < 1e-9);
    }
}
