//! The statistics: unbiased CKA between weight matrices over aligned
//! hidden dimensions with a shuffling null, the feed-forward neuron test
//! (neurons matched through gate and through up must agree), and the
//! tails and combinations that turn them into p-values.

use nalgebra::DMatrix;
use rand::seq::SliceRandom;
use rand::Rng;

/// A kernel over hidden dimensions (`n × n`, cosine similarities of each
/// dimension's weights, diagonal zeroed for the unbiased estimator), with
/// the row sums the estimator needs.
pub struct Kernel {
    k: DMatrix<f32>,
    sums: Vec<f64>,
    total: f64,
    self_hsic: f64,
}

impl Kernel {
    /// From `y`: one row per hidden dimension (its weights as features).
    /// Rows are scaled to unit length first, so the few dimensions every
    /// LLM gives huge weights do not decide the score alone.
    pub fn new(mut y: DMatrix<f32>) -> Kernel {
        for mut r in y.row_iter_mut() {
            let n = r.norm();
            if n > 0.0 {
                r /= n;
            }
        }
        let mut k = &y * y.transpose();
        k.fill_diagonal(0.0);
        let sums: Vec<f64> = k.row_iter().map(|r| r.sum() as f64).collect();
        let total = sums.iter().sum();
        let mut kern = Kernel {
            k,
            sums,
            total,
            self_hsic: 0.0,
        };
        kern.self_hsic = hsic(&kern, &kern, None);
        kern
    }

    pub fn n(&self) -> usize {
        self.k.nrows()
    }
}

/// The unbiased HSIC estimator (Song et al. 2012) of two kernels over the
/// same `n` examples, `l`'s examples reordered by `perm` where given.
fn hsic(k: &Kernel, l: &Kernel, perm: Option<&[usize]>) -> f64 {
    let n = k.n();
    if n < 4 {
        return 0.0;
    }
    let p = |i: usize| perm.map_or(i, |p| p[i]);
    let (mut trace, mut cross) = (0f64, 0f64);
    for i in 0..n {
        let pi = p(i);
        let (kr, mut row) = (k.k.row(i), 0f64);
        for j in 0..n {
            row += (kr[j] * l.k[(pi, p(j))]) as f64;
        }
        trace += row;
        cross += k.sums[i] * l.sums[pi];
    }
    let n = n as f64;
    (trace + k.total * l.total / ((n - 1.0) * (n - 2.0)) - 2.0 / (n - 2.0) * cross)
        / (n * (n - 3.0))
}

/// Unbiased CKA of two kernels over the same examples.
pub fn cka(k: &Kernel, l: &Kernel) -> f64 {
    cka_perm(k, l, None)
}

fn cka_perm(k: &Kernel, l: &Kernel, perm: Option<&[usize]>) -> f64 {
    let d = (k.self_hsic * l.self_hsic).sqrt();
    if d > 0.0 {
        hsic(k, l, perm) / d
    } else {
        0.0
    }
}

/// The mean CKA of a layer pair's roles (`(A's kernel, B's)` each, over
/// the same aligned dimensions) and its z-score against `rounds` shuffles
/// of B's dimensions — one shuffle for every role at once, so the null
/// carries the roles' correlation (a layer's Q and K kernels resemble each
/// other in both models) and the z-score is calibrated for the mean.
pub fn layer_z(pairs: &[(&Kernel, &Kernel)], rounds: usize, rng: &mut impl Rng) -> (f64, f64) {
    if pairs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = |perm: Option<&[usize]>| {
        pairs.iter().map(|(k, l)| cka_perm(k, l, perm)).sum::<f64>() / pairs.len() as f64
    };
    let obs = mean(None);
    let mut perm: Vec<usize> = (0..pairs[0].1.n()).collect();
    let null: Vec<f64> = (0..rounds)
        .map(|_| {
            perm.shuffle(rng);
            mean(Some(&perm))
        })
        .collect();
    let m = null.iter().sum::<f64>() / rounds as f64;
    let var = null.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (rounds as f64 - 1.0);
    (obs, (obs - m) / var.sqrt().max(1e-9))
}

/// log10 of Šidák's correction of a p-value (log10 `lp`) chosen as the
/// smallest of `n`: 1 − (1 − p)ⁿ.
pub fn log10_sidak(lp: f64, n: usize) -> f64 {
    let p = 10f64.powf(lp);
    if p < 1e-12 {
        return (lp + (n as f64).log10()).min(0.0);
    }
    (-(n as f64 * (-p).ln_1p()).exp_m1()).log10().min(0.0)
}

/// The feed-forward neuron test of one layer pair: `ga`, `ua` are A's
/// sampled neurons' gate and up rows, `gb`, `ub` all of B's (in A's
/// coordinates, one row per neuron). Each A neuron is matched to the B
/// neuron of largest |cosine| by its gate row and, separately, by its up
/// row; a derived layer's two matchings agree (its neurons were permuted
/// together), an independent one's only by chance. The chance is measured
/// on the same matchings — how often the gate match of one neuron equals
/// the up match of another — so neurons that win many matchings (hubs)
/// raise the null as they raise the count. The p-value is the randomized
/// one of the discrete count (P(X > k) + u·P(X = k), `u` = `coin`, uniform), exactly
/// uniform under the null, so Fisher's combination over layers holds.
/// Returns (agreements, neurons, log10 p).
pub fn neuron_test(
    ga: &DMatrix<f32>,
    ua: &DMatrix<f32>,
    gb: &DMatrix<f32>,
    ub: &DMatrix<f32>,
    coin: f64,
) -> (usize, usize, f64) {
    let best = |a: &DMatrix<f32>, b: &DMatrix<f32>| -> Vec<usize> {
        let norm = |m: &DMatrix<f32>| -> DMatrix<f32> {
            let mut m = m.clone();
            for mut r in m.row_iter_mut() {
                let n = r.norm();
                if n > 0.0 {
                    r /= n;
                }
            }
            m
        };
        let s = norm(a) * norm(b).transpose();
        s.row_iter()
            .map(|r| {
                let mut bi = 0;
                for j in 1..r.len() {
                    if r[j].abs() > r[bi].abs() {
                        bi = j;
                    }
                }
                bi
            })
            .collect()
    };
    let (g, u) = (best(ga, gb), best(ua, ub));
    let m = g.len();
    let agree = (0..m).filter(|&i| g[i] == u[i]).count();
    let mut counts: std::collections::HashMap<usize, (usize, usize)> = Default::default();
    for i in 0..m {
        counts.entry(g[i]).or_default().0 += 1;
        counts.entry(u[i]).or_default().1 += 1;
    }
    let same: usize = counts.values().map(|&(x, y)| x * y).sum::<usize>() - agree;
    let pairs = (m * m.saturating_sub(1)).max(1);
    let p0 = (same as f64 / pairs as f64).max(1.0 / gb.nrows().max(1) as f64);
    (agree, m, log10_binomial_randomized(m, agree, p0, coin))
}

/// log10 of P(X > k) + u·P(X = k) for X ~ Binomial(n, p).
pub fn log10_binomial_randomized(n: usize, k: usize, p: f64, u: f64) -> f64 {
    let ln10 = std::f64::consts::LN_10;
    let above = if k < n {
        log10_binomial_tail(n, k + 1, p) * ln10
    } else {
        f64::NEG_INFINITY
    };
    let at =
        ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln() + u.max(1e-300).ln();
    (log_sum_exp(&[above, at]) / ln10).min(0.0)
}

/// log10 P(X ≥ k) for X ~ Binomial(n, p).
pub fn log10_binomial_tail(n: usize, k: usize, p: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let terms: Vec<f64> = (k..=n)
        .map(|i| ln_choose(n, i) + i as f64 * lp + (n - i) as f64 * lq)
        .collect();
    (log_sum_exp(&terms) / std::f64::consts::LN_10).min(0.0)
}

fn ln_choose(n: usize, k: usize) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let s = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// log10 of the standard normal's upper tail at `z` (accurate far out,
/// where the p-values of a derived pair live).
pub fn log10_normal_tail(z: f64) -> f64 {
    let ln = if z < 5.0 {
        (0.5 * erfc(z / std::f64::consts::SQRT_2)).ln()
    } else {
        // Mills ratio: φ(z)/z · (1 − 1/z² + 3/z⁴).
        let z2 = z * z;
        -0.5 * z2 - z.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
            + (1.0 - 1.0 / z2 + 3.0 / (z2 * z2)).ln()
    };
    (ln / std::f64::consts::LN_10).min(0.0)
}

/// erfc (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7 relative).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Fisher's combination of independent p-values given as log10 p: log10
/// of P(χ²(2k) ≥ −2 Σ ln pᵢ), by the closed form for even degrees.
pub fn log10_fisher(log10_ps: &[f64]) -> f64 {
    let k = log10_ps.len();
    if k == 0 {
        return 0.0;
    }
    // x/2 = −Σ ln pᵢ; P = e^{−x/2} Σ_{i<k} (x/2)^i / i!.
    let h: f64 = -log10_ps.iter().sum::<f64>() * std::f64::consts::LN_10;
    let terms: Vec<f64> = (0..k)
        .map(|i| {
            let lh = if h > 0.0 { h.ln() } else { f64::NEG_INFINITY };
            if i == 0 {
                0.0
            } else {
                i as f64 * lh - ln_gamma(i as f64 + 1.0)
            }
        })
        .collect();
    ((-h + log_sum_exp(&terms)) / std::f64::consts::LN_10).min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tails_match_known_values() {
        // P(Z ≥ 1.96) = 0.025; P(Z ≥ 10) = 7.62e-24.
        assert!((log10_normal_tail(1.96) - 0.025f64.log10()).abs() < 1e-3);
        assert!((log10_normal_tail(10.0) - 7.6199e-24f64.log10()).abs() < 1e-3);
        // Binomial(10, 0.5) ≥ 8: 56/1024.
        assert!((log10_binomial_tail(10, 8, 0.5) - (56.0f64 / 1024.0).log10()).abs() < 1e-9);
        // Randomized: P(X > 7) + 0.5 P(X = 7) = 56/1024 + 0.5 · 120/1024.
        let r = log10_binomial_randomized(10, 7, 0.5, 0.5);
        assert!((r - (116.0f64 / 1024.0).log10()).abs() < 1e-9, "{r}");
        // Fisher of one p is p; of two 0.05s: 0.0175 (χ²₄ at 11.98).
        assert!((log10_fisher(&[-2.0]) + 2.0).abs() < 1e-9);
        let two = 10f64.powf(log10_fisher(&[0.05f64.log10(), 0.05f64.log10()]));
        assert!((two - 0.017_5).abs() < 2e-4, "{two}");
    }

    #[test]
    fn cka_of_a_copy_is_one_and_of_noise_near_zero() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut rand_mat = |r, c| DMatrix::from_fn(r, c, |_, _| rng.random_range(-1f32..1.0));
        let y = rand_mat(64, 200);
        let k = Kernel::new(y.clone());
        let l = Kernel::new(y * 3.0);
        assert!((cka(&k, &l) - 1.0).abs() < 1e-4);
        let z = Kernel::new(rand_mat(64, 200));
        assert!(cka(&k, &z).abs() < 0.1, "{}", cka(&k, &z));
    }
}
