//! Tokenizers on arbitrary bytes. The first byte picks the mode:
//!
//! - 0: the rest is `tokenizer.json` NUL text (or `tokenizer.json` NUL
//!   `tokenizer_config.json` NUL text): loaded from memory, then the text
//!   encoded and decoded.
//! - 1: Qwen3's tokenizer.json cut to 2,000 tokens (fuzz/seeds, loaded
//!   once) through `tokenizers`;
//! - 2: the same vocabulary as a GGUF `gpt2` vocabulary through suanli's
//!   own byte-level BPE (special-token splitting, pre-tokenizer regexes);
//! - 3: a SentencePiece-style GGUF vocabulary built here (scores,
//!   `<0xXX>` byte fallback, control and user-defined tokens) through
//!   suanli's SPM.
//!
//! In modes 1-3 the rest is encoded as text (invalid UTF-8 must be an
//! error) and read as token ids to decode. ASCII text without special
//! tokens must decode back to itself under byte-level BPE. Errors are
//! fine; panics, hangs and unbounded allocations are findings.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use suanli_formats::{GgufFile, GgufWriter, Value, ValueType};
use suanli_tokenizer::{StreamDecoder, Tokenizer};

const QWEN3_SMALL: &str = include_str!("../seeds/qwen3-small.tokenizer.json");

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("suanli-fuzz-{}-{name}", std::process::id()))
}

fn hf() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        Tokenizer::from_hf_json(QWEN3_SMALL, None, Path::new("qwen3-small/tokenizer.json"))
            .expect("the embedded tokenizer.json loads")
    })
}

fn from_gguf(kv: Vec<(String, Value)>, name: &str) -> Tokenizer {
    let mut w = GgufWriter::new();
    for (k, v) in kv {
        w.add(k, v);
    }
    let path = tmp(name);
    std::fs::write(&path, w.to_bytes()).expect("write the vocabulary");
    let f = GgufFile::open(&path).expect("the written GGUF reads back");
    let t = Tokenizer::from_gguf(&f).expect("the vocabulary loads");
    let _ = std::fs::remove_file(&path);
    t
}

fn bpe() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let json = tmp("qwen3-small.json");
        std::fs::write(&json, QWEN3_SMALL).expect("write tokenizer.json");
        let kv = suanli_tokenizer::convert::gguf_vocab_from_tokenizer_json(&json, "qwen2")
            .expect("the embedded tokenizer.json converts");
        let _ = std::fs::remove_file(&json);
        from_gguf(kv, "bpe.gguf")
    })
}

fn spm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let mut toks: Vec<(String, f32, i32)> = vec![
            ("<unk>".into(), 0.0, 2),
            ("<s>".into(), 0.0, 3),
            ("</s>".into(), 0.0, 3),
            ("<start_of_turn>".into(), 0.0, 3),
            ("<end_of_turn>".into(), 0.0, 3),
            ("<mask>".into(), 0.0, 4),
            ("\n\n".into(), 0.0, 4),
        ];
        toks.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, 6)));
        let words = "the of and to in is it that for on with as was at by be this \
            from or an are not have had but his they you we he she there their \
            what which when who will would can could token tokenizer model \
            hello world quick brown fox jumps over lazy dog 算 力 中 国 长 城 的 是";
        let mut pieces: Vec<String> = vec!["\u{2581}".into()];
        for c in ('a'..='z').chain('A'..='Z').chain('0'..='9') {
            pieces.push(c.to_string());
            pieces.push(format!("\u{2581}{c}"));
        }
        for w in words.split(' ').filter(|w| !w.is_empty()) {
            let chars: Vec<char> = w.chars().collect();
            for n in 2..=chars.len() {
                pieces.push(chars[..n].iter().collect());
            }
            pieces.push(format!("\u{2581}{w}"));
            pieces.push(w.to_string());
        }
        pieces.sort();
        pieces.dedup();
        for p in pieces {
            let score = -100.0 + p.chars().count() as f32 * 3.0 - (p.len() % 7) as f32 * 0.1;
            toks.push((p, score, 1));
        }
        let strs = |v: Vec<Value>| Value::Array(ValueType::String, v);
        let kv = vec![
            ("general.architecture".into(), Value::String("llama".into())),
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens".into(),
                strs(toks.iter().map(|t| Value::String(t.0.clone())).collect()),
            ),
            (
                "tokenizer.ggml.scores".into(),
                Value::Array(
                    ValueType::F32,
                    toks.iter().map(|t| Value::F32(t.1)).collect(),
                ),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(
                    ValueType::I32,
                    toks.iter().map(|t| Value::I32(t.2)).collect(),
                ),
            ),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
            ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ];
        from_gguf(kv, "spm.gguf")
    })
}

/// Token ids from raw bytes, some inside the vocabulary, some past it.
fn ids_of(bytes: &[u8], n_vocab: usize) -> Vec<u32> {
    bytes
        .chunks(3)
        .map(|c| {
            let v = c.iter().fold(0u32, |a, &b| a << 8 | b as u32);
            if c[0] & 0x80 != 0 {
                v
            } else {
                v % (n_vocab as u32 + 8)
            }
        })
        .collect()
}

fn exercise(t: &Tokenizer, text: &[u8], byte_level: bool) {
    let n = t.n_vocab();
    let flags = text.first().copied().unwrap_or(0);
    let utf8 = std::str::from_utf8(text);
    let enc = t.encode_bytes(text, flags & 1 != 0, flags & 2 != 0);
    if utf8.is_err() {
        assert!(enc.is_err(), "invalid UTF-8 was encoded");
    }
    if let Ok(s) = utf8 {
        for (add, parse) in [(false, false), (true, true)] {
            let Ok(ids) = t.encode(s, add, parse) else {
                continue;
            };
            assert!(ids.iter().all(|&i| (i as usize) < n), "id out of range");
            let back = t.decode(&ids, true).expect("decode own ids");
            let mut sd = StreamDecoder::new();
            let mut streamed = String::new();
            for &i in &ids {
                streamed.push_str(&sd.push(&t.token_bytes(i, true).expect("own id")));
            }
            streamed.push_str(&sd.finish());
            assert_eq!(streamed, back, "streamed and whole decodes differ");
            if byte_level && !add && !parse && s.is_ascii() {
                assert_eq!(back, s, "ASCII text does not decode back to itself");
            }
            if let Ok(p) = t.encode_prefix(s, add, parse, 1 + flags as usize % 8) {
                assert!(ids.starts_with(&p), "the prefix is not the whole's start");
            }
        }
    }
    let ids = ids_of(text, n);
    for special in [false, true] {
        match t.decode(&ids, special) {
            Ok(_) => assert!(ids.iter().all(|&i| (i as usize) < n)),
            Err(_) => assert!(ids.iter().any(|&i| (i as usize) >= n)),
        }
    }
    for &i in ids.iter().take(64) {
        let _ = t.token_text(i);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let mut parts = rest.splitn(3, |&b| b == 0);
            let json = parts.next().unwrap_or_default();
            let (cfg, text) = match (parts.next(), parts.next()) {
                (Some(c), Some(t)) => (Some(c), t),
                (Some(t), None) => (None, t),
                _ => (None, &[][..]),
            };
            let (Ok(json), Ok(cfg)) = (
                std::str::from_utf8(json),
                cfg.map(std::str::from_utf8).transpose(),
            ) else {
                return;
            };
            if let Ok(t) = Tokenizer::from_hf_json(json, cfg, Path::new("fuzz/tokenizer.json")) {
                exercise(&t, text, false);
            }
        }
        1 => exercise(hf(), rest, true),
        2 => exercise(bpe(), rest, true),
        _ => exercise(spm(), rest, false),
    }
});
