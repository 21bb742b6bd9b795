//! Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B): the Qwen3 layer (per-head RMSNorm
//! on Q and K, no biases) with a mixture of experts in every layer — a
//! softmax router over all experts, the top k's weights renormalised, no
//! shared expert.

use super::{
    base_config, lacks_qk_norms, llama, moe_required, require, ArchEntry, MoeDefaults, QK_NORMS,
};
use crate::loader::{Loader, WeightSource};
use crate::nn::{Gating, Transformer};
use crate::{Model, ModelConfig, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen3moe",
    build,
    config,
    extra_tensors: &["attn_q_norm.weight", "attn_k_norm.weight"],
    moe: true,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    let moe = MoeDefaults {
        gating: Gating::Softmax,
        norm: true,
        shared_default: false,
    };
    cfg.moe = Some(moe_required(&ld, &cfg, moe)?);
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let m = Transformer::load(&Loader::new(src), config(src)?, llama::layer)?;
    require(src, &m, QK_NORMS, lacks_qk_norms)?;
    Ok(Box::new(m))
}
