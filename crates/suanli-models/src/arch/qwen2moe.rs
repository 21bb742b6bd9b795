//! Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): the Qwen2 layer (biases on
//! Q, K and V) with a mixture of experts in every layer — a softmax router
//! whose top-k weights are not renormalised — plus a shared expert every
//! token goes through, scaled by a sigmoid gate of its own.

use super::{base_config, llama, moe_required, ArchEntry, MoeDefaults};
use crate::loader::{Loader, WeightSource};
use crate::nn::{Ffn, Gating, Transformer};
use crate::{Model, ModelError, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen2moe",
    build,
    extra_tensors: &[
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
        "ffn_gate_inp_shexp.weight",
    ],
    moe: true,
};

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    let moe = MoeDefaults {
        gating: Gating::Softmax,
        norm: false,
        shared_default: true,
    };
    cfg.moe = Some(moe_required(&ld, &cfg, moe)?);
    let m = Transformer::load(&ld, cfg, llama::layer)?;
    let missing = |name: &str| ModelError::MissingTensor {
        path: src.path().to_path_buf(),
        name: name.into(),
    };
    for l in &m.layers {
        if l.bq.is_none() || l.bk.is_none() || l.bv.is_none() {
            return Err(missing("blk.N.attn_q.bias / attn_k.bias / attn_v.bias"));
        }
        if let Ffn::Moe(e) = &l.ffn {
            if e.shared_gate.is_none() {
                return Err(missing("blk.N.ffn_gate_inp_shexp.weight"));
            }
        }
    }
    Ok(Box::new(m))
}
