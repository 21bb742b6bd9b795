//! Token ids identical to the reference implementations: llama.cpp's
//! llama-tokenize for every GGUF vocabulary, transformers' AutoTokenizer for
//! the tokenizer.json files — on 1 MB of English and 1 MB of Chinese text and
//! on edge cases; and decoding round-trips.
//!
//! Goldens: tests/goldens/tokenizer/*.json, made by
//! scripts/gen_tokenizer_goldens.py. Assets come through `suanli::hub`.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use suanli_formats::GgufFile;
use suanli_tokenizer::Tokenizer;

fn log(m: &str) {
    eprintln!("{m}");
}

/// The DeepSeek-V3 vocabulary as a vocab-only GGUF with pre-tokenizer `pre`.
fn vocab_tokenizer(pre: &str) -> suanli_tokenizer::Result<Tokenizer> {
    let dir =
        suanli::hub::resolve_tokenizer("deepseek_v3", &mut log).expect("fetching the tokenizer");
    let kv =
        suanli_tokenizer::convert::gguf_vocab_from_tokenizer_json(&dir.join("tokenizer.json"), pre)
            .expect("convert");
    let mut w = suanli_formats::GgufWriter::new();
    for (k, v) in kv {
        w.add(k, v);
    }
    let path = std::env::temp_dir().join(format!("suanli-pre-{pre}-{}.gguf", std::process::id()));
    w.write(&path).expect("write vocab");
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).expect("open"));
    let _ = std::fs::remove_file(&path);
    tok
}

fn open(source: &Value) -> Tokenizer {
    let name = source["name"].as_str().expect("name");
    match source["kind"].as_str() {
        Some("gguf") => {
            let path = suanli::hub::resolve(name, &mut log).expect("fetching the model");
            Tokenizer::from_gguf(&GgufFile::open(&path).expect("open")).expect("tokenizer")
        }
        Some("hf") => Tokenizer::from_hf(
            &suanli::hub::resolve_tokenizer(name, &mut log).expect("fetching the tokenizer"),
        )
        .expect("tokenizer"),
        Some("vocab") => {
            assert_eq!(
                name, "deepseek_v3",
                "vocab goldens are made from the DeepSeek-V3 tokenizer.json"
            );
            vocab_tokenizer(source["pre"].as_str().expect("pre")).expect("tokenizer")
        }
        other => panic!("unknown source kind {other:?}"),
    }
}

fn le_bytes(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_le_bytes()).collect()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn check(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/goldens/tokenizer")
        .join(file);
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("golden")).expect("JSON");
    let tok = open(&golden["source"]);
    let name = golden["source"]["name"].as_str().unwrap_or("?");

    for case in golden["edge"].as_array().expect("edge") {
        let text = case["text"].as_str().expect("text");
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let got = tok.encode(text, true, true).expect("encode");
        assert_eq!(got, want, "{name}: ids of {text:?}");
    }

    for (corpus, g) in golden["corpora"].as_object().expect("corpora") {
        let p = suanli::hub::resolve_text(corpus, &mut log).expect("fetching the text");
        let all = std::fs::read(&p).expect("read text");
        let bytes = suanli::corpus_prefix(&all, 1 << 20);
        assert_eq!(
            bytes.len() as u64,
            g["bytes"].as_u64().unwrap_or(0),
            "{name}/{corpus}: corpus slice length"
        );
        let text = std::str::from_utf8(bytes).expect("UTF-8 corpus");
        let t0 = std::time::Instant::now();
        let ids = tok.encode(text, true, true).expect("encode");
        let dt = t0.elapsed();
        eprintln!(
            "{name}/{corpus}: {} bytes -> {} ids in {:.3} s",
            bytes.len(),
            ids.len(),
            dt.as_secs_f64()
        );
        let window = g["window"].as_u64().unwrap_or(4096) as usize;
        let want_windows: Vec<String> =
            serde_json::from_value(g["windows"].clone()).expect("windows");
        let raw = le_bytes(&ids);
        for (w, (chunk, want)) in raw.chunks(4 * window).zip(&want_windows).enumerate() {
            let got = &hex(&Sha256::digest(chunk))[..16];
            assert_eq!(
                got,
                want,
                "{name}/{corpus}: ids {}..{} differ from the reference",
                w * window,
                (w + 1) * window
            );
        }
        assert_eq!(
            ids.len() as u64,
            g["n_ids"].as_u64().unwrap_or(0),
            "{name}/{corpus}: number of ids"
        );
        assert_eq!(
            hex(&Sha256::digest(&raw)),
            g["sha256"].as_str().unwrap_or(""),
            "{name}/{corpus}: ids hash"
        );
        // Decoding gives the text back.
        let back = tok.decode(&ids, false).expect("decode");
        assert!(
            back == text,
            "{name}/{corpus}: decode(encode(text)) differs from the text"
        );
    }
}

#[test]
fn smollm2_vocab_matches_llama_tokenize() {
    check("smollm2-135m-instruct-q4_1.json");
}

#[test]
fn qwen2_vocab_matches_llama_tokenize() {
    check("qwen2.5-coder-0.5b-instruct.json");
}

#[test]
fn gemma3_vocab_matches_llama_tokenize() {
    check("gemma3-270m-q4_k_m.json");
}

#[test]
fn qwen3_tokenizer_json_matches_transformers() {
    check("qwen3.json");
}

#[test]
fn deepseek_v3_tokenizer_json_matches_transformers() {
    check("deepseek_v3.json");
}

/// Every pre-tokenizer, against llama.cpp on the DeepSeek-V3 vocabulary.
#[test]
fn every_pre_tokenizer_matches_llama_tokenize() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/goldens/tokenizer");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("goldens dir").flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with("pre_") {
            check(&f);
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} pre-tokenizer goldens");
}

#[test]
fn unknown_pre_tokenizer_is_an_error() {
    let err = vocab_tokenizer("no-such-pre")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("unknown pre-tokenizer 'no-such-pre'"), "{err}");
}

/// Characters outside Gemma's vocabulary arrive as `<0xXX>` byte tokens over
/// several steps; the streaming decoder emits each only when complete.
#[test]
fn streaming_over_byte_fallback_tokens() {
    let path = suanli::hub::resolve("gemma3-270m-q4_k_m", &mut log).expect("fetch");
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).expect("open")).expect("tokenizer");

    // Supplementary private-use and rare characters: byte fallback.
    let text = "a\u{10FFFD}b\u{F0000}中\u{E0100}";
    let ids = tok.encode(text, false, false).expect("encode");
    let byte_tokens = ids
        .iter()
        .filter(|&&i| tok.token_text(i).is_some_and(|t| t.starts_with("<0x")))
        .count();
    assert!(
        byte_tokens >= 6,
        "expected byte-fallback tokens, got {ids:?}"
    );
    let mut d = suanli_tokenizer::StreamDecoder::new();
    let mut out = String::new();
    for &i in &ids {
        let piece = d.push(&tok.token_bytes(i, false).expect("bytes"));
        assert!(
            !piece.contains('\u{FFFD}'),
            "broken character streamed after token {i}"
        );
        out.push_str(&piece);
    }
    out.push_str(&d.finish());
    assert_eq!(out, text);
}
