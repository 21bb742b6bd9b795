//! Speculative decoding on a real model (SmolLM2-135M): greedy output is
//! the non-speculative output token for token — with prompt lookup, and
//! with a draft model (the target itself as its own draft, which must then
//! keep every drafted token) — under the batch-invariant numerics
//! speculation runs on; `run --draft` with another vocabulary is an error
//! naming the first differing token.

use std::process::Command;

use suanli_engine::{
    generate, generate_speculative, Adaptive, ModelDrafter, NgramDrafter, Sampler, SamplingParams,
};
use suanli_formats::GgufFile;
use suanli_models::KvDtype;
use suanli_tokenizer::Tokenizer;

const PROMPT: &str =
    "def area(w, h):\n    return w * h\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n\n\
Rewrite both functions above with type hints, keeping everything else:\n";

fn plain(model: &dyn suanli_models::Model, tokens: &[u32], eog: &dyn Fn(u32) -> bool) -> Vec<u32> {
    let mut kv = model.new_cache(1024, KvDtype::F16);
    let mut out = Vec::new();
    let mut s = Sampler::new(SamplingParams::greedy());
    generate(model, &mut kv, tokens, &mut s, 96, eog, &mut |t| {
        out.push(t);
        true
    })
    .expect("generate");
    out
}

#[test]
fn greedy_speculation_is_token_for_token_the_plain_output() {
    suanli_kernels::dispatch::set_batch_invariant(true);
    let path = suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("fetch");
    let file = GgufFile::open(&path).expect("open");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    let model = suanli_models::load(&path).expect("model");
    let tokens = tok.encode(PROMPT, true, false).expect("encode");
    let eog = |t| tok.is_eog(t);
    let want = plain(model.as_ref(), &tokens, &eog);
    assert!(want.len() > 40, "a long enough continuation");
    for with_draft in [false, true] {
        let mut kv = model.new_cache(1024, KvDtype::F16);
        let mut s = Sampler::new(SamplingParams::greedy());
        let mut got = Vec::new();
        let mut ngram = NgramDrafter::default();
        let mut same = ModelDrafter::new(model.as_ref(), model.new_cache(1024, KvDtype::F16));
        let drafter: &mut dyn suanli_engine::Drafter =
            if with_draft { &mut same } else { &mut ngram };
        // Always draft (the adaptive length is tested on its own): every
        // step verifies several tokens.
        let mut control = Adaptive::new(6);
        let (g, spec) = generate_speculative(
            model.as_ref(),
            &mut kv,
            &[],
            &tokens,
            &mut s,
            96,
            &eog,
            &mut |t| {
                got.push(t);
                true
            },
            drafter,
            &mut control,
        )
        .expect("speculate");
        assert_eq!(got, want, "draft model: {with_draft}");
        assert_eq!(g.gen_tokens, want.len());
        assert!(
            spec.drafted > 0,
            "draft model {with_draft}: nothing drafted"
        );
        if with_draft {
            // The target drafting for itself: every draft is its own argmax.
            assert_eq!(spec.accepted, spec.drafted, "{spec:?}");
        }
    }
}

#[test]
fn a_draft_with_another_vocabulary_is_refused_naming_the_token() {
    let target = suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("fetch");
    let other =
        suanli::hub::resolve("gemma3-270m-q4_k_m", &mut |m| eprintln!("{m}")).expect("fetch");
    let out = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["run", "-m"])
        .arg(&target)
        .arg("--draft")
        .arg(&other)
        .args(["-p", "hi", "-n", "4"])
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("differs from the target's at token 0"),
        "{err}"
    );
}

/// `chat --spec ngram` over two turns answers what plain `chat` answers in
/// the numerics speculation runs on (the drafter follows the conversation
/// across turns), and says what speculation did.
#[test]
fn chat_with_speculation_answers_as_plain_chat() {
    let m = suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("fetch");
    let turns = "Repeat after me: one two three four five six seven eight.\nAgain, backwards.\n";
    let chat = |spec: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_suanli"));
        c.args(["chat", "-m"])
            .arg(&m)
            .args(["--temp", "0", "-n", "40"]);
        if spec {
            c.args(["--spec", "ngram"]);
        } else {
            c.env("SUANLI_BATCH_INVARIANT", "1");
        }
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(turns.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("chat");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (plain, _) = chat(false);
    let (spec, err) = chat(true);
    assert!(
        plain.lines().filter(|l| !l.trim().is_empty()).count() >= 2,
        "{plain}"
    );
    assert_eq!(spec, plain);
    assert_eq!(err.matches("speculation: ").count(), 2, "{err}");
}

/// `bench --spec ngram` adds a speculative test with the plain runs it is
/// held against and the acceptance.
#[test]
fn bench_reports_the_speculative_test() {
    let m = suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("fetch");
    let out = Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(["bench", "-m"])
        .arg(&m)
        .args([
            "-p", "0", "-n", "32", "-r", "2", "--spec", "ngram", "--json", "--membw", "50",
        ])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let tests = v.as_array().expect("array");
    assert_eq!(tests.len(), 2, "tg and the speculative test");
    let s = &tests[1];
    assert_eq!(s["speculative"].as_str(), Some("ngram"));
    assert_eq!(s["samples_ts"].as_array().map(Vec::len), Some(2));
    assert_eq!(s["plain_samples_ts"].as_array().map(Vec::len), Some(2));
    let (drafted, accepted) = (s["drafted"].as_u64(), s["accepted"].as_u64());
    assert!(drafted.is_some_and(|d| d > 0), "{s}");
    assert!(accepted <= drafted);
    let speedup = s["speedup"].as_f64().expect("speedup");
    let ratio = s["avg_ts"].as_f64().expect("avg") / s["plain_avg_ts"].as_f64().expect("plain");
    assert!((speedup - ratio).abs() < 1e-9);
}
