//! Qwen2 / Qwen2.5 (and the DeepSeek-R1 Qwen distills): the Llama layer with
//! biases on the Q, K and V projections; RoPE on halves (NeoX style).

use super::{base_config, lacks_qkv_biases, llama, require, ArchEntry, QKV_BIASES};
use crate::loader::{Loader, WeightSource};
use crate::nn::Transformer;
use crate::{Model, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen2",
    build,
    extra_tensors: &["attn_q.bias", "attn_k.bias", "attn_v.bias"],
    moe: false,
};

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let ld = Loader::new(src);
    let cfg = base_config(&ld)?;
    let m = Transformer::load(&ld, cfg, llama::layer)?;
    // The biases are part of the architecture: require them.
    require(src, &m, QKV_BIASES, lacks_qkv_biases)?;
    Ok(Box::new(m))
}
