//! Row operations of the transformer forward pass, in f32.

use crate::dispatch::multiversion;

/// Mean of squares, summed in f64 as ggml does.
#[inline(always)]
fn mean_square(x: &[f32]) -> f32 {
    (x.iter().map(|&v| (v * v) as f64).sum::<f64>() / x.len() as f64) as f32
}

multiversion! {
    /// `out = x / sqrt(mean(x²) + eps) * w` (RMSNorm, Zhang & Sennrich 2019).
    pub fn rms_norm / rms_norm_at(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        let scale = 1.0 / (mean_square(x) + eps).sqrt();
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
            *o = v * scale * g;
        }
    }
}

multiversion! {
    /// In-place RMSNorm.
    pub fn rms_norm_inplace / rms_norm_inplace_at(x: &mut [f32], w: &[f32], eps: f32) {
        let scale = 1.0 / (mean_square(x) + eps).sqrt();
        for (v, &g) in x.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

multiversion! {
/// Numerically stable in-place softmax (vector `expf` on whole lanes, libm
/// on the tail, sum in f64, as ggml's `ggml_vec_soft_max_f32`).
pub fn softmax / softmax_at(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let body = x.len() - x.len() % EXP_LANES;
    let mut sum = 0f64;
    for (i, v) in x.iter_mut().enumerate() {
        *v = if i < body {
            expf_poly(*v - max)
        } else {
            (*v - max).exp()
        };
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
}

/// `exp(x)` by the polynomial of Arm's optimized-routines `expf` (max error
/// about 1.5 ulp), evaluated with FMAs exactly as ggml's AVX-512 `ggml_v_expf`
/// evaluates it, so vector ops that use it agree with llama.cpp bit for bit.
#[inline(always)]
pub fn expf_poly(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(0x4b40_0000); // 0x1.8p23: adding it rounds to an integer
    let z = x.mul_add(c(0x3fb8_aa3b), r); // x·log2(e)
    let n = z - r;
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x)); // x - n·ln2 (hi, lo)
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6).mul_add(b, 1.0));
    // j · 2ⁿ without intermediate overflow or underflow (as `vscalefps`):
    // two exact powers of two, |h|, |n − h| ≤ 96, built from their bits.
    let h = (n * 0.5).trunc();
    // (k + 127 read off the mantissa of k + 127 + 2²³, exact for these
    // integers: no saturating float-to-int conversion, which does not
    // vectorize.)
    let pow2 = |k: f32| {
        f32::from_bits(
            (k + (127.0 + 8_388_608.0))
                .to_bits()
                .wrapping_sub(0x4B00_0000)
                << 23,
        )
    };
    let y = j * pow2(h.clamp(-96.0, 96.0)) * pow2((n - h).clamp(-96.0, 96.0));
    // Branch-free, so loops over it vectorize.
    if n.abs() > 192.0 {
        if n <= 0.0 {
            0.0
        } else {
            f32::INFINITY
        }
    } else {
        y
    }
}

/// Lanes per vector of the ggml build we compare against (AVX-512: 16).
/// ggml applies its vector `expf` to whole vectors and libm `expf` to the
/// tail of a row; [`swiglu_row`] and [`softmax`] do the same.
pub const EXP_LANES: usize = 16;

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[inline(always)]
fn silu_poly(x: f32) -> f32 {
    x / (1.0 + expf_poly(-x))
}

multiversion! {
    /// SwiGLU over a row: `gate = silu(gate) * up`, ggml's numerics.
    pub fn swiglu_row / swiglu_row_at(gate: &mut [f32], up: &[f32]) {
        let body = gate.len() - gate.len() % EXP_LANES;
        let (g, tail) = gate.split_at_mut(body);
        for (g, &u) in g.iter_mut().zip(up) {
            *g = silu_poly(*g) * u;
        }
        for (g, &u) in tail.iter_mut().zip(&up[body..]) {
            *g = silu(*g) * u;
        }
    }
}

/// GELU, tanh approximation (what GGUF gemma models and ggml use).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

/// GELU of every f16 value, rounded to f16: ggml evaluates GELU through this
/// table (`GGML_GELU_FP16`), so we do too — with the FMA its compiler
/// contracts `1 + a·x·x` into (every entry then equals ggml's; without it
/// one differs, which moved a Gemma 3 logit by 15 on a long Chinese prompt).
fn gelu_table() -> &'static [half::f16] {
    static T: std::sync::OnceLock<Vec<half::f16>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        let gelu =
            |x: f32| 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (0.044715 * x).mul_add(x, 1.0)).tanh());
        (0..=u16::MAX)
            .map(|b| half::f16::from_f32(gelu(half::f16::from_bits(b).to_f32())))
            .collect()
    })
}

/// GeGLU over a row: `gate = gelu(gate) * up`, ggml's numerics.
pub fn geglu_row(gate: &mut [f32], up: &[f32]) {
    let t = gelu_table();
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            t[half::f16::from_f32(x).to_bits() as usize].to_f32() * u
        };
    }
}

/// The activation of a gated feed-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glu {
    /// SiLU gate (Llama, Qwen).
    SwiGlu,
    /// tanh-GELU gate through ggml's f16 table (Gemma, GGUF).
    GeGlu,
    /// tanh-GELU gate in f32 (Gemma, as transformers computes it).
    GeGluExact,
    /// gpt-oss's clamped SwiGLU: `min(g, 7) · σ(1.702 · min(g, 7)) ·
    /// (clamp(u, −7, 7) + 1)`, as ggml's `swiglu_oai` computes it.
    SwiGluOai,
}

/// gpt-oss's SwiGLU slope and clamp (llama.cpp's constants).
pub const OAI_ALPHA: f32 = 1.702;
pub const OAI_LIMIT: f32 = 7.0;

/// `gate = act(gate) * up` row by row (`width` values per row).
pub fn glu(gate: &mut [f32], up: &[f32], width: usize, act: Glu) {
    crate::pool::for_each_row(gate, width, |i, g| {
        glu_row(g, &up[i * width..(i + 1) * width], act)
    });
}

/// `gate = act(gate) * up` over one row.
pub fn glu_row(gate: &mut [f32], up: &[f32], act: Glu) {
    match act {
        Glu::SwiGlu => swiglu_row(gate, up),
        Glu::GeGlu => geglu_row(gate, up),
        Glu::GeGluExact => gate
            .iter_mut()
            .zip(up)
            .for_each(|(g, &u)| *g = gelu_tanh(*g) * u),
        Glu::SwiGluOai => gate.iter_mut().zip(up).for_each(|(g, &u)| {
            let x = g.min(OAI_LIMIT);
            let y = u.clamp(-OAI_LIMIT, OAI_LIMIT);
            *g = x / (1.0 + (OAI_ALPHA * -x).exp()) * (y + 1.0);
        }),
    }
}

pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): the original GPT-J/llama layout in GGUF.
    Normal,
    /// Halves (i, i + d/2): GPT-NeoX, Qwen, Gemma, and Hugging Face checkpoints.
    Neox,
}

multiversion! {
    /// Rotates every `head_dim`-wide head of `x` (one position) by the
    /// angles whose sines and cosines are `sin`, `cos` (one per pair; pairs
    /// beyond them are left alone). One product rounded, the other fused
    /// into it, as GCC contracts ggml's `rotate_pairs` (scalar and
    /// `vfmaddsub` alike).
    pub fn rope / rope_at(x: &mut [f32], head_dim: usize, style: RopeStyle, sin: &[f32], cos: &[f32]) {
        let half = sin.len();
        for head in x.chunks_exact_mut(head_dim) {
            match style {
                RopeStyle::Normal => {
                    for (pair, (&s, &c)) in head.chunks_exact_mut(2).zip(sin.iter().zip(cos)) {
                        let (x0, x1) = (pair[0], pair[1]);
                        pair[0] = x0.mul_add(c, -(x1 * s));
                        pair[1] = x0.mul_add(s, x1 * c);
                    }
                }
                RopeStyle::Neox => {
                    let (a, b) = head.split_at_mut(half);
                    for (((x0, x1), &s), &c) in a.iter_mut().zip(b.iter_mut()).zip(sin).zip(cos) {
                        let (v0, v1) = (*x0, *x1);
                        *x0 = v0.mul_add(c, -(v1 * s));
                        *x1 = v0.mul_add(s, v1 * c);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// ggml's GELU table entry for the f16 0xbfff (−1.999) is 0xa9d3 (read
    /// from libggml-cpu's `ggml_table_gelu_f16` after `ggml_cpu_init`); the
    /// formula without the FMA its compiler contracts rounds to 0xa9d2.
    #[test]
    fn gelu_table_rounds_as_ggml() {
        let x = half::f16::from_bits(0xbfff).to_f32();
        let mut g = [x];
        super::geglu_row(&mut g, &[1.0]);
        assert_eq!(half::f16::from_f32(g[0]).to_bits(), 0xa9d3, "gelu({x})");
    }
}
