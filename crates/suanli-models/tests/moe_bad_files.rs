//! Broken mixture-of-experts files fail to load with an error naming the
//! tensor or key at fault, never a panic: a router or expert tensor
//! missing or of the wrong shape, an expert count the metadata and the
//! tensors disagree on, top-k larger than the expert count; a latent
//! attention (DeepSeek) with its keys missing or inconsistent with its
//! tensors.

use std::path::{Path, PathBuf};

use suanli_formats::{GgufFile, GgufWriter, Value};

/// The tiny Qwen3-MoE model rewritten with `meta` and `tensor` edits
/// (`tensor` returns the new shape, or `None` to drop the tensor; the data
/// is cut to the new shape's share).
fn broken(
    name: &str,
    meta: impl Fn(&str, &Value) -> Value,
    tensor: impl Fn(&str, &[u64]) -> Option<Vec<u64>>,
) -> PathBuf {
    broken_arch("qwen3moe", name, |k, v| Some(meta(k, v)), tensor)
}

/// [`broken`] for the tiny model of `arch`; `meta` returns `None` to drop a key.
fn broken_arch(
    arch: &str,
    name: &str,
    meta: impl Fn(&str, &Value) -> Option<Value>,
    tensor: impl Fn(&str, &[u64]) -> Option<Vec<u64>>,
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("suanli-moe-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join(format!("{name}-good.gguf"));
    suanli_models::tiny::write_tiny(arch, true, &good, 5).expect("write");
    let f = GgufFile::open(&good).expect("open");
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        if let Some(v) = meta(k, v) {
            w.add(k.clone(), v);
        }
    }
    for t in &f.tensors {
        let Some(shape) = tensor(&t.name, &t.shape) else {
            continue;
        };
        let data = f.tensor_data(t).expect("data");
        let n: u64 = shape.iter().product();
        let keep = (data.len() as u64 * n / t.n_elements()) as usize;
        let dtype = t.dtype.expect("dtype");
        w.add_tensor(&t.name, &shape, dtype, data.bytes()[..keep].to_vec());
    }
    let path = dir.join(format!("{name}.gguf"));
    w.write(&path).expect("write broken");
    path
}

fn load_error(path: &Path) -> String {
    match suanli_models::load(path) {
        Ok(_) => panic!("{}: loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

fn same(_: &str, v: &Value) -> Value {
    v.clone()
}

#[test]
fn a_missing_router_names_it() {
    let p = broken("no-router", same, |n, s| {
        (n != "blk.1.ffn_gate_inp.weight").then(|| s.to_vec())
    });
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("blk.1.ffn_gate_inp.weight"), "{e}");
}

#[test]
fn a_missing_expert_tensor_names_it() {
    let p = broken("no-up", same, |n, s| {
        (n != "blk.2.ffn_up_exps.weight").then(|| s.to_vec())
    });
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("blk.2.ffn_up_exps.weight"), "{e}");
}

#[test]
fn an_expert_tensor_of_the_wrong_shape_names_it() {
    // One expert short.
    let p = broken("short-down", same, |n, s| match n {
        "blk.0.ffn_down_exps.weight" => Some(vec![s[0], s[1], s[2] - 1]),
        _ => Some(s.to_vec()),
    });
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(
        e.contains("blk.0.ffn_down_exps.weight") && e.contains("expected [64, 64, 8]"),
        "{e}"
    );
}

#[test]
fn an_expert_count_the_tensors_disagree_with_names_the_tensor() {
    let p = broken(
        "count",
        |k, v| match k {
            "qwen3moe.expert_count" => Value::U32(6),
            _ => v.clone(),
        },
        |_, s| Some(s.to_vec()),
    );
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("blk.0.ffn_gate_inp.weight"), "{e}");
}

#[test]
fn top_k_past_the_expert_count_names_the_key() {
    let p = broken(
        "top-k",
        |k, v| match k {
            "qwen3moe.expert_used_count" => Value::U32(9),
            _ => v.clone(),
        },
        |_, s| Some(s.to_vec()),
    );
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("expert_used_count"), "{e}");
}

#[test]
fn a_missing_required_norm_names_it() {
    let p = broken("no-q-norm", same, |n, s| {
        (n != "blk.3.attn_q_norm.weight").then(|| s.to_vec())
    });
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("attn_q_norm.weight"), "{e}");
}

/// The tiny DeepSeek model loads before it is broken (else the tests below
/// would pass on any error).
#[test]
fn the_tiny_latent_attention_model_loads() {
    let p = broken_arch(
        "deepseek2",
        "mla-good",
        |_, v| Some(v.clone()),
        |_, s| Some(s.to_vec()),
    );
    if let Err(e) = suanli_models::load(&p) {
        panic!("{e}");
    }
}

#[test]
fn a_missing_latent_rank_names_the_key() {
    let p = broken_arch(
        "deepseek2",
        "no-kv-lora",
        |k, v| (k != "deepseek2.attention.kv_lora_rank").then(|| v.clone()),
        |_, s| Some(s.to_vec()),
    );
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("deepseek2.attention.kv_lora_rank"), "{e}");
}

#[test]
fn a_latent_rank_the_tensors_disagree_with_names_the_tensor() {
    let p = broken_arch(
        "deepseek2",
        "kv-lora",
        |k, v| match (k, v) {
            ("deepseek2.attention.kv_lora_rank", Value::U32(r)) => Some(Value::U32(r + 8)),
            _ => Some(v.clone()),
        },
        |_, s| Some(s.to_vec()),
    );
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("blk.0.attn_kv_a_mqa.weight"), "{e}");
}

#[test]
fn a_latent_value_projection_of_the_wrong_shape_names_it() {
    // One head short.
    let p = broken_arch(
        "deepseek2",
        "v-b",
        |_, v| Some(v.clone()),
        |n, s| match n {
            "blk.1.attn_v_b.weight" => Some(vec![s[0], s[1], s[2] - 1]),
            _ => Some(s.to_vec()),
        },
    );
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("blk.1.attn_v_b.weight"), "{e}");
}

#[test]
fn a_rope_part_as_wide_as_the_key_head_names_the_key() {
    let p = broken_arch(
        "deepseek2",
        "rope-dim",
        |k, v| match k {
            "deepseek2.rope.dimension_count" => Some(Value::U32(4096)),
            _ => Some(v.clone()),
        },
        |_, s| Some(s.to_vec()),
    );
    let e = load_error(&p);
    eprintln!("{e}");
    assert!(e.contains("rope.dimension_count"), "{e}");
}
