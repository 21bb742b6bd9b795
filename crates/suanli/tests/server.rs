//! `suanli serve` over real sockets, driven by the official `openai` Python
//! client (tests/server/openai_client.py): chat, streaming, completions
//! with echo/logprobs, batch invariance under 16 concurrent requests,
//! preemption when the KV pool runs out, KV blocks freed on disconnect,
//! and every error status; structured output and tool calling
//! (tests/server/structured.py: JSON schemas checked by a validator,
//! grammars, tool calls); Ollama's API through the `ollama` client
//! (tests/server/ollama_client.py).
//!
//! The model (Qwen2.5-Coder-0.5B: Q5_0/Q8_0/Q4_K/Q6_K weights) comes
//! through the project's own fetch. Python needs `openai`; when the system
//! Python lacks it, a virtual environment under the target directory gets
//! it from the package registry once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MODEL: &str = "qwen2.5-coder-0.5b-instruct";
const KEY: &str = "test-key-123";

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        // Fetch (or find cached) once, outside the server's start-up time.
        let path = suanli::hub::resolve(MODEL, &mut |m| eprintln!("{m}")).expect("model");
        let mut child = Command::new(env!("CARGO_BIN_EXE_suanli"))
            .args(["serve", "-m"])
            .arg(&path)
            .args(["--port", "0", "--api-key", KEY, "--alias", MODEL])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting suanli serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().ok());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(120))
            .ok()
            .flatten()
            .expect("the server did not report its port");
        Server { child, port }
    }

    fn run(&self, section: &str) {
        self.run_script("openai_client.py", section);
    }

    /// A section of a script in tests/server.
    fn run_script(&self, script: &str, section: &str) {
        self.run_script_with(script, section, &[]);
    }

    /// [`Self::run_script`] with environment variables.
    fn run_script_with(&self, script: &str, section: &str, env: &[(&str, String)]) {
        let t0 = Instant::now();
        let out = Command::new(python())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../tests/server")
                    .join(script),
            )
            .arg(format!("http://127.0.0.1:{}/v1", self.port))
            .arg(KEY)
            .arg(section)
            .output()
            .expect("running python");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{text}");
        assert!(out.status.success(), "section {section} failed:\n{text}");
        assert!(text.contains(&format!("{section}: ok")));
        eprintln!("{section}: {:.1}s", t0.elapsed().as_secs_f64());
    }
}

mod common;

/// A Python that can `import openai`, `jsonschema` and `ollama`.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        common::python_with(
            "openai-venv",
            "openai, jsonschema, ollama",
            &["openai", "jsonschema", "ollama"],
        )
    })
}

#[test]
fn openai_client_chat_streaming_and_completions() {
    Server::start(&[]).run("client");
}

#[test]
fn ollama_client_tags_show_chat_generate_format_and_errors() {
    Server::start(&[]).run_script("ollama_client.py", "ollama");
}

#[test]
fn slow_clients_are_cut_off_and_connections_capped() {
    Server::start(&[
        "--max-connections",
        "2",
        "--header-timeout",
        "2",
        "--body-timeout",
        "2",
    ])
    .run("slow");
}

/// `--spec ngram`: greedy answers equal a plain server's (streamed or not,
/// alone or two at once, with a penalty), and /metrics counts the drafts.
#[test]
fn speculative_serving_answers_as_plain_serving() {
    let plain = Server::start(&[]);
    let spec = Server::start(&["--spec", "ngram"]);
    spec.run_script_with(
        "openai_client.py",
        "spec",
        &[("REF", format!("http://127.0.0.1:{}/v1", plain.port))],
    );
}

#[test]
fn sixteen_concurrent_requests_match_their_single_runs() {
    Server::start(&["--parallel", "16"]).run("invariance");
}

#[test]
fn preempted_sequences_are_recomputed_not_dropped() {
    // 12 blocks of 16 positions for four sequences of ~75 positions each.
    Server::start(&["-c", "192", "--parallel", "4"]).run("preempt");
}

#[test]
fn disconnected_streams_leave_no_kv_blocks() {
    Server::start(&["--parallel", "4"]).run("disconnect");
}

#[test]
fn error_statuses() {
    Server::start(&[
        "-c",
        "512",
        "--parallel",
        "1",
        "--max-queue",
        "1",
        "--max-body",
        "16384",
    ])
    .run("errors");
}

#[test]
fn structured_output_json_schemas_grammars_and_their_errors() {
    Server::start(&["--parallel", "16"]).run_script("structured.py", "json");
}

#[test]
fn tool_calls_named_required_streamed_and_two_step() {
    Server::start(&["--parallel", "4"]).run_script("structured.py", "tools");
}

/// SIGTERM with a stream in flight and `--drain-timeout 1`: the server
/// stops accepting, lets the stream run for the drain time, then ends it
/// with a final error event and `[DONE]`, and exits 0.
#[test]
fn sigterm_drains_then_ends_streams_with_an_error_event() {
    use std::io::{Read, Write};
    let mut s = Server::start(&["--drain-timeout", "1"]);
    let body = format!(
        r#"{{"model": "{MODEL}", "stream": true, "max_tokens": 4000, "ignore_eos": true, "messages": [{{"role": "user", "content": "Count to a thousand."}}]}}"#
    );
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // Wait for the first chunks, then stop the server.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"content\":\"") {
        let n = conn.read(&mut buf).expect("read");
        assert!(n > 0, "closed before streaming");
        got.extend_from_slice(&buf[..n]);
    }
    let t0 = Instant::now();
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    // No new connections while draining.
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err());
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Err(e) => {
                eprintln!("read ended: {e}");
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    let waited = t0.elapsed();
    eprintln!("stream ended {waited:?} after SIGTERM");
    assert!(
        text.split("shutting down")
            .nth(1)
            .is_some_and(|t| t.contains("[DONE]")),
        "no final error event: …{}",
        &text[text.len().saturating_sub(400)..]
    );
    assert!(
        waited >= Duration::from_millis(900),
        "ended after {waited:?}, before the drain time"
    );
    let status = s.child.wait().expect("exit");
    assert!(status.success(), "exit status {status}");
}
