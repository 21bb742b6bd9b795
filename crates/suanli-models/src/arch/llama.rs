//! Llama (Touvron et al. 2023; Llama 3 with its RoPE scaling) and SmolLM2:
//! pre-norm decoder, RMSNorm, RoPE, grouped-query attention, SwiGLU. With
//! experts (`expert_count`), Mixtral: every layer's feed-forward a mixture,
//! softmax router, top-k weights renormalised.

use suanli_kernels::ops::{self, RopeStyle};

use super::{base_config, gguf_permuted, moe_config, ArchEntry, MoeDefaults};
use crate::loader::{Loader, WeightSource};
use crate::nn::Gating;
use crate::nn::{feed_forward, self_attention, Input, Transformer};
use crate::{Batch, Model, ModelConfig, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "llama",
    build,
    config,
    extra_tensors: &[],
    moe: false,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    cfg.rms_eps = ld
        .f32_opt("attention.layer_norm_rms_epsilon")?
        .unwrap_or(1e-5);
    // llama.cpp's converter permutes Q/K so that RoPE pairs adjacent dims.
    if gguf_permuted(src) {
        cfg.rope_style = RopeStyle::Normal;
    }
    let moe = MoeDefaults {
        gating: Gating::Softmax,
        norm: true,
        shared_default: false,
    };
    cfg.moe = moe_config(&ld, &cfg, moe)?;
    // Mixtral's experts are feed_forward_length wide (as llama.cpp reads it).
    if let Some(m) = &mut cfg.moe {
        m.n_ff_exp = cfg.n_ff;
    }
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    Ok(Box::new(Transformer::load(
        &Loader::new(src),
        config(src)?,
        layer,
    )?))
}

/// x += Attn(RMSNorm(x)); x += FFN(RMSNorm(x)).
pub fn layer(m: &Transformer, il: usize, x: &mut [f32], n: usize, ctx: &mut Batch) {
    block(m, il, x, n, ctx, ops::Glu::SwiGlu)
}

/// [`layer`] with the feed-forward's activation `act`.
pub fn block(m: &Transformer, il: usize, x: &mut [f32], n: usize, ctx: &mut Batch, act: ops::Glu) {
    let (c, l) = (&m.cfg, &m.layers[il]);
    let h = Input::rms_norm(x, &l.attn_norm, c.rms_eps);
    let a = self_attention(m, il, h, n, ctx);
    ops::add_inplace(x, &a);
    ctx.trace("ffn_inp", il, x);
    let h = Input::rms_norm(x, &l.ffn_norm, c.rms_eps);
    let f = feed_forward(&l.ffn, il, h, n, act, ctx);
    ctx.trace("ffn_out", il, &f);
    ops::add_inplace(x, &f);
}
