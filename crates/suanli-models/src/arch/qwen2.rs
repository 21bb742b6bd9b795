//! Qwen2 / Qwen2.5 (and the DeepSeek-R1 Qwen distills): the Llama layer with
//! biases on the Q, K and V projections; RoPE on halves (NeoX style).

use super::{base_config, lacks_qkv_biases, llama, require, ArchEntry, QKV_BIASES};
use crate::loader::{Loader, WeightSource};
use crate::nn::Transformer;
use crate::{Model, ModelConfig, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen2",
    build,
    config,
    extra_tensors: &["attn_q.bias", "attn_k.bias", "attn_v.bias"],
    moe: false,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    base_config(&Loader::new(src))
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let m = Transformer::load(&Loader::new(src), config(src)?, llama::layer)?;
    // The biases are part of the architecture: require them.
    require(src, &m, QKV_BIASES, lacks_qkv_biases)?;
    Ok(Box::new(m))
}
