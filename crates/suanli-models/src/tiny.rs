//! Tiny random models of every registered architecture, written as GGUF
//! with suanli's own writer: for the registry-wide test, and for checking
//! that llama.cpp loads what the writer produces (scripts/check_gguf_writer.sh).

use std::path::Path;

use suanli_formats::{GgufWriter, Value, ValueType};
use suanli_kernels::quants::legacy::quantize_q8_0;
use suanli_kernels::DType;

/// Hyper-parameters of the tiny models.
pub const N_EMBD: usize = 64;
pub const N_HEAD: usize = 4;
pub const N_HEAD_KV: usize = 2;
/// Head size where the architecture allows one other than n_embd / n_head
/// (Qwen3, Gemma 3); the others use n_embd / n_head as llama.cpp requires.
pub const HEAD_DIM: usize = 32;

fn head_dim(arch: &str) -> usize {
    match arch {
        "qwen3" | "gemma3" => HEAD_DIM,
        _ => N_EMBD / N_HEAD,
    }
}
pub const N_FF: usize = 128;
pub const N_LAYER: usize = 6;
/// Experts of the mixture-of-experts models, each token to [`N_EXPERT_USED`],
/// each expert [`N_FF_EXP`] wide.
pub const N_EXPERT: usize = 8;
pub const N_EXPERT_USED: usize = 2;
pub const N_FF_EXP: usize = 64;
/// DeepSeek's latent attention: query and latent ranks, per-head query/key
/// dimensions without and with RoPE, value dimension.
const MLA: (usize, usize, usize, usize, usize) = (32, 32, 32, 16, 16);

/// The shared expert's matrices, written with the experts.
const SHARED_MLP: [&str; 3] = [
    "ffn_gate_shexp.weight",
    "ffn_up_shexp.weight",
    "ffn_down_shexp.weight",
];

/// A GPT-2 byte-level vocabulary of the 256 byte symbols plus BOS/EOS.
fn byte_vocab() -> Vec<String> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut n = 0;
    let mut v: Vec<String> = (0u32..256)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                n += 1;
                255 + n
            };
            char::from_u32(c).map(String::from).unwrap_or_default()
        })
        .collect();
    v.push("<s>".into());
    v.push("</s>".into());
    v
}

/// A deterministic pseudo-random stream (xorshift), so fixtures are stable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Every tiny model the registry test builds: each registered architecture
/// (with experts where the entry has them), and the dense architectures that
/// also come with experts (Mixtral is `llama` with experts).
pub fn variants() -> Vec<(&'static str, bool)> {
    let mut v: Vec<(&str, bool)> = crate::arch::REGISTRY
        .iter()
        .map(|e| (e.name, e.moe))
        .collect();
    v.push(("llama", true));
    v
}

/// Write a tiny random `arch` model to `path`; matrices in Q8_0, vectors F32.
pub fn write_tiny_gguf(arch: &str, path: &Path, seed: u64) -> suanli_formats::Result<()> {
    let moe = crate::arch::REGISTRY
        .iter()
        .any(|e| e.name == arch && e.moe);
    write_tiny(arch, moe, path, seed)
}

/// [`write_tiny_gguf`], with a mixture of experts in every layer or not.
pub fn write_tiny(arch: &str, moe: bool, path: &Path, seed: u64) -> suanli_formats::Result<()> {
    write_tiny_with(arch, moe, None, path, seed)
}

/// [`write_tiny`], with YaRN RoPE scaling (`factor`, original context)
/// where given.
pub fn write_tiny_with(
    arch: &str,
    moe: bool,
    yarn: Option<(f32, u32)>,
    path: &Path,
    seed: u64,
) -> suanli_formats::Result<()> {
    write_tiny_full(arch, moe, yarn, None, path, seed)
}

/// The tiny DeepSeek (`deepseek2`) model announcing one multi-token-
/// prediction layer (`nextn_predict_layers = 1`, counted in
/// `block_count`), with that layer's tensors after the trunk's or, where
/// `tensors` is false, without them (a trunk-only file). The trunk's
/// tensors are those [`write_tiny`] writes for the same seed.
pub fn write_tiny_mtp(path: &Path, seed: u64, tensors: bool) -> suanli_formats::Result<()> {
    write_tiny_full("deepseek2", true, None, Some(tensors), path, seed)
}

fn write_tiny_full(
    arch: &str,
    moe: bool,
    yarn: Option<(f32, u32)>,
    mtp: Option<bool>,
    path: &Path,
    seed: u64,
) -> suanli_formats::Result<()> {
    let vocab = byte_vocab();
    let n_vocab = vocab.len();
    let mut rng = Rng(seed.max(1));
    let mut w = GgufWriter::new();
    let key = |k: &str| format!("{arch}.{k}");
    w.add("general.architecture", Value::String(arch.into()));
    w.add("general.name", Value::String(format!("tiny-{arch}")));
    let nextn = usize::from(mtp.is_some());
    w.add(key("block_count"), Value::U32((N_LAYER + nextn) as u32));
    if mtp.is_some() {
        w.add(key("nextn_predict_layers"), Value::U32(nextn as u32));
    }
    w.add(key("context_length"), Value::U32(512));
    w.add(key("embedding_length"), Value::U32(N_EMBD as u32));
    // Mixtral's and HunYuan's experts are `feed_forward_length` wide
    // (llama.cpp reads no other key for them).
    let mixtral = moe && matches!(arch, "llama" | "hunyuan-moe");
    let n_ff = if mixtral { N_FF_EXP } else { N_FF };
    w.add(key("feed_forward_length"), Value::U32(n_ff as u32));
    w.add(key("attention.head_count"), Value::U32(N_HEAD as u32));
    let deepseek = arch == "deepseek2";
    let n_head_kv = if deepseek { 1 } else { N_HEAD_KV };
    w.add(key("attention.head_count_kv"), Value::U32(n_head_kv as u32));
    let hd = head_dim(arch);
    let (q_lora, kv_lora, nope, rope, v_head) = MLA;
    if deepseek {
        // The file layout of llama.cpp's converter: key/value lengths of the
        // latent attention, the per-head ones under *_mla.
        w.add(key("attention.q_lora_rank"), Value::U32(q_lora as u32));
        w.add(key("attention.kv_lora_rank"), Value::U32(kv_lora as u32));
        w.add(
            key("attention.key_length"),
            Value::U32((kv_lora + rope) as u32),
        );
        w.add(key("attention.value_length"), Value::U32(kv_lora as u32));
        w.add(
            key("attention.key_length_mla"),
            Value::U32((nope + rope) as u32),
        );
        w.add(key("attention.value_length_mla"), Value::U32(v_head as u32));
        w.add(key("rope.dimension_count"), Value::U32(rope as u32));
        w.add(key("leading_dense_block_count"), Value::U32(1));
        w.add(key("expert_shared_count"), Value::U32(1));
        w.add(key("expert_gating_func"), Value::U32(2));
        w.add(key("expert_weights_norm"), Value::Bool(true));
        w.add(key("expert_weights_scale"), Value::F32(2.5));
        w.add(key("expert_group_count"), Value::U32(4));
        w.add(key("expert_group_used_count"), Value::U32(2));
    } else if hd != N_EMBD / N_HEAD {
        w.add(key("attention.key_length"), Value::U32(hd as u32));
        w.add(key("attention.value_length"), Value::U32(hd as u32));
    }
    w.add(key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6));
    let entry = crate::arch::REGISTRY.iter().find(|e| e.name == arch);
    let extra = entry.map(|e| e.extra_tensors).unwrap_or(&[]);
    // A shared expert where the entry names one of its tensors.
    let shared = moe && extra.iter().any(|t| t.contains("_shexp"));
    if moe {
        w.add(key("expert_count"), Value::U32(N_EXPERT as u32));
        w.add(key("expert_used_count"), Value::U32(N_EXPERT_USED as u32));
        if arch != "llama" {
            w.add(
                key("expert_feed_forward_length"),
                Value::U32(N_FF_EXP as u32),
            );
        }
        w.add(key("interleave_moe_layer_step"), Value::U32(1));
        if shared && !deepseek {
            w.add(
                key("expert_shared_feed_forward_length"),
                Value::U32(N_FF as u32),
            );
        }
    }
    w.add(key("rope.freq_base"), Value::F32(10000.0));
    if let Some((factor, orig)) = yarn {
        w.add(key("rope.scaling.type"), Value::String("yarn".into()));
        w.add(key("rope.scaling.factor"), Value::F32(factor));
        w.add(
            key("rope.scaling.original_context_length"),
            Value::U32(orig),
        );
    }
    if arch == "gemma3" || arch == "gpt-oss" {
        w.add(key("attention.sliding_window"), Value::U32(4));
    }
    w.add("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.add("tokenizer.ggml.pre", Value::String("default".into()));
    let types: Vec<Value> = (0..n_vocab)
        .map(|i| Value::I32(if i < 256 { 1 } else { 3 }))
        .collect();
    w.add(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            vocab.into_iter().map(Value::String).collect(),
        ),
    );
    w.add(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, types),
    );
    w.add(
        "tokenizer.ggml.merges",
        Value::Array(ValueType::String, Vec::new()),
    );
    w.add("tokenizer.ggml.bos_token_id", Value::U32(256));
    w.add("tokenizer.ggml.eos_token_id", Value::U32(257));
    w.add("tokenizer.ggml.add_bos_token", Value::Bool(false));

    // `rows × cols` matrices, `n` of them (a 3-D tensor when more than one).
    let mut tensor =
        |w: &mut GgufWriter, name: &str, rows: usize, cols: usize, n: usize, scale: f32| {
            let x: Vec<f32> = (0..n * rows * cols).map(|_| rng.next() * scale).collect();
            let mut q = vec![0u8; DType::Q8_0.row_bytes(n * rows * cols).unwrap_or(0)];
            quantize_q8_0(&x, &mut q);
            let shape: &[u64] = if n > 1 {
                &[cols as u64, rows as u64, n as u64]
            } else {
                &[cols as u64, rows as u64]
            };
            w.add_tensor(name, shape, DType::Q8_0, q);
        };
    let vector = |w: &mut GgufWriter, name: &str, n: usize, v: f32| {
        let b: Vec<u8> = (0..n).flat_map(|_| v.to_le_bytes()).collect();
        w.add_tensor(name, &[n as u64], DType::F32, b);
    };
    let (q_dim, kv_dim) = (N_HEAD * hd, N_HEAD_KV * hd);
    tensor(&mut w, "token_embd.weight", n_vocab, N_EMBD, 1, 1.0);
    if moe {
        // llama.cpp's Qwen2-MoE requires an untied output.
        tensor(&mut w, "output.weight", n_vocab, N_EMBD, 1, 1.0);
    }
    vector(&mut w, "output_norm.weight", N_EMBD, 1.0);
    let n_written = N_LAYER + usize::from(mtp == Some(true));
    for il in 0..n_written {
        let p = |s: &str| format!("blk.{il}.{s}");
        if il >= N_LAYER {
            // The multi-token-prediction layer's own tensors (its embedding
            // table and head shared with the trunk's).
            tensor(
                &mut w,
                &p("nextn.eh_proj.weight"),
                N_EMBD,
                2 * N_EMBD,
                1,
                0.3,
            );
            vector(&mut w, &p("nextn.enorm.weight"), N_EMBD, 1.0);
            vector(&mut w, &p("nextn.hnorm.weight"), N_EMBD, 1.0);
            vector(&mut w, &p("nextn.shared_head_norm.weight"), N_EMBD, 1.0);
        }
        vector(&mut w, &p("attn_norm.weight"), N_EMBD, 1.0);
        if deepseek {
            let h = N_HEAD;
            tensor(&mut w, &p("attn_q_a.weight"), q_lora, N_EMBD, 1, 0.3);
            vector(&mut w, &p("attn_q_a_norm.weight"), q_lora, 1.0);
            tensor(
                &mut w,
                &p("attn_q_b.weight"),
                h * (nope + rope),
                q_lora,
                1,
                0.3,
            );
            tensor(
                &mut w,
                &p("attn_kv_a_mqa.weight"),
                kv_lora + rope,
                N_EMBD,
                1,
                0.3,
            );
            vector(&mut w, &p("attn_kv_a_norm.weight"), kv_lora, 1.0);
            tensor(&mut w, &p("attn_k_b.weight"), kv_lora, nope, h, 0.3);
            tensor(&mut w, &p("attn_v_b.weight"), v_head, kv_lora, h, 0.3);
            tensor(&mut w, &p("attn_output.weight"), N_EMBD, h * v_head, 1, 0.3);
        } else {
            tensor(&mut w, &p("attn_q.weight"), q_dim, N_EMBD, 1, 0.3);
            tensor(&mut w, &p("attn_k.weight"), kv_dim, N_EMBD, 1, 0.3);
            tensor(&mut w, &p("attn_v.weight"), kv_dim, N_EMBD, 1, 0.3);
            tensor(&mut w, &p("attn_output.weight"), N_EMBD, q_dim, 1, 0.3);
        }
        // DeepSeek's first layer is dense.
        let moe = moe && !(deepseek && il == 0);
        // llama.cpp's gpt-oss names its feed-forward norm so.
        let ffn_norm = match arch {
            "gpt-oss" => "post_attention_norm.weight",
            _ => "ffn_norm.weight",
        };
        vector(&mut w, &p(ffn_norm), N_EMBD, 1.0);
        if moe {
            // The router in Q8_0 too (llama.cpp's converter keeps it F32;
            // either loads).
            tensor(&mut w, &p("ffn_gate_inp.weight"), N_EXPERT, N_EMBD, 1, 1.0);
            let e = N_EXPERT;
            tensor(&mut w, &p("ffn_gate_exps.weight"), N_FF_EXP, N_EMBD, e, 0.3);
            tensor(&mut w, &p("ffn_up_exps.weight"), N_FF_EXP, N_EMBD, e, 0.3);
            tensor(&mut w, &p("ffn_down_exps.weight"), N_EMBD, N_FF_EXP, e, 0.3);
            if shared {
                // DeepSeek's shared experts are expert-wide, one here.
                let ff = if deepseek { N_FF_EXP } else { N_FF };
                tensor(&mut w, &p("ffn_gate_shexp.weight"), ff, N_EMBD, 1, 0.3);
                tensor(&mut w, &p("ffn_up_shexp.weight"), ff, N_EMBD, 1, 0.3);
                tensor(&mut w, &p("ffn_down_shexp.weight"), N_EMBD, ff, 1, 0.3);
            }
        } else {
            tensor(&mut w, &p("ffn_gate.weight"), N_FF, N_EMBD, 1, 0.3);
            tensor(&mut w, &p("ffn_up.weight"), N_FF, N_EMBD, 1, 0.3);
            tensor(&mut w, &p("ffn_down.weight"), N_EMBD, N_FF, 1, 0.3);
        }
        // (The experts' extras only where there are experts.)
        let dense_only = |t: &str| !moe && (t.starts_with("exp_") || t.starts_with("ffn_"));
        for t in extra
            .iter()
            .filter(|t| !SHARED_MLP.contains(t) && !dense_only(t))
        {
            // Values per row, and rows (one per expert for the experts' biases).
            let (n, rows) = match *t {
                "attn_q.bias" => (q_dim, 1),
                "attn_k.bias" | "attn_v.bias" => (kv_dim, 1),
                "attn_q_norm.weight" | "attn_k_norm.weight" => (hd, 1),
                "exp_probs_b.bias" | "ffn_gate_inp.bias" => (N_EXPERT, 1),
                "attn_sinks.weight" => (N_HEAD, 1),
                "ffn_gate_exps.bias" | "ffn_up_exps.bias" => (N_FF_EXP, N_EXPERT),
                "ffn_down_exps.bias" => (N_EMBD, N_EXPERT),
                _ => (N_EMBD, 1),
            };
            let v: f32 = if t.ends_with("bias") {
                0.1
            } else if t.contains("shexp") {
                0.05
            } else {
                1.0
            };
            let b: Vec<u8> = (0..n * rows).flat_map(|_| v.to_le_bytes()).collect();
            let shape: &[u64] = if rows > 1 {
                &[n as u64, rows as u64]
            } else {
                &[n as u64]
            };
            w.add_tensor(p(t), shape, DType::F32, b);
        }
    }
    w.write(path)
}
