//! DeepSeek-V2, V2-Lite, V3, R1 and Kimi K2 (llama.cpp's `deepseek2`):
//! multi-head latent attention ([`crate::nn::mla`]) with YaRN on the
//! decoupled RoPE part (adjacent pairs), leading dense layers, then a
//! mixture of experts with shared experts — V2's softmax router, V3's
//! sigmoid with a selection-only bias, group-limited top k, renormalised
//! weights and a routed scaling factor.
//!
//! The multi-token-prediction layer (`nextn`) after the trunk is loaded and
//! kept ([`crate::nn::Mtp`]), not run.
//!
//! A Hugging Face checkpoint keeps `kv_b_proj` whole; llama.cpp's converter
//! splits it into per-head `attn_k_b` (transposed) and `attn_v_b`, which
//! `names` does for a checkpoint as it loads.

use suanli_kernels::ops::RopeStyle;
use suanli_kernels::{Blob, DType};

use super::{base_config, llama, moe_required, ArchEntry, MoeDefaults};
use crate::config::yarn_get_mscale;
use crate::loader::{Loader, Remapped, SourceFormat, Weight, WeightSource};
use crate::nn::{Gating, MlaConfig, Transformer};
use crate::{Model, ModelConfig, ModelError, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "deepseek2",
    build,
    config,
    extra_tensors: &["exp_probs_b.bias", "ffn_gate_shexp.weight"],
    moe: true,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    let hf = src.hf_config();
    let hf_usize = |k: &str| {
        hf.and_then(|c| c.get(k))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
    };
    let config_err = |key: &str, why: String| ModelError::Config {
        path: src.path().to_path_buf(),
        key: key.into(),
        why,
    };
    let kv_lora_rank = ld.usize("attention.kv_lora_rank")?;
    let q_lora_rank = ld.usize_opt("attention.q_lora_rank")?.unwrap_or(0);
    let qk_rope = ld.usize("rope.dimension_count")?;
    let (qk_head, v_head) = match hf {
        Some(_) => {
            let nope = hf_usize("qk_nope_head_dim")
                .ok_or_else(|| config_err("qk_nope_head_dim", "missing".into()))?;
            let v =
                hf_usize("v_head_dim").ok_or_else(|| config_err("v_head_dim", "missing".into()))?;
            (nope + qk_rope, v)
        }
        // Newer files give the MLA head sizes apart (key_length is then the
        // latent attention's own, kv_lora_rank + rope).
        None => (
            ld.usize_opt("attention.key_length_mla")?
                .map_or_else(|| ld.usize("attention.key_length"), Ok)?,
            ld.usize_opt("attention.value_length_mla")?
                .map_or_else(|| ld.usize("attention.value_length"), Ok)?,
        ),
    };
    if qk_head <= qk_rope || qk_rope % 2 != 0 {
        return Err(config_err(
            &src.key_name("rope.dimension_count"),
            format!("{qk_rope} rotated of {qk_head} query/key dimensions per head"),
        ));
    }
    let mla = MlaConfig {
        q_lora_rank,
        kv_lora_rank,
        qk_nope: qk_head - qk_rope,
        qk_rope,
        v_head,
    };
    // Attention over one shared key head [latent | k_pe]; its value is the latent.
    cfg.n_head_kv = 1;
    cfg.head_dim = kv_lora_rank + qk_rope;
    cfg.head_dim_v = kv_lora_rank;
    cfg.rope_dim = qk_rope;
    cfg.rope_style = RopeStyle::Normal;
    cfg.mla = Some(mla);
    // The softmax scale: 1/√(nope + rope), times YaRN's magnitude squared.
    cfg.attn_scale = match (hf, cfg.yarn) {
        (Some(c), _) => {
            let rs = c.get("rope_scaling").filter(|v| v.is_object());
            let f = |k: &str| {
                rs.and_then(|r| r.get(k))
                    .and_then(|v| v.as_f64())
                    .map(|v| v as f32)
            };
            let m = match (f("factor"), f("mscale_all_dim")) {
                (Some(factor), Some(all)) if all != 0.0 => yarn_get_mscale(factor, all),
                _ => 1.0,
            };
            (qk_head as f32).powf(-0.5) * m * m
        }
        (None, Some(y)) => {
            // llama.cpp: the attention factor before its YaRN adjustment,
            // times the log multiplier's term (its key is stored × 0.1).
            let log_mul = ld
                .f32_opt("rope.scaling.yarn_log_multiplier")?
                .unwrap_or(0.0)
                / 0.1;
            let m = y.mscale * (1.0 + 0.1 * log_mul * (1.0 / cfg.rope_freq_scale).ln());
            1.0 * m * m / (qk_head as f32).sqrt()
        }
        (None, None) => 1.0 / (qk_head as f32).sqrt(),
    };
    // The multi-token-prediction layers follow the trunk: a GGUF's
    // block_count counts them, a config.json's num_hidden_layers does not.
    let nextn = ld.usize_opt("nextn_predict_layers")?.unwrap_or(0);
    if src.format() == SourceFormat::Gguf {
        if nextn >= cfg.n_layer {
            return Err(config_err(
                &src.key_name("nextn_predict_layers"),
                format!("{nextn} of {} layers", cfg.n_layer),
            ));
        }
        cfg.n_layer -= nextn;
    }
    cfg.n_nextn = nextn;
    cfg.swa_layers.truncate(cfg.n_layer);
    let sigmoid = match hf
        .and_then(|c| c.get("model_type"))
        .and_then(|v| v.as_str())
    {
        Some(t) => t != "deepseek_v2",
        None => false,
    };
    let moe = MoeDefaults {
        gating: if sigmoid {
            Gating::Sigmoid
        } else {
            Gating::Softmax
        },
        norm: false,
        shared_default: false,
    };
    cfg.moe = Some(moe_required(&ld, &cfg, moe)?);
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let names = Remapped { src, get: names };
    Ok(Box::new(Transformer::load(
        &Loader::new(&names),
        config(src)?,
        llama::layer,
    )?))
}

/// A checkpoint's tensors with its `kv_b_proj` split per head as
/// llama.cpp's converter splits it.
fn names(src: &dyn WeightSource, name: &str) -> Option<Weight> {
    if src.format() == SourceFormat::HuggingFace {
        if let Some(blk) = name.strip_suffix(".attn_k_b.weight") {
            return split_kv_b(src, blk, true);
        }
        if let Some(blk) = name.strip_suffix(".attn_v_b.weight") {
            return split_kv_b(src, blk, false);
        }
    }
    src.get(name)
}

/// Layer `blk`'s per-head `k_b` (transposed) or `v_b` out of `kv_b_proj`.
fn split_kv_b(src: &dyn WeightSource, blk: &str, keys: bool) -> Option<Weight> {
    let c = src.hf_config()?;
    let get = |k: &str| c.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    let (h, nope, v_head, lora) = (
        get("num_attention_heads")?,
        get("qk_nope_head_dim")?,
        get("v_head_dim")?,
        get("kv_lora_rank")?,
    );
    let w = src.get(&format!("{blk}.attn_kv_b.weight"))?;
    if w.shape != [lora, h * (nope + v_head)] {
        return None;
    }
    let f = w.dtype.traits().to_float?;
    let mut v = vec![0f32; lora * h * (nope + v_head)];
    f(w.data.bytes(), &mut v);
    let row = |r: usize| &v[r * lora..(r + 1) * lora];
    let mut out = Vec::with_capacity(h * lora * nope.max(v_head));
    let shape = if keys {
        // Per head (kv_lora_rank × nope): the head's key rows, transposed.
        for hh in 0..h {
            for l in 0..lora {
                out.extend((0..nope).map(|j| row(hh * (nope + v_head) + j)[l]));
            }
        }
        vec![nope, lora, h]
    } else {
        // Per head (v_head × kv_lora_rank): the head's value rows.
        for hh in 0..h {
            for i in 0..v_head {
                out.extend_from_slice(row(hh * (nope + v_head) + nope + i));
            }
        }
        vec![lora, v_head, h]
    };
    Some(Weight {
        dtype: DType::F32,
        shape,
        data: Blob::from_vec(out.iter().flat_map(|x| x.to_le_bytes()).collect()),
    })
}
