//! Gemma 3 (text): embeddings scaled by √n_embd; five sliding-window layers
//! (local RoPE base 10,000) for each global one; RMSNorm on Q/K per head;
//! extra norms after attention and after the feed-forward; GeGLU (tanh GELU).

use super::{base_config, ArchEntry};
use crate::loader::{Loader, WeightSource};
use crate::nn::{feed_forward, rms_norm_rows, self_attention, Input, Transformer};
use crate::{Batch, Model, ModelConfig, ModelError, Result};
use suanli_kernels::ops;

pub const ENTRY: ArchEntry = ArchEntry {
    name: "gemma3",
    build,
    config,
    extra_tensors: &[
        "attn_q_norm.weight",
        "attn_k_norm.weight",
        "post_attention_norm.weight",
        "post_ffw_norm.weight",
    ],
    moe: false,
};

/// One global layer per this many (Gemma 3's `sliding_window_pattern`).
const SWA_PATTERN: usize = 6;

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    cfg.embed_scale = Some((cfg.n_embd as f32).sqrt());
    cfg.scale_q = true;
    cfg.sliding_window = ld.usize_opt("attention.sliding_window")?;
    cfg.rope_theta_swa = 10000.0;
    cfg.swa_layers = (0..cfg.n_layer)
        .map(|il| il % SWA_PATTERN < SWA_PATTERN - 1)
        .collect();
    cfg.final_softcap = ld.f32_opt("final_logit_softcapping")?;
    cfg.attn_softcap = ld.f32_opt("attn_logit_softcapping")?;
    if let Some(hf) = src.hf_config() {
        let local = hf
            .get("rope_parameters")
            .and_then(|p| p.get("sliding_attention"));
        if let Some(b) = hf
            .get("rope_local_base_freq")
            .or_else(|| local.and_then(|r| r.get("rope_theta")))
            .and_then(|v| v.as_f64())
        {
            cfg.rope_theta_swa = b as f32;
        }
        if let Some(s) = hf.get("query_pre_attn_scalar").and_then(|v| v.as_f64()) {
            cfg.attn_scale = 1.0 / (s as f32).sqrt();
        }
        if let Some(types) = hf.get("layer_types").and_then(|v| v.as_array()) {
            cfg.swa_layers = types
                .iter()
                .map(|t| t.as_str() == Some("sliding_attention"))
                .collect();
        } else if let Some(p) = hf.get("sliding_window_pattern").and_then(|v| v.as_u64()) {
            let p = p.max(1) as usize;
            cfg.swa_layers = (0..cfg.n_layer).map(|il| il % p < p - 1).collect();
        }
    }
    if cfg.swa_layers.len() != cfg.n_layer {
        return Err(ModelError::Config {
            path: src.path().to_path_buf(),
            key: "layer_types".into(),
            why: format!(
                "{} entries for {} layers",
                cfg.swa_layers.len(),
                cfg.n_layer
            ),
        });
    }
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let m = Transformer::load(&Loader::new(src), config(src)?, layer)?;
    if m.layers
        .iter()
        .any(|l| l.post_attn_norm.is_none() || l.post_ffw_norm.is_none() || l.q_norm.is_none())
    {
        return Err(ModelError::MissingTensor {
            path: src.path().to_path_buf(),
            name: "blk.N.post_attention_norm / post_ffw_norm / attn_q_norm".into(),
        });
    }
    Ok(Box::new(m))
}

/// x += Norm(Attn(Norm(x))); x += Norm(FFN(Norm(x))).
fn layer(m: &Transformer, il: usize, x: &mut [f32], n: usize, ctx: &mut Batch) {
    let (c, l) = (&m.cfg, &m.layers[il]);
    let eps = c.rms_eps;
    let a = self_attention(m, il, Input::rms_norm(x, &l.attn_norm, eps), n, ctx);
    let a = match &l.post_attn_norm {
        Some(w) => rms_norm_rows(&a, w, eps),
        None => a,
    };
    ops::add_inplace(x, &a);
    ctx.trace("ffn_inp", il, x);
    let f = feed_forward(
        &l.ffn,
        il,
        Input::rms_norm(x, &l.ffn_norm, eps),
        n,
        if c.ggml_numerics {
            ops::Glu::GeGlu
        } else {
            ops::Glu::GeGluExact
        },
        ctx,
    );
    let f = match &l.post_ffw_norm {
        Some(w) => rms_norm_rows(&f, w, eps),
        None => f,
    };
    ops::add_inplace(x, &f);
}
