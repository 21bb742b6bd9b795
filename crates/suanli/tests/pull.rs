//! `suanli pull` against a local HTTP server that follows each hub's
//! documented API: Hugging Face's `api/models/…/revision` and `tree`
//! listings and `resolve` redirects to a CDN that honours `Range`, with
//! LFS sha256s; ModelScope's `repo/files` listing and `repo?FilePath=`
//! downloads. A connection dropped mid-file leaves a partial download
//! that the next pull resumes with a range request; 401 without the
//! token, 404, a wrong checksum and a missing quantization are errors
//! naming what.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use suanli::pull::{pull, PullError};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn bytes(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32 * 31 + seed as u32) as u8)
        .collect()
}

#[derive(Default)]
struct Hub {
    /// repo → (path → bytes)
    repos: HashMap<String, Vec<(String, Vec<u8>)>>,
    /// Paths whose next download is cut halfway.
    drop_next: Vec<String>,
    /// sha256 overrides (a hub that lies).
    bad_sha: Vec<String>,
    /// Range headers seen.
    ranges: Vec<String>,
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut h = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = s.write_all(h.as_bytes());
    let _ = s.write_all(body);
}

fn serve(hub: Arc<Mutex<Hub>>, mut s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).is_err() || l.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let authed = headers.get("authorization").map(String::as_str) == Some("Bearer secret");
    let json = |s: &mut TcpStream, v: serde_json::Value| {
        respond(
            s,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            v.to_string().as_bytes(),
        )
    };
    let mut h = hub.lock().expect("hub");
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Repositories under org "private" need the token.
    let repo_of = |org: &str, name: &str| format!("{org}/{name}");
    let gate = |repo: &str| !repo.starts_with("private/") || authed;
    // Hugging Face.
    if parts.len() >= 5 && parts[0] == "api" && parts[1] == "models" {
        let repo = repo_of(parts[2], parts[3]);
        if !gate(&repo) {
            return respond(&mut s, "401 Unauthorized", &[], b"{\"error\":\"401\"}");
        }
        let Some(files) = h.repos.get(&repo) else {
            return respond(
                &mut s,
                "404 Not Found",
                &[],
                b"{\"error\":\"Repository not found\"}",
            );
        };
        if parts[4] == "revision" {
            let siblings: Vec<_> = files
                .iter()
                .map(|(p, _)| serde_json::json!({"rfilename": p}))
                .collect();
            return json(
                &mut s,
                serde_json::json!({"id": repo, "sha": COMMIT, "siblings": siblings}),
            );
        }
        if parts[4] == "tree" {
            let bad = h.bad_sha.clone();
            let list: Vec<_> = files
                .iter()
                .map(|(p, b)| {
                    let mut sum = sha(b);
                    if bad.contains(p) {
                        sum = sha(b"something else");
                    }
                    if p.ends_with(".json") || p.ends_with(".md") {
                        serde_json::json!({"type": "file", "path": p, "size": b.len(), "oid": format!("{:040x}", b.len())})
                    } else {
                        serde_json::json!({"type": "file", "path": p, "size": b.len(), "oid": "f".repeat(40),
                            "lfs": {"oid": sum, "size": b.len(), "pointerSize": 134}})
                    }
                })
                .collect();
            return json(&mut s, serde_json::Value::Array(list));
        }
    }
    if parts.len() >= 5 && parts[2] == "resolve" {
        let repo = repo_of(parts[0], parts[1]);
        if !gate(&repo) {
            return respond(&mut s, "401 Unauthorized", &[], b"");
        }
        let file = parts[4..].join("/");
        return respond(
            &mut s,
            "302 Found",
            &[("Location", format!("/cdn/{repo}/{file}"))],
            b"",
        );
    }
    // ModelScope.
    if parts.len() >= 6 && parts[..2] == ["api", "v1"] && parts[2] == "models" {
        let repo = repo_of(parts[3], parts[4]);
        let Some(files) = h.repos.get(&repo) else {
            return json(
                &mut s,
                serde_json::json!({"Code": 404, "Message": "not found"}),
            );
        };
        if parts.len() >= 7 && parts[6] == "files" {
            let list: Vec<_> = files
                .iter()
                .map(|(p, b)| serde_json::json!({"Name": p, "Path": p, "Size": b.len(), "Sha256": sha(b), "Type": "blob"}))
                .collect();
            return json(
                &mut s,
                serde_json::json!({"Code": 200, "Data": {"Files": list}}),
            );
        }
        let file = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("FilePath="))
            .unwrap_or("")
            .to_string();
        let body = files
            .iter()
            .find(|(p, _)| *p == file)
            .map(|(_, b)| b.clone());
        return match body {
            Some(b) => respond(&mut s, "200 OK", &[], &b),
            None => respond(&mut s, "404 Not Found", &[], b""),
        };
    }
    // The CDN: ranges, and a connection cut halfway when asked.
    if parts.first() == Some(&"cdn") && parts.len() >= 4 {
        let repo = repo_of(parts[1], parts[2]);
        let file = parts[3..].join("/");
        let Some(body) = h
            .repos
            .get(&repo)
            .and_then(|f| f.iter().find(|(p, _)| *p == file))
            .map(|(_, b)| b.clone())
        else {
            return respond(&mut s, "404 Not Found", &[], b"");
        };
        let from = headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
        if let Some(r) = headers.get("range") {
            h.ranges.push(r.clone());
        }
        if let Some(i) = h.drop_next.iter().position(|p| *p == file) {
            h.drop_next.remove(i);
            let head = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body[..body.len() / 2]);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
        return match from {
            Some(f) if f < body.len() => respond(
                &mut s,
                "206 Partial Content",
                &[(
                    "Content-Range",
                    format!("bytes {f}-{}/{}", body.len() - 1, body.len()),
                )],
                &body[f..],
            ),
            _ => respond(
                &mut s,
                "200 OK",
                &[("ETag", format!("\"{}\"", sha(&body)))],
                &body,
            ),
        };
    }
    respond(&mut s, "404 Not Found", &[], b"")
}

fn start(hub: Arc<Mutex<Hub>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().map_while(Result::ok) {
            let hub = hub.clone();
            std::thread::spawn(move || serve(hub, s));
        }
    });
    port
}

fn read(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(p)
        .expect("open")
        .read_to_end(&mut v)
        .expect("read");
    v
}

#[test]
fn pulls_from_both_hubs_resuming_and_refusing_what_it_should() {
    let q4 = bytes(1, 300_000);
    let q8 = bytes(2, 200_000);
    let shard = |i: u8| bytes(10 + i, 150_000);
    let mut hub = Hub::default();
    hub.repos.insert(
        "org/gguf".into(),
        vec![
            ("README.md".into(), b"# model".to_vec()),
            ("model-Q4_K_M.gguf".into(), q4.clone()),
            ("model-Q8_0.gguf".into(), q8.clone()),
        ],
    );
    hub.repos.insert(
        "org/st".into(),
        vec![
            ("config.json".into(), b"{\"model_type\":\"llama\"}".to_vec()),
            ("tokenizer.json".into(), b"{}".to_vec()),
            (
                "model.safetensors.index.json".into(),
                b"{\"weight_map\":{}}".to_vec(),
            ),
            ("model-00001-of-00002.safetensors".into(), shard(1)),
            ("model-00002-of-00002.safetensors".into(), shard(2)),
            ("notes/extra.bin".into(), b"not wanted".to_vec()),
        ],
    );
    hub.repos.insert(
        "private/gguf".into(),
        vec![("m-Q8_0.gguf".into(), q8.clone())],
    );
    hub.drop_next.push("model-Q4_K_M.gguf".into());
    hub.bad_sha.push("m-Q8_0.gguf".into());
    let hub = Arc::new(Mutex::new(hub));
    let port = start(hub.clone());
    let dir = std::env::temp_dir().join(format!("suanli-pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // One test sets the process's environment: no other test here reads it.
    std::env::set_var("HF_ENDPOINT", format!("http://127.0.0.1:{port}"));
    std::env::set_var("HF_HOME", dir.join("hf"));
    std::env::remove_var("HF_HUB_CACHE");
    std::env::remove_var("HF_TOKEN");
    std::env::set_var("MODELSCOPE_ENDPOINT", format!("http://127.0.0.1:{port}"));
    std::env::set_var("MODELSCOPE_CACHE", dir.join("ms"));

    // A dropped connection: an error naming the partial file, then a pull
    // that resumes it with a range request.
    let e = pull("hf://org/gguf:Q4_K_M").expect_err("the first download is cut");
    assert!(matches!(e, PullError::Interrupted { .. }), "{e}");
    assert!(e.to_string().contains(".incomplete"), "{e}");
    let p = pull("hf://org/gguf:q4_k_m").expect("resumed");
    assert_eq!(read(&p), q4);
    assert!(
        hub.lock()
            .expect("hub")
            .ranges
            .iter()
            .any(|r| r == "bytes=150000-"),
        "resumed with a range request: {:?}",
        hub.lock().expect("hub").ranges
    );
    // Laid out as the Hub's client lays it out.
    let root = dir.join("hf/hub/models--org--gguf");
    assert_eq!(
        p,
        root.join("snapshots")
            .join(COMMIT)
            .join("model-Q4_K_M.gguf")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).expect("ref"),
        COMMIT
    );
    assert_eq!(read(&root.join("blobs").join(sha(&q4))), q4);
    assert!(std::fs::symlink_metadata(&p)
        .expect("link")
        .file_type()
        .is_symlink());
    // A file by name; the default quantization.
    assert_eq!(
        read(&pull("hf://org/gguf/model-Q8_0.gguf").expect("file")),
        q8
    );
    assert!(pull("hf://org/gguf")
        .expect("default")
        .ends_with("model-Q4_K_M.gguf"));

    // A safetensors repository: config, tokenizer, index and shards only.
    let d = pull("hf://org/st").expect("safetensors");
    assert!(d.is_dir());
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json"
        ]
    );
    assert_eq!(read(&d.join("model-00002-of-00002.safetensors")), shard(2));

    // ModelScope, the same way, into its own layout.
    let m = pull("ms://org/gguf:Q8_0").expect("modelscope");
    assert_eq!(m, dir.join("ms/models/org/gguf/model-Q8_0.gguf"));
    assert_eq!(read(&m), q8);

    // Errors naming what.
    let e = pull("hf://org/gguf:Q5_K_M").expect_err("no such quant");
    assert!(
        e.to_string().contains("Q5_K_M") && e.to_string().contains("model-Q8_0.gguf"),
        "{e}"
    );
    let e = pull("hf://org/missing").expect_err("404");
    assert!(
        matches!(e, PullError::NotFound { .. }) && e.to_string().contains("org/missing"),
        "{e}"
    );
    let e = pull("hf://private/gguf:Q8_0").expect_err("401");
    assert!(e.to_string().contains("HF_TOKEN"), "{e}");
    std::env::set_var("HF_TOKEN", "secret");
    let e = pull("hf://private/gguf:Q8_0").expect_err("the hub's sha256 disagrees");
    assert!(matches!(e, PullError::Checksum { .. }), "{e}");
    let blob_dir = dir.join("hf/hub/models--private--gguf/blobs");
    let left: Vec<PathBuf> = std::fs::read_dir(&blob_dir)
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "a failed download is removed, never loaded: {left:?}"
    );
    assert!(matches!(pull("hf:/bad"), Err(PullError::Spec(_))));
    std::fs::remove_dir_all(&dir).ok();
}
