//! The attention block: grouped-query attention over the paged KV cache.

use suanli_kernels::attention::{attention, AttnShape};
use suanli_kernels::ops;

use super::{latent_attention, linear, linear_many, rope_angles, rope_rows, Input, Transformer};
use crate::config::ModelConfig;
use crate::Batch;

/// Multi-head attention with grouped K/V heads (GQA), causal and optionally
/// windowed, each sequence of the batch over its own cached K/V: `q` is
/// `n × n_head·hd` (already rotated), the batch's K/V already written.
/// Returns `n × n_head·hdv`.
///
/// The kernel follows llama.cpp's CPU flash attention (see
/// [`suanli_kernels::attention`]), so greedy outputs agree token for token.
pub fn attend(
    q: &[f32],
    n: usize,
    c: &ModelConfig,
    il: usize,
    sinks: Option<&[f32]>,
    ctx: &Batch,
) -> Vec<f32> {
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
            // A value width of 0: the values are the keys' first values
            // (latent attention's cache).
            v_stride: match ctx.kv.v_width {
                0 => ctx.kv.k_width,
                w => w,
            },
            scale: if c.scale_q { 1.0 } else { c.attn_scale },
            softcap: c.attn_softcap,
            window,
            pages: s.pages,
            sinks,
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
    let [wq, wk, wv] = match (&l.qkv, &l.mla) {
        (Some(qkv), _) => qkv,
        (None, Some(mla)) => return latent_attention(m, mla, il, h, n, ctx),
        (None, None) => unreachable!("Layer::load loads Q/K/V or latent attention"),
    };
    if ctx.tracing() {
        ctx.trace("attn_norm", il, &h.rows());
    }
    let [mut q, mut k, v] = linear_many(
        [
            (wq, l.bq.as_deref()),
            (wk, l.bk.as_deref()),
            (wv, l.bv.as_deref()),
        ],
        h,
        n,
    );
    ctx.trace("Qraw", il, &q);
    // Per-head Q/K norms, before RoPE or (HunYuan) after it.
    let head_norm = |x: &mut [f32], w: &Option<Vec<f32>>| {
        if let Some(w) = w {
            x.chunks_exact_mut(c.head_dim)
                .for_each(|h| ops::rms_norm_inplace(h, w, c.rms_eps));
        }
    };
    if !c.qk_norm_after_rope {
        head_norm(&mut q, &l.q_norm);
        head_norm(&mut k, &l.k_norm);
    }
    ctx.trace("Qnorm", il, &q);
    ctx.trace("Knorm", il, &k);
    let swa = c.swa_layers.get(il).copied().unwrap_or(false);
    let (base, scale, factors) = if swa {
        match c.swa_scaled {
            true => (c.rope_theta_swa, c.rope_freq_scale, true),
            false => (c.rope_theta_swa, 1.0, false),
        }
    } else {
        (c.rope_theta, c.rope_freq_scale, true)
    };
    let angles = rope_angles(ctx, c, base, scale, factors);
    rope_rows(&mut q, c.n_head, c, angles);
    if c.qk_norm_after_rope {
        head_norm(&mut q, &l.q_norm);
    }
    if c.scale_q {
        q.iter_mut().for_each(|v| *v *= c.attn_scale);
    }
    if ctx.tracing() {
        let angles = rope_angles(ctx, c, base, scale, factors);
        rope_rows(&mut k, c.n_head_kv, c, angles);
        if c.qk_norm_after_rope {
            head_norm(&mut k, &l.k_norm);
        }
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
            if c.qk_norm_after_rope {
                head_norm(row, &l.k_norm);
            }
        });
    }
    let a = attend(&q, n, c, il, l.attn_sinks.as_deref(), ctx);
    ctx.trace("kqv_out", il, &a);
    linear(&l.wo, l.bo.as_deref(), &a, n)
}
