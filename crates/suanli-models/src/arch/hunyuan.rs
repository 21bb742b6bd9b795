//! Tencent HunYuan (Hunyuan-A13B and its dense siblings): the Llama layer
//! with per-head RMSNorm on Q and K applied after RoPE (NeoX style), and —
//! in `hunyuan-moe` — a mixture of experts in every layer: a softmax
//! router, the top k's weights renormalised, and a shared MLP every token
//! goes through.

use super::{
    base_config, lacks_qk_norms, llama, moe_required, require, ArchEntry, MoeDefaults, QK_NORMS,
};
use crate::loader::{Loader, WeightSource};
use crate::nn::{Gating, Transformer};
use crate::{Model, ModelConfig, Result};

pub const ENTRY_DENSE: ArchEntry = ArchEntry {
    name: "hunyuan-dense",
    build,
    config,
    extra_tensors: &["attn_q_norm.weight", "attn_k_norm.weight"],
    moe: false,
};

pub const ENTRY_MOE: ArchEntry = ArchEntry {
    name: "hunyuan-moe",
    build,
    config,
    extra_tensors: &[
        "attn_q_norm.weight",
        "attn_k_norm.weight",
        "ffn_gate_shexp.weight",
    ],
    moe: true,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    cfg.qk_norm_after_rope = true;
    if src.arch() == ENTRY_MOE.name {
        let moe = MoeDefaults {
            gating: Gating::Softmax,
            norm: true,
            shared_default: true,
        };
        cfg.moe = Some(moe_required(&ld, &cfg, moe)?);
        // The experts are feed_forward_length wide (as llama.cpp reads it).
        if let Some(m) = &mut cfg.moe {
            m.n_ff_exp = cfg.n_ff;
        }
    }
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let m = Transformer::load(&Loader::new(src), config(src)?, llama::layer)?;
    require(src, &m, QK_NORMS, lacks_qk_norms)?;
    Ok(Box::new(m))
}
