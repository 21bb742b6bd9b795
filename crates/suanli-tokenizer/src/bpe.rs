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
/// Spelled with escapes: the class holds look-alikes (KELVIN SIGN, OHM SIGN…).
const DEEPSEEK_LLM_LETTERS: &str = "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+";
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
            .map_err(|e| load(bad_merge(&vocab).unwrap_or_else(|| format!("building BPE: {e}"))))?;
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
        self.encode_prefix(text, add_special, parse_special, usize::MAX)
    }

    /// The first tokens of [`Self::encode`]: at least `min` of them when the
    /// text has that many, and no more of a long text encoded than it takes
    /// to get them (the pieces [`Self::encode_text`] cuts it into encode as
    /// the whole does, so these are the whole's first tokens). EOS, if
    /// added, only with the whole text.
    pub fn encode_prefix(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        min: usize,
    ) -> Result<Vec<u32>> {
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
                    Fragment::Text(t) => self.encode_text(t, &mut out, min)?,
                    Fragment::Token(id) => out.push(id),
                }
                if out.len() >= min {
                    return Ok(out);
                }
            }
        }
        if add_special && self.vocab.add_eos {
            out.extend(self.vocab.eos);
        }
        Ok(out)
    }
}

/// Texts longer than this are cut into pieces encoded in parallel.
const PARALLEL_CHUNK: usize = 32 * 1024;

impl BpeTokenizer {
    fn encode_piece(&self, t: &str) -> Result<Vec<u32>> {
        let enc = self
            .tok
            .encode_fast(t, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encode plain text (no special tokens). Long texts are cut at
    /// boundaries no pre-tokenizer regex can match across — a single `\n`
    /// between two non-whitespace characters: every pattern in the table
    /// either excludes `\n` or ends at it, and a lone `\n` is its own piece —
    /// so the pieces encode exactly as the whole, and in parallel. Stops
    /// after the piece that brings `out` to `min` tokens.
    fn encode_text(&self, t: &str, out: &mut Vec<u32>, min: usize) -> Result<()> {
        if t.len() < 2 * PARALLEL_CHUNK {
            out.extend(self.encode_piece(t)?);
            return Ok(());
        }
        let b = t.as_bytes();
        // Byte i starts a piece if it follows a lone "\n" (non-whitespace
        // before it) and starts a non-whitespace character.
        let safe = |i: usize| {
            b[i - 1] == b'\n'
                && t[..i - 1]
                    .chars()
                    .next_back()
                    .is_some_and(|c| !c.is_whitespace())
                && t[i..].chars().next().is_some_and(|c| !c.is_whitespace())
        };
        let mut cuts = vec![0];
        let mut at = PARALLEL_CHUNK;
        while at < b.len() {
            match (at..b.len()).find(|&i| t.is_char_boundary(i) && safe(i)) {
                Some(i) => {
                    cuts.push(i);
                    at = i + PARALLEL_CHUNK;
                }
                None => break,
            }
        }
        cuts.push(b.len());
        use rayon::prelude::*;
        let pieces: Vec<&[usize]> = cuts.windows(2).collect();
        // All pieces at once for the whole text; for a prefix, a couple a
        // thread at a time.
        let wave = match min {
            usize::MAX => pieces.len(),
            _ => 2 * rayon::current_num_threads(),
        };
        for wave in pieces.chunks(wave.max(1)) {
            let parts: Vec<Result<Vec<u32>>> = wave
                .par_iter()
                .map(|w| self.encode_piece(&t[w[0]..w[1]]))
                .collect();
            for p in parts {
                out.extend(p?);
            }
            if out.len() >= min {
                break;
            }
        }
        Ok(())
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

/// The first merge rule naming a token the vocabulary lacks (either side
/// or their join), as the tokenizers crate refuses them without saying
/// which rule. Only looked for once building failed: 150k rules' lookups
/// cost ~60 ms of every load.
fn bad_merge(vocab: &Vocab) -> Option<String> {
    vocab.merges.iter().enumerate().find_map(|(i, m)| {
        let (a, b) = m.split_once(' ')?;
        let joined = format!("{a}{b}");
        let t = [a, b, &joined]
            .into_iter()
            .find(|t| !vocab.ids.contains_key(*t))?;
        Some(format!(
            "tokenizer.ggml.merges[{i}] = {m:?}: {t:?} is not in tokenizer.ggml.tokens"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::TokenType;

    fn vocab(tokens: &[&str], merges: &[&str]) -> Vocab {
        Vocab {
            model: "gpt2".into(),
            pre: Some("gpt-2".into()),
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            types: vec![TokenType::Normal; tokens.len()],
            scores: vec![0.0; tokens.len()],
            merges: merges.iter().map(|m| m.to_string()).collect(),
            bos: None,
            eos: None,
            eot: None,
            unk: None,
            eog: Vec::new(),
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            ids: tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.to_string(), i as u32))
                .collect(),
        }
    }

    /// A merge rule naming a token the vocabulary lacks is refused with
    /// the rule's index and the missing token, not the tokenizers crate's
    /// bare token.
    #[test]
    fn merges_outside_the_vocabulary_name_the_rule() {
        let path = Path::new("m.gguf");
        let tokens = ["a", "b", "c", "ab"];
        let ok = BpeTokenizer::new(vocab(&tokens, &["a b"]), path)
            .expect("a vocabulary holding every merge builds");
        assert_eq!(ok.encode("ab", false, false).ok(), Some(vec![3]));
        for (merges, rule, missing) in [
            (
                &["a b", "a c"][..],
                "tokenizer.ggml.merges[1] = \"a c\"",
                "\"ac\"",
            ),
            (&["a x"][..], "tokenizer.ggml.merges[0] = \"a x\"", "\"x\""),
            (&["a b", "q b"][..], "tokenizer.ggml.merges[1]", "\"q\""),
        ] {
            let err = match BpeTokenizer::new(vocab(&tokens, merges), path) {
                Ok(_) => panic!("{merges:?} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(rule)
                    && err.contains(&format!("{missing} is not in tokenizer.ggml.tokens")),
                "{merges:?}: {err}"
            );
            assert!(err.contains("m.gguf"), "{err}");
        }
    }
}
