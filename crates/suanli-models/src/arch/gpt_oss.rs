//! gpt-oss (OpenAI, gpt-oss-20b and -120b): the Llama layer with biases on
//! Q, K, V and the output projection, a learned attention sink per head,
//! sliding-window attention on every other layer (the first one
//! windowed), YaRN RoPE (NeoX style) on every layer, and a mixture of
//! experts in every layer — the top k router logits (router bias
//! included) softmaxed among themselves, experts with biases and a
//! clamped SwiGLU (`swiglu_oai`), weights in MXFP4 in the released files.
//!
//! llama.cpp names the feed-forward's norm `post_attention_norm`; a
//! Hugging Face checkpoint stores each layer's experts as
//! `gate_up_proj` `[experts, n_embd, 2·ff]` with gate and up columns
//! interleaved and `down_proj` `[experts, ff, n_embd]` (both used as
//! `x · W`): `names` presents either as the common names and layouts.

use suanli_kernels::ops::Glu;
use suanli_kernels::{Blob, DType};

use super::{base_config, llama, moe_required, ArchEntry, MoeDefaults};
use crate::loader::{Loader, Remapped, SourceFormat, Weight, WeightSource};
use crate::nn::{Gating, Transformer};
use crate::{Batch, Model, ModelConfig, ModelError, Result};

pub const ENTRY: ArchEntry = ArchEntry {
    name: "gpt-oss",
    build,
    config,
    extra_tensors: &[
        "attn_q.bias",
        "attn_k.bias",
        "attn_v.bias",
        "attn_output.bias",
        "attn_sinks.weight",
        "ffn_gate_inp.bias",
        "ffn_gate_exps.bias",
        "ffn_up_exps.bias",
        "ffn_down_exps.bias",
    ],
    moe: true,
};

fn config(src: &dyn WeightSource) -> Result<ModelConfig> {
    let ld = Loader::new(src);
    let mut cfg = base_config(&ld)?;
    let window = ld.usize("attention.sliding_window")?;
    cfg.sliding_window = Some(window);
    // Even layers windowed, as llama.cpp's pattern; a Hugging Face config
    // lists them.
    let types = src
        .hf_config()
        .and_then(|c| c.get("layer_types"))
        .and_then(|v| v.as_array());
    cfg.swa_layers = (0..cfg.n_layer)
        .map(
            |il| match types.and_then(|t| t.get(il)).and_then(|v| v.as_str()) {
                Some(t) => t == "sliding_attention",
                None => il % 2 == 0,
            },
        )
        .collect();
    cfg.rope_theta_swa = cfg.rope_theta;
    cfg.swa_scaled = true;
    let moe = MoeDefaults {
        gating: Gating::SoftmaxTopK,
        norm: false,
        shared_default: false,
    };
    cfg.moe = Some(moe_required(&ld, &cfg, moe)?);
    Ok(cfg)
}

fn build(src: &dyn WeightSource) -> Result<Box<dyn Model>> {
    let names = Remapped { src, get: names };
    let m = Transformer::load(&Loader::new(&names), config(src)?, layer)?;
    if m.layers.iter().any(|l| l.attn_sinks.is_none()) {
        return Err(ModelError::MissingTensor {
            path: src.path().to_path_buf(),
            name: "blk.N.attn_sinks.weight".into(),
        });
    }
    Ok(Box::new(m))
}

/// x += Attn(RMSNorm(x)); x += MoE(RMSNorm(x)) with the clamped SwiGLU.
fn layer(m: &Transformer, il: usize, x: &mut [f32], n: usize, ctx: &mut Batch) {
    llama::block(m, il, x, n, ctx, Glu::SwiGluOai)
}

/// gpt-oss's names and layouts presented as the common ones.
fn names(src: &dyn WeightSource, name: &str) -> Option<Weight> {
    match src.format() {
        SourceFormat::Gguf => gguf(src, name),
        SourceFormat::HuggingFace => hf(src, name),
    }
}

/// llama.cpp's `post_attention_norm` is the feed-forward's norm.
fn gguf(src: &dyn WeightSource, name: &str) -> Option<Weight> {
    if let Some(b) = name.strip_suffix(".ffn_norm.weight") {
        return src.get(&format!("{b}.post_attention_norm.weight"));
    }
    if name.ends_with(".post_attention_norm.weight") {
        return None;
    }
    src.get(name)
}

/// A Hugging Face checkpoint's experts in llama.cpp's layouts.
fn hf(src: &dyn WeightSource, name: &str) -> Option<Weight> {
    let Some((blk, rest)) = name.rsplit_once(".ffn_") else {
        return src.get(name);
    };
    let fused = |suffix: &str| src.get(&format!("{blk}.ffn_gate_up_exps.{suffix}"));
    match rest {
        // [E][d][2ff] interleaved -> [E][ff][d], gate the even columns.
        "gate_exps.weight" | "up_exps.weight" => {
            let w = fused("weight")?;
            let [two_ff, d, e] = <[usize; 3]>::try_from(w.shape.as_slice()).ok()?;
            let v = floats(&w)?;
            let (ff, odd) = (two_ff / 2, usize::from(rest.starts_with("up")));
            let mut out = vec![0f32; e * ff * d];
            for x in 0..e {
                for i in 0..d {
                    for j in 0..ff {
                        out[(x * ff + j) * d + i] = v[(x * d + i) * two_ff + 2 * j + odd];
                    }
                }
            }
            Some(f32_weight(out, vec![d, ff, e]))
        }
        "gate_exps.bias" | "up_exps.bias" => {
            let b = fused("bias")?;
            let v = floats(&b)?;
            let odd = usize::from(rest.starts_with("up"));
            let out: Vec<f32> = v.iter().skip(odd).step_by(2).copied().collect();
            let n = out.len();
            Some(f32_weight(out, vec![n]))
        }
        // [E][ff][d] -> [E][d][ff].
        "down_exps.weight" => {
            let w = src.get(name)?;
            let [d, ff, e] = <[usize; 3]>::try_from(w.shape.as_slice()).ok()?;
            let v = floats(&w)?;
            let mut out = vec![0f32; e * d * ff];
            for x in 0..e {
                for f in 0..ff {
                    for i in 0..d {
                        out[(x * d + i) * ff + f] = v[(x * ff + f) * d + i];
                    }
                }
            }
            Some(f32_weight(out, vec![ff, d, e]))
        }
        _ => src.get(name),
    }
}

/// A tensor's values as f32.
fn floats(w: &Weight) -> Option<Vec<f32>> {
    let f = w.dtype.traits().to_float?;
    let n: usize = w.shape.iter().product();
    if w.dtype.row_bytes(n)? != w.data.len() {
        return None;
    }
    let mut v = vec![0f32; n];
    f(w.data.bytes(), &mut v);
    Some(v)
}

fn f32_weight(v: Vec<f32>, shape: Vec<usize>) -> Weight {
    Weight {
        dtype: DType::F32,
        shape,
        data: Blob::from_vec(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}
