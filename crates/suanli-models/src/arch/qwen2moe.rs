//! Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): the Qwen2 layer (biases on
//! Q, K and V) with a mixture of experts in every layer — a softmax router
//! whose top-k weights are not renormalised — plus a shared expert every
//! token goes through, scaled by a sigmoid gate of its own.

use super::{
    base_config, lacks_qkv_biases, llama, moe_required, require, ArchEntry, MoeDefaults, QKV_BIASES,
};
use crate::loader::{Loader, WeightSource};
use crate::nn::{Ffn, Gating, Transformer};
use crate::{Model, ModelConfig, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen2moe",
    build,
    config,
    extra_tensors: &[
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
        "ffn_gate_inp_shexp.weight",
    ],
    moe: true,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    let moe = MoeDefaults {
        gating: Gating::Softmax,
        norm: false,
        shared_default: true,
    };
    cfg.moe = Some(moe_required(&ld, &cfg, moe)?);
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let m = Transformer::load(&Loader::new(src), config(src)?, llama::layer)?;
    require(src, &m, QKV_BIASES, lacks_qkv_biases)?;
    require(
        src,
        &m,
        "blk.N.ffn_gate_inp_shexp.weight",
        |l| matches!(&l.ffn, Ffn::Moe(e) if e.shared_gate.is_none()),
    )?;
    Ok(Box::new(m))
}
