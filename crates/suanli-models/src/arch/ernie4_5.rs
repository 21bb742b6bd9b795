//! ERNIE 4.5 (Baidu): the Llama layer with RoPE on adjacent pairs in both
//! GGUF and Hugging Face layouts, and — in ERNIE-4.5-MoE (21B-A3B,
//! 300B-A47B) — a mixture of experts from `leading_dense_block_count` on,
//! every `interleave_moe_layer_step`-th layer: a softmax router whose picks
//! add a per-expert bias (`moe_statics`, selection only), the top k's
//! weights renormalised (their sum floored at `moe_norm_min`), and shared
//! experts every token goes through.

use suanli_kernels::ops::RopeStyle;

use super::{base_config, llama, moe_config, ArchEntry, MoeDefaults};
use crate::loader::{Loader, WeightSource};
use crate::nn::{Gating, Transformer};
use crate::{Model, ModelConfig, ModelError, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "ernie4_5",
    build,
    config,
    extra_tensors: &[],
    moe: false,
};

pub const ENTRY_MOE: ArchEntry = ArchEntry {
    name: "ernie4_5-moe",
    build,
    config,
    extra_tensors: &["exp_probs_b.bias", "ffn_gate_shexp.weight"],
    moe: true,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    cfg.rope_style = RopeStyle::Normal;
    let moe = MoeDefaults {
        gating: Gating::Softmax,
        norm: true,
        shared_default: false,
    };
    cfg.moe = moe_config(&ld, &cfg, moe)?;
    if let Some(m) = &mut cfg.moe {
        if let Some(min) = src
            .hf_config()
            .and_then(|c| c.get("moe_norm_min"))
            .and_then(|v| v.as_f64())
        {
            m.router.norm_min = min as f32;
        }
    } else if src.arch() == ENTRY_MOE.name {
        return Err(ModelError::Config {
            path: src.path().to_path_buf(),
            key: src.key_name("expert_count"),
            why: "missing: an ERNIE-4.5-MoE model has experts".into(),
        });
    }
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    Ok(Box::new(Transformer::load(
        &Loader::new(src),
        config(src)?,
        llama::layer,
    )?))
}
