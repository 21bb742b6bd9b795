//! The vocabulary as GGUF stores it.

use std::collections::HashMap;
use std::path::Path;

use suanli_formats::{GgufFile, Value};

use crate::{Result, TokenizerError};

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// How a normal token's text maps to bytes.
#[derive(Debug, Clone, Copy)]
pub enum PieceStyle {
    /// GPT-2 byte-to-unicode alphabet.
    ByteLevel,
    /// `▁` for a space.
    Sentencepiece,
}

#[derive(Debug, Clone)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: "gpt2" or "llama".
    pub model: String,
    /// `tokenizer.ggml.pre`, when given.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub scores: Vec<f32>,
    /// BPE merges as "left right".
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub ids: HashMap<String, u32>,
}

fn str_array(f: &GgufFile, key: &str) -> Result<Option<Vec<String>>> {
    let Some(v) = f.get(key) else { return Ok(None) };
    let arr = v
        .as_array()
        .ok_or_else(|| meta(&f.path, key, "not an array"))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| meta(&f.path, key, "non-string element"))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn meta(path: &Path, key: &str, why: &str) -> TokenizerError {
    TokenizerError::Metadata {
        path: path.to_path_buf(),
        key: key.into(),
        why: why.into(),
    }
}

impl Vocab {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let model = f
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .ok_or_else(|| meta(&f.path, "tokenizer.ggml.model", "missing"))?
            .to_string();
        let tokens = str_array(f, "tokenizer.ggml.tokens")?
            .ok_or_else(|| meta(&f.path, "tokenizer.ggml.tokens", "missing"))?;
        let n = tokens.len();
        let mut types: Vec<TokenType> =
            match f.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
                Some(a) if a.len() == n => a
                    .iter()
                    .map(|v| TokenType::from_i64(v.as_i64().unwrap_or(1)))
                    .collect(),
                Some(_) => {
                    return Err(meta(
                        &f.path,
                        "tokenizer.ggml.token_type",
                        "length differs from tokens",
                    ))
                }
                None => vec![TokenType::Normal; n],
            };
        let scores: Vec<f32> = match f.get("tokenizer.ggml.scores").and_then(Value::as_array) {
            Some(a) if a.len() == n => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
            Some(_) => {
                return Err(meta(
                    &f.path,
                    "tokenizer.ggml.scores",
                    "length differs from tokens",
                ))
            }
            None => vec![0.0; n],
        };
        let merges = str_array(f, "tokenizer.ggml.merges")?.unwrap_or_default();
        let id = |key: &str| -> Result<Option<u32>> {
            match f.get(key).and_then(Value::as_i64) {
                None => Ok(None),
                Some(v) if v >= 0 && (v as usize) < n => Ok(Some(v as u32)),
                Some(-1) => Ok(None),
                Some(v) => Err(meta(
                    &f.path,
                    key,
                    &format!("id {v} out of the vocabulary of {n}"),
                )),
            }
        };
        let flag = |key: &str| f.get(key).and_then(Value::as_bool);
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let mut eot = id("tokenizer.ggml.eot_token_id")?;
        let unk = id("tokenizer.ggml.unknown_token_id")?;
        let pre = f
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        // As llama.cpp: well-known end-of-turn texts count as end of generation.
        const EOT_TEXTS: &[&str] = &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<｜end▁of▁sentence｜>",
            "<|end_of_text|>",
            "<EOT>",
            "_<EOT>",
            "<|eom_id|>",
        ];
        let mut eog: Vec<u32> = Vec::new();
        for t in EOT_TEXTS {
            if let Some(&i) = ids.get(*t) {
                if eot.is_none() && *t != "<|endoftext|>" && *t != "<|eom_id|>" {
                    eot = Some(i);
                }
                eog.push(i);
            }
        }
        eog.extend(eos);
        eog.extend(eot);
        if let Some(ends) = harmony_ends(|t| ids.get(t).copied()) {
            // gpt-oss (as llama.cpp): `<|end|>` ends a message, not the
            // reply; the message structure is written into the text.
            eog.retain(|&i| Some(&i) != ids.get("<|end|>"));
            eog.extend(ends);
            for t in HARMONY_RENDERED {
                if let Some(&i) = ids.get(t) {
                    types[i as usize] = TokenType::UserDefined;
                }
            }
        }
        eog.sort_unstable();
        eog.dedup();
        let (default_bos, default_space) = match model.as_str() {
            "llama" => (true, true),
            _ => (pre.as_deref() == Some("llama-bpe"), false),
        };
        Ok(Vocab {
            model,
            pre,
            tokens,
            types,
            scores,
            merges,
            bos,
            eos,
            eot,
            unk,
            eog,
            add_bos: flag("tokenizer.ggml.add_bos_token").unwrap_or(default_bos),
            add_eos: flag("tokenizer.ggml.add_eos_token").unwrap_or(false),
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix").unwrap_or(default_space),
            ids,
        })
    }

    pub fn id_of(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// Tokens that text is searched for before tokenizing: control, unknown
    /// and user-defined ones (control and unknown only when `parse_special`).
    pub fn special_tokens(&self, parse_special: bool) -> Vec<u32> {
        self.types
            .iter()
            .enumerate()
            .filter(|(_, t)| match t {
                TokenType::UserDefined => true,
                TokenType::Control | TokenType::Unknown => parse_special,
                _ => false,
            })
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// The bytes of token `id`, as llama.cpp's `token_to_piece`.
    pub fn piece_bytes(&self, id: u32, special: bool, style: PieceStyle) -> Result<Vec<u8>> {
        let i = id as usize;
        let text = self.tokens.get(i).ok_or(TokenizerError::BadToken(id))?;
        Ok(match self.types[i] {
            TokenType::Control | TokenType::Unknown => {
                if special {
                    text.as_bytes().to_vec()
                } else {
                    Vec::new()
                }
            }
            TokenType::UserDefined => text.as_bytes().to_vec(),
            TokenType::Byte => byte_token(text).map(|b| vec![b]).unwrap_or_default(),
            TokenType::Normal => match style {
                PieceStyle::ByteLevel => crate::bpe::bytes_of_byte_level(text),
                PieceStyle::Sentencepiece => text.replace('\u{2581}', " ").into_bytes(),
            },
            TokenType::Unused | TokenType::Undefined => Vec::new(),
        })
    }
}

/// gpt-oss's harmony tokens that structure its messages: written into the
/// generated text (as llama.cpp does) for the reply's parser to split the
/// channels; the ends (`<|end|>`, `<|return|>`, `<|call|>`) are not.
pub const HARMONY_RENDERED: [&str; 4] =
    ["<|start|>", "<|channel|>", "<|message|>", "<|constrain|>"];

/// A harmony vocabulary's ends of generation, `<|return|>` and
/// `<|call|>` (`None` for other vocabularies).
pub fn harmony_ends(id: impl Fn(&str) -> Option<u32>) -> Option<[u32; 2]> {
    Some([id("<|return|>")?, id("<|call|>")?])
}

/// The byte of a `<0xXX>` token.
pub fn byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}
