//! Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B): the Qwen3 layer (per-head RMSNorm
//! on Q and K, no biases) with a mixture of experts in every layer — a
//! softmax router over all experts, the top k's weights renormalised, no
//! shared expert.

use super::{base_config, llama, moe_required, ArchEntry, MoeDefaults};
use crate::loader::{Loader, WeightSource};
use crate::nn::{Gating, Transformer};
use crate::{Model, ModelError, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen3moe",
    build,
    extra_tensors: &["attn_q_norm.weight", "attn_k_norm.weight"],
    moe: true,
};

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    let moe = MoeDefaults {
        gating: Gating::Softmax,
        norm: true,
        shared_default: false,
    };
    cfg.moe = Some(moe_required(&ld, &cfg, moe)?);
    let m = Transformer::load(&ld, cfg, llama::layer)?;
    if m.layers
        .iter()
        .any(|l| l.q_norm.is_none() || l.k_norm.is_none())
    {
        return Err(ModelError::MissingTensor {
            path: src.path().to_path_buf(),
            name: "blk.N.attn_q_norm.weight / attn_k_norm.weight".into(),
        });
    }
    Ok(Box::new(m))
}
