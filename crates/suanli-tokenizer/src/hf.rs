//! Tokenizers from Hugging Face `tokenizer.json` (+ `tokenizer_config.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::bpe::bytes_of_byte_level;
use crate::vocab::byte_token;
use crate::{Result, TokenizerError};

pub struct HfTokenizer {
    tok: tokenizers::Tokenizer,
    /// Added tokens by id: their text and whether they are special (read
    /// once: `tokenizers` builds this map anew on every call).
    added: HashMap<u32, (String, bool)>,
    /// The decoder is byte-level (GPT-2 alphabet) rather than SentencePiece-style.
    byte_level: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// `add_bos`/`add_eos` apply even when the text already has them
    /// (transformers' Llama-style post-processor template).
    specials_always: bool,
    pub chat_template: Option<String>,
}

/// A token given in tokenizer_config.json, either as a string or as
/// `{"content": "..."}`.
fn token_field(cfg: &serde_json::Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl HfTokenizer {
    pub fn open(path: &Path) -> Result<Self> {
        let (json, dir): (PathBuf, PathBuf) = if path.is_dir() {
            (path.join("tokenizer.json"), path.to_path_buf())
        } else {
            (
                path.to_path_buf(),
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
            )
        };
        let text = std::fs::read_to_string(&json).map_err(|e| TokenizerError::Load {
            path: json.clone(),
            why: e.to_string(),
        })?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = std::fs::read_to_string(&cfg_path).ok();
        Self::from_json(&text, cfg.as_deref(), &json, &cfg_path)
    }

    /// From the text of a `tokenizer.json` and, when there is one, of its
    /// `tokenizer_config.json`; the paths only name them in messages.
    pub fn from_json(
        text: &str,
        config: Option<&str>,
        json: &Path,
        cfg_path: &Path,
    ) -> Result<Self> {
        let load = |why: String| TokenizerError::Load {
            path: json.to_path_buf(),
            why,
        };
        let raw: serde_json::Value =
            serde_json::from_str(text).map_err(|e| load(format!("invalid JSON: {e}")))?;
        let tok =
            tokenizers::Tokenizer::from_bytes(text.as_bytes()).map_err(|e| load(e.to_string()))?;
        let byte_level = raw
            .get("decoder")
            .map(|d| d.to_string().contains("\"ByteLevel\""))
            .unwrap_or(false);
        let cfg: serde_json::Value = match config {
            Some(t) => serde_json::from_str(t).map_err(|e| TokenizerError::Load {
                path: cfg_path.to_path_buf(),
                why: format!("invalid JSON: {e}"),
            })?,
            None => serde_json::Value::Null,
        };
        let id = |s: Option<String>| s.and_then(|s| tok.token_to_id(&s));
        let bos = id(token_field(&cfg, "bos_token"));
        let eos = id(token_field(&cfg, "eos_token"));
        let mut eog: Vec<u32> = eos.into_iter().collect();
        for t in [
            "<|im_end|>",
            "<|endoftext|>",
            "<|eot_id|>",
            "<end_of_turn>",
            "<｜end▁of▁sentence｜>",
        ] {
            eog.extend(tok.token_to_id(t));
        }
        let harmony = crate::vocab::harmony_ends(|t| tok.token_to_id(t));
        eog.extend(harmony.into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let chat_template = match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        // transformers applies tokenizer_config's add_bos/add_eos through its
        // Llama-style classes, which rewrite the post-processor with them —
        // byte-level or not (DeepSeek-V3's LlamaTokenizerFast puts its BOS
        // first; their defaults: BOS yes, EOS no) — and for SentencePiece
        // vocabularies; its other classes (Qwen2TokenizerFast,
        // PreTrainedTokenizerFast) leave special tokens to tokenizer.json's
        // post-processor.
        let llama_style = cfg
            .get("tokenizer_class")
            .and_then(|v| v.as_str())
            .is_some_and(|c| {
                let c = c.strip_suffix("Fast").unwrap_or(c);
                matches!(
                    c,
                    "LlamaTokenizer" | "CodeLlamaTokenizer" | "GemmaTokenizer"
                )
            });
        let flag = |k: &str, default: bool| {
            let set = cfg.get(k).and_then(|v| v.as_bool());
            match llama_style {
                true => set.unwrap_or(default),
                false => !byte_level && set.unwrap_or(false),
            }
        };
        Ok(HfTokenizer {
            // A post-processor's template adds its tokens whatever the text
            // starts with (a BOS written in it makes two).
            specials_always: llama_style,
            added: tok
                .get_added_tokens_decoder()
                .into_iter()
                .map(|(id, a)| {
                    // Harmony's message structure is written into the text.
                    let rendered = harmony.is_some()
                        && crate::vocab::HARMONY_RENDERED.contains(&a.content.as_str());
                    (id, (a.content, a.special && !rendered))
                })
                .collect(),
            add_bos: flag("add_bos_token", true),
            add_eos: flag("add_eos_token", false),
            tok,
            byte_level,
            bos,
            eos,
            eog,
            chat_template,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.tok.get_vocab_size(true)
    }

    /// As transformers' `AutoTokenizer(text, add_special_tokens=add_special)`:
    /// the tokenizer.json post-processor adds what it adds, and (for
    /// SentencePiece-style tokenizers) the tokenizer_config.json
    /// add_bos/add_eos flags on top, when not already there.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut ids = if parse_special {
            let enc = self
                .tok
                .encode_fast(text, add_special)
                .map_err(|e| TokenizerError::Encode(e.to_string()))?;
            enc.get_ids().to_vec()
        } else {
            // Without special-token parsing, added tokens written in the text
            // are tokenized as plain text: encode the text as one word list.
            let enc = self
                .tok
                .encode_fast(tokenizers::InputSequence::from(vec![text]), add_special)
                .map_err(|e| TokenizerError::Encode(e.to_string()))?;
            enc.get_ids().to_vec()
        };
        if add_special {
            if self.add_bos {
                if let Some(b) = self.bos {
                    if self.specials_always || ids.first() != Some(&b) {
                        ids.insert(0, b);
                    }
                }
            }
            if self.add_eos {
                if let Some(e) = self.eos {
                    if self.specials_always || ids.last() != Some(&e) {
                        ids.push(e);
                    }
                }
            }
        }
        Ok(ids)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.tok.id_to_token(id)
    }

    pub fn token_to_id(&self, t: &str) -> Option<u32> {
        self.tok.token_to_id(t)
    }

    pub fn token_bytes(&self, id: u32, special: bool) -> Result<Vec<u8>> {
        let text = self
            .tok
            .id_to_token(id)
            .ok_or(TokenizerError::BadToken(id))?;
        if let Some((content, is_special)) = self.added.get(&id) {
            if *is_special && !special {
                return Ok(Vec::new());
            }
            return Ok(content.as_bytes().to_vec());
        }
        if self.byte_level {
            return Ok(bytes_of_byte_level(&text));
        }
        if let Some(b) = byte_token(&text) {
            return Ok(vec![b]);
        }
        Ok(text.replace('\u{2581}', " ").into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": 3, "content": "<|x|>", "single_word": false, "lstrip": false,
             "rstrip": false, "normalized": false, "special": true},
            {"id": 4, "content": "<u>", "single_word": false, "lstrip": false,
             "rstrip": false, "normalized": false, "special": false}
        ],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false,
                    "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}
    }"#;

    #[test]
    fn from_json_in_memory_and_added_tokens_decode() {
        let p = Path::new("mem/tokenizer.json");
        let t =
            HfTokenizer::from_json(JSON, Some(r#"{"eos_token": "<|x|>"}"#), p, p).expect("loads");
        assert_eq!(t.eos, Some(3));
        assert_eq!(t.encode("ab<|x|>", false, true).expect("encode"), [2, 3]);
        // Special added tokens give their text only when asked; others always.
        assert_eq!(t.token_bytes(3, true).expect("3"), b"<|x|>");
        assert!(t.token_bytes(3, false).expect("3").is_empty());
        assert_eq!(t.token_bytes(4, false).expect("4"), b"<u>");
        assert_eq!(t.token_bytes(2, false).expect("2"), b"ab");
        assert!(t.token_bytes(99, true).is_err());
        // A config that is not JSON is an error naming it.
        let e = HfTokenizer::from_json(JSON, Some("{"), p, Path::new("cfg.json"));
        assert!(e.err().is_some_and(|e| e.to_string().contains("cfg.json")));
    }

    #[test]
    fn harmony_writes_its_message_structure_and_ends_at_return_or_call() {
        let names = [
            "<|start|>",
            "<|channel|>",
            "<|message|>",
            "<|constrain|>",
            "<|end|>",
            "<|return|>",
            "<|call|>",
        ];
        let added: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    r#"{{"id": {}, "content": "{n}", "single_word": false, "lstrip": false,
                     "rstrip": false, "normalized": false, "special": true}}"#,
                    3 + i
                )
            })
            .collect();
        let json = JSON.replace(
            &JSON[JSON.find("[").unwrap_or(0)..=JSON.find("],").unwrap_or(0)],
            &format!("[{}]", added.join(",")),
        );
        let p = Path::new("mem/tokenizer.json");
        let t = HfTokenizer::from_json(&json, Some(r#"{"eos_token": "<|return|>"}"#), p, p)
            .expect("loads");
        for (i, n) in names.iter().enumerate() {
            let written = t.token_bytes(3 + i as u32, false).expect("token");
            assert_eq!(written.is_empty(), i >= 4, "{n}");
        }
        // <|end|> (7) closes a message, not the reply.
        assert_eq!(t.eog, [8, 9]);
    }
}
