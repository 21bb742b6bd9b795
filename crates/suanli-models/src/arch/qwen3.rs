//! Qwen3 dense: the Llama layer with per-head RMSNorm on Q and K before
//! RoPE, no biases, and a head size independent of n_embd / n_head.

use super::{base_config, lacks_qk_norms, llama, require, ArchEntry, QK_NORMS};
use crate::loader::{Loader, WeightSource};
use crate::nn::Transformer;
use crate::{Model, ModelConfig, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen3",
    build,
    config,
    extra_tensors: &["attn_q_norm.weight", "attn_k_norm.weight"],
    moe: false,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    base_config(&Loader::new(src))
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let m = Transformer::load(&Loader::new(src), config(src)?, llama::layer)?;
    require(src, &m, QK_NORMS, lacks_qk_norms)?;
    Ok(Box::new(m))
}
