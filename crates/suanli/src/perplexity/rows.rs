//! The per-row math of llama-perplexity (`tools/perplexity/perplexity.cpp`):
//! one row of logits at a time, its log-softmax at the token that came next,
//! its log-probabilities quantized to 16 bits for a base file, and its KL
//! divergence from a base model's quantized row.
//!
//! As there: the softmax is shifted by the row's maximum and its sum taken
//! in f64; a token's negative log-likelihood is `max + ln Σ − logit`. The
//! exponentials are a vector `expf` of about 1.5 ulp
//! ([`suanli_kernels::ops::expf_poly`]) summed in 16 f64 lanes — the sums
//! differ from libm's in the last bits, far below the four digits a
//! perplexity is quoted to.

use std::sync::Mutex;

use suanli_kernels::dispatch::{level, Level};
use suanli_kernels::ops::expf_poly;
use suanli_kernels::pool;

/// u16 entries of one row of a base file: the row's scale and least
/// log-probability (two f32s), then one entry per token, padded to an even
/// count (llama.cpp's `nv`).
pub fn row_len(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// Log-probabilities more than this far below a row's top are stored as
/// the floor (llama.cpp's window for its 16-bit rows).
const WINDOW: f32 = 16.0;

/// The same code at each SIMD level: `$body` is compiled once with AVX-512,
/// once with AVX2 + FMA, once plain, and the CPU's level picks (the
/// kernels' `multiversion!`; `expf_poly`'s FMAs are a libm call without it,
/// so the plain build takes libm's `expf` instead).
macro_rules! simd {
    ($(#[$m:meta])* $vis:vis fn $name:ident ($($a:ident: $t:ty),* $(,)?) -> $r:ty, |$exp:ident| $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) -> $r {
            #[inline(always)]
            fn body<E: Fn(f32) -> f32 + Copy>($exp: E, $($a: $t),*) -> $r $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn v512($($a: $t),*) -> $r { body(expf_poly, $($a),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v256($($a: $t),*) -> $r { body(expf_poly, $($a),*) }
                match level() {
                    // SAFETY: the CPU has the features of its level.
                    Level::Avx512 => return unsafe { v512($($a),*) },
                    // SAFETY: as above.
                    Level::Avx2 => return unsafe { v256($($a),*) },
                    _ => {}
                }
            }
            body(f32::exp, $($a),*)
        }
    };
}

/// Lanes the sums run in (a zmm of f32s).
const LANES: usize = 16;

simd! {
/// The largest value of `x` and Σ exp(xᵢ − max) in f64.
fn max_sum_exp(x: &[f32]) -> (f32, f64), |exp| {
    let mut m = [f32::NEG_INFINITY; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for j in 0..LANES {
            m[j] = if c[j] > m[j] { c[j] } else { m[j] };
        }
    }
    let mut max = m.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    for &v in it.remainder() {
        max = if v > max { v } else { max };
    }
    let mut acc = [0f64; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for j in 0..LANES {
            acc[j] += exp(c[j] - max) as f64;
        }
    }
    let mut sum = acc.iter().sum::<f64>();
    for &v in it.remainder() {
        sum += (v - max).exp() as f64;
    }
    (max, sum)
}
}

simd! {
/// The least value of `x`.
fn min_of(x: &[f32]) -> f32, |_exp| {
    let mut m = [f32::INFINITY; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for j in 0..LANES {
            m[j] = if c[j] < m[j] { c[j] } else { m[j] };
        }
    }
    let mut min = m.iter().fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
    for &v in it.remainder() {
        min = if v < min { v } else { min };
    }
    min
}
}

simd! {
/// `q[i] = round((x[i] − lo) / scale)` where `x[i] > lo`, else 0 (llama.cpp's
/// `nearest_int`: ties to even).
fn quantize(x: &[f32], lo: f32, inv_scale: f32, q: &mut [u16]) -> (), |_exp| {
    for (q, &v) in q.iter_mut().zip(x) {
        *q = if v > lo {
            (inv_scale * (v - lo)).round_ties_even() as u16
        } else {
            0
        };
    }
}
}

simd! {
/// Σ over the base row's tokens within [`WINDOW`] of its top of
/// `p·(ln p − ln q)`: `p` the base's probability from its 16-bit entry,
/// `ln q = x − shift` the model's log-probability.
fn kld_sum(q: &[u16], x: &[f32], scale: f32, floor: f32, shift: f32) -> f64, |exp| {
    let mut acc = [0f64; LANES];
    let mut qi = q.chunks_exact(LANES);
    let mut xi = x.chunks_exact(LANES);
    for (qc, xc) in (&mut qi).zip(&mut xi) {
        for j in 0..LANES {
            let lp = scale * qc[j] as f32 + floor;
            let t = exp(lp) * (lp - xc[j] + shift);
            acc[j] += if lp > -WINDOW { t as f64 } else { 0.0 };
        }
    }
    let mut sum = acc.iter().sum::<f64>();
    for (&q, &x) in qi.remainder().iter().zip(xi.remainder()) {
        let lp = scale * q as f32 + floor;
        if lp > -WINDOW {
            sum += (lp.exp() * (lp - x + shift)) as f64;
        }
    }
    sum
}
}

/// The index of the first entry equal to `max` (the first largest, given
/// the largest).
fn first_at<T: PartialEq + Copy>(x: &[T], max: T) -> usize {
    x.iter().position(|&v| v == max).unwrap_or(0)
}

/// Negative log-likelihood of `tok` under the softmax of `logits`.
pub fn nll(logits: &[f32], tok: u32) -> f64 {
    let (max, sum) = max_sum_exp(logits);
    -((logits[tok as usize] - max) as f64 - sum.ln())
}

/// [`nll`], and the row's log-probabilities in a base file's 16 bits into
/// `out` ([`row_len`] entries): `ln p = scale·q + floor`, with `scale` and
/// `floor` in the first four entries and everything more than [`WINDOW`]
/// below the top at the floor.
pub fn nll_quantized(logits: &[f32], tok: u32, out: &mut [u16]) -> f64 {
    let (max, sum) = max_sum_exp(logits);
    let lo = min_of(logits).max(max - WINDOW);
    let lse = sum.ln() as f32;
    let floor = lo - max - lse;
    let scale = (max - lo) / 65535.0;
    let (head, q) = out.split_at_mut(4);
    for (pair, v) in head.chunks_exact_mut(2).zip([scale, floor]) {
        let b = v.to_bits();
        pair[0] = b as u16;
        pair[1] = (b >> 16) as u16;
    }
    let (q, pad) = q.split_at_mut(logits.len());
    if scale != 0.0 {
        quantize(logits, lo, 1.0 / scale, q);
    } else {
        q.fill(0);
    }
    pad.fill(0);
    -((logits[tok as usize] - max) as f64 - sum.ln())
}

/// One token against the base model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KldRow {
    /// The model's negative log-likelihood of the token.
    pub nll: f32,
    /// The base's, from its 16-bit row.
    pub nll_base: f32,
    /// KL(base ‖ model) over the base's tokens within [`WINDOW`] of its top.
    pub kld: f64,
    /// The token's probability under the model less under the base.
    pub p_diff: f32,
    /// Whether both put the same token on top.
    pub same_top: bool,
}

/// The base row's scale and floor (its first four entries).
fn header(base: &[u16]) -> (f32, f32) {
    let f = |i: usize| f32::from_bits(base[i] as u32 | (base[i + 1] as u32) << 16);
    (f(0), f(2))
}

/// `logits` (the model's row) against `base` (the base's row, [`row_len`]
/// entries) at token `tok`, as llama.cpp's KL-divergence `log_softmax`.
pub fn kld(logits: &[f32], base: &[u16], tok: u32) -> KldRow {
    let (max, sum) = max_sum_exp(logits);
    let lse = sum.ln() as f32;
    let (scale, floor) = header(base);
    let q = &base[4..4 + logits.len()];
    let t = tok as usize;
    let nll = max + lse - logits[t];
    let nll_base = -(scale * q[t] as f32 + floor);
    let kld = kld_sum(q, logits, scale, floor, max + lse);
    KldRow {
        nll,
        nll_base,
        kld,
        p_diff: (-nll).exp() - (-nll_base).exp(),
        same_top: first_at(logits, max) == first_at(q, q.iter().copied().max().unwrap_or(0)),
    }
}

/// `f(i)` for `i` in `0..n` across the kernels' thread pool, in order.
fn par_map<T: Send + Default>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let out: Vec<Mutex<T>> = (0..n).map(|_| Mutex::new(T::default())).collect();
    pool::for_each(n, |i| {
        let v = f(i);
        if let Ok(mut slot) = out[i].lock() {
            *slot = v;
        }
    });
    out.into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// [`nll`] of each row of `logits` (`n_vocab` wide) at its target, rows in
/// parallel.
pub fn nll_rows(logits: &[f32], n_vocab: usize, targets: &[u32]) -> Vec<f64> {
    par_map(targets.len(), |i| {
        nll(&logits[i * n_vocab..(i + 1) * n_vocab], targets[i])
    })
}

/// [`nll_quantized`] of each row, into consecutive rows of `out`
/// ([`row_len`] each).
pub fn nll_quantized_rows(
    logits: &[f32],
    n_vocab: usize,
    targets: &[u32],
    out: &mut [u16],
) -> Vec<f64> {
    let rows: Vec<Mutex<&mut [u16]>> = out.chunks_mut(row_len(n_vocab)).map(Mutex::new).collect();
    par_map(targets.len(), |i| {
        let x = &logits[i * n_vocab..(i + 1) * n_vocab];
        match rows[i].lock() {
            Ok(mut q) => nll_quantized(x, targets[i], &mut q),
            Err(_) => f64::NAN,
        }
    })
}

/// [`kld`] of each row against the base's rows (consecutive, [`row_len`]
/// each).
pub fn kld_rows(logits: &[f32], n_vocab: usize, targets: &[u32], base: &[u16]) -> Vec<KldRow> {
    let nb = row_len(n_vocab);
    par_map(targets.len(), |i| {
        kld(
            &logits[i * n_vocab..(i + 1) * n_vocab],
            &base[i * nb..(i + 1) * nb],
            targets[i],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's scalar loops, for the vector ones to be held to.
    fn reference_nll(x: &[f32], tok: usize) -> f64 {
        let max = x.iter().fold(x[0], |a, &b| a.max(b));
        let sum: f64 = x.iter().map(|&v| (v - max).exp() as f64).sum();
        -((x[tok] - max) as f64 - sum.ln())
    }

    fn row(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2654435761) >> 8;
                (h % 20000) as f32 / 1000.0 - 12.0
            })
            .collect()
    }

    #[test]
    fn nll_matches_the_scalar_reference() {
        for (n, tok) in [(1, 0), (17, 16), (1000, 3), (49152, 40000)] {
            let x = row(n, n as u32);
            let (a, b) = (nll(&x, tok as u32), reference_nll(&x, tok));
            assert!((a - b).abs() < 1e-6, "n {n}: {a} vs {b}");
        }
    }

    #[test]
    fn a_quantized_row_reads_back_within_its_step() {
        let x = row(1001, 7);
        let mut q = vec![0u16; row_len(x.len())];
        let v = nll_quantized(&x, 5, &mut q);
        assert!((v - reference_nll(&x, 5)).abs() < 1e-6);
        let (scale, floor) = header(&q);
        let max = x.iter().fold(x[0], |a, &b| a.max(b));
        let lse = x.iter().map(|&v| (v - max).exp() as f64).sum::<f64>().ln() as f32;
        for (i, &l) in x.iter().enumerate() {
            let lp = l - max - lse;
            let back = scale * q[4 + i] as f32 + floor;
            if lp > floor {
                assert!(
                    (back - lp).abs() <= scale * 0.51 + 1e-5,
                    "{i}: {back} vs {lp}"
                );
            } else {
                assert_eq!(q[4 + i], 0);
            }
        }
        assert_eq!(q[4 + 1001], 0, "padding");
    }

    #[test]
    fn a_row_against_itself_diverges_by_nothing() {
        let x = row(5003, 11);
        // A token within the window of the top (the rest sit at the floor).
        let tok = x.iter().position(|&v| v > 7.0).unwrap_or(0) as u32;
        let mut q = vec![0u16; row_len(x.len())];
        nll_quantized(&x, tok, &mut q);
        let k = kld(&x, &q, tok);
        assert!(k.kld.abs() < 1e-4, "{}", k.kld);
        assert!((k.nll - k.nll_base).abs() < 1e-3);
        assert!(k.same_top);
    }

    #[test]
    fn kld_of_a_shifted_row_is_its_known_value() {
        // Two tokens: base (1/2, 1/2), model (e/(1+e), 1/(1+e)).
        let base = [0.0f32, 0.0];
        let model = [1.0f32, 0.0];
        let mut q = vec![0u16; row_len(2)];
        nll_quantized(&base, 0, &mut q);
        let k = kld(&model, &q, 0);
        let pm = 1f64.exp() / (1.0 + 1f64.exp());
        let want = 0.5 * (0.5 / pm).ln() + 0.5 * (0.5 / (1.0 - pm)).ln();
        assert!((k.kld - want).abs() < 1e-6, "{} vs {want}", k.kld);
        assert!((k.p_diff as f64 - (pm - 0.5)).abs() < 1e-6);
    }
}
