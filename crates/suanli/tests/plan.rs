//! `suanli plan` on real files: a GGUF's weight bytes are its tensors'
//! bytes, and llama-quantize's own Q4_K_M files are what `--quant Q4_K_M`
//! predicts from their shapes, byte for byte; the bytes a decoded token
//! reads are the loaded model's. The CLI prints the committed configs'
//! figures as JSON and fails cleanly on bad input. Models come through
//! `suanli::hub` (fetched once, cached).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use suanli_formats::GgufFile;
use suanli_models::plan::{self, Plan};
use suanli_models::KvDtype;

fn suanli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(args)
        .output()
        .expect("run suanli")
}

fn json(args: &[&str]) -> Value {
    let out = suanli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn model(name: &str) -> PathBuf {
    suanli::hub::resolve(name, &mut |m| eprintln!("{m}")).expect("fetch")
}

fn config(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/configs")
        .join(name)
        .display()
        .to_string()
}

/// Both test models are llama-quantize Q4_K_M files (general.file_type
/// 15): Qwen2.5-Coder-0.5B with rows of 896 (so Q5_0 / Q8_0 fallbacks) and
/// Gemma-3-270M with its output tied to the embeddings.
#[test]
fn gguf_bytes_are_the_files_and_q4_k_m_is_llama_quantizes() {
    for name in ["qwen2.5-coder-0.5b-instruct", "gemma3-270m-q4_k_m"] {
        let path = model(name);
        let file = GgufFile::open(&path).expect("open");
        let s = plan::read(&path).expect("plan");
        let p = Plan::new(&s, None, KvDtype::F16);
        assert_eq!(p.weight_bytes, file.data_bytes(), "{name}");
        let q = Plan::new(&s, Some("Q4_K_M".parse().expect("quant")), KvDtype::F16);
        assert_eq!(q.weight_bytes, file.data_bytes(), "{name}: Q4_K_M rules");
        assert_eq!(q.types, p.types, "{name}");

        // The model counts matrices only (and a tied table's row besides
        // the whole); the plan counts the norms and biases too.
        let m = suanli_models::load(&path).expect("load");
        let vectors: u64 = file
            .tensors
            .iter()
            .filter(|t| t.shape.iter().filter(|&&d| d > 1).count() < 2)
            .filter_map(|t| t.size)
            .sum();
        let row = match file.tensor("output.weight") {
            Some(_) => 0,
            None => file
                .tensor("token_embd.weight")
                .and_then(|t| t.size)
                .map_or(0, |b| b / m.config().n_vocab as u64),
        };
        assert_eq!(
            p.decode_bytes + row,
            m.bytes_per_token() + vectors,
            "{name}"
        );
        assert_eq!(
            p.kv_bytes_per_token as usize,
            m.new_cache(1, KvDtype::F16).bytes()
        );
    }
}

#[test]
fn the_committed_configs_print_their_plan() {
    let j = json(&[
        "plan",
        &config("deepseek-v3"),
        "--bandwidth",
        "100",
        "-c",
        "4096",
        "--json",
    ]);
    assert_eq!(j["arch"], "deepseek2");
    assert_eq!(j["format"], "config.json");
    assert_eq!(j["n_layer_mtp"], 1);
    assert_eq!(j["kv_bytes_per_token"], 61 * 576 * 2);
    assert_eq!(j["kv_bytes_at_ctx"], 61 * 576 * 2 * 4096);
    let decode = j["decode_bytes_per_token"].as_f64().unwrap_or(0.0);
    let tps = j["decode_tokens_per_s_start"].as_f64().unwrap_or(0.0);
    assert!((tps - 100e9 / decode).abs() < 1e-6 * tps, "{j}");
    assert!(j["fits"] == "no", "{j}");

    let j = json(&[
        "plan",
        &config("qwen3-30b-a3b/config.json"),
        "--quant",
        "q4_k_m",
        "--bandwidth",
        "50",
        "--json",
    ]);
    assert_eq!(j["params_total"], 30_532_122_624u64);
    assert_eq!(j["quant"], "Q4_K_M");
    assert_eq!(j["ctx"], 40960);
    let bpw = j["bits_per_weight"].as_f64().unwrap_or(0.0);
    assert!((4.5..5.2).contains(&bpw), "{j}");
    let text = suanli(&["plan", &config("qwen3-30b-a3b"), "--bandwidth", "50"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("30.53 B total, 3.35 B active"), "{text}");
}

#[test]
fn bad_input_fails_with_one_message() {
    for (args, needle) in [
        (vec!["plan", "/nonexistent/config.json"], "not found"),
        (
            vec!["plan", &config("qwen3-30b-a3b"), "--quant", "Q3_K_XL"],
            "unknown quantization",
        ),
        (
            vec!["plan", &config("qwen3-30b-a3b"), "--bandwidth", "0"],
            "positive",
        ),
    ] {
        let out = suanli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_ne!(out.status.code(), Some(101), "panicked: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
