//! suanli-tokenizer: text to token ids and back, and chat templates.
//!
//! - [`vocab`]: the vocabulary as GGUF stores it (`tokenizer.ggml.*`): token
//!   texts, types, scores, merges, special ids and add_bos/add_eos.
//! - [`special`]: splitting special tokens out of text, exactly as llama.cpp's
//!   `tokenizer_st_partition` does (longest token first).
//! - [`bpe`]: byte-level BPE (`tokenizer.ggml.model = gpt2`), built on the
//!   Hugging Face `tokenizers` crate with the pre-tokenizer regexes llama.cpp
//!   uses for each `tokenizer.ggml.pre`.
//! - [`spm`]: SentencePiece (`tokenizer.ggml.model = llama`): score-ordered
//!   bigram merging with `<0xXX>` byte fallback, as llama.cpp does it.
//! - [`hf`]: `tokenizer.json` + `tokenizer_config.json` through `tokenizers`.
//! - [`stream`]: a detokenizer that emits text only once it is valid UTF-8.
//! - [`template`]: chat templates (Jinja, via minijinja) and [`reasoning`]:
//!   separating `<think>` reasoning from the answer.

pub mod bpe;
pub mod convert;
pub mod hf;
pub mod reasoning;
pub mod special;
pub mod spm;
pub mod stream;
pub mod template;
pub mod vocab;

use std::path::{Path, PathBuf};

pub use stream::StreamDecoder;
pub use template::{ChatMessage, ChatTemplate};
pub use vocab::{TokenType, Vocab};

/// Errors of tokenizer construction and use.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: metadata key '{key}': {why}")]
    Metadata {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("{path}: unknown pre-tokenizer '{name}' (tokenizer.ggml.pre); known: {known}")]
    UnknownPre {
        path: PathBuf,
        name: String,
        known: String,
    },
    #[error("{path}: unsupported tokenizer model '{name}' (tokenizer.ggml.model); gpt2 and llama are supported")]
    UnknownModel { path: PathBuf, name: String },
    #[error("{path}: {why}")]
    Load { path: PathBuf, why: String },
    #[error("input is not valid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    #[error("token id {0} is out of the vocabulary")]
    BadToken(u32),
    #[error("chat template: {0}")]
    Template(String),
    #[error("tokenization failed: {0}")]
    Encode(String),
}

pub type Result<T> = std::result::Result<T, TokenizerError>;

enum Engine {
    Bpe(Box<bpe::BpeTokenizer>),
    Spm(Box<spm::SpmTokenizer>),
    Hf(Box<hf::HfTokenizer>),
}

/// A tokenizer from any source, with the special-token facts the engine needs.
pub struct Tokenizer {
    engine: Engine,
    /// Where it was loaded from, for messages.
    pub source: PathBuf,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// Every end-of-generation token (eos, eot, `<|im_end|>`, `<end_of_turn>`…).
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// The model's chat template, if it ships one.
    pub chat_template: Option<String>,
}

impl Tokenizer {
    /// From the `tokenizer.ggml.*` keys of a GGUF file.
    pub fn from_gguf(file: &suanli_formats::GgufFile) -> Result<Self> {
        let vocab = Vocab::from_gguf(file)?;
        let engine = match vocab.model.as_str() {
            "gpt2" => Engine::Bpe(Box::new(bpe::BpeTokenizer::new(vocab.clone(), &file.path)?)),
            "llama" => Engine::Spm(Box::new(spm::SpmTokenizer::new(vocab.clone()))),
            other => {
                return Err(TokenizerError::UnknownModel {
                    path: file.path.clone(),
                    name: other.into(),
                })
            }
        };
        Ok(Tokenizer {
            engine,
            source: file.path.clone(),
            bos: vocab.bos,
            eos: vocab.eos,
            eog: vocab.eog.clone(),
            add_bos: vocab.add_bos,
            add_eos: vocab.add_eos,
            chat_template: file
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    }

    /// From a `tokenizer.json` file or a directory holding one (and maybe
    /// `tokenizer_config.json`).
    pub fn from_hf(path: &Path) -> Result<Self> {
        Ok(Self::from_hf_tokenizer(hf::HfTokenizer::open(path)?, path))
    }

    /// From the text of a `tokenizer.json` (and of its
    /// `tokenizer_config.json`, when there is one) held in memory; `source`
    /// names it in messages.
    pub fn from_hf_json(json: &str, config: Option<&str>, source: &Path) -> Result<Self> {
        let cfg = source.with_file_name("tokenizer_config.json");
        let h = hf::HfTokenizer::from_json(json, config, source, &cfg)?;
        Ok(Self::from_hf_tokenizer(h, source))
    }

    fn from_hf_tokenizer(h: hf::HfTokenizer, path: &Path) -> Self {
        Tokenizer {
            source: path.to_path_buf(),
            bos: h.bos,
            eos: h.eos,
            eog: h.eog.clone(),
            add_bos: h.add_bos,
            add_eos: h.add_eos,
            chat_template: h.chat_template.clone(),
            engine: Engine::Hf(Box::new(h)),
        }
    }

    pub fn n_vocab(&self) -> usize {
        match &self.engine {
            Engine::Bpe(t) => t.vocab.tokens.len(),
            Engine::Spm(t) => t.vocab.tokens.len(),
            Engine::Hf(t) => t.n_vocab(),
        }
    }

    /// Token ids for `text`, as llama.cpp's `llama_tokenize(text, add_special,
    /// parse_special)` gives them: BOS/EOS added per the source's settings when
    /// `add_special`, special tokens written in the text recognized when
    /// `parse_special`.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        match &self.engine {
            Engine::Bpe(t) => t.encode(text, add_special, parse_special),
            Engine::Spm(t) => Ok(t.encode(text, add_special, parse_special)),
            Engine::Hf(t) => t.encode(text, add_special, parse_special),
        }
    }

    /// The first tokens of [`Self::encode`]: at least `min` of them when the
    /// text has that many (perhaps all). Byte-level BPE encodes only as much
    /// of a long text as that takes, cut where no pre-tokenizer can match
    /// across (a lone newline between non-space characters), so the tokens
    /// are the whole text's; the other tokenizers encode all of it.
    pub fn encode_prefix(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        min: usize,
    ) -> Result<Vec<u32>> {
        match &self.engine {
            Engine::Bpe(t) => t.encode_prefix(text, add_special, parse_special, min),
            _ => self.encode(text, add_special, parse_special),
        }
    }

    /// Like [`Self::encode`], for raw bytes: invalid UTF-8 is a clear error.
    pub fn encode_bytes(
        &self,
        bytes: &[u8],
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| TokenizerError::InvalidUtf8(e.valid_up_to()))?;
        self.encode(text, add_special, parse_special)
    }

    /// The bytes a token stands for. Control tokens give their text when
    /// `special`, nothing otherwise (llama.cpp's `token_to_piece`).
    pub fn token_bytes(&self, id: u32, special: bool) -> Result<Vec<u8>> {
        match &self.engine {
            Engine::Bpe(t) => t
                .vocab
                .piece_bytes(id, special, vocab::PieceStyle::ByteLevel),
            Engine::Spm(t) => t
                .vocab
                .piece_bytes(id, special, vocab::PieceStyle::Sentencepiece),
            Engine::Hf(t) => t.token_bytes(id, special),
        }
    }

    /// The token's text as stored in the vocabulary (e.g. `Ġthe`, `▁the`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        match &self.engine {
            Engine::Bpe(t) => t.vocab.tokens.get(id as usize).cloned(),
            Engine::Spm(t) => t.vocab.tokens.get(id as usize).cloned(),
            Engine::Hf(t) => t.id_to_token(id),
        }
    }

    /// The id of a token given its exact text, if it is in the vocabulary.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.engine {
            Engine::Bpe(t) => t.vocab.id_of(text),
            Engine::Spm(t) => t.vocab.id_of(text),
            Engine::Hf(t) => t.token_to_id(text),
        }
    }

    /// Decode ids to text; bytes that do not form UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id, special)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Render `messages` through `tmpl` (with the generation prompt) and
    /// tokenize the result as llama.cpp does: special tokens parsed, BOS
    /// added per the model and not twice. Returns the text and its tokens.
    pub fn apply_chat_template(
        &self,
        tmpl: &ChatTemplate,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        extra: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(String, Vec<u32>)> {
        let mut text = tmpl.render(messages, true, tools, extra)?;
        if self.add_bos && !tmpl.bos_token.is_empty() {
            if let Some(rest) = text.strip_prefix(tmpl.bos_token.as_str()) {
                text = rest.to_string();
            }
        }
        let ids = self.encode(&text, true, true)?;
        Ok((text, ids))
    }
}
