//! The disconnect storm, short: scripts/disconnect_storm.py for 20 s with
//! 40 clients dropping their streams at random points (while sending, in
//! prefill, before the first token, mid-stream, waiting for a whole
//! answer) beside 2 steady greedy streams, on SmolLM2-135M. The steady
//! outputs must equal their single runs and /metrics must come back to 0
//! KV blocks in use and 0 running sequences. The long run and the soak are
//! the same script with its defaults and `--soak MINUTES`.
//!
//! The script needs only Python's standard library.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[test]
fn disconnect_storm_leaves_steady_streams_unchanged_and_no_kv_blocks() {
    let model = suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("model");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/disconnect_storm.py");
    let t0 = Instant::now();
    let out = Command::new("python3")
        .arg(script)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_suanli"))
        .arg("--model")
        .arg(&model)
        .args(["--seconds", "20", "--clients", "40"])
        .args(["--steady", "2", "--max-tokens", "24"])
        .args(["--parallel", "8", "--long-words", "400"])
        .output()
        .expect("running python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}\n{:.1}s", t0.elapsed().as_secs_f64());
    assert!(out.status.success(), "the storm failed:\n{text}");
    assert!(text.contains("single runs: yes"), "{text}");
    assert!(text.contains("result: ok"), "{text}");
}
