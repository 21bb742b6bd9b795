//! The command line on bad input: one clear message, a non-zero exit, no
//! panic. And on good input: only generated text on stdout.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn suanli(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_suanli"));
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn suanli");
    if let Some(bytes) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(bytes)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
}

fn smollm() -> String {
    suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("fetch")
        .display()
        .to_string()
}

#[test]
fn missing_model() {
    fails_with(
        &suanli(&["run", "-m", "/nonexistent/model.gguf", "-p", "hi"], None),
        "not found",
    );
    fails_with(
        &suanli(&["inspect", "no-such-model-name"], None),
        "not found",
    );
}

#[test]
fn unknown_architecture() {
    let dir = std::env::temp_dir().join(format!("suanli-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("mystery.gguf");
    suanli_models::tiny::write_tiny_gguf("mystery", &p, 1).expect("write");
    fails_with(
        &suanli(&["inspect", p.to_str().unwrap_or_default()], None),
        "unknown architecture 'mystery'",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn not_a_model_file() {
    let p = std::env::temp_dir().join(format!("suanli-cli-junk-{}.gguf", std::process::id()));
    std::fs::write(&p, b"this is not a gguf file").expect("write");
    fails_with(
        &suanli(
            &["run", "-m", p.to_str().unwrap_or_default(), "-p", "hi"],
            None,
        ),
        "not a GGUF file",
    );
    let _ = std::fs::remove_file(&p);
}

#[test]
fn prompt_longer_than_the_context() {
    let m = smollm();
    let long = "word ".repeat(100);
    let out = suanli(
        &["run", "-m", &m, "-p", &long, "--raw", "-c", "32", "-n", "4"],
        None,
    );
    fails_with(&out, "more than the context of 32");
}

#[test]
fn invalid_utf8() {
    let m = smollm();
    fails_with(
        &suanli(&["chat", "-m", &m], Some(b"\xff\xfe hello\n")),
        "not valid UTF-8",
    );
    let p = std::env::temp_dir().join(format!("suanli-cli-bad-{}.txt", std::process::id()));
    std::fs::write(&p, b"ok \xc3\x28 bad").expect("write");
    fails_with(
        &suanli(
            &[
                "tokenize",
                "-m",
                &m,
                "--file",
                p.to_str().unwrap_or_default(),
            ],
            None,
        ),
        "not valid UTF-8 at byte 3",
    );
    let _ = std::fs::remove_file(&p);
}

#[test]
fn run_prints_only_the_answer_on_stdout() {
    let m = smollm();
    let out = suanli(
        &[
            "run",
            "-m",
            &m,
            "-p",
            "What is the capital of France? Answer in one sentence.",
            "--temp",
            "0",
            "-n",
            "12",
        ],
        None,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Paris"), "answer: {stdout}");
    assert!(
        !stdout.contains("tokens/s") && !stdout.contains("loaded"),
        "diagnostics on stdout: {stdout}"
    );
    assert!(
        stderr.contains("prompt:") && stderr.contains("tokens/s"),
        "no timing line: {stderr}"
    );
    // Same seed, same sampled output.
    let sampled = |seed: &str| {
        suanli(
            &[
                "run",
                "-m",
                &m,
                "-p",
                "Tell me a story.",
                "--temp",
                "0.9",
                "--seed",
                seed,
                "-n",
                "16",
            ],
            None,
        )
        .stdout
    };
    assert_eq!(sampled("5"), sampled("5"));
}

#[test]
fn tokenize_prints_ids_and_pieces() {
    let m = smollm();
    let out = suanli(&["tokenize", "-m", &m, "-p", "Hello world", "--ids"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "19556 905");
    let out = suanli(&["tokenize", "-m", &m, "-p", "Hello<|im_end|>"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "19556\tHello\n2\t<|im_end|>\n"
    );
    let out = suanli(
        &[
            "tokenize",
            "-m",
            &m,
            "-p",
            "<|im_end|>",
            "--no-special",
            "--ids",
        ],
        None,
    );
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

#[test]
fn chat_answers_several_turns() {
    let m = smollm();
    let out = suanli(
        &["chat", "-m", &m, "--temp", "0", "-n", "24"],
        Some("What is the capital of France? Answer in one sentence.\nAnd of Italy?\n".as_bytes()),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(answers.len() >= 2, "expected two answers, got {stdout:?}");
    assert!(stdout.contains("Paris"), "first answer: {stdout}");
    assert!(
        stdout.contains("Rome"),
        "second answer, in context: {stdout}"
    );
}

/// `suanli bench ARGS --json --membw 50`, which must succeed: its tests.
fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let all: Vec<&str> = ["bench"]
        .into_iter()
        .chain(args.iter().copied())
        .chain(["--json", "--membw", "50"])
        .collect();
    let out = suanli(&all, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    v.as_array().expect("array").clone()
}

#[test]
fn bench_json_has_llama_bench_fields() {
    let m = smollm();
    let tests = bench_json(&["-m", &m, "-p", "8", "-n", "4", "-r", "2"]);
    assert_eq!(tests.len(), 2);
    for (t, (np, ng)) in tests.iter().zip([(8, 0), (0, 4)]) {
        assert_eq!(
            (t["n_prompt"].as_u64(), t["n_gen"].as_u64()),
            (Some(np), Some(ng))
        );
        assert!(t["avg_ts"].as_f64().is_some_and(|x| x > 0.0));
        assert!(t["stddev_ts"].as_f64().is_some_and(|x| x >= 0.0));
        assert_eq!(t["samples_ts"].as_array().map(Vec::len), Some(2));
    }
    assert!(tests[1]["roofline_fraction"]
        .as_f64()
        .is_some_and(|x| x > 0.0));
}

#[test]
fn bench_depth_runs_and_a_depth_past_the_context_is_an_error() {
    let m = smollm();
    let tests = bench_json(&["-m", &m, "-p", "8", "-n", "4", "-d", "300", "-r", "1"]);
    assert_eq!(tests.len(), 2);
    assert!(tests.iter().all(|t| t["n_depth"].as_u64() == Some(300)));
    // Past the model's context: a clear error, not an allocation failure.
    let out = suanli(
        &[
            "bench",
            "-m",
            &m,
            "-p",
            "0",
            "-n",
            "4",
            "-d",
            "100000000",
            "-r",
            "1",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs 100000005 positions") && !err.contains("panicked"),
        "{err}"
    );
}
