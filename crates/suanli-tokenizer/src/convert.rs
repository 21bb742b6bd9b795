//! A GGUF vocabulary (`tokenizer.ggml.*` keys) from a byte-level BPE
//! `tokenizer.json`, with the token types llama.cpp's converter assigns:
//! special added tokens are CONTROL, other added tokens USER_DEFINED, ids
//! with no token become `[PAD{id}]` UNUSED.

use std::path::Path;

use suanli_formats::{Value, ValueType};

use crate::{Result, TokenizerError};

pub fn gguf_vocab_from_tokenizer_json(path: &Path, pre: &str) -> Result<Vec<(String, Value)>> {
    let err = |why: String| TokenizerError::Load {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let j: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let model = &j["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(err(format!("model type {:?} is not BPE", model["type"])));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| err("model.vocab missing".into()))?;
    let mut entries: Vec<(u32, String, i32)> = Vec::with_capacity(vocab.len());
    for (t, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| err(format!("id of {t:?} is not a number")))?;
        entries.push((id as u32, t.clone(), 1));
    }
    for a in j["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
            continue;
        };
        let ty = if a["special"].as_bool().unwrap_or(false) {
            3
        } else {
            4
        };
        entries.retain(|e| e.0 != id as u32);
        entries.push((id as u32, content.to_string(), ty));
    }
    let n = entries.iter().map(|e| e.0 as usize + 1).max().unwrap_or(0);
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut types = vec![5i32; n];
    for (id, t, ty) in entries {
        tokens[id as usize] = t;
        types[id as usize] = ty;
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => {
                Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
            }
            _ => None,
        })
        .collect();
    Ok(vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(
                ValueType::String,
                tokens.into_iter().map(Value::String).collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(
                ValueType::String,
                merges.into_iter().map(Value::String).collect(),
            ),
        ),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ])
}
