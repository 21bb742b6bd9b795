//! `suanli perplexity` on SmolLM2-135M against llama-perplexity's results
//! on the same short texts (tests/goldens/perplexity, made by
//! scripts/gen_perplexity_goldens.py); KL divergence of the model against
//! itself; and the bad inputs, each a clear error and never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn suanli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(args)
        .output()
        .expect("spawn suanli")
}

fn smollm() -> String {
    suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("fetch")
        .display()
        .to_string()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("suanli-ppl-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// The golden case's text: its first bytes, as the script cut them.
fn text_file(dir: &Path, text: &str, bytes: usize) -> String {
    let full = suanli::hub::resolve_text(text, &mut |m| eprintln!("{m}")).expect("text");
    let all = std::fs::read(full).expect("read text");
    let p = dir.join(format!("{text}-{bytes}.txt"));
    std::fs::write(&p, suanli::corpus_prefix(&all, bytes)).expect("write text");
    p.display().to_string()
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {err}");
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

/// The running `[k]` values and the final estimate of llama-perplexity's
/// text output.
fn parse(stdout: &str) -> (Vec<f64>, f64, f64) {
    let running = stdout
        .split(',')
        .filter_map(|s| s.trim().strip_prefix('[')?.split_once(']'))
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let fin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Final estimate: PPL = "))
        .expect("final estimate");
    let (ppl, unc) = fin.split_once(" +/- ").expect("+/-");
    (
        running,
        ppl.parse().expect("ppl"),
        unc.parse().expect("uncertainty"),
    )
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn perplexity_matches_llama_perplexity() {
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("tests/goldens/perplexity/smollm2-135m-instruct-q4_1.json"))
            .expect("golden"),
    )
    .expect("golden json");
    let model = smollm();
    let dir = scratch("golden");
    let cases = golden["cases"].as_array().expect("cases");
    for case in cases {
        let name = case["name"].as_str().unwrap_or_default();
        let text = text_file(
            &dir,
            case["text"].as_str().unwrap_or_default(),
            case["bytes"].as_u64().unwrap_or(0) as usize,
        );
        let n_ctx = case["n_ctx"].to_string();
        let chunks = case["chunks"].to_string();
        let want: Vec<f64> = case["running"]
            .as_array()
            .expect("running")
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        let ppl = case["ppl"].as_f64().unwrap_or(0.0);
        let unc = case["uncertainty"].as_f64().unwrap_or(0.0);
        // llama.cpp's batch, or: the default pass of 512 tokens (several
        // chunks to a pass) and passes of one chunk.
        let batches = match case["batch"].as_u64() {
            Some(b) => vec![b.to_string()],
            None => vec!["512".to_string(), n_ctx.clone()],
        };
        for batch in &batches {
            let batch = batch.as_str();
            let out = ok(&suanli(&[
                "perplexity",
                "-m",
                &model,
                "-f",
                &text,
                "-c",
                &n_ctx,
                "--chunks",
                &chunks,
                "-b",
                batch,
                "-t",
                "2",
            ]));
            let (running, got, got_unc) = parse(&out);
            assert_eq!(running.len(), want.len(), "{name} -b {batch}: {out}");
            for (k, (a, b)) in running.iter().zip(&want).enumerate() {
                assert!(
                    close(*a, *b, 1e-4),
                    "{name} -b {batch}: [{}] {a} vs {b}",
                    k + 1
                );
            }
            // Four significant digits at least (here: llama.cpp's bits).
            assert!(close(got, ppl, 1e-4), "{name} -b {batch}: {got} vs {ppl}");
            assert!(
                close(got_unc, unc, 1e-3),
                "{name} -b {batch}: ± {got_unc} vs {unc}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kl_divergence_of_a_model_against_itself_is_zero() {
    let model = smollm();
    let dir = scratch("kld");
    let text = text_file(&dir, "en_shakespeare", 12000);
    let base = dir.join("base.logits").display().to_string();
    let common = [
        "-m", &model, "-f", &text, "-c", "128", "--chunks", "4", "-t", "2",
    ];
    let saved = ok(&suanli(
        &[
            &["perplexity"][..],
            &common,
            &["--save-logits", &base, "--json"],
        ]
        .concat(),
    ));
    let saved: serde_json::Value = serde_json::from_str(&saved).expect("json");
    let plain = ok(&suanli(
        &[&["perplexity"][..], &common, &["--json"]].concat(),
    ));
    let plain: serde_json::Value = serde_json::from_str(&plain).expect("json");
    assert_eq!(saved["ppl"], plain["ppl"], "saving changes nothing");
    // --token-logprobs: one line a chunk, whose log-probabilities give the
    // perplexity, of the chunk's tokens from `first` on.
    let lp = dir.join("logprobs.jsonl");
    let lp_s = lp.display().to_string();
    ok(&suanli(
        &[&["perplexity"][..], &common, &["--token-logprobs", &lp_s]].concat(),
    ));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&lp)
        .expect("logprobs file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    let mut sum = 0.0;
    for (k, l) in lines.iter().enumerate() {
        let lps = l["logprobs"].as_array().expect("logprobs");
        assert_eq!(l["chunk"], k);
        assert_eq!(l["first"], 65);
        assert_eq!(l["tokens"].as_array().map(Vec::len), Some(128));
        assert_eq!(lps.len(), 63);
        sum += lps.iter().map(|v| v.as_f64().expect("f64")).sum::<f64>();
    }
    let ppl = (-sum / 252.0).exp();
    let want = plain["ppl"].as_f64().expect("ppl");
    assert!(close(ppl, want, 1e-9), "{ppl} vs {want}");
    // 4 chunks × 63 scored tokens, in llama.cpp's layout: header, tokens, u16 rows.
    let len = std::fs::metadata(&base).expect("saved").len();
    let row = 2 * 49152u64.div_ceil(2) + 4;
    assert_eq!(len, 20 + 4 * 512 + 4 * 63 * row * 2);
    let out = ok(&suanli(
        &[
            &["perplexity"][..],
            &common,
            &["--kl-divergence", &base, "--json"],
        ]
        .concat(),
    ));
    let j: serde_json::Value = serde_json::from_str(&out).expect("json");
    let k = &j["kld"];
    assert_eq!(k["tokens"], 252);
    let mean = k["kld"]["value"].as_f64().expect("kld");
    assert!(mean.abs() < 1e-5, "mean KLD {mean}");
    assert_eq!(k["same_top"]["value"].as_f64(), Some(1.0), "{k}");
    let ppl = saved["ppl"].as_f64().expect("ppl");
    for key in ["ppl", "ppl_base"] {
        let v = k[key]["value"].as_f64().expect(key);
        assert!(close(v, ppl, 1e-4), "{key} {v} vs {ppl}");
    }
    assert!(k["ppl_diff"]["value"].as_f64().expect("diff").abs() < 1e-2);
    // The text output: the table and llama-perplexity's statistics.
    let out = ok(&suanli(
        &[&["perplexity"][..], &common, &["--kl-divergence", &base]].concat(),
    ));
    for needle in [
        "Same top p",
        "Mean    KLD:",
        "99.9%   KLD:",
        "Mean PPL(Q)/PPL(base)",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_a_clear_error() {
    let model = smollm();
    let dir = scratch("bad");
    let short = dir.join("short.txt");
    std::fs::write(&short, "To be, or not to be, that is the question.\n").expect("write");
    let short = short.display().to_string();
    // Too short for two chunks: how many tokens it has and how many it needs.
    fails_with(
        &suanli(&["perplexity", "-m", &model, "-f", &short]),
        &[&short, "at least 1024", "tokens"],
    );
    fails_with(
        &suanli(&["perplexity", "-m", &model, "-f", "/nonexistent/text.txt"]),
        &["/nonexistent/text.txt"],
    );
    let text = text_file(&dir, "en_shakespeare", 12000);
    let run = |base: &str| {
        suanli(&[
            "perplexity",
            "-m",
            &model,
            "-f",
            &text,
            "-c",
            "128",
            "--chunks",
            "2",
            "--kl-divergence",
            base,
        ])
    };
    // A missing, a foreign and a truncated file.
    let missing = dir.join("missing.logits").display().to_string();
    fails_with(&run(&missing), &[&missing]);
    let junk = dir.join("junk.logits");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00 not logits at all").expect("write");
    let junk = junk.display().to_string();
    fails_with(&run(&junk), &[&junk, "not a logits file"]);
    let base = dir.join("base.logits");
    let b = base.display().to_string();
    ok(&suanli(&[
        "perplexity",
        "-m",
        &model,
        "-f",
        &text,
        "-c",
        "128",
        "--chunks",
        "2",
        "--save-logits",
        &b,
    ]));
    let bytes = std::fs::read(&base).expect("read base");
    let cut = dir.join("cut.logits");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).expect("write");
    let cut = cut.display().to_string();
    fails_with(&run(&cut), &[&cut, "truncated"]);
    // Another model's: a vocabulary of another size...
    let mut other = bytes.clone();
    other[12..16].copy_from_slice(&32000i32.to_le_bytes());
    let n_rows = 2 * 63u64;
    let row = |nv: u64| 2 * nv.div_ceil(2) + 4;
    let head = 20 + 4 * 256;
    other.truncate(head);
    // (its tokens within its vocabulary: the file itself is sound)
    for t in other[20..].chunks_exact_mut(4) {
        if i32::from_le_bytes([t[0], t[1], t[2], t[3]]) >= 32000 {
            t.copy_from_slice(&0i32.to_le_bytes());
        }
    }
    other.resize(head + (n_rows * row(32000) * 2) as usize, 0);
    let other_path = dir.join("other.logits");
    std::fs::write(&other_path, &other).expect("write");
    let o = other_path.display().to_string();
    fails_with(&run(&o), &[&o, "vocabulary of 32000", "49152"]);
    // ... or the same size and other token ids for the text.
    let mut retok = bytes.clone();
    let t = 20 + 4 * 100;
    let id = i32::from_le_bytes([retok[t], retok[t + 1], retok[t + 2], retok[t + 3]]);
    retok[t..t + 4].copy_from_slice(&((id + 1) % 49152).to_le_bytes());
    let retok_path = dir.join("retok.logits");
    std::fs::write(&retok_path, &retok).expect("write");
    let r = retok_path.display().to_string();
    fails_with(&run(&r), &[&r, "token 100", "different tokenizer"]);
    // A context other than the base file's.
    fails_with(
        &suanli(&[
            "perplexity",
            "-m",
            &model,
            "-f",
            &text,
            "-c",
            "256",
            "--kl-divergence",
            &b,
        ]),
        &["-c 256", "context of 128"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With --chunks only as much of the text is tokenized as the chunks take:
/// those tokens must be the whole text's first ones.
#[test]
fn a_prefix_tokenizes_as_the_whole_text_begins() {
    let f = suanli_formats::GgufFile::open(Path::new(&smollm())).expect("open");
    let tok = suanli_tokenizer::Tokenizer::from_gguf(&f).expect("tokenizer");
    let p = suanli::hub::resolve_text("en_shakespeare", &mut |m| eprintln!("{m}")).expect("text");
    let all = std::fs::read(p).expect("read");
    let text = std::str::from_utf8(suanli::corpus_prefix(&all, 1 << 20)).expect("UTF-8");
    let whole = tok.encode(text, true, false).expect("encode");
    for min in [1, 5000, 100_000] {
        let part = tok.encode_prefix(text, true, false, min).expect("prefix");
        assert!(
            part.len() >= min && part.len() < whole.len(),
            "{min}: {}",
            part.len()
        );
        assert_eq!(part, whole[..part.len()], "{min}");
    }
    let more = tok.encode_prefix(text, true, false, whole.len() + 1);
    assert_eq!(more.expect("all"), whole);
}
