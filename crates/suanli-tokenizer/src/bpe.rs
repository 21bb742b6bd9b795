//! Byte-level BPE from GGUF metadata (`tokenizer.ggml.model = gpt2`).
//!
//! Merging is the Hugging Face `tokenizers` crate's BPE model, fed with the
//! GGUF vocabulary and merges. Pre-tokenization follows llama.cpp: each name
//! in `tokenizer.ggml.pre` selects a list of regexes, applied one after the
//! other, each splitting every piece into its matches and the text between
//! them (Hugging Face's `Split` with `Isolated` behaviour), then the GPT-2
//! byte-to-unicode mapping.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::special::{Fragment, SpecialSplitter};
use crate::vocab::Vocab;
use crate::{Result, TokenizerError};

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK_LLM_LETTERS: &str = r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;

/// The regex list and `ignore_merges` flag for a `tokenizer.ggml.pre` name,
/// or `None` for a name suanli does not know.
pub fn pre_tokenizer(name: &str) -> Option<(Vec<&'static str>, bool)> {
    Some(match name {
        "default" => (
            vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
            false,
        ),
        "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" => (vec![GPT2], false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (vec![r"\p{N}", GPT2], false)
        }
        "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "pixtral" => (vec![LLAMA3], true),
        "dbrx" | "smaug-bpe" => (vec![LLAMA3], false),
        "qwen2" | "deepseek-r1-qwen" | "hunyuan" => (vec![QWEN2], false),
        "deepseek-llm" => (
            vec![
                "[\r\n]",
                DEEPSEEK_LLM_LETTERS,
                r"\s?[!-/:-~！-／：-～‘-‟　-。]+",
                r"\s+$",
                "[一-龥ࠀ-一가-퟿]+",
                r"\p{N}+",
            ],
            false,
        ),
        "deepseek-v3" => (
            vec![r"\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", DEEPSEEK3_MAIN],
            false,
        ),
        "deepseek-coder" => (
            vec![
                "[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                "[一-龥ࠀ-一가-퟿]+",
                r"\p{N}",
            ],
            false,
        ),
        "falcon" => (
            vec![r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
            false,
        ),
        _ => return None,
    })
}

/// Every `tokenizer.ggml.pre` name [`pre_tokenizer`] accepts.
pub const KNOWN_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "llama-bpe",
    "llama3",
    "dbrx",
    "smaug-bpe",
    "qwen2",
    "deepseek-r1-qwen",
    "hunyuan",
    "deepseek-llm",
    "deepseek-v3",
    "deepseek-coder",
    "falcon",
];

pub struct BpeTokenizer {
    pub vocab: Vocab,
    tok: tokenizers::Tokenizer,
    specials: SpecialSplitter,
    specials_all: SpecialSplitter,
}

impl BpeTokenizer {
    pub fn new(vocab: Vocab, path: &Path) -> Result<Self> {
        let name = vocab.pre.clone().unwrap_or_else(|| "default".into());
        let (regexes, ignore_merges) =
            pre_tokenizer(&name).ok_or_else(|| TokenizerError::UnknownPre {
                path: path.to_path_buf(),
                name: name.clone(),
                known: KNOWN_PRE.join(", "),
            })?;
        let load = |why: String| TokenizerError::Load {
            path: path.to_path_buf(),
            why,
        };
        let mut merges = Vec::with_capacity(vocab.merges.len());
        for (i, m) in vocab.merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                load(format!(
                    "tokenizer.ggml.merges[{i}] = {m:?} is not 'left right'"
                ))
            })?;
            merges.push((a.to_string(), b.to_string()));
        }
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .ids
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| load(format!("building BPE: {e}")))?;
        let mut seq: Vec<PreTokenizerWrapper> = Vec::new();
        for r in regexes {
            let split = Split::new(
                SplitPattern::Regex(r.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| load(format!("pre-tokenizer regex {r:?}: {e}")))?;
            seq.push(split.into());
        }
        seq.push(ByteLevel::new(false, false, false).into());
        let mut tok = tokenizers::Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(Sequence::new(seq)));
        let pick = |ps: bool| {
            SpecialSplitter::new(
                vocab
                    .special_tokens(ps)
                    .into_iter()
                    .map(|i| (i, vocab.tokens[i as usize].clone()))
                    .collect(),
            )
        };
        Ok(BpeTokenizer {
            specials: pick(false),
            specials_all: pick(true),
            vocab,
            tok,
        })
    }

    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if add_special && self.vocab.add_bos {
            out.extend(self.vocab.bos);
        }
        let splitter = if parse_special {
            &self.specials_all
        } else {
            &self.specials
        };
        if !text.is_empty() {
            for frag in splitter.split(text) {
                match frag {
                    Fragment::Text(t) => {
                        let enc = self
                            .tok
                            .encode_fast(t, false)
                            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                        out.extend_from_slice(enc.get_ids());
                    }
                    Fragment::Token(id) => out.push(id),
                }
            }
        }
        if add_special && self.vocab.add_eos {
            out.extend(self.vocab.eos);
        }
        Ok(out)
    }
}

/// GPT-2's reversible byte-to-unicode map: printable bytes map to themselves,
/// the other 68 to U+0100.. in order.
fn byte_of_char(c: char) -> Option<u8> {
    let c = c as u32;
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    if c < 256 && printable(c) {
        return Some(c as u8);
    }
    if (256..256 + 68).contains(&c) {
        let k = c - 256;
        return (0u32..256)
            .filter(|&b| !printable(b))
            .nth(k as usize)
            .map(|b| b as u8);
    }
    None
}

/// The bytes a byte-level token text stands for; characters outside the
/// byte alphabet are kept as their UTF-8.
pub fn bytes_of_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match byte_of_char(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}
