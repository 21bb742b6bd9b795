//! Building blocks shared by the architectures.

use half::f16;
use rayon::prelude::*;
use suanli_kernels::ops::{self, RopeStyle};
use suanli_kernels::QMatrix;

use crate::config::ModelConfig;
use crate::kv::Rows;
use crate::loader::Loader;
use crate::{ForwardCtx, Logits, Model, ModelError, Result};

/// `y = x Wᵀ (+ b)` for `n` rows of `x`.
pub fn linear(w: &QMatrix, b: Option<&[f32]>, x: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * w.rows];
    w.matmul(x, n, &mut y);
    if let Some(b) = b {
        for row in y.chunks_exact_mut(w.rows) {
            ops::add_inplace(row, b);
        }
    }
    y
}

/// RMSNorm of each `w.len()`-wide row of `x`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for (xr, yr) in x.chunks_exact(w.len()).zip(y.chunks_exact_mut(w.len())) {
        ops::rms_norm(xr, w, eps, yr);
    }
    y
}

/// One decoder layer's weights. Shapes are (rows, cols) of the matrix, i.e.
/// (out, in); `hd` = head_dim, `hdv` = head_dim_v.
pub struct Layer {
    pub attn_norm: Vec<f32>,              // (n_embd)
    pub wq: QMatrix,                      // (n_head·hd, n_embd)
    pub wk: QMatrix,                      // (n_head_kv·hd, n_embd)
    pub wv: QMatrix,                      // (n_head_kv·hdv, n_embd)
    pub wo: QMatrix,                      // (n_embd, n_head·hdv)
    pub bq: Option<Vec<f32>>,             // (n_head·hd) — qwen2
    pub bk: Option<Vec<f32>>,             // (n_head_kv·hd) — qwen2
    pub bv: Option<Vec<f32>>,             // (n_head_kv·hdv) — qwen2
    pub q_norm: Option<Vec<f32>>,         // (hd) — qwen3, gemma3
    pub k_norm: Option<Vec<f32>>,         // (hd) — qwen3, gemma3
    pub post_attn_norm: Option<Vec<f32>>, // (n_embd) — gemma3
    pub ffn_norm: Vec<f32>,               // (n_embd)
    pub gate: QMatrix,                    // (n_ff, n_embd)
    pub up: QMatrix,                      // (n_ff, n_embd)
    pub down: QMatrix,                    // (n_embd, n_ff)
    pub post_ffw_norm: Option<Vec<f32>>,  // (n_embd) — gemma3
}

impl Layer {
    pub fn load(ld: &Loader, c: &ModelConfig, il: usize) -> Result<Layer> {
        let (d, hd, hdv) = (c.n_embd, c.head_dim, c.head_dim_v);
        let p = |s: &str| format!("blk.{il}.{s}");
        Ok(Layer {
            attn_norm: ld.vector(&p("attn_norm.weight"), d)?,
            wq: ld.matrix(&p("attn_q.weight"), c.n_head * hd, d)?,
            wk: ld.matrix(&p("attn_k.weight"), c.n_head_kv * hd, d)?,
            wv: ld.matrix(&p("attn_v.weight"), c.n_head_kv * hdv, d)?,
            wo: ld.matrix(&p("attn_output.weight"), d, c.n_head * hdv)?,
            bq: ld.vector_opt(&p("attn_q.bias"), c.n_head * hd)?,
            bk: ld.vector_opt(&p("attn_k.bias"), c.n_head_kv * hd)?,
            bv: ld.vector_opt(&p("attn_v.bias"), c.n_head_kv * hdv)?,
            q_norm: ld.vector_opt(&p("attn_q_norm.weight"), hd)?,
            k_norm: ld.vector_opt(&p("attn_k_norm.weight"), hd)?,
            post_attn_norm: ld.vector_opt(&p("post_attention_norm.weight"), d)?,
            ffn_norm: ld.vector(&p("ffn_norm.weight"), d)?,
            gate: ld.matrix(&p("ffn_gate.weight"), c.n_ff, d)?,
            up: ld.matrix(&p("ffn_up.weight"), c.n_ff, d)?,
            down: ld.matrix(&p("ffn_down.weight"), d, c.n_ff)?,
            post_ffw_norm: ld.vector_opt(&p("post_ffw_norm.weight"), d)?,
        })
    }

    fn matrices(&self) -> [&QMatrix; 7] {
        [
            &self.wq, &self.wk, &self.wv, &self.wo, &self.gate, &self.up, &self.down,
        ]
    }
}

/// Rotate every head of `x` (`n` rows of `n_heads · head_dim`) for positions
/// `pos0..pos0+n`, computing angles as ggml does (`theta *= base^(-2/d)`,
/// then divided by the frequency factor and scaled).
pub fn rope_rows(
    x: &mut [f32],
    n_heads: usize,
    c: &ModelConfig,
    pos0: usize,
    base: f32,
    freq_scale: f32,
    use_factors: bool,
) {
    let hd = c.head_dim;
    let half = c.rope_dim / 2;
    let theta_scale = base.powf(-2.0 / c.rope_dim as f32);
    let mut angles = vec![0f32; half];
    for (t, row) in x.chunks_exact_mut(n_heads * hd).enumerate() {
        let mut theta = (pos0 + t) as f32;
        for (i, a) in angles.iter_mut().enumerate() {
            let ff = if use_factors {
                c.rope_freq_factors.get(i).copied().unwrap_or(1.0)
            } else {
                1.0
            };
            *a = freq_scale * (theta / ff);
            theta *= theta_scale;
        }
        for head in row.chunks_exact_mut(hd) {
            for (i, &a) in angles.iter().enumerate() {
                let (s, co) = a.sin_cos();
                let (ia, ib) = match c.rope_style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (x0, x1) = (head[ia], head[ib]);
                // One product rounded, the other fused into it, as GCC
                // contracts ggml's `rotate_pairs` (scalar and `vfmaddsub` alike).
                head[ia] = x0.mul_add(co, -(x1 * s));
                head[ib] = x0.mul_add(s, x1 * co);
            }
        }
    }
}

#[inline]
fn dot_rows(q: &[f32], k: Rows, off: usize) -> f32 {
    match k {
        Rows::F32(k) => q
            .iter()
            .zip(&k[off..off + q.len()])
            .map(|(a, b)| a * b)
            .sum(),
        Rows::F16(k) => dot_f16(q, &k[off..off + q.len()]),
    }
}

/// `q · k` for f16 keys in the order of ggml's `ggml_vec_dot_f16` on AVX-512
/// without FP16 arithmetic: 64-element steps into 4 × 16 f32 FMA lanes, the
/// four folded pairwise, the 16 lanes reduced as GCC's `_mm512_reduce_add_ps`
/// does, the tail added in f64.
fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    let n = q.len();
    let np = n & !63;
    let mut sum = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, acc) in sum.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let e = i + 16 * j + l;
                *a = k[e].to_f32().mul_add(q[e], *a);
            }
        }
    }
    let v: [f32; 16] = std::array::from_fn(|l| (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]));
    let mut s = reduce16(&v) as f64;
    for e in np..n {
        s += (k[e].to_f32() * q[e]) as f64;
    }
    s as f32
}

#[inline]
fn axpy_rows(out: &mut [f32], a: f32, v: Rows, off: usize) {
    let len = out.len();
    match v {
        Rows::F32(v) => out
            .iter_mut()
            .zip(&v[off..off + len])
            .for_each(|(o, x)| *o += a * x),
        Rows::F16(v) => out
            .iter_mut()
            .zip(&v[off..off + len])
            .for_each(|(o, x)| *o += a * x.to_f32()),
    }
}

/// Below this many query rows llama.cpp's CPU flash attention runs its
/// per-row kernel (Q in f16, f16 accumulator); from it on, the tiled f32 one
/// (`GGML_FA_TILE_Q`).
const FA_TILE_Q: usize = 64;

/// Multi-head attention with grouped K/V heads (GQA), causal and optionally
/// windowed: `q` is `n × n_head·hd` (already rotated), K/V of positions
/// `..pos0+n` are in the cache. Returns `n × n_head·hdv`.
///
/// With an f16 cache this reproduces llama.cpp's CPU flash attention
/// numerics, so greedy outputs agree token for token; with an f32 cache it is
/// a plain f32 softmax attention.
pub fn attend(
    q: &[f32],
    n: usize,
    pos0: usize,
    c: &ModelConfig,
    il: usize,
    ctx: &ForwardCtx,
) -> Vec<f32> {
    let (nh, hd, hdv) = (c.n_head, c.head_dim, c.head_dim_v);
    let group = nh / c.n_head_kv;
    let window = if c.swa_layers.get(il).copied().unwrap_or(false) {
        c.sliding_window
    } else {
        None
    };
    let keys = ctx.kv.keys(il);
    let values = ctx.kv.values(il);
    let (kw, vw) = (ctx.kv.k_width, ctx.kv.v_width);
    let per_row_f16 = matches!(keys, Rows::F16(_)) && n < FA_TILE_Q;
    let kq_scale = if c.scale_q { 1.0 } else { c.attn_scale };
    let mut out = vec![0f32; n * nh * hdv];
    out.par_chunks_mut(hdv).enumerate().for_each(|(idx, o)| {
        let (t, h) = (idx / nh, idx % nh);
        let p = pos0 + t;
        let kvh = h / group;
        let qh = &q[t * nh * hd + h * hd..][..hd];
        let start = window.map_or(0, |w| (p + 1).saturating_sub(w));
        let score = |qh: &[f32], j: usize| {
            let mut x = dot_rows(qh, keys, j * kw + kvh * hd) * kq_scale;
            if let Some(cap) = c.attn_softcap {
                x = cap * (x / cap).tanh();
            }
            x
        };
        match (keys, values) {
            (Rows::F16(_), Rows::F16(vs)) if per_row_f16 => {
                let qh: Vec<f32> = qh.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
                online_softmax_f16(
                    o,
                    (start..=p).map(|j| (score(&qh, j), &vs[j * vw + kvh * hdv..][..hdv])),
                );
            }
            (Rows::F16(ks), Rows::F16(vs)) => {
                let key = |j: usize| &ks[j * kw + kvh * hd..][..hd];
                let val = |j: usize| &vs[j * vw + kvh * hdv..][..hdv];
                tiled_attention_row(o, qh, start, p, kq_scale, c.attn_softcap, key, val);
            }
            _ => {
                let mut s: Vec<f32> = (start..=p).map(|j| score(qh, j)).collect();
                ops::softmax(&mut s);
                for (j, &a) in (start..=p).zip(&s) {
                    axpy_rows(o, a, values, j * vw + kvh * hdv);
                }
            }
        }
    });
    out
}

/// Keys per tile of llama.cpp's tiled CPU flash attention (`GGML_FA_TILE_KV`).
const FA_TILE_KV: usize = 64;

/// One query row of attention over keys `start..=p` in the order of
/// llama.cpp's tiled flash attention (the kernel its CPU backend runs for
/// batches of 64 rows or more): 64-key tiles aligned at 0; per tile, Q·K by
/// sequential FMAs in f32, the tile maximum, a rescale of the running sums,
/// exponentials by the vector `expf` with a float sum per 16 lanes added in
/// f64, V accumulated by sequential FMAs; `1/S` applied at the end.
#[allow(clippy::too_many_arguments)]
fn tiled_attention_row<'k>(
    o: &mut [f32],
    q: &[f32],
    start: usize,
    p: usize,
    scale: f32,
    softcap: Option<f32>,
    key: impl Fn(usize) -> &'k [f16],
    val: impl Fn(usize) -> &'k [f16],
) {
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
    let mut kq = [0f32; FA_TILE_KV];
    for t0 in (start / FA_TILE_KV * FA_TILE_KV..=p).step_by(FA_TILE_KV) {
        for (i, s) in kq.iter_mut().enumerate() {
            let j = t0 + i;
            *s = if j < start || j > p {
                f32::NEG_INFINITY
            } else {
                let mut d = 0f32;
                for (&a, b) in q.iter().zip(key(j)) {
                    d = a.mul_add(b.to_f32(), d);
                }
                let mut d = d * scale;
                if let Some(cap) = softcap {
                    d = cap * (d / cap).tanh();
                }
                d
            };
        }
        let tile_max = kq.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        if tile_max == f32::NEG_INFINITY {
            continue;
        }
        let m_new = m.max(tile_max);
        if m_new > m {
            let ms = (m - m_new).exp();
            o.iter_mut().for_each(|v| *v *= ms);
            sum *= ms;
        }
        m = m_new;
        let mut tile_sum = 0f64;
        for lanes in kq.chunks_exact_mut(16) {
            lanes
                .iter_mut()
                .for_each(|v| *v = ops::expf_poly(*v - m_new));
            tile_sum += reduce16(lanes) as f64;
        }
        sum = (sum as f64 + tile_sum) as f32;
        for (i, &e) in kq.iter().enumerate() {
            let j = t0 + i;
            if j < start || j > p {
                continue; // e = 0 and the padded V row is zero: fma leaves o as is
            }
            for (a, v) in o.iter_mut().zip(val(j)) {
                *a = e.mul_add(v.to_f32(), *a);
            }
        }
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    o.iter_mut().for_each(|v| *v *= inv);
}

/// Sum of 16 lanes as GCC's `_mm512_reduce_add_ps` adds them.
fn reduce16(v: &[f32]) -> f32 {
    let t3: [f32; 8] = std::array::from_fn(|i| v[8 + i] + v[i]);
    let t6: [f32; 4] = std::array::from_fn(|i| t3[4 + i] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// Online softmax over (score, V row) pairs with the running output kept in
/// f16, each update rounded as ggml's `ggml_vec_mad_f16` / `ggml_vec_scale_f16`
/// round it (Milakov & Gimelshein 2018; Rabe & Staats 2021).
fn online_softmax_f16<'v>(o: &mut [f32], items: impl Iterator<Item = (f32, &'v [f16])>) {
    let mut acc = vec![f16::ZERO; o.len()];
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
    for (s, v) in items {
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > m {
            let old = m;
            m = s;
            ms = (old - m).exp();
            acc.iter_mut()
                .for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
        } else {
            vs = (s - m).exp();
        }
        for (a, x) in acc.iter_mut().zip(v) {
            *a = f16::from_f32(x.to_f32().mul_add(vs, a.to_f32()));
        }
        // Contracted to an FMA by GCC in ggml, as are the rope products.
        sum = sum.mul_add(ms, vs);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, a) in o.iter_mut().zip(&acc) {
        *o = a.to_f32() * inv;
    }
}

/// The attention block: projections, optional biases and Q/K norms, RoPE,
/// cache write, attention, output projection.
pub fn self_attention(
    m: &Transformer,
    il: usize,
    h: &[f32],
    n: usize,
    ctx: &mut ForwardCtx,
) -> Vec<f32> {
    let (c, l) = (&m.cfg, &m.layers[il]);
    let pos0 = ctx.kv.len();
    let mut q = linear(&l.wq, l.bq.as_deref(), h, n);
    let mut k = linear(&l.wk, l.bk.as_deref(), h, n);
    let v = linear(&l.wv, l.bv.as_deref(), h, n);
    ctx.trace("Qraw", il, &q);
    if let Some(w) = &l.q_norm {
        q.chunks_exact_mut(c.head_dim)
            .for_each(|x| ops::rms_norm_inplace(x, w, c.rms_eps));
    }
    if let Some(w) = &l.k_norm {
        k.chunks_exact_mut(c.head_dim)
            .for_each(|x| ops::rms_norm_inplace(x, w, c.rms_eps));
    }
    ctx.trace("Qnorm", il, &q);
    ctx.trace("Knorm", il, &k);
    let swa = c.swa_layers.get(il).copied().unwrap_or(false);
    let (base, scale, factors) = if swa {
        (c.rope_theta_swa, 1.0, false)
    } else {
        (c.rope_theta, c.rope_freq_scale, true)
    };
    rope_rows(&mut q, c.n_head, c, pos0, base, scale, factors);
    rope_rows(&mut k, c.n_head_kv, c, pos0, base, scale, factors);
    if c.scale_q {
        q.iter_mut().for_each(|v| *v *= c.attn_scale);
    }
    ctx.trace("Qcur", il, &q);
    ctx.trace("Kcur", il, &k);
    ctx.kv.write(il, pos0, &k, &v);
    let a = attend(&q, n, pos0, c, il, ctx);
    ctx.trace("kqv_out", il, &a);
    linear(&l.wo, None, &a, n)
}

/// Gated feed-forward: `down(act(gate(h)) · up(h))`.
pub fn gated_ffn(
    l: &Layer,
    il: usize,
    h: &[f32],
    n: usize,
    act: ops::Glu,
    ctx: &mut ForwardCtx,
) -> Vec<f32> {
    let mut g = linear(&l.gate, None, h, n);
    let u = linear(&l.up, None, h, n);
    ctx.trace("ffn_gate", il, &g);
    ctx.trace("ffn_up", il, &u);
    ops::glu(&mut g, &u, l.gate.rows, act);
    ctx.trace("ffn_glu", il, &g);

    linear(&l.down, None, &g, n)
}

/// Runs one layer in place on the residual stream `x` (`n × n_embd`).
pub type LayerFn = fn(m: &Transformer, il: usize, x: &mut [f32], n: usize, ctx: &mut ForwardCtx);

/// A decoder-only transformer; the architecture supplies `layer`.
pub struct Transformer {
    pub cfg: ModelConfig,
    pub tok_embd: QMatrix,     // (n_vocab, n_embd)
    pub output_norm: Vec<f32>, // (n_embd)
    pub output: QMatrix,       // (n_vocab, n_embd); the embedding matrix when tied
    pub layers: Vec<Layer>,
    pub layer: LayerFn,
}

impl Transformer {
    pub fn load(ld: &Loader, cfg: ModelConfig, layer: LayerFn) -> Result<Self> {
        let tok_embd = ld.embeddings("token_embd.weight", cfg.n_vocab, cfg.n_embd)?;
        let output = ld
            .matrix_opt("output.weight", cfg.n_vocab, cfg.n_embd)?
            .unwrap_or_else(|| tok_embd.clone());
        let layers = (0..cfg.n_layer)
            .map(|il| Layer::load(ld, &cfg, il))
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformer {
            output_norm: ld.vector("output_norm.weight", cfg.n_embd)?,
            tok_embd,
            output,
            layers,
            layer,
            cfg,
        })
    }
}

impl Model for Transformer {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward(&self, tokens: &[u32], ctx: &mut ForwardCtx) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let n = tokens.len();
        let pos0 = ctx.kv.len();
        if pos0 + n > ctx.kv.capacity {
            return Err(ModelError::ContextFull {
                needed: pos0 + n,
                capacity: ctx.kv.capacity,
            });
        }
        let mut x = vec![0f32; n * c.n_embd];
        for (&t, row) in tokens.iter().zip(x.chunks_exact_mut(c.n_embd)) {
            if t as usize >= c.n_vocab {
                return Err(ModelError::BadToken {
                    id: t,
                    n_vocab: c.n_vocab,
                });
            }
            self.tok_embd.dequantize_row(t as usize, row);
            if let Some(s) = c.embed_scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        ctx.trace("inp_embd", 0, &x);
        for il in 0..c.n_layer {
            (self.layer)(self, il, &mut x, n, ctx);
            ctx.trace("l_out", il, &x);
        }
        ctx.kv.advance(n);
        let rows: &[f32] = match ctx.logits {
            Logits::Last => &x[(n - 1) * c.n_embd..],
            Logits::All => &x,
        };
        let m = rows.len() / c.n_embd;
        let h = rms_norm_rows(rows, &self.output_norm, c.rms_eps);
        ctx.trace("result_norm", 0, &h);
        let mut logits = linear(&self.output, None, &h, m);
        if let Some(cap) = c.final_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(logits)
    }

    fn bytes_per_token(&self) -> u64 {
        let layers: usize = self
            .layers
            .iter()
            .flat_map(|l| l.matrices())
            .map(|m| m.data.len())
            .sum();
        (layers + self.output.data.len() + self.tok_embd.row_bytes()) as u64
    }
}
