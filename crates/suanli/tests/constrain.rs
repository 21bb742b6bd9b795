//! Constrained decoding against Qwen2.5-Coder's real vocabulary (151k
//! tokens, byte-level BPE with control tokens): the token trie is built
//! from suanli's tokenizer, a schema's mask admits exactly the tokens that
//! keep the output valid, the end-of-generation tokens come only once the
//! JSON is complete, and a mask costs well under a decode step.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use suanli_engine::{Constrainer, Grammar, Trigger};
use suanli_formats::GgufFile;
use suanli_tokenizer::Tokenizer;

fn tokenizer() -> Arc<Tokenizer> {
    let path = suanli::hub::resolve("qwen2.5-coder-0.5b-instruct", &mut |m| eprintln!("{m}"))
        .expect("model");
    let f = GgufFile::open(&path).expect("gguf");
    Arc::new(Tokenizer::from_gguf(&f).expect("tokenizer"))
}

/// Allowed logits left finite by the mask.
fn allowed(row: &[f32]) -> Vec<u32> {
    (0..row.len() as u32)
        .filter(|&t| row[t as usize].is_finite())
        .collect()
}

#[test]
fn json_schema_masks_follow_the_document() {
    let tok = tokenizer();
    let n_vocab = 151936;
    let t0 = Instant::now();
    let c = Constrainer::new(tok.clone(), n_vocab).expect("constrainer");
    eprintln!(
        "trie and slicer: {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "role": {"type": "string", "enum": ["admin", "user"]},
            "tags": {"type": "array", "items": {"type": "integer"}}
        },
        "required": ["name", "role", "tags"],
        "additionalProperties": false
    });
    let t0 = Instant::now();
    let mut k = c
        .compile(&Grammar::JsonSchema {
            schema,
            strict: true,
        })
        .expect("compiles");
    eprintln!(
        "compile + first mask: {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let doc = r#"{"name": "Ann", "role": "user", "tags": [1, 22]}"#;
    let ids = tok.encode(doc, false, false).unwrap();
    let im_end = tok.token_id("<|im_end|>").unwrap();
    let mut worst = 0f64;
    for &t in &ids {
        let mut row = vec![0.0f32; n_vocab];
        let t1 = Instant::now();
        k.apply(&mut row).expect("mask");
        worst = worst.max(t1.elapsed().as_secs_f64());
        let ok = allowed(&row);
        assert!(ok.contains(&t), "token {t} of the document was masked");
        assert!(!ok.contains(&im_end), "EOS allowed before the end");
        k.accept(t).expect("accepted");
    }
    let mut row = vec![0.0f32; n_vocab];
    k.apply(&mut row).expect("mask");
    assert!(
        allowed(&row).contains(&im_end),
        "EOS not allowed at the end"
    );
    eprintln!("worst mask: {:.2} ms", worst * 1e3);
    // Forbidden continuations: another key, a role outside the enum.
    let mut k = c
        .compile(&Grammar::JsonSchema {
            schema: json!({"type": "object", "properties": {"role": {"enum": ["admin"]}}, "required": ["role"], "additionalProperties": false}),
            strict: true,
        })
        .unwrap();
    for &t in &tok.encode(r#"{"role": ""#, false, false).unwrap() {
        k.accept(t).unwrap();
    }
    let mut row = vec![0.0f32; n_vocab];
    k.apply(&mut row).unwrap();
    let ok = allowed(&row);
    assert!(ok.contains(&tok.encode("admin", false, false).unwrap()[0]));
    assert!(!ok.contains(&tok.encode("user", false, false).unwrap()[0]));
}

#[test]
fn bad_grammars_are_refused_with_the_reason() {
    let c = Constrainer::new(tokenizer(), 151936).unwrap();
    let e = c
        .compile(&Grammar::Lark("start: foo\nfoo: bar".into()))
        .unwrap_err();
    assert!(e.to_string().contains("bar"), "{e}");
    let e = c.compile(&Grammar::Regex("[a-".into())).unwrap_err();
    assert!(e.to_string().contains("regex"), "{e}");
    let e = c
        .compile(&Grammar::JsonSchema {
            schema: json!({"type": "nonsense"}),
            strict: true,
        })
        .unwrap_err();
    assert!(e.to_string().contains("nonsense"), "{e}");
}

#[test]
fn json_object_mask_cost() {
    let tok = tokenizer();
    let c = Constrainer::new(tok.clone(), 151936).unwrap();
    let mut k = c.compile(&Grammar::json_object()).unwrap();
    let doc = r#"{"number": 1, "number": 2, "number": 3, "number": 4, "number": 5, "number": 6, "number": 7}"#;
    let t0 = Instant::now();
    let ids = tok.encode(doc, false, false).unwrap();
    let mut worst = 0f64;
    for &t in &ids {
        let mut row = vec![0.0f32; 151936];
        let t1 = Instant::now();
        k.apply(&mut row).expect("mask");
        worst = worst.max(t1.elapsed().as_secs_f64());
        k.accept(t).expect("accepted");
    }
    eprintln!(
        "json_object: {} tokens in {:.1} ms, worst {:.2} ms",
        ids.len(),
        t0.elapsed().as_secs_f64() * 1e3,
        worst * 1e3
    );
}

/// `tool_choice: auto`'s lazy grammar: text is free until `<tool_call>`,
/// then only a call that parses, then free again (and a second call held
/// the same way).
#[test]
fn lazy_grammar_holds_only_after_its_marker() {
    let tok = tokenizer();
    let n_vocab = 151936;
    let c = Constrainer::new(tok.clone(), n_vocab).expect("constrainer");
    let call = r#"start: "\n" %json {"type": "object", "properties": {"name": {"const": "get_weather"}, "arguments": {"type": "object"}}, "required": ["name", "arguments"], "additionalProperties": false} "\n</tool_call>""#;
    let mut k = c
        .compile_lazy(
            &Trigger::marker("<tool_call>"),
            &[(String::new(), Grammar::Lark(call.into()))],
        )
        .expect("compiles");
    let mask = |k: &mut suanli_engine::Constraint| {
        let mut row = vec![0.0f32; n_vocab];
        k.apply(&mut row).expect("mask");
        allowed(&row).len()
    };
    let free = |k: &mut suanli_engine::Constraint, text: &str| {
        for &t in &tok.encode(text, false, true).unwrap() {
            assert_eq!(mask(k), n_vocab, "free text masked at {t}");
            k.accept(t).unwrap();
        }
    };
    free(&mut k, "Let me look that up. ");
    free(&mut k, "<tool_call>");
    // Held: the call's JSON only, no other function name.
    for &t in &tok
        .encode(
            "\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
            false,
            true,
        )
        .unwrap()
    {
        let mut row = vec![0.0f32; n_vocab];
        k.apply(&mut row).expect("mask");
        let ok = allowed(&row);
        assert!(ok.len() < n_vocab, "not held after the marker");
        assert!(ok.contains(&t), "token {t} of the call was masked");
        k.accept(t).unwrap();
    }
    assert!(!k.is_stopped());
    free(&mut k, " Done. <tool_call>");
    let mut row = vec![0.0f32; n_vocab];
    k.apply(&mut row).expect("mask");
    let ok = allowed(&row);
    assert!(ok.len() < n_vocab, "the second call is held too");
    assert!(!ok.contains(&tok.encode("Sure", false, false).unwrap()[0]));
}

/// The grammars the server's tool setup writes (forced and `auto`'s lazy
/// ones, for every call format) compile, and a forced harmony call is
/// accepted to its end.
#[test]
fn tool_grammars_of_every_format_compile() {
    use suanli_server::tools::setup;
    let tok = tokenizer();
    let c = Constrainer::new(tok.clone(), 151936).expect("constrainer");
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    ]);
    for tmpl in [
        "<tool_call>",
        "<｜tool▁calls▁begin｜>",
        "<|channel|>",
        "<|python_tag|>",
    ] {
        for choice in [None, Some(json!("required"))] {
            let s = setup(Some(&tools), choice.as_ref(), None, tmpl).expect("setup");
            for a in [s.grammar, s.lazy].into_iter().flatten() {
                let keyed = match a.keyed.is_empty() {
                    true => vec![(String::new(), a.grammar.clone())],
                    false => a.keyed.clone(),
                };
                let k = match &a.trigger {
                    Some(t) => c.compile_lazy(t, &keyed),
                    None => c.compile(&a.grammar),
                };
                assert!(k.is_ok(), "{tmpl} {choice:?}: {:?}", k.err());
            }
        }
    }
    // A forced harmony call, spelled in Qwen's text tokens, is accepted to
    // its end and held all along.
    let s = setup(Some(&tools), Some(&json!("required")), None, "<|channel|>").expect("setup");
    let a = s.grammar.expect("forced");
    let mut k = c.compile(&a.grammar).expect("compiles");
    let text = "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}";
    let mut held = 0;
    for &t in &tok.encode(text, false, false).unwrap() {
        let mut row = vec![0.0f32; 151936];
        k.apply(&mut row).expect("mask");
        assert!(row[t as usize].is_finite(), "token {t} masked");
        held += row.iter().any(|l| !l.is_finite()) as usize;
        k.accept(t).expect("accepted");
    }
    assert!(held > 5, "the call was held for {held} tokens only");
}

/// harmony's `auto`: the analysis and final channels stay free; a header
/// that names a function (`to=functions.NAME`) holds what follows its
/// `<|message|>` to that function's arguments — not another function's,
/// not a function whose name only starts the same — until they are
/// complete.
#[test]
fn harmony_auto_holds_the_named_functions_arguments() {
    use suanli_server::tools::setup;
    let tok = tokenizer();
    let n_vocab = 151936;
    let c = Constrainer::new(tok.clone(), n_vocab).expect("constrainer");
    let tools = json!([
        {"type": "function", "function": {"name": "get", "parameters": {"type": "object",
            "properties": {"url": {"type": "string"}}, "required": ["url"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"], "additionalProperties": false}}},
    ]);
    let a = setup(Some(&tools), None, None, "<|channel|>")
        .expect("setup")
        .lazy
        .expect("auto is lazy");
    let mut k = c
        .compile_lazy(a.trigger.as_ref().expect("trigger"), &a.keyed)
        .expect("compiles");
    let ids = |text: &str| tok.encode(text, false, false).unwrap();
    let held = |k: &mut suanli_engine::Constraint| {
        let mut row = vec![0.0f32; n_vocab];
        k.apply(&mut row).expect("mask");
        allowed(&row)
    };
    let free = |k: &mut suanli_engine::Constraint, text: &str| {
        for t in ids(text) {
            assert_eq!(held(k).len(), n_vocab, "{text:?}: masked at {t}");
            k.accept(t).unwrap();
        }
    };
    free(
        &mut k,
        "<|channel|>analysis<|message|>The user wants the weather; call get_weather.<|end|>",
    );
    free(
        &mut k,
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
    );
    // Held to get_weather's arguments: after `{"` its key, not get's.
    let mut k2 = k.clone();
    for t in ids("{\"") {
        k2.accept(t).unwrap();
    }
    let ok = held(&mut k2);
    assert!(ok.contains(&ids("city")[0]) && !ok.contains(&ids("url")[0]));
    for t in ids("{\"city\": \"Paris\"}") {
        let ok = held(&mut k);
        assert!(ok.len() < n_vocab, "not held after the header");
        assert!(ok.contains(&t), "token {t} of the arguments was masked");
        k.accept(t).unwrap();
    }
    let mut k2 = k.clone();
    // Free again after the arguments: the call's end, or a final message
    // (which names no function).
    free(&mut k, "<|call|>");
    free(
        &mut k2,
        "<|start|>assistant<|channel|>final<|message|>It is sunny in Paris.",
    );
    // Where the header (written in the role's part) names `get`, its own
    // schema holds.
    let mut k = c
        .compile_lazy(a.trigger.as_ref().expect("trigger"), &a.keyed)
        .expect("compiles");
    free(
        &mut k,
        "<|start|>assistant to=functions.get<|channel|>commentary json<|message|>",
    );
    for t in ids("{\"") {
        assert!(held(&mut k).len() < n_vocab, "held");
        k.accept(t).unwrap();
    }
    let ok = held(&mut k);
    assert!(
        ok.contains(&ids("url")[0]) && !ok.contains(&ids("city")[0]),
        "get's schema holds"
    );
}
