//! Building blocks shared by the architectures.

use suanli_kernels::attention::{attention, AttnShape};
use suanli_kernels::{ops, pool};
use suanli_kernels::{Acts, QMatrix};

use crate::config::ModelConfig;
use crate::loader::Loader;
use crate::{Batch, Model, ModelError, Result};

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

/// A block's input rows: as they are, or RMS-normalized as they are
/// quantized for the block's first products (the norm's output never
/// makes a pass through memory: 512 prompt rows of Qwen2.5-1.5B are 3 MiB).
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Rows(&'a [f32]),
    /// Each row of `x` (`w.len()` wide) divided by its RMS, times `w`.
    RmsNorm {
        x: &'a [f32],
        w: &'a [f32],
        eps: f32,
    },
}

impl<'a> Input<'a> {
    /// `x`'s rows normalized by `w`, made as they are used.
    pub fn rms_norm(x: &'a [f32], w: &'a [f32], eps: f32) -> Self {
        Input::RmsNorm { x, w, eps }
    }

    /// The rows themselves (made, for a fused op).
    pub fn rows(&self) -> std::borrow::Cow<'a, [f32]> {
        match *self {
            Input::Rows(x) => x.into(),
            Input::RmsNorm { x, w, eps } => rms_norm_rows(x, w, eps).into(),
        }
    }

    /// `f` over these rows as the kernels' [`Acts`] (a norm made row by
    /// row as the rows are quantized).
    pub fn with_acts<R>(self, f: impl FnOnce(Acts) -> R) -> R {
        match self {
            Input::Rows(x) => f(Acts::Rows(x)),
            Input::RmsNorm { x, w, eps } => {
                let d = w.len();
                let row =
                    |t: usize, out: &mut [f32]| ops::rms_norm(&x[t * d..(t + 1) * d], w, eps, out);
                f(Acts::Each(&row))
            }
        }
    }
}

/// [`linear`] for several matrices over the same input: one quantization
/// per format and, when decoding, one pass over the thread pool.
pub fn linear_many<const K: usize>(
    ws: [(&QMatrix, Option<&[f32]>); K],
    x: Input,
    n: usize,
) -> [Vec<f32>; K] {
    let mut ys: [Vec<f32>; K] = std::array::from_fn(|i| vec![0f32; n * ws[i].0.rows]);
    let mut parts: Vec<(&QMatrix, &mut [f32])> = ws
        .iter()
        .zip(ys.iter_mut())
        .map(|((w, _), y)| (*w, y.as_mut_slice()))
        .collect();
    x.with_acts(|acts| suanli_kernels::matmul_many_acts(acts, n, &mut parts));
    for ((w, b), y) in ws.iter().zip(ys.iter_mut()) {
        if let Some(b) = b {
            for row in y.chunks_exact_mut(w.rows) {
                ops::add_inplace(row, b);
            }
        }
    }
    ys
}

/// RMSNorm of each `w.len()`-wide row of `x`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    let d = w.len();
    pool::for_each_row(&mut y, d, |i, yr| {
        ops::rms_norm(&x[i * d..(i + 1) * d], w, eps, yr)
    });
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

/// RoPE's angles for every token of a batch: `rope_dim / 2` sines and
/// cosines per token, computed as ggml does (`theta *= base^(-2/d)`, then
/// divided by the frequency factor and scaled).
pub struct RopeAngles {
    key: (u32, u32, bool),
    half: usize,
    sin: Vec<f32>,
    cos: Vec<f32>,
}

impl RopeAngles {
    /// Token `t`'s sines and cosines.
    pub fn of(&self, t: usize) -> (&[f32], &[f32]) {
        let r = t * self.half..(t + 1) * self.half;
        (&self.sin[r.clone()], &self.cos[r])
    }
}

/// The batch's angles for `base`, `freq_scale` and (optionally) the
/// model's frequency factors: made on first use in a forward pass, then
/// shared by every layer and by Q and K.
pub fn rope_angles<'b>(
    ctx: &'b mut Batch,
    c: &ModelConfig,
    base: f32,
    freq_scale: f32,
    use_factors: bool,
) -> &'b RopeAngles {
    let key = (base.to_bits(), freq_scale.to_bits(), use_factors);
    let i = match ctx.rope.iter().position(|a| a.key == key) {
        Some(i) => i,
        None => {
            let half = c.rope_dim / 2;
            let theta_scale = base.powf(-2.0 / c.rope_dim as f32);
            let n = ctx.pos.len();
            let (mut sin, mut cos) = (vec![0f32; n * half], vec![0f32; n * half]);
            for (t, &p) in ctx.pos.iter().enumerate() {
                let mut theta = p as f32;
                let r = t * half..(t + 1) * half;
                for (i, (s, co)) in sin[r.clone()].iter_mut().zip(&mut cos[r]).enumerate() {
                    let ff = if use_factors {
                        c.rope_freq_factors.get(i).copied().unwrap_or(1.0)
                    } else {
                        1.0
                    };
                    (*s, *co) = (freq_scale * (theta / ff)).sin_cos();
                    theta *= theta_scale;
                }
            }
            ctx.rope.push(RopeAngles {
                key,
                half,
                sin,
                cos,
            });
            ctx.rope.len() - 1
        }
    };
    &ctx.rope[i]
}

/// Rotate every head of `x` (rows of `n_heads · head_dim`, row `t` by
/// token `t`'s angles).
pub fn rope_rows(x: &mut [f32], n_heads: usize, c: &ModelConfig, angles: &RopeAngles) {
    pool::for_each_row(x, n_heads * c.head_dim, |t, row| {
        let (sin, cos) = angles.of(t);
        ops::rope(row, c.head_dim, c.rope_style, sin, cos);
    });
}

/// Multi-head attention with grouped K/V heads (GQA), causal and optionally
/// windowed, each sequence of the batch over its own cached K/V: `q` is
/// `n × n_head·hd` (already rotated), the batch's K/V already written.
/// Returns `n × n_head·hdv`.
///
/// The kernel follows llama.cpp's CPU flash attention (see
/// [`suanli_kernels::attention`]), so greedy outputs agree token for token.
pub fn attend(q: &[f32], n: usize, c: &ModelConfig, il: usize, ctx: &Batch) -> Vec<f32> {
    let window = if c.swa_layers.get(il).copied().unwrap_or(false) {
        c.sliding_window
    } else {
        None
    };
    let (qw, ow) = (c.n_head * c.head_dim, c.n_head * c.head_dim_v);
    let mut out = vec![0f32; n * ow];
    let mut t0 = 0;
    for s in ctx.seqs {
        let shape = AttnShape {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            head_dim_v: c.head_dim_v,
            k_stride: ctx.kv.k_width,
            v_stride: ctx.kv.v_width,
            scale: if c.scale_q { 1.0 } else { c.attn_scale },
            softcap: c.attn_softcap,
            window,
            pages: s.pages,
        };
        attention(
            &shape,
            &q[t0 * qw..(t0 + s.n) * qw],
            s.n,
            s.pos0,
            ctx.kv.keys(il),
            ctx.kv.values(il),
            &mut out[t0 * ow..(t0 + s.n) * ow],
        );
        t0 += s.n;
    }
    out
}

/// The attention block: projections, optional biases and Q/K norms, RoPE,
/// cache write, attention, output projection.
pub fn self_attention(m: &Transformer, il: usize, h: Input, n: usize, ctx: &mut Batch) -> Vec<f32> {
    let (c, l) = (&m.cfg, &m.layers[il]);
    if ctx.tracing() {
        ctx.trace("attn_norm", il, &h.rows());
    }
    let [mut q, mut k, v] = linear_many(
        [
            (&l.wq, l.bq.as_deref()),
            (&l.wk, l.bk.as_deref()),
            (&l.wv, l.bv.as_deref()),
        ],
        h,
        n,
    );
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
    let angles = rope_angles(ctx, c, base, scale, factors);
    rope_rows(&mut q, c.n_head, c, angles);
    if c.scale_q {
        q.iter_mut().for_each(|v| *v *= c.attn_scale);
    }
    if ctx.tracing() {
        let angles = rope_angles(ctx, c, base, scale, factors);
        rope_rows(&mut k, c.n_head_kv, c, angles);
        ctx.trace("Qcur", il, &q);
        ctx.trace("Kcur", il, &k);
        ctx.kv.write_rows(il, &ctx.rows, &k, &v);
    } else {
        // RoPE fused into the cache write: each key row is rotated on its
        // way into the cache.
        let Batch { kv, rows, rope, .. } = ctx;
        let key = (base.to_bits(), scale.to_bits(), factors);
        let Some(angles) = rope.iter().find(|a| a.key == key) else {
            unreachable!("made above")
        };
        kv.write_rows_with(il, rows, &k, &v, |t, row| {
            let (sin, cos) = angles.of(t);
            ops::rope(row, c.head_dim, c.rope_style, sin, cos);
        });
    }
    let a = attend(&q, n, c, il, ctx);
    ctx.trace("kqv_out", il, &a);
    linear(&l.wo, None, &a, n)
}

/// Gated feed-forward: `down(act(gate(h)) · up(h))`.
pub fn gated_ffn(
    l: &Layer,
    il: usize,
    h: Input,
    n: usize,
    act: ops::Glu,
    ctx: &mut Batch,
) -> Vec<f32> {
    if ctx.tracing() {
        ctx.trace("ffn_norm", il, &h.rows());
        let [mut g, u] = linear_many([(&l.gate, None), (&l.up, None)], h, n);
        ctx.trace("ffn_gate", il, &g);
        ctx.trace("ffn_up", il, &u);
        ops::glu(&mut g, &u, l.gate.rows, act);
        ctx.trace("ffn_glu", il, &g);
        return linear(&l.down, None, &g, n);
    }
    // The activation and the down projection's quantization fused into
    // the gate/up products.
    let glu = |g: &mut [f32], u: &[f32]| ops::glu_row(g, u, act);
    let q =
        h.with_acts(|acts| suanli_kernels::glu_quantized(&l.gate, &l.up, acts, n, &glu, &l.down));
    let mut y = vec![0f32; n * l.down.rows];
    suanli_kernels::matmul_many_quantized(&q, n, &mut [(&l.down, &mut y)]);
    y
}

/// Runs one layer in place on the residual stream `x` (`n × n_embd`).
pub type LayerFn = fn(m: &Transformer, il: usize, x: &mut [f32], n: usize, ctx: &mut Batch);

/// A decoder-only transformer; the architecture supplies `layer`.
pub struct Transformer {
    pub cfg: ModelConfig,
    pub tok_embd: QMatrix,     // (n_vocab, n_embd)
    pub output_norm: Vec<f32>, // (n_embd)
    pub output: QMatrix,       // (n_vocab, n_embd); the embedding matrix when tied
    pub layers: Vec<Layer>,
    pub layer: LayerFn,
    /// The embedding table is separate from the output (only looked up).
    pub untied: bool,
}

impl Transformer {
    pub fn load(ld: &Loader, cfg: ModelConfig, layer: LayerFn) -> Result<Self> {
        let mut tok_embd = ld.embeddings("token_embd.weight", cfg.n_vocab, cfg.n_embd)?;
        let untied = ld.has("output.weight");
        let output = match ld.output_opt("output.weight", cfg.n_vocab, cfg.n_embd)? {
            Some(o) => {
                // Untied: the table is only looked up, a row per token.
                tok_embd.data.random_access();
                o
            }
            None => {
                // Tied: every token multiplies all of it, in the layout
                // the matmul kernels stream best that keeps rows readable.
                tok_embd = tok_embd.repack_rows4().q6_k_planes();
                tok_embd.clone()
            }
        };
        let layers = (0..cfg.n_layer)
            .map(|il| Layer::load(ld, &cfg, il))
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformer {
            output_norm: ld.vector("output_norm.weight", cfg.n_embd)?,
            tok_embd,
            output,
            layers,
            layer,
            untied,
            cfg,
        })
    }

    /// Where a row of an untied table could not be read out of the file
    /// ([`QMatrix::lookup_row`], which maps nothing and costs no fault —
    /// this release and its refault cost ~80 µs a decoded token):
    /// lets the pages around embedding row `t` go from this process once
    /// the row is copied out (untied tables are only looked up). A mapped
    /// file in the page cache maps neighbours of each faulted row — up to
    /// 16 pages (fault-around, a 64 KiB-aligned window), or the whole folio
    /// where the page cache holds the file in large folios (up to 2 MiB, as
    /// after the file was just written) — which would otherwise stay
    /// resident: Qwen2.5-0.5B peak RSS 577 or 645 MiB depending on whether
    /// the file was cached; over a freshly written file, 618 MiB when a
    /// 512-token prompt's rows were all read before any was let go, 545 MiB
    /// with each let go as it is read (547 from a cold cache). Only the 2 MiB
    /// window of the row: advising the whole table every token cost ~50 µs
    /// (and its refault as much again).
    fn release_embedding_row(&self, t: usize) {
        const WINDOW: usize = 2 << 20;
        let data = &self.tok_embd.data;
        let (base, rb) = (data.bytes().as_ptr() as usize, self.tok_embd.row_bytes());
        let at = base + t * rb;
        let lo = (at / WINDOW * WINDOW).max(base) - base;
        let hi = ((at + rb).next_multiple_of(WINDOW) - base).min(data.len());
        data.release_range(lo, hi.saturating_sub(lo));
    }
}

impl Model for Transformer {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward_batch(&self, tokens: &[u32], ctx: &mut Batch) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let n = tokens.len();
        if n != ctx.len() || n == 0 {
            return Err(ModelError::BadBatch(format!(
                "{n} tokens for spans of {} positions",
                ctx.len()
            )));
        }
        let mut x = vec![0f32; n * c.n_embd];
        for (&t, row) in tokens.iter().zip(x.chunks_exact_mut(c.n_embd)) {
            if t as usize >= c.n_vocab {
                return Err(ModelError::BadToken {
                    id: t,
                    n_vocab: c.n_vocab,
                });
            }
            // An untied table is only looked up: its rows are read from
            // the file, not through the mapping, where the storage can.
            if !(self.untied && self.tok_embd.lookup_row(t as usize, row)) {
                self.tok_embd.dequantize_row(t as usize, row);
                if self.untied {
                    self.release_embedding_row(t as usize);
                }
            }
            if let Some(s) = c.embed_scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        ctx.trace("inp_embd", 0, &x);
        for il in 0..c.n_layer {
            (self.layer)(self, il, &mut x, n, ctx);
            ctx.trace("l_out", il, &x);
        }
        let d = c.n_embd;
        let mut rows: Vec<f32> = Vec::new();
        let mut t0 = 0;
        for s in ctx.seqs {
            let keep = s.logits.rows(s.n);
            rows.extend_from_slice(&x[(t0 + s.n - keep) * d..(t0 + s.n) * d]);
            t0 += s.n;
        }
        let m = rows.len() / d;
        if m == 0 {
            return Ok(Vec::new());
        }
        let h = rms_norm_rows(&rows, &self.output_norm, c.rms_eps);
        ctx.trace("result_norm", 0, &h);
        let mut logits = linear(&self.output, None, &h, m);
        if let Some(cap) = c.final_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(logits)
    }

    fn decode_weights(&self) -> Vec<&[u8]> {
        let embd = self.tok_embd.data.bytes();
        let row = embd.get(..self.tok_embd.row_bytes()).unwrap_or(embd);
        self.layers
            .iter()
            .flat_map(|l| l.matrices())
            .chain([&self.output])
            .map(|m| m.data.bytes())
            .chain([row])
            .collect()
    }
}
