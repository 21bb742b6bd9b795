//! What running a model takes, from its hyper-parameters alone (`suanli
//! plan`): parameters (total, and active a token for a mixture of
//! experts), weight bytes at the file's tensor types or at a llama-quantize
//! type, the bytes one decoded token reads, and KV-cache bytes per position.
//! No weight is read: a GGUF's header (metadata and tensor infos) or a
//! Hugging Face `config.json` is enough. (A Llama 3 GGUF keeps its RoPE
//! frequency factors in a 64-value tensor, which the config reads.)
//!
//! Every count goes over one list of tensors in GGUF names: a GGUF's own,
//! its byte sizes exact, or the list a config implies ([`config_tensors`]:
//! what llama.cpp's converter writes for it, split `k_b`/`v_b` for latent
//! attention).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use suanli_kernels::DType;

use crate::arch::{self, ArchEntry};
use crate::kv::KvDtype;
use crate::loader::{GgufSource, HfSource, Loader, SourceFormat, WeightSource};
use crate::nn::Gating;
use crate::{ModelConfig, ModelError, Result};

/// One tensor as the plan counts it.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// GGUF name (`blk.3.ffn_down_exps.weight`).
    pub name: String,
    /// Dimensions, innermost (the row) first.
    pub shape: Vec<usize>,
    /// Its type's name and its bytes in the file, where a file has it.
    pub stored: Option<(String, u64)>,
}

impl Tensor {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// The layer of a `blk.N.…` tensor.
    fn layer(&self) -> Option<usize> {
        self.name
            .strip_prefix("blk.")?
            .split('.')
            .next()?
            .parse()
            .ok()
    }

    /// A tensor of a mixture's routed experts (llama.cpp's 3-D `ffn_*_exps`,
    /// their biases too).
    fn routed(&self) -> bool {
        self.name.contains("_exps")
    }
}

/// A model as its file describes it.
pub struct Shapes {
    pub path: PathBuf,
    pub format: SourceFormat,
    /// The hyper-parameters as the architecture reads them to load.
    pub cfg: ModelConfig,
    pub tensors: Vec<Tensor>,
    /// Multi-token-prediction layers after the `cfg.n_layer` of the trunk
    /// (DeepSeek's `nextn`): in the file, never run for a token.
    pub nextn: usize,
    /// The type a config's checkpoint stores its tensors in (`torch_dtype`,
    /// bf16 when it does not say); `None` for a GGUF, whose tensors have
    /// their own.
    pub dtype: Option<DType>,
}

/// Read `path`: a `.gguf` file (header only), a `config.json`, or a
/// directory holding one (its safetensors, if any, left alone).
pub fn read(path: &Path) -> Result<Shapes> {
    if !path.exists() {
        return Err(ModelError::Format(suanli_formats::FormatError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        }));
    }
    if path.is_dir() || path.extension().is_some_and(|e| e == "json") {
        from_config(path)
    } else {
        from_gguf(path)
    }
}

fn from_gguf(path: &Path) -> Result<Shapes> {
    let src = GgufSource::open(path)?;
    let cfg = arch::config(&src)?;
    let nextn = Loader::new(&src)
        .usize("block_count")?
        .saturating_sub(cfg.n_layer);
    // A type suanli does not implement (the IQ formats) has no size in the
    // header; the gap to the next tensor's data (or the file's end) is its
    // size up to the alignment padding.
    let file_len = std::fs::metadata(path)
        .map_err(|e| {
            ModelError::Format(suanli_formats::FormatError::Io {
                path: path.to_path_buf(),
                source: e,
            })
        })?
        .len();
    let mut starts: Vec<u64> = src.file.tensors.iter().map(|t| t.offset).collect();
    starts.sort_unstable();
    let gap = |off: u64| {
        let i = starts.partition_point(|&s| s <= off);
        starts
            .get(i)
            .copied()
            .unwrap_or(file_len)
            .saturating_sub(off)
    };
    let tensors = src
        .file
        .tensors
        .iter()
        .map(|t| Tensor {
            name: t.name.clone(),
            shape: t.shape.iter().map(|&d| d as usize).collect(),
            stored: Some((t.type_name(), t.size.unwrap_or_else(|| gap(t.offset)))),
        })
        .collect();
    Ok(Shapes {
        path: path.to_path_buf(),
        format: SourceFormat::Gguf,
        cfg,
        tensors,
        nextn,
        dtype: None,
    })
}

fn from_config(path: &Path) -> Result<Shapes> {
    let src = HfSource::open_config(path)?;
    let entry = arch::entry(&src)?;
    let cfg = (entry.config)(&src)?;
    let hf = src.hf_config();
    let get = |k: &str| hf.and_then(|c| c.get(k)).filter(|v| !v.is_null());
    let bad = |key: &str, why: String| ModelError::Config {
        path: src.path().to_path_buf(),
        key: key.into(),
        why,
    };
    let nextn = match get("num_nextn_predict_layers") {
        None => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            bad(
                "num_nextn_predict_layers",
                format!("expected a non-negative integer, got {v}"),
            )
        })? as usize,
    };
    // transformers' configs default to untied except Gemma's.
    let tied = match get("tie_word_embeddings") {
        None => cfg.arch == "gemma3",
        Some(v) => v.as_bool().ok_or_else(|| {
            bad(
                "tie_word_embeddings",
                format!("expected a boolean, got {v}"),
            )
        })?,
    };
    let (key, dtype) = match (get("torch_dtype"), get("dtype")) {
        (Some(v), _) => ("torch_dtype", Some(v)),
        (None, v) => ("dtype", v),
    };
    let dtype = match dtype.map(|v| v.as_str().unwrap_or("")) {
        None | Some("bfloat16") => DType::BF16,
        Some("float16") => DType::F16,
        Some("float32") => DType::F32,
        Some(other) => {
            return Err(bad(
                key,
                format!(
                    "'{other}' is not a weight type suanli plans for (bfloat16, float16, float32)"
                ),
            ))
        }
    };
    let tensors = config_tensors(&cfg, entry, tied, nextn);
    Ok(Shapes {
        path: src.path().to_path_buf(),
        format: SourceFormat::HuggingFace,
        cfg,
        tensors,
        nextn,
        dtype: Some(dtype),
    })
}

/// The tensors a model of `cfg` has, as llama.cpp's converter writes them
/// (shapes innermost first): embeddings, the output unless `tied`, each
/// layer's attention (grouped-query, or latent with or without a query
/// LoRA), dense feed-forward or mixture (router, routed experts, shared
/// expert) as the config's layer plan says, the architecture's extras
/// ([`ArchEntry::extra_tensors`]: biases, Q/K norms, sinks…), and `nextn`
/// multi-token-prediction layers after the trunk, as DeepSeek-V3's
/// checkpoint stores its one: a full layer plus its input projection
/// `eh_proj`, three norms and its own copies of the embeddings and the
/// output head (671 B + 13.5 B in V3's: the "685B" of its model card).
pub fn config_tensors(
    cfg: &ModelConfig,
    entry: &ArchEntry,
    tied: bool,
    nextn: usize,
) -> Vec<Tensor> {
    let d = cfg.n_embd;
    let mut out = Vec::new();
    let mut add = |name: String, shape: &[usize]| {
        out.push(Tensor {
            name,
            shape: shape.to_vec(),
            stored: None,
        })
    };
    add("token_embd.weight".into(), &[d, cfg.n_vocab]);
    add("output_norm.weight".into(), &[d]);
    if !tied {
        add("output.weight".into(), &[d, cfg.n_vocab]);
    }
    let (q_dim, k_dim, v_dim) = (
        cfg.n_head * cfg.head_dim,
        cfg.n_head_kv * cfg.head_dim,
        cfg.n_head_kv * cfg.head_dim_v,
    );
    let moe = cfg.moe.as_ref();
    let n_expert = moe.map_or(0, |m| m.n_expert);
    let n_ff_exp = moe.map_or(0, |m| m.n_ff_exp);
    // DeepSeek-V2's softmax router has no selection bias; V3's sigmoid one does.
    let sigmoid = moe.is_some_and(|m| m.router.gating == Gating::Sigmoid);
    for il in 0..cfg.n_layer + nextn {
        let mut add = |s: &str, shape: &[usize]| add(format!("blk.{il}.{s}"), shape);
        add("attn_norm.weight", &[d]);
        match &cfg.mla {
            Some(m) => {
                let (h, qk) = (cfg.n_head, m.qk_nope + m.qk_rope);
                if m.q_lora_rank > 0 {
                    add("attn_q_a.weight", &[d, m.q_lora_rank]);
                    add("attn_q_a_norm.weight", &[m.q_lora_rank]);
                    add("attn_q_b.weight", &[m.q_lora_rank, h * qk]);
                } else {
                    add("attn_q.weight", &[d, h * qk]);
                }
                add("attn_kv_a_mqa.weight", &[d, m.kv_lora_rank + m.qk_rope]);
                add("attn_kv_a_norm.weight", &[m.kv_lora_rank]);
                add("attn_k_b.weight", &[m.qk_nope, m.kv_lora_rank, h]);
                add("attn_v_b.weight", &[m.kv_lora_rank, m.v_head, h]);
                add("attn_output.weight", &[h * m.v_head, d]);
            }
            None => {
                add("attn_q.weight", &[d, q_dim]);
                add("attn_k.weight", &[d, k_dim]);
                add("attn_v.weight", &[d, v_dim]);
                add("attn_output.weight", &[cfg.n_head * cfg.head_dim_v, d]);
            }
        }
        add("ffn_norm.weight", &[d]);
        let moe_layer = cfg.is_moe_layer(il);
        match moe.filter(|_| moe_layer) {
            Some(m) => {
                let e = m.n_expert;
                add("ffn_gate_inp.weight", &[d, e]);
                add("ffn_gate_exps.weight", &[d, m.n_ff_exp, e]);
                add("ffn_up_exps.weight", &[d, m.n_ff_exp, e]);
                add("ffn_down_exps.weight", &[m.n_ff_exp, d, e]);
                if m.n_ff_shexp > 0 {
                    add("ffn_gate_shexp.weight", &[d, m.n_ff_shexp]);
                    add("ffn_up_shexp.weight", &[d, m.n_ff_shexp]);
                    add("ffn_down_shexp.weight", &[m.n_ff_shexp, d]);
                }
            }
            None => {
                add("ffn_gate.weight", &[d, cfg.n_ff]);
                add("ffn_up.weight", &[d, cfg.n_ff]);
                add("ffn_down.weight", &[cfg.n_ff, d]);
            }
        }
        for &t in entry.extra_tensors {
            let experts = t.starts_with("exp_") || t.starts_with("ffn_");
            // The shared expert's matrices come with its width above.
            if t.ends_with("_shexp.weight") && t != "ffn_gate_inp_shexp.weight"
                || experts && !moe_layer
                || t == "exp_probs_b.bias" && cfg.arch == "deepseek2" && !sigmoid
            {
                continue;
            }
            let shape: &[usize] = match t {
                "attn_q.bias" => &[q_dim],
                "attn_k.bias" => &[k_dim],
                "attn_v.bias" => &[v_dim],
                "attn_q_norm.weight" | "attn_k_norm.weight" => &[cfg.head_dim],
                "attn_sinks.weight" => &[cfg.n_head],
                "exp_probs_b.bias" | "ffn_gate_inp.bias" => &[n_expert],
                "ffn_gate_exps.bias" | "ffn_up_exps.bias" => &[n_ff_exp, n_expert],
                "ffn_down_exps.bias" => &[d, n_expert],
                // Norms and biases of the residual's width: attn_output.bias,
                // post_attention_norm, post_ffw_norm, ffn_gate_inp_shexp.
                _ => &[d],
            };
            add(t, shape);
        }
        if il >= cfg.n_layer {
            add("nextn.eh_proj.weight", &[2 * d, d]);
            add("nextn.enorm.weight", &[d]);
            add("nextn.hnorm.weight", &[d]);
            add("nextn.shared_head_norm.weight", &[d]);
            add("nextn.embed_tokens.weight", &[d, cfg.n_vocab]);
            add("nextn.shared_head_head.weight", &[d, cfg.n_vocab]);
        }
    }
    out
}

/// A quantization as `llama-quantize` makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// Every quantizable tensor in one type (F32, F16, BF16, Q8_0, Q6_K,
    /// Q5_0, Q5_1, Q4_0, Q4_1), with llama-quantize's output rule.
    Type(DType),
    /// The K-quant mixes: `base` (Q4_K or Q5_K) with more bits for some
    /// tensors — `_M`: Q6_K for the output, and for `attn_v` and
    /// `ffn_down` on llama.cpp's `use_more_bits` layers (the first and last
    /// eighth and every third between); `_S`: Q5_K for a few early ones.
    KMix { base: DType, medium: bool },
    /// `MXFP4_MOE`: the routed experts in MXFP4, every other matrix Q8_0.
    Mxfp4Moe,
}

impl std::str::FromStr for Quant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let q = match s.to_ascii_uppercase().as_str() {
            "F32" => Quant::Type(DType::F32),
            "F16" => Quant::Type(DType::F16),
            "BF16" => Quant::Type(DType::BF16),
            "Q8_0" => Quant::Type(DType::Q8_0),
            "Q6_K" => Quant::Type(DType::Q6_K),
            "Q5_0" => Quant::Type(DType::Q5_0),
            "Q5_1" => Quant::Type(DType::Q5_1),
            "Q4_0" => Quant::Type(DType::Q4_0),
            "Q4_1" => Quant::Type(DType::Q4_1),
            "Q5_K_M" => Quant::KMix {
                base: DType::Q5_K,
                medium: true,
            },
            "Q5_K_S" => Quant::KMix {
                base: DType::Q5_K,
                medium: false,
            },
            "Q4_K_M" => Quant::KMix {
                base: DType::Q4_K,
                medium: true,
            },
            "Q4_K_S" => Quant::KMix {
                base: DType::Q4_K,
                medium: false,
            },
            "MXFP4" | "MXFP4_MOE" => Quant::Mxfp4Moe,
            _ => {
                return Err(format!(
                    "unknown quantization {s:?} (F32, F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_K_S, \
                     Q5_0, Q5_1, Q4_K_M, Q4_K_S, Q4_0, Q4_1, MXFP4)"
                ))
            }
        };
        Ok(q)
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Quant::Type(t) => f.write_str(t.traits().name),
            Quant::KMix { base, medium } => {
                let b = base.traits().name;
                write!(f, "{b}_{}", if *medium { "M" } else { "S" })
            }
            Quant::Mxfp4Moe => f.write_str("MXFP4_MOE"),
        }
    }
}

/// What llama-quantize's type choice depends on beyond the tensor.
struct Mix {
    /// Layers of the file, multi-token prediction included.
    n_layer_all: usize,
    n_expert: usize,
    /// The embedding table is also the output.
    tied: bool,
    /// `attn_v`-like tensors (`attn_v`, `attn_qkv`, `attn_kv_b`) in the file.
    n_attn_v: usize,
}

fn attn_v_like(name: &str) -> bool {
    ["attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"]
        .iter()
        .any(|s| name.contains(s))
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and
/// every third one between.
fn use_more_bits(i: usize, n: usize) -> bool {
    // (C's remainder: never 2 below n / 8, where the first test holds.)
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64) % 3 == 2
}

/// llama-quantize's `tensor_allows_quantization`: matrices (two or more
/// dimensions above 1) named `…weight`, not norms, not the router.
fn quantizable(t: &Tensor) -> bool {
    t.shape.iter().filter(|&&d| d > 1).count() >= 2
        && t.name.ends_with("weight")
        && !t.name.ends_with("_norm.weight")
        && !t.name.contains("ffn_gate_inp.weight")
}

/// The type llama-quantize gives tensor `t` under `q` (`i_attn_v`: how many
/// `attn_v`-like tensors came before it), after `llama_tensor_get_type`'s
/// rules for the types [`Quant`] covers and its fallback for rows that are
/// not whole blocks. (Its 70B-Llama rule is left out.)
fn quant_type(q: Quant, t: &Tensor, m: &Mix, i_attn_v: usize) -> DType {
    let name = t.name.as_str();
    let (base, k_mix) = match q {
        Quant::Type(b) => (b, None),
        Quant::KMix { base, medium } => (base, Some(medium)),
        Quant::Mxfp4Moe => (DType::MXFP4, None),
    };
    if !base.is_quantized() {
        return base;
    }
    let nx = t.shape.first().copied().unwrap_or(0);
    let il = t.layer().unwrap_or(0);
    let n = m.n_layer_all;
    let mut ty = base;
    if name == "output.weight" || (m.tied && name == "token_embd.weight") {
        ty = if q == Quant::Mxfp4Moe || !nx.is_multiple_of(base.block_size()) || base == DType::Q8_0
        {
            DType::Q8_0
        } else {
            DType::Q6_K
        };
    } else if q == Quant::Mxfp4Moe {
        ty = match t.shape.get(2) {
            Some(&e) if e > 1 => DType::MXFP4,
            _ => DType::Q8_0,
        };
    } else if name == "token_embd.weight" {
    } else if attn_v_like(name) {
        match k_mix {
            Some(true) if use_more_bits(i_attn_v, m.n_attn_v) => ty = DType::Q6_K,
            Some(false) if base == DType::Q4_K && i_attn_v < 4 => ty = DType::Q5_K,
            _ => {}
        }
        if m.n_expert == 8 {
            ty = DType::Q8_0;
        }
    } else if name.contains("attn_k.weight") {
        if m.n_expert == 8 {
            ty = DType::Q8_0;
        }
    } else if name.contains("ffn_down") {
        match k_mix {
            Some(true) if use_more_bits(il, n) => ty = DType::Q6_K,
            Some(false) if base == DType::Q4_K && il < n / 8 => ty = DType::Q5_K,
            _ => {}
        }
    } else if name.contains("attn_output.weight") && m.n_expert == 8 && base == DType::Q4_K {
        ty = DType::Q5_K;
    }
    // `tensor_type_fallback`: a row that is not whole blocks.
    if !nx.is_multiple_of(ty.block_size()) {
        ty = match ty {
            DType::Q4_K => DType::Q5_0,
            DType::Q5_K => DType::Q5_1,
            DType::Q6_K => DType::Q8_0,
            DType::Q2_K | DType::Q3_K => DType::Q4_0,
            other => other,
        };
        if !nx.is_multiple_of(ty.block_size()) {
            ty = DType::F16;
        }
    }
    ty
}

/// Bytes of `t` in type `ty` (whole rows; a row that is not whole blocks
/// counted by the fraction, as no file holds one).
fn bytes_in(ty: DType, t: &Tensor) -> u64 {
    let (block, bytes) = (ty.block_size() as u64, ty.block_bytes() as u64);
    let nx = t.shape.first().copied().unwrap_or(1) as u64;
    let rows = t.n_elements() / nx.max(1);
    rows * nx.div_ceil(block) * bytes
}

/// A model's costs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Parameters of the trunk (the multi-token-prediction layers apart).
    pub params: u64,
    /// Parameters a token goes through: all but the routed experts it is not
    /// sent to, the embedding table whole (as model cards count).
    pub params_active: u64,
    /// The embedding table (DeepSeek's published active count leaves it
    /// out; Qwen's keeps it).
    pub params_embd: u64,
    /// Parameters of the multi-token-prediction layers.
    pub params_mtp: u64,
    /// Bytes of every tensor, multi-token prediction included.
    pub weight_bytes: u64,
    /// The multi-token-prediction layers' share of `weight_bytes`.
    pub mtp_bytes: u64,
    /// Weight bytes one decoded token reads: every trunk tensor once, each
    /// mixture's experts by the share a token is routed to (`n_used` of
    /// `n_expert`, the average expert), one row of the embedding table (all
    /// of it where it is also the output).
    pub decode_bytes: u64,
    pub kv_dtype: KvDtype,
    /// KV-cache bytes one position takes over all layers.
    pub kv_bytes_per_token: u64,
    /// Weight bytes by tensor type, most first.
    pub types: Vec<(String, u64)>,
}

impl Plan {
    /// The costs of `s` with its tensors in the file's types, or as `quant`
    /// would make them; the KV cache in `kv`.
    pub fn new(s: &Shapes, quant: Option<Quant>, kv: KvDtype) -> Plan {
        let cfg = &s.cfg;
        let tied = !s.tensors.iter().any(|t| t.name == "output.weight");
        let mix = Mix {
            n_layer_all: cfg.n_layer + s.nextn,
            n_expert: cfg.moe.as_ref().map_or(0, |m| m.n_expert),
            tied,
            n_attn_v: s.tensors.iter().filter(|t| attn_v_like(&t.name)).count(),
        };
        // A token's share of a routed expert tensor.
        let (used, experts) = cfg.moe.as_ref().map_or((1, 1), |m| {
            (m.router.n_used as u64, m.n_expert.max(1) as u64)
        });
        let mut p = Plan {
            params: 0,
            params_active: 0,
            params_embd: 0,
            params_mtp: 0,
            weight_bytes: 0,
            mtp_bytes: 0,
            decode_bytes: 0,
            kv_dtype: kv,
            kv_bytes_per_token: 0,
            types: Vec::new(),
        };
        let mut types: BTreeMap<String, u64> = BTreeMap::new();
        let mut i_attn_v = 0;
        for t in &s.tensors {
            let (ty, bytes) = match (quant, &t.stored) {
                (Some(q), stored) => match stored {
                    // llama-quantize leaves what it does not quantize as it is.
                    Some(st) if !quantizable(t) => st.clone(),
                    _ => {
                        let ty = match quantizable(t) {
                            true => quant_type(q, t, &mix, i_attn_v),
                            false => DType::F32,
                        };
                        (ty.traits().name.to_string(), bytes_in(ty, t))
                    }
                },
                (None, Some(st)) => st.clone(),
                (None, None) => {
                    let ty = s.dtype.unwrap_or(DType::BF16);
                    (ty.traits().name.to_string(), bytes_in(ty, t))
                }
            };
            if attn_v_like(&t.name) {
                i_attn_v += 1;
            }
            let n = t.n_elements();
            *types.entry(ty).or_default() += bytes;
            p.weight_bytes += bytes;
            if t.layer().is_some_and(|il| il >= cfg.n_layer) {
                p.params_mtp += n;
                p.mtp_bytes += bytes;
                continue;
            }
            p.params += n;
            if t.routed() {
                p.params_active += n * used / experts;
                p.decode_bytes += bytes * used / experts;
            } else if t.name == "token_embd.weight" {
                p.params_active += n;
                p.params_embd += n;
                let rows = t.shape.get(1).copied().unwrap_or(1).max(1) as u64;
                p.decode_bytes += if tied { bytes } else { bytes / rows };
            } else {
                p.params_active += n;
                p.decode_bytes += bytes;
            }
        }
        let (k, v) = cfg.kv_widths();
        p.kv_bytes_per_token = (cfg.n_layer * kv.bytes(k + v)) as u64;
        p.types = types.into_iter().collect();
        p.types.sort_by_key(|t| std::cmp::Reverse(t.1));
        p
    }

    /// KV-cache bytes of `n_ctx` positions.
    pub fn kv_bytes(&self, n_ctx: usize) -> u64 {
        self.kv_bytes_per_token * n_ctx as u64
    }

    /// Bytes one decoded token reads with `pos` positions before it: the
    /// weights and the KV cache so far.
    pub fn bytes_at(&self, pos: usize) -> u64 {
        self.decode_bytes + self.kv_bytes(pos)
    }

    /// Decode's bandwidth roofline at position `pos`: tokens/s when every
    /// token streams [`Self::bytes_at`] at `gbps` GB/s.
    pub fn tokens_per_s(&self, gbps: f64, pos: usize) -> f64 {
        gbps * 1e9 / self.bytes_at(pos).max(1) as f64
    }

    /// Mean bits a parameter takes in the weights.
    pub fn bits_per_weight(&self) -> f64 {
        self.weight_bytes as f64 * 8.0 / (self.params + self.params_mtp).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_bits_layers_are_llama_cpps() {
        // 48 layers: 0..6, 42..48, and 8, 11, … between.
        let more: Vec<usize> = (0..48).filter(|&i| use_more_bits(i, 48)).collect();
        assert_eq!(&more[..8], &[0, 1, 2, 3, 4, 5, 8, 11]);
        assert_eq!(more.len(), 6 + 6 + 12);
    }

    #[test]
    fn quant_names_round_trip() {
        for s in ["Q4_K_M", "Q5_K_S", "Q8_0", "BF16", "MXFP4_MOE", "Q4_0"] {
            let q: Quant = s.parse().unwrap_or(Quant::Type(DType::F32));
            assert_eq!(q.to_string(), s);
        }
        assert!("Q3_K_XL".parse::<Quant>().is_err());
    }

    #[test]
    fn a_row_that_is_not_whole_blocks_falls_back() {
        let t = |name: &str, nx| Tensor {
            name: name.into(),
            shape: vec![nx, 64],
            stored: None,
        };
        let m = Mix {
            n_layer_all: 24,
            n_expert: 0,
            tied: false,
            n_attn_v: 24,
        };
        let q4km = Quant::KMix {
            base: DType::Q4_K,
            medium: true,
        };
        // Qwen2.5-0.5B's rows of 896: Q4_K → Q5_0, Q6_K → Q8_0.
        assert_eq!(
            quant_type(q4km, &t("blk.5.attn_q.weight", 896), &m, 0),
            DType::Q5_0
        );
        assert_eq!(
            quant_type(q4km, &t("blk.0.ffn_down.weight", 896), &m, 0),
            DType::Q8_0
        );
        assert_eq!(
            quant_type(q4km, &t("output.weight", 896), &m, 0),
            DType::Q8_0
        );
        assert_eq!(
            quant_type(q4km, &t("output.weight", 1024), &m, 0),
            DType::Q6_K
        );
        assert_eq!(
            quant_type(q4km, &t("blk.9.ffn_down.weight", 1024), &m, 0),
            DType::Q4_K
        );
    }
}
