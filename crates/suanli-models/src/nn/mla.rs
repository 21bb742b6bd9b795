//! Multi-head latent attention (DeepSeek-V2/V3, Kimi K2), in the absorbed
//! form llama.cpp runs: the cache holds one `kv_lora_rank`-wide latent and
//! one `rope`-wide rotated key part per token — a single shared key head
//! `[latent | k_pe]` whose first `kv_lora_rank` values are also the value —
//! so attention is multi-query attention over it.
//!
//! Per token: the query through `wq_a` → RMSNorm → `wq_b` (or one `wq`),
//! each head split into `q_nope` and `q_pe` (RoPE on adjacent pairs);
//! `wkv_a_mqa` gives `[latent | k_pe]`, the latent RMS-normalized and
//! `k_pe` rotated. Each head's `q_nope` goes into latent space through its
//! `k_b` (`q_lat = k_b · q_nope`), the query `[q_lat | q_pe]` attends over
//! the cached keys, and each head's output (a latent) comes back through
//! its `v_b` before the output projection.

use suanli_kernels::{matmul_grouped, ops, Acts, Product, QMatrix};

use super::{attend, linear, rms_norm_rows, rope_angles, scratch, Input, Transformer};
use crate::config::ModelConfig;
use crate::loader::Loader;
use crate::{Batch, Result};

/// The shapes of a latent attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlaConfig {
    /// Rank of the query's low-rank projection (0: one `wq`, V2-Lite).
    pub q_lora_rank: usize,
    pub kv_lora_rank: usize,
    /// Per-head query/key dimensions without and with RoPE.
    pub qk_nope: usize,
    pub qk_rope: usize,
    /// Per-head value dimension.
    pub v_head: usize,
}

/// One layer's latent-attention weights.
pub struct Mla {
    /// `(q_lora_rank, n_embd)`, its norm and `(n_head·(nope+rope), q_lora_rank)`.
    pub wq_a: Option<(QMatrix, Vec<f32>, QMatrix)>,
    /// `(n_head·(nope+rope), n_embd)` where there is no query LoRA.
    pub wq: Option<QMatrix>,
    /// `(kv_lora_rank + rope, n_embd)` and the latent's norm.
    pub wkv_a: QMatrix,
    pub kv_a_norm: Vec<f32>,
    /// Per head: `(kv_lora_rank, nope)` into latent space, and
    /// `(v_head, kv_lora_rank)` back out of it.
    pub k_b: Vec<QMatrix>,
    pub v_b: Vec<QMatrix>,
}

impl Mla {
    pub fn load(ld: &Loader, c: &ModelConfig, m: &MlaConfig, il: usize) -> Result<Mla> {
        let d = c.n_embd;
        let p = |s: &str| format!("blk.{il}.{s}");
        let qw = c.n_head * (m.qk_nope + m.qk_rope);
        let wq_a = if m.q_lora_rank > 0 {
            Some((
                ld.matrix(&p("attn_q_a.weight"), m.q_lora_rank, d)?,
                ld.vector(&p("attn_q_a_norm.weight"), m.q_lora_rank)?,
                ld.matrix(&p("attn_q_b.weight"), qw, m.q_lora_rank)?,
            ))
        } else {
            None
        };
        let wq = match wq_a {
            Some(_) => None,
            None => Some(ld.matrix(&p("attn_q.weight"), qw, d)?),
        };
        Ok(Mla {
            wq_a,
            wq,
            wkv_a: ld.matrix(&p("attn_kv_a_mqa.weight"), m.kv_lora_rank + m.qk_rope, d)?,
            kv_a_norm: ld.vector(&p("attn_kv_a_norm.weight"), m.kv_lora_rank)?,
            k_b: ld.stacked(&p("attn_k_b.weight"), c.n_head, m.kv_lora_rank, m.qk_nope)?,
            v_b: ld.stacked(&p("attn_v_b.weight"), c.n_head, m.v_head, m.kv_lora_rank)?,
        })
    }

    /// The matrices every token reads.
    pub fn matrices(&self) -> Vec<&QMatrix> {
        let mut v: Vec<&QMatrix> = Vec::new();
        if let Some((a, _, b)) = &self.wq_a {
            v.extend([a, b]);
        }
        v.extend(self.wq.as_ref());
        v.push(&self.wkv_a);
        v.extend(self.k_b.iter().chain(&self.v_b));
        v
    }
}

/// Each of `n` rows of `x` (`heads` blocks of `cols`) through its head's
/// matrix: `out[t][h] = ms[h] · x[t][h]`, one grouped pass for all heads.
fn per_head(ms: &[QMatrix], x: &[f32], n: usize, cols: usize) -> Vec<f32> {
    let heads = ms.len();
    let rows = ms.first().map_or(0, |m| m.rows);
    // Head h takes rows t·heads + h of x viewed as (n·heads) × cols; its
    // outputs come out token by token and are put in place below.
    let take: Vec<Vec<usize>> = (0..heads)
        .map(|h| (0..n).map(|t| t * heads + h).collect())
        .collect();
    // Written whole by the products.
    let mut outs = scratch::take(heads * n * rows);
    {
        let mut products: Vec<Product> = ms
            .iter()
            .zip(&take)
            .zip(outs.chunks_exact_mut(n * rows))
            .map(|((w, t), out)| Product {
                w,
                take: Some(t),
                out,
            })
            .collect();
        if let Err(e) = matmul_grouped(Acts::Rows(x), n * heads, cols, &mut products) {
            unreachable!("latent-attention shapes are checked at load: {e}")
        }
    }
    let mut y = scratch::take(n * heads * rows);
    for (h, o) in outs.chunks_exact(n * rows).enumerate() {
        for t in 0..n {
            y[(t * heads + h) * rows..][..rows].copy_from_slice(&o[t * rows..(t + 1) * rows]);
        }
    }
    scratch::give(outs);
    y
}

/// The latent attention block of layer `il` over `n` rows of `h`.
pub fn latent_attention(
    m: &Transformer,
    mla: &Mla,
    il: usize,
    h: Input,
    n: usize,
    ctx: &mut Batch,
) -> Vec<f32> {
    let (c, l) = (&m.cfg, &m.layers[il]);
    let Some(mc) = c.mla else {
        unreachable!("a latent-attention layer has its shapes in the config")
    };
    let (nh, nope, rope, lora) = (c.n_head, mc.qk_nope, mc.qk_rope, mc.kv_lora_rank);
    let x = h.rows();
    ctx.trace("attn_norm", il, &x);
    let q = match (&mla.wq_a, &mla.wq) {
        (Some((a, norm, b)), _) => {
            let qa = linear(a, None, &x, n);
            let qa = rms_norm_rows(&qa, norm, c.rms_eps);
            linear(b, None, &qa, n)
        }
        (None, Some(wq)) => linear(wq, None, &x, n),
        (None, None) => unreachable!("Mla::load loads one query projection"),
    };
    let kv = linear(&mla.wkv_a, None, &x, n);
    // The cached key row: [normalized latent | rotated k_pe].
    let kw = lora + rope;
    let mut keys = vec![0f32; n * kw];
    let angles = rope_angles(ctx, c, c.rope_theta, c.rope_freq_scale, true);
    for t in 0..n {
        let (src, dst) = (&kv[t * kw..(t + 1) * kw], &mut keys[t * kw..(t + 1) * kw]);
        ops::rms_norm(&src[..lora], &mla.kv_a_norm, c.rms_eps, &mut dst[..lora]);
        dst[lora..].copy_from_slice(&src[lora..]);
        let (sin, cos) = angles.of(t);
        ops::rope(&mut dst[lora..], rope, c.rope_style, sin, cos);
    }
    // Queries: each head's nope part into latent space, its rope part rotated.
    let qh = nope + rope;
    let mut q_nope = vec![0f32; n * nh * nope];
    let mut q_pe = vec![0f32; n * nh * rope];
    for (i, head) in q.chunks_exact(qh).enumerate() {
        q_nope[i * nope..(i + 1) * nope].copy_from_slice(&head[..nope]);
        q_pe[i * rope..(i + 1) * rope].copy_from_slice(&head[nope..]);
    }
    for t in 0..n {
        let (sin, cos) = angles.of(t);
        for hq in q_pe[t * nh * rope..(t + 1) * nh * rope].chunks_exact_mut(rope) {
            ops::rope(hq, rope, c.rope_style, sin, cos);
        }
    }
    let q_lat = per_head(&mla.k_b, &q_nope, n, nope);
    // Every element written below.
    let mut qfull = scratch::take(n * nh * kw);
    for i in 0..n * nh {
        qfull[i * kw..i * kw + lora].copy_from_slice(&q_lat[i * lora..(i + 1) * lora]);
        qfull[i * kw + lora..(i + 1) * kw].copy_from_slice(&q_pe[i * rope..(i + 1) * rope]);
    }
    scratch::give(q_lat);
    ctx.trace("Qcur", il, &qfull);
    ctx.trace("Kcur", il, &keys);
    // The value is the key's latent: nothing more is cached.
    ctx.kv.write_rows(il, &ctx.rows, &keys, &[]);
    let a = attend(&qfull, n, c, il, None, ctx);
    scratch::give(qfull);
    ctx.trace("kqv_latent", il, &a);
    let o = per_head(&mla.v_b, &a, n, lora);
    ctx.trace("kqv_out", il, &o);
    let out = linear(&l.wo, None, &o, n);
    scratch::give(o);
    out
}
