//! gpt-oss's harmony vocabulary read from GGUF as llama.cpp reads it: the
//! message-structure tokens are written into generated text, `<|end|>`
//! closes a message but not the reply, `<|return|>` and `<|call|>` do.

use suanli_formats::{GgufFile, GgufWriter, Value, ValueType};
use suanli_tokenizer::Tokenizer;

const HARMONY: [&str; 7] = [
    "<|start|>",
    "<|channel|>",
    "<|message|>",
    "<|constrain|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
];

fn vocab(with_harmony_ends: bool) -> Tokenizer {
    let mut tokens: Vec<String> = ["a", "b", "ab"].iter().map(|s| s.to_string()).collect();
    let mut types = vec![1i32; 3];
    for t in HARMONY {
        if with_harmony_ends || !matches!(t, "<|return|>" | "<|call|>") {
            tokens.push(t.into());
            types.push(3); // control
        }
    }
    let eos = tokens.iter().position(|t| t == "<|end|>").unwrap_or(0) as u32;
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("gpt-oss".into()));
    w.add("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.add(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            tokens.into_iter().map(Value::String).collect(),
        ),
    );
    w.add(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
    );
    w.add(
        "tokenizer.ggml.merges",
        Value::Array(ValueType::String, vec![Value::String("a b".into())]),
    );
    w.add("tokenizer.ggml.eos_token_id", Value::U32(eos));
    let dir = std::env::temp_dir().join(format!("suanli-harmony-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("vocab-{with_harmony_ends}.gguf"));
    w.write(&path).expect("write");
    let t = Tokenizer::from_gguf(&GgufFile::open(&path).expect("open")).expect("vocab");
    let _ = std::fs::remove_file(&path);
    t
}

#[test]
fn harmony_tokens_from_gguf() {
    let t = vocab(true);
    let id = |s: &str| t.token_id(s).expect(s);
    for s in ["<|start|>", "<|channel|>", "<|message|>", "<|constrain|>"] {
        assert_eq!(t.token_bytes(id(s), false).expect(s), s.as_bytes(), "{s}");
    }
    for s in ["<|end|>", "<|return|>", "<|call|>"] {
        assert!(t.token_bytes(id(s), false).expect(s).is_empty(), "{s}");
    }
    assert!(!t.is_eog(id("<|end|>")));
    assert!(t.is_eog(id("<|return|>")) && t.is_eog(id("<|call|>")));
    // A vocabulary without harmony's ends keeps `<|end|>` an end and its
    // other control tokens out of the text.
    let t = vocab(false);
    let id = |s: &str| t.token_id(s).expect(s);
    assert!(t.is_eog(id("<|end|>")));
    assert!(t
        .token_bytes(id("<|channel|>"), false)
        .expect("channel")
        .is_empty());
}
