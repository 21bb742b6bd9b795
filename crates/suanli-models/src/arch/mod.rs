//! The architecture registry: adding one is a file here plus a line in
//! [`REGISTRY`]. A registry-wide test builds a tiny model of every entry.

pub mod deepseek2;
pub mod ernie4_5;
pub mod gemma3;
pub mod gpt_oss;
pub mod hunyuan;
pub mod llama;
pub mod qwen2;
pub mod qwen2moe;
pub mod qwen3;
pub mod qwen3moe;

use suanli_kernels::ops::RopeStyle;

use crate::config::{yarn_get_mscale, Llama3Scaling, ModelConfig, MoeConfig, Yarn};
use crate::loader::{Loader, SourceFormat, WeightSource};
use crate::nn::{Gating, Layer, Router, Transformer};
use crate::{Model, ModelError, Result};

pub struct ArchEntry {
    /// `general.architecture` in GGUF; Hugging Face `model_type` maps onto it.
    pub name: &'static str,
    pub build: fn(&dyn WeightSource) -> Result<Box<dyn Model>>,
    /// The hyper-parameters `build` uses, read without loading a weight
    /// (what `suanli plan` counts from).
    pub config: fn(&dyn WeightSource) -> Result<ModelConfig>,
    /// Per-layer tensors beyond the common llama set, by name suffix (the
    /// tiny test models of [`crate::tiny`] are built from this).
    pub extra_tensors: &'static [&'static str],
    /// The feed-forward is a mixture of experts (the tiny models get one).
    pub moe: bool,
}

pub static REGISTRY: &[ArchEntry] = &[
    llama::ENTRY,
    qwen2::ENTRY,
    qwen3::ENTRY,
    gemma3::ENTRY,
    qwen2moe::ENTRY,
    qwen3moe::ENTRY,
    ernie4_5::ENTRY,
    ernie4_5::ENTRY_MOE,
    hunyuan::ENTRY_DENSE,
    hunyuan::ENTRY_MOE,
    gpt_oss::ENTRY,
    deepseek2::ENTRY,
];

pub fn known() -> String {
    REGISTRY
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The registry's entry for the source's architecture, or an error naming
/// the ones it knows.
pub fn entry(src: &dyn WeightSource) -> Result<&'static ArchEntry> {
    REGISTRY
        .iter()
        .find(|e| e.name == src.arch())
        .ok_or_else(|| ModelError::UnknownArch {
            path: src.path().to_path_buf(),
            arch: src.arch().to_string(),
            known: known(),
        })
}

pub fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    (entry(src)?.build)(src)
}

/// The source's hyper-parameters as its architecture reads them.
pub fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    (entry(src)?.config)(src)
}

/// Hyper-parameters every architecture shares, from GGUF keys or config.json.
pub fn base_config(ld: &Loader) -> Result<ModelConfig> {
    let src = ld.src;
    let n_embd = ld.usize("embedding_length")?;
    let n_head = ld.usize("attention.head_count")?;
    if n_head == 0 {
        return Err(ModelError::Config {
            path: src.path().to_path_buf(),
            key: src.key_name("attention.head_count"),
            why: "must be positive".into(),
        });
    }
    let n_head_kv = ld.usize_opt("attention.head_count_kv")?.unwrap_or(n_head);
    if n_head_kv == 0 || n_head % n_head_kv != 0 {
        return Err(ModelError::Config {
            path: src.path().to_path_buf(),
            key: src.key_name("attention.head_count_kv"),
            why: format!("{n_head_kv} does not divide head_count {n_head}"),
        });
    }
    let head_dim = ld
        .usize_opt("attention.key_length")?
        .unwrap_or(n_embd / n_head);
    let n_vocab = match src.get("token_embd.weight") {
        Some(w) if w.shape.len() == 2 => w.shape[1],
        _ => ld.usize("vocab_size")?,
    };
    let mut rope_theta = ld.f32_opt("rope.freq_base")?.unwrap_or(10000.0);
    let rope_dim = ld.usize_opt("rope.dimension_count")?.unwrap_or(head_dim);
    let mut rope_freq_factors = Vec::new();
    let mut rope_freq_scale = 1.0;
    let mut yarn = None;
    if let Some(f) = ld.vector_opt("rope_freqs.weight", rope_dim / 2)? {
        rope_freq_factors = f;
    }
    if let Some(v) = src
        .hparam("rope.scaling.type")
        .and_then(|v| v.as_str().map(str::to_string))
    {
        if v == "linear" || v == "yarn" {
            rope_freq_scale = 1.0 / ld.f32_opt("rope.scaling.factor")?.unwrap_or(1.0);
        }
        if v == "yarn" {
            let factor = 1.0 / rope_freq_scale;
            // llama.cpp reads DeepSeek's log multiplier divided by the 0.1
            // its converter multiplied it by.
            let log_mul = ld
                .f32_opt("rope.scaling.yarn_log_multiplier")?
                .unwrap_or(0.0)
                / if src.arch() == "deepseek2" { 0.1 } else { 1.0 };
            let mscale = if log_mul != 0.0 {
                // llama.cpp's DeepSeek-V2 reading of a log multiplier.
                let m = if src.arch() == "deepseek2" && log_mul != 1.0 {
                    log_mul
                } else {
                    1.0
                };
                yarn_get_mscale(factor, m) / yarn_get_mscale(factor, log_mul)
            } else {
                yarn_get_mscale(factor, 1.0)
            };
            let n_ctx = ld.usize_opt("context_length")?.unwrap_or(4096);
            yarn = Some(Yarn::new(
                factor,
                ld.usize_opt("rope.scaling.original_context_length")?
                    .unwrap_or(n_ctx) as f32,
                ld.f32_opt("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                ld.f32_opt("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                rope_theta,
                rope_dim,
                mscale,
                ld.f32_opt("rope.scaling.attn_factor")?.unwrap_or(1.0),
                true,
            ));
        }
    }
    if let Some(rs) = src
        .hf_config()
        .and_then(|c| crate::loader::hf_rope(c, "full_attention"))
    {
        let f = |k: &str| rs.get(k).and_then(|v| v.as_f64()).map(|v| v as f32);
        let ty = rs
            .get("rope_type")
            .or_else(|| rs.get("type"))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        match ty {
            "llama3" => {
                let s = Llama3Scaling {
                    factor: f("factor").unwrap_or(8.0),
                    low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
                    high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
                    original_max_position: f("original_max_position_embeddings").unwrap_or(8192.0),
                };
                rope_freq_factors = ModelConfig::llama3_freq_factors(&s, rope_theta, rope_dim);
            }
            "linear" => rope_freq_scale = 1.0 / f("factor").unwrap_or(1.0),
            "yarn" => {
                let factor = f("factor").unwrap_or(1.0);
                rope_freq_scale = 1.0 / factor;
                let mscale = match (f("attention_factor"), f("mscale"), f("mscale_all_dim")) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        yarn_get_mscale(factor, m) / yarn_get_mscale(factor, all)
                    }
                    _ => yarn_get_mscale(factor, 1.0),
                };
                let orig = f("original_max_position_embeddings")
                    .or_else(|| ld.f32_opt("context_length").ok().flatten())
                    .unwrap_or(4096.0);
                let truncate = rs.get("truncate").and_then(|v| v.as_bool()).unwrap_or(true);
                yarn = Some(Yarn::new(
                    factor,
                    orig,
                    f("beta_fast").unwrap_or(32.0),
                    f("beta_slow").unwrap_or(1.0),
                    rope_theta,
                    rope_dim,
                    mscale,
                    1.0,
                    truncate,
                ));
            }
            // HunYuan's NTK-alpha scaling: a larger base, fixed (llama.cpp's
            // converter bakes the same base into the GGUF).
            "dynamic" if f("alpha").is_some() => {
                let alpha = f("alpha").unwrap_or(1.0);
                let d = head_dim as f32;
                rope_theta =
                    (rope_theta as f64 * (alpha as f64).powf(d as f64 / (d as f64 - 2.0))) as f32;
            }
            "default" | "" => {}
            other => {
                return Err(ModelError::Config {
                    path: src.path().to_path_buf(),
                    key: "rope_scaling.rope_type".into(),
                    why: format!(
                        "'{other}' is not supported (llama3, linear, dynamic with alpha are)"
                    ),
                })
            }
        }
    }
    let n_layer = ld.usize("block_count")?;
    Ok(ModelConfig {
        arch: src.arch().to_string(),
        name: src.model_name(),
        n_vocab,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        head_dim,
        head_dim_v: ld.usize_opt("attention.value_length")?.unwrap_or(head_dim),
        n_ff: ld.usize("feed_forward_length")?,
        n_ctx_train: ld.usize_opt("context_length")?.unwrap_or(4096),
        rms_eps: ld
            .f32_opt("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-6),
        rope_theta,
        rope_theta_swa: rope_theta,
        rope_dim,
        rope_style: RopeStyle::Neox,
        rope_freq_factors,
        rope_freq_scale,
        yarn,
        swa_scaled: false,
        sliding_window: None,
        swa_layers: vec![false; n_layer],
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        scale_q: false,
        attn_softcap: None,
        qk_norm_after_rope: false,
        final_softcap: None,
        embed_scale: None,
        ggml_numerics: src.format() == SourceFormat::Gguf,
        moe: None,
        mla: None,
        n_nextn: 0,
    })
}

/// Whether the source stores Q/K rows permuted for adjacent-pair RoPE.
pub fn gguf_permuted(src: &dyn WeightSource) -> bool {
    src.format() == SourceFormat::Gguf
}

/// How an architecture routes when the file does not say (llama.cpp
/// hard-codes these per architecture; the GGUF keys
/// `expert_weights_norm`, `expert_gating_func`, `expert_weights_scale`
/// override them where present).
pub struct MoeDefaults {
    pub gating: Gating,
    pub norm: bool,
    /// The shared expert is `expert_shared_feed_forward_length` wide, or
    /// `feed_forward_length` when that key is absent (Qwen2-MoE); `false`:
    /// no shared expert unless the key says one.
    pub shared_default: bool,
}

/// The mixture-of-experts settings of a file, or `None` for a dense model
/// (no `expert_count`, or zero).
pub fn moe_config(ld: &Loader, c: &ModelConfig, d: MoeDefaults) -> Result<Option<MoeConfig>> {
    let n_expert = match ld.usize_opt("expert_count")? {
        None | Some(0) => return Ok(None),
        Some(n) => n,
    };
    let n_used = ld.usize("expert_used_count")?;
    let n_ff_exp = ld
        .usize_opt("expert_feed_forward_length")?
        .unwrap_or(c.n_ff);
    let n_ff_shexp = match ld.usize_opt("expert_shared_feed_forward_length")? {
        Some(n) => n,
        None if d.shared_default => c.n_ff,
        None => n_ff_exp * ld.usize_opt("expert_shared_count")?.unwrap_or(0),
    };
    let gating = match ld.usize_opt("expert_gating_func")? {
        None | Some(0) => d.gating,
        Some(1) => Gating::Softmax,
        Some(2) => Gating::Sigmoid,
        Some(3) => Gating::SoftmaxTopK,
        Some(other) => {
            return Err(ModelError::Config {
                path: ld.src.path().to_path_buf(),
                key: "expert_gating_func".into(),
                why: format!("{other} is not a gating function suanli knows (1 softmax, 2 sigmoid, 3 softmax of the top k)"),
            })
        }
    };
    let norm = match ld.src.hparam("expert_weights_norm") {
        Some(v) => v.as_bool().unwrap_or(d.norm),
        None => d.norm,
    };
    let mut router = Router::softmax(n_used, norm);
    router.gating = gating;
    router.scale = ld.f32_opt("expert_weights_scale")?.unwrap_or(1.0);
    router.groups = ld.usize_opt("expert_group_count")?.unwrap_or(1).max(1);
    router.groups_used = ld
        .usize_opt("expert_group_used_count")?
        .unwrap_or(router.groups);
    Ok(Some(MoeConfig {
        n_expert,
        n_ff_exp,
        n_ff_shexp,
        router,
        leading_dense: ld.usize_opt("leading_dense_block_count")?.unwrap_or(0),
        step: ld
            .usize_opt("interleave_moe_layer_step")?
            .unwrap_or(1)
            .max(1),
    }))
}

/// [`moe_config`] for an architecture whose every file has experts: their
/// absence is an error naming the key.
pub fn moe_required(ld: &Loader, c: &ModelConfig, d: MoeDefaults) -> Result<MoeConfig> {
    moe_config(ld, c, d)?.ok_or_else(|| ModelError::Config {
        path: ld.src.path().to_path_buf(),
        key: ld.src.key_name("expert_count"),
        why: format!("missing: a {} model has experts", ld.src.arch()),
    })
}

/// Every layer of `m` has what `lacks` looks for, or an error naming
/// `tensors` (tensors an architecture requires though the common loader
/// takes them as optional).
pub fn require(
    src: &dyn WeightSource,
    m: &Transformer,
    tensors: &str,
    lacks: impl Fn(&Layer) -> bool,
) -> Result<()> {
    match m.layers.iter().any(lacks) {
        true => Err(ModelError::MissingTensor {
            path: src.path().to_path_buf(),
            name: tensors.into(),
        }),
        false => Ok(()),
    }
}

/// The per-head Q/K norms (Qwen3, HunYuan).
pub const QK_NORMS: &str = "blk.N.attn_q_norm.weight / attn_k_norm.weight";

pub fn lacks_qk_norms(l: &Layer) -> bool {
    l.q_norm.is_none() || l.k_norm.is_none()
}

/// The Q/K/V biases (Qwen2).
pub const QKV_BIASES: &str = "blk.N.attn_q.bias / attn_k.bias / attn_v.bias";

pub fn lacks_qkv_biases(l: &Layer) -> bool {
    l.bq.is_none() || l.bk.is_none() || l.bv.is_none()
}
