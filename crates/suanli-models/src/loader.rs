//! One interface for weights and hyper-parameters, whatever the file format.
//!
//! Tensors are named as in GGUF (`blk.3.attn_q.weight`); a Hugging Face
//! checkpoint is mapped onto those names (as llama.cpp's converter does) and
//! its `config.json` onto the GGUF metadata keys, so every architecture reads
//! one vocabulary of names.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use suanli_formats::safetensors::SafetensorsModel;
use suanli_formats::{GgufFile, Value};
use suanli_kernels::{Blob, DType, QMatrix};

use crate::{ModelError, Result};

/// A tensor as a model sees it: type, shape (innermost first, GGUF order) and bytes.
#[derive(Clone, Debug)]
pub struct Weight {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Blob,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Gguf,
    /// Hugging Face safetensors: Q/K rows are not permuted for RoPE as GGUF's are.
    HuggingFace,
}

pub trait WeightSource {
    fn path(&self) -> &Path;
    fn format(&self) -> SourceFormat;
    /// Registry name of the architecture.
    fn arch(&self) -> &str;
    /// A tensor by GGUF name.
    fn get(&self, name: &str) -> Option<Weight>;
    /// A hyper-parameter by GGUF key without the architecture prefix
    /// (`block_count`, `attention.head_count`, `rope.freq_base`…).
    fn hparam(&self, key: &str) -> Option<Value>;
    /// Hugging Face-only configuration (`rope_scaling`, `layer_types`…).
    fn hf_config(&self) -> Option<&serde_json::Value> {
        None
    }
    fn model_name(&self) -> String;
    /// How the source's own file spells a hyper-parameter (errors name it
    /// so): GGUF's whole key (`arch.key`), a Hugging Face config's
    /// `config.json` keys.
    fn key_name(&self, key: &str) -> String {
        key.to_string()
    }
}

/// Another source seen through `get`: its hyper-parameters as they are,
/// its tensors as `get(source, name)` presents them (an architecture whose
/// files name or lay out some tensors their own way).
pub struct Remapped<'a, F> {
    pub src: &'a dyn WeightSource,
    pub get: F,
}

impl<F: Fn(&dyn WeightSource, &str) -> Option<Weight>> WeightSource for Remapped<'_, F> {
    fn path(&self) -> &Path {
        self.src.path()
    }
    fn format(&self) -> SourceFormat {
        self.src.format()
    }
    fn arch(&self) -> &str {
        self.src.arch()
    }
    fn get(&self, name: &str) -> Option<Weight> {
        (self.get)(self.src, name)
    }
    fn hparam(&self, key: &str) -> Option<Value> {
        self.src.hparam(key)
    }
    fn hf_config(&self) -> Option<&serde_json::Value> {
        self.src.hf_config()
    }
    fn model_name(&self) -> String {
        self.src.model_name()
    }
    fn key_name(&self, key: &str) -> String {
        self.src.key_name(key)
    }
}

/// Typed access built on [`WeightSource`], with errors naming the file.
pub struct Loader<'a> {
    pub src: &'a dyn WeightSource,
}

impl<'a> Loader<'a> {
    pub fn new(src: &'a dyn WeightSource) -> Self {
        Loader { src }
    }

    fn missing(&self, name: &str) -> ModelError {
        ModelError::MissingTensor {
            path: self.src.path().to_path_buf(),
            name: name.into(),
        }
    }

    fn bad(&self, name: &str, why: String) -> ModelError {
        ModelError::BadTensor {
            path: self.src.path().to_path_buf(),
            name: name.into(),
            why,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.src.get(name).is_some()
    }

    /// A weight matrix `(rows, cols)`, checked against the expected shape.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        Ok(self
            .plain_matrix(name, rows, cols)?
            .with_prefill_layout()
            .interleave())
    }

    /// The `n_expert` matrices `(rows, cols)` of layer `il`'s experts' `which`
    /// (`gate`, `up` or `down`): slices of llama.cpp's 3-D
    /// `ffn_{which}_exps` tensor (`[cols, rows, n_expert]`), of its merged
    /// `ffn_gate_up_exps` (`[cols, 2·rows, n_expert]`, each expert's gate
    /// rows then its up rows), or one 2-D tensor per expert
    /// (`ffn_{which}_exps.{e}`, from per-expert checkpoints).
    pub fn experts(
        &self,
        il: usize,
        which: &str,
        n_expert: usize,
        rows: usize,
        cols: usize,
    ) -> Result<Vec<QMatrix>> {
        let name = format!("blk.{il}.ffn_{which}_exps.weight");
        let merged = format!("blk.{il}.ffn_gate_up_exps.weight");
        let (w, name, parts, part) = match self.src.get(&name) {
            Some(w) => (w, name, 1, 0),
            None => match self.src.get(&merged) {
                Some(w) if which != "down" => (w, merged, 2, usize::from(which == "up")),
                _ => {
                    return (0..n_expert)
                        .map(|e| {
                            self.matrix(
                                &format!("blk.{il}.ffn_{which}_exps.{e}.weight"),
                                rows,
                                cols,
                            )
                        })
                        .collect::<Result<Vec<_>>>()
                        .map_err(|err| match err {
                            ModelError::MissingTensor { .. } => self.missing(&name),
                            other => other,
                        });
                }
            },
        };
        self.slices(&name, w, n_expert, rows, cols, parts, part)
    }

    /// The `n` matrices `(rows, cols)` of the 3-D tensor `name`
    /// (`[cols, rows, n]`: one matrix per head of DeepSeek's `attn_k_b`).
    pub fn stacked(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<QMatrix>> {
        let w = self.src.get(name).ok_or_else(|| self.missing(name))?;
        self.slices(name, w, n, rows, cols, 1, 0)
    }

    /// Part `part` of `parts` equal row blocks of each of the `n` matrices of
    /// a 3-D tensor `[cols, rows · parts, n]`.
    #[allow(clippy::too_many_arguments)]
    fn slices(
        &self,
        name: &str,
        w: Weight,
        n: usize,
        rows: usize,
        cols: usize,
        parts: usize,
        part: usize,
    ) -> Result<Vec<QMatrix>> {
        if w.shape != [cols, rows * parts, n] {
            return Err(self.bad(
                name,
                format!(
                    "shape {:?}, expected [{cols}, {}, {n}] ({n} matrices)",
                    w.shape,
                    rows * parts
                ),
            ));
        }
        let rb = w
            .dtype
            .row_bytes(cols)
            .ok_or_else(|| self.bad(name, format!("rows of {cols} do not fit {:?}", w.dtype)))?;
        if w.data.len() != rb * rows * parts * n {
            return Err(self.bad(name, "data size does not match shape".into()));
        }
        (0..n)
            .map(|e| {
                let off = (e * parts + part) * rows * rb;
                let data = w
                    .data
                    .slice(off, rows * rb)
                    .ok_or_else(|| self.bad(name, "matrix out of range".into()))?;
                let m = QMatrix::new(w.dtype, rows, cols, data)
                    .map_err(|err| self.bad(name, err.to_string()))?;
                Ok(m.with_prefill_layout().interleave())
            })
            .collect()
    }

    /// The output projection: as [`Self::matrix`] without a prefill copy
    /// (generation multiplies it by one row per sequence), unless
    /// [`set_output_prefill`] asked for one.
    pub fn output_opt(&self, name: &str, rows: usize, cols: usize) -> Result<Option<QMatrix>> {
        if !self.has(name) {
            return Ok(None);
        }
        let m = self.plain_matrix(name, rows, cols)?;
        Ok(Some(match output_prefill() {
            true => m.with_prefill_layout().interleave(),
            false => m.interleave(),
        }))
    }

    /// [`Self::matrix`] in the file's own row layout (never interleaved).
    fn plain_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let w = self.src.get(name).ok_or_else(|| self.missing(name))?;
        if w.shape.len() != 2 || w.shape[0] != cols || w.shape[1] != rows {
            return Err(self.bad(
                name,
                format!("shape {:?}, expected [{cols}, {rows}]", w.shape),
            ));
        }
        QMatrix::new(w.dtype, rows, cols, w.data).map_err(|e| self.bad(name, e.to_string()))
    }

    /// The token embedding table: looked up by row, and multiplied by the
    /// output when tied (never in a layout that hides rows).
    pub fn embeddings(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        // The 16-row layout keeps rows readable (batch-invariant servers).
        Ok(self.plain_matrix(name, rows, cols)?.repack_rows16())
    }

    pub fn matrix_opt(&self, name: &str, rows: usize, cols: usize) -> Result<Option<QMatrix>> {
        if self.has(name) {
            self.matrix(name, rows, cols).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A 1-D tensor of `n` values, dequantized to f32.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let w = self.src.get(name).ok_or_else(|| self.missing(name))?;
        if w.shape.iter().product::<usize>() != n {
            return Err(self.bad(name, format!("shape {:?}, expected {n} values", w.shape)));
        }
        let to_float = w.dtype.traits().to_float.ok_or_else(|| {
            self.bad(name, format!("type {:?} cannot be read as floats", w.dtype))
        })?;
        let mut out = vec![0f32; n];
        if w.dtype.row_bytes(n) != Some(w.data.len()) {
            return Err(self.bad(name, "data size does not match shape".into()));
        }
        to_float(w.data.bytes(), &mut out);
        Ok(out)
    }

    pub fn vector_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }

    fn hp_err(&self, key: &str, why: &str) -> ModelError {
        ModelError::Config {
            path: self.src.path().to_path_buf(),
            key: self.src.key_name(key),
            why: why.into(),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| self.hp_err(key, "missing"))
    }

    pub fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.src.hparam(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(x) => Ok(Some(x as usize)),
                None => Err(self.hp_err(
                    key,
                    &format!("expected a non-negative integer, got {}", v.summary()),
                )),
            },
        }
    }

    pub fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        match self.src.hparam(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) => Ok(Some(x as f32)),
                None => Err(self.hp_err(key, &format!("expected a number, got {}", v.summary()))),
            },
        }
    }
}

/// Open `path` as a weight source.
static OUTPUT_PREFILL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Give the output projection a prefill copy as the layers' matrices have
/// ([`QMatrix::with_prefill_layout`], about 1.3x its bytes more), for work
/// that runs it over many rows at once: perplexity takes the logits of half
/// of every chunk, and a Q6_K output matrix (Qwen2.5-1.5B's) then costs a
/// fifth of the pass without the copy. Process-wide; set before loading.
pub fn set_output_prefill(on: bool) {
    OUTPUT_PREFILL.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn output_prefill() -> bool {
    OUTPUT_PREFILL.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn open(path: &Path) -> Result<Box<dyn WeightSource>> {
    if path.is_dir() {
        return Ok(Box::new(HfSource::open(path)?));
    }
    if !path.exists() {
        return Err(ModelError::Format(suanli_formats::FormatError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        }));
    }
    Ok(Box::new(GgufSource::open(path)?))
}

pub struct GgufSource {
    pub file: GgufFile,
    arch: String,
    index: HashMap<String, usize>,
}

impl GgufSource {
    pub fn open(path: &Path) -> Result<Self> {
        Self::new(GgufFile::open(path)?)
    }

    /// Wrap an already opened file (e.g. one the tokenizer was read from).
    pub fn new(file: GgufFile) -> Result<Self> {
        let path = file.path.clone();
        let path = path.as_path();
        let arch = file
            .get("general.architecture")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::Config {
                path: path.to_path_buf(),
                key: "general.architecture".into(),
                why: "missing".into(),
            })?
            .to_string();
        let index = file
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufSource { file, arch, index })
    }
}

impl WeightSource for GgufSource {
    fn path(&self) -> &Path {
        &self.file.path
    }
    fn format(&self) -> SourceFormat {
        SourceFormat::Gguf
    }
    fn arch(&self) -> &str {
        &self.arch
    }
    fn get(&self, name: &str) -> Option<Weight> {
        let t = &self.file.tensors[*self.index.get(name)?];
        Some(Weight {
            dtype: t.dtype?,
            shape: t.shape.iter().map(|&d| d as usize).collect(),
            data: self.file.tensor_data(t).ok()?,
        })
    }
    fn hparam(&self, key: &str) -> Option<Value> {
        if key == "vocab_size" {
            if let Some(v) = self.file.get(&format!("{}.vocab_size", self.arch)) {
                return Some(v.clone());
            }
            let n = self.file.get("tokenizer.ggml.tokens")?.as_array()?.len();
            return Some(Value::U64(n as u64));
        }
        self.file.get(&format!("{}.{key}", self.arch)).cloned()
    }
    fn key_name(&self, key: &str) -> String {
        format!("{}.{key}", self.arch)
    }
    fn model_name(&self) -> String {
        self.file
            .get("general.name")
            .and_then(Value::as_str)
            .unwrap_or("unnamed")
            .to_string()
    }
}

/// A Hugging Face checkpoint directory: `config.json` + safetensors (or
/// the `config.json` alone: [`HfSource::open_config`]).
pub struct HfSource {
    dir: PathBuf,
    /// What errors name: the directory, or the config file opened alone.
    path: PathBuf,
    config: serde_json::Value,
    arch: String,
    tensors: BTreeMap<String, Weight>,
}

/// Hugging Face `model_type` → registry name.
fn hf_arch(model_type: &str) -> &str {
    match model_type {
        "gemma3_text" | "gemma3" => "gemma3",
        "qwen2_moe" => "qwen2moe",
        "ernie4_5_moe" => "ernie4_5-moe",
        "hunyuan_v1_moe" => "hunyuan-moe",
        "hunyuan_v1_dense" => "hunyuan-dense",
        "gpt_oss" => "gpt-oss",
        "deepseek_v2" | "deepseek_v3" | "kimi_k2" => "deepseek2",
        "qwen3_moe" => "qwen3moe",
        // Mixtral is llama.cpp's `llama` with experts.
        "mixtral" => "llama",
        other => other,
    }
}

/// Hugging Face tensor name → GGUF tensor name.
fn hf_to_gguf_name(arch: &str, name: &str) -> Option<String> {
    let name = name.strip_prefix("language_model.").unwrap_or(name);
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (il, rest) = rest.split_once('.')?;
    let il: usize = il.parse().ok()?;
    // transformers 5's fused expert tensors: [experts, 2·ff, d] (each
    // expert's gate rows, then its up rows) and [experts, d, ff].
    // (gpt-oss stores them transposed, gate and up interleaved: its
    // architecture file reorders them.)
    match rest {
        "mlp.experts.gate_up_proj" => return Some(format!("blk.{il}.ffn_gate_up_exps.weight")),
        "mlp.experts.down_proj" => return Some(format!("blk.{il}.ffn_down_exps.weight")),
        "mlp.experts.gate_up_proj_bias" => return Some(format!("blk.{il}.ffn_gate_up_exps.bias")),
        "mlp.experts.down_proj_bias" => return Some(format!("blk.{il}.ffn_down_exps.bias")),
        "self_attn.sinks" => return Some(format!("blk.{il}.attn_sinks.weight")),
        // DeepSeek-V3's multi-token-prediction layer.
        "eh_proj.weight" | "enorm.weight" | "hnorm.weight" | "embed_tokens.weight" => {
            return Some(format!("blk.{il}.nextn.{rest}"))
        }
        "shared_head.norm.weight" => {
            return Some(format!("blk.{il}.nextn.shared_head_norm.weight"))
        }
        "shared_head.head.weight" => {
            return Some(format!("blk.{il}.nextn.shared_head_head.weight"))
        }
        "mlp.gate.e_score_correction_bias" => return Some(format!("blk.{il}.exp_probs_b.bias")),
        _ => {}
    }
    // One tensor per expert: `ffn_{gate,up,down}_exps.{e}`.
    for prefix in ["mlp.experts.", "block_sparse_moe.experts."] {
        if let Some((e, proj)) = rest.strip_prefix(prefix).and_then(|r| r.split_once('.')) {
            let e: usize = e.parse().ok()?;
            let which = match proj {
                "gate_proj.weight" | "w1.weight" => "gate",
                "up_proj.weight" | "w3.weight" => "up",
                "down_proj.weight" | "w2.weight" => "down",
                _ => return None,
            };
            return Some(format!("blk.{il}.ffn_{which}_exps.{e}.weight"));
        }
    }
    let (stem, suffix) = rest.rsplit_once('.')?;
    let gguf = match stem {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_a_proj" => "attn_q_a",
        "self_attn.q_a_layernorm" => "attn_q_a_norm",
        "self_attn.q_b_proj" => "attn_q_b",
        "self_attn.kv_a_proj_with_mqa" => "attn_kv_a_mqa",
        "self_attn.kv_a_layernorm" => "attn_kv_a_norm",
        "self_attn.kv_b_proj" => "attn_kv_b",
        "self_attn.q_norm" | "self_attn.query_layernorm" => "attn_q_norm",
        "self_attn.k_norm" | "self_attn.key_layernorm" => "attn_k_norm",
        "post_attention_layernorm" if arch == "gemma3" => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "mlp.gate" | "mlp.gate.wg" | "mlp.router" | "block_sparse_moe.gate" => "ffn_gate_inp",
        "mlp.shared_expert.gate_proj"
        | "mlp.shared_experts.gate_proj"
        | "mlp.shared_mlp.gate_proj" => "ffn_gate_shexp",
        "mlp.shared_expert.up_proj" | "mlp.shared_experts.up_proj" | "mlp.shared_mlp.up_proj" => {
            "ffn_up_shexp"
        }
        "mlp.shared_expert.down_proj"
        | "mlp.shared_experts.down_proj"
        | "mlp.shared_mlp.down_proj" => "ffn_down_shexp",
        "mlp.shared_expert_gate" => "ffn_gate_inp_shexp",
        // ERNIE's selection-only bias (`e_score_correction_bias`).
        "mlp.moe_statics" => return Some(format!("blk.{il}.exp_probs_b.bias")),
        _ => return None,
    };
    Some(format!("blk.{il}.{gguf}.{suffix}"))
}

impl HfSource {
    pub fn open(dir: &Path) -> Result<Self> {
        let mut src = Self::open_config(&dir.join("config.json"))?;
        let st = SafetensorsModel::open(dir)?;
        for (name, t) in st.tensors {
            let Some(g) = hf_to_gguf_name(&src.arch, &name) else {
                continue;
            };
            let mut w = Weight {
                dtype: t.dtype,
                shape: t.shape.iter().rev().copied().collect(),
                data: t.data,
            };
            // Gemma's RMSNorm multiplies by (1 + w); GGUF stores 1 + w.
            if src.arch == "gemma3" && g.contains("norm") {
                let n: usize = w.shape.iter().product();
                let mut v = vec![0f32; n];
                if let Some(f) = w.dtype.traits().to_float {
                    f(w.data.bytes(), &mut v);
                }
                let bytes: Vec<u8> = v.iter().flat_map(|x| (x + 1.0).to_le_bytes()).collect();
                w = Weight {
                    dtype: DType::F32,
                    shape: w.shape,
                    data: Blob::from_vec(bytes),
                };
            }
            src.tensors.insert(g, w);
        }
        src.path = dir.to_path_buf();
        Ok(src)
    }

    /// A checkpoint's hyper-parameters without its weights: `path` is a
    /// `config.json` or a directory holding one; the source has no tensors.
    pub fn open_config(path: &Path) -> Result<Self> {
        let cfg_path = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let dir = cfg_path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let cfg_err = |key: &str, why: String| ModelError::Config {
            path: cfg_path.clone(),
            key: key.into(),
            why,
        };
        let text =
            std::fs::read_to_string(&cfg_path).map_err(|e| cfg_err("(file)", e.to_string()))?;
        let mut config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| cfg_err("(file)", format!("invalid JSON: {e}")))?;
        // Multimodal wrappers keep the language model's settings in text_config.
        if let Some(tc) = config.get("text_config").cloned() {
            if tc.get("hidden_size").is_some() {
                config = tc;
            }
        }
        let model_type = config
            .get("model_type")
            .and_then(|v| v.as_str())
            .ok_or_else(|| cfg_err("model_type", "missing".into()))?;
        let arch = hf_arch(model_type).to_string();
        Ok(HfSource {
            dir,
            path: cfg_path,
            config,
            arch,
            tensors: BTreeMap::new(),
        })
    }
}

/// RoPE settings of a Hugging Face config: `rope_parameters` (transformers
/// 5: flat, or keyed by layer type) or the older `rope_scaling`.
pub fn hf_rope<'c>(c: &'c serde_json::Value, layer_type: &str) -> Option<&'c serde_json::Value> {
    match c.get("rope_parameters") {
        Some(p) if p.get(layer_type).is_some() => p.get(layer_type),
        Some(p) if p.get("rope_theta").is_some() || p.get("rope_type").is_some() => Some(p),
        _ => c.get("rope_scaling").filter(|v| v.is_object()),
    }
}

/// The first of `keys` that `c` has, as a metadata value (a list's first
/// element: per-layer settings that are equal in every layer).
fn first_of(c: &serde_json::Value, keys: &[&str]) -> Option<Value> {
    let v = keys.iter().find_map(|k| c.get(*k))?;
    match v {
        serde_json::Value::Array(a) => a.first().and_then(json_to_value),
        v => json_to_value(v),
    }
}

fn json_to_value(v: &serde_json::Value) -> Option<Value> {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Some(Value::U64(u))
            } else if let Some(i) = n.as_i64() {
                Some(Value::I64(i))
            } else {
                n.as_f64().map(Value::F64)
            }
        }
        serde_json::Value::Bool(b) => Some(Value::Bool(*b)),
        serde_json::Value::String(s) => Some(Value::String(s.clone())),
        _ => None,
    }
}

/// The `config.json` keys a GGUF hyper-parameter is read from, the first
/// present one winning; each family spells the mixture's settings its own
/// way, and a per-layer list (HunYuan) gives its first layer's.
fn hf_keys(key: &str) -> &'static [&'static str] {
    match key {
        "block_count" => &["num_hidden_layers"],
        "embedding_length" => &["hidden_size"],
        "feed_forward_length" => &["intermediate_size"],
        "attention.head_count" => &["num_attention_heads"],
        "attention.head_count_kv" => &["num_key_value_heads"],
        "attention.key_length" | "attention.value_length" => &["head_dim"],
        "attention.layer_norm_rms_epsilon" => &["rms_norm_eps"],
        "rope.freq_base" => &["rope_theta"],
        "context_length" => &["max_position_embeddings"],
        "attention.sliding_window" => &["sliding_window"],
        "vocab_size" => &["vocab_size"],
        "final_logit_softcapping" => &["final_logit_softcapping"],
        "attn_logit_softcapping" => &["attn_logit_softcapping"],
        "expert_count" => &[
            "num_local_experts",
            "num_experts",
            "moe_num_experts",
            "n_routed_experts",
        ],
        "expert_shared_count" => &["n_shared_experts"],
        "expert_weights_scale" => &["routed_scaling_factor"],
        "expert_group_count" => &["n_group"],
        "expert_group_used_count" => &["topk_group"],
        "attention.q_lora_rank" => &["q_lora_rank"],
        "attention.kv_lora_rank" => &["kv_lora_rank"],
        "rope.dimension_count" => &["qk_rope_head_dim"],
        "expert_used_count" => &["num_experts_per_tok", "moe_k", "moe_topk"],
        "expert_feed_forward_length" => &["moe_intermediate_size"],
        "expert_shared_feed_forward_length" => {
            &["shared_expert_intermediate_size", "moe_num_shared_experts"]
        }
        "expert_weights_norm" => &["norm_topk_prob"],
        "leading_dense_block_count" => &["first_k_dense_replace", "moe_layer_start_index"],
        "nextn_predict_layers" => &["num_nextn_predict_layers"],
        "interleave_moe_layer_step" => &["decoder_sparse_step", "moe_layer_interval"],
        _ => &[],
    }
}

impl WeightSource for HfSource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn format(&self) -> SourceFormat {
        SourceFormat::HuggingFace
    }
    fn arch(&self) -> &str {
        &self.arch
    }
    fn get(&self, name: &str) -> Option<Weight> {
        self.tensors.get(name).cloned()
    }
    fn hparam(&self, key: &str) -> Option<Value> {
        let c = &self.config;
        match key {
            "rope.freq_base" => {
                if let Some(t) = hf_rope(c, "full_attention").and_then(|r| r.get("rope_theta")) {
                    return json_to_value(t);
                }
            }
            "expert_shared_feed_forward_length" => {
                if let Some(v) = first_of(c, &["shared_expert_intermediate_size"]) {
                    return Some(v);
                }
                // ERNIE: moe_num_shared_experts experts of moe_intermediate_size.
                let n = first_of(c, &["moe_num_shared_experts"])?.as_u64()?;
                let w = first_of(c, &["moe_intermediate_size"])?.as_u64()?;
                return Some(Value::U64(n * w));
            }
            _ => {}
        }
        first_of(c, hf_keys(key))
    }
    fn hf_config(&self) -> Option<&serde_json::Value> {
        Some(&self.config)
    }
    fn model_name(&self) -> String {
        self.dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    fn key_name(&self, key: &str) -> String {
        match hf_keys(key) {
            [] => key.to_string(),
            keys => keys.join(" / "),
        }
    }
}
