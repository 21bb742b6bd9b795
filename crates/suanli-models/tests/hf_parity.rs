//! Tiny random checkpoints saved by transformers (safetensors + config.json)
//! against transformers' own logits, in f32: max |Δ logit| ≤ 1e-3, for a
//! whole-sequence pass and for prefill followed by one-token decode steps.
//! Fixtures: tests/fixtures/hf/*, made by scripts/gen_hf_fixtures.py.

use std::path::PathBuf;

use suanli_models::{ForwardCtx, KvDtype, Logits};

const TOL: f32 = 1e-3;

fn fixture(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/hf")
        .join(arch)
}

fn check(arch: &str) {
    check_dir(arch, arch);
}

/// The fixture `name`, an `arch` model.
fn check_dir(name: &str, arch: &str) {
    check_tol(name, arch, TOL);
}

/// [`check_dir`] within `tol` of transformers' logits.
fn check_tol(name: &str, arch: &str, tol: f32) {
    check_at(&fixture(name), arch, tol)
}

/// The checkpoint in `dir` against its expected.json.
fn check_at(dir: &std::path::Path, arch: &str, tol: f32) {
    let name = dir
        .file_name()
        .map_or("?".into(), |n| n.to_string_lossy().into_owned());
    let dir = dir.to_path_buf();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("JSON");
    let ids: Vec<u32> = serde_json::from_value(expected["input_ids"].clone()).expect("ids");
    let want: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).expect("logits");
    let model = suanli_models::load(&dir).expect("load");
    assert_eq!(model.config().arch, arch);
    let nv = model.config().n_vocab;
    let max_diff = |got: &[f32], row: &[f32]| {
        got.iter()
            .zip(row)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };

    // Whole sequence at once.
    let mut kv = model.new_cache(ids.len(), KvDtype::F32);
    let all = model
        .forward(&ids, &mut ForwardCtx::new(&mut kv, Logits::All))
        .expect("forward");
    let mut worst = 0f32;
    for (p, (got, row)) in all.chunks_exact(nv).zip(&want).enumerate() {
        let d = max_diff(got, row);
        worst = worst.max(d);
        assert!(d <= tol, "{arch}: position {p}: max |Δ logit| {d} > {tol}");
    }
    // Prefill 5 tokens, then decode the rest one at a time through the KV cache.
    let mut kv = model.new_cache(ids.len(), KvDtype::F32);
    let first = model
        .forward(&ids[..5], &mut ForwardCtx::new(&mut kv, Logits::Last))
        .expect("prefill");
    assert!(max_diff(&first, &want[4]) <= tol, "{arch}: prefill logits");
    for p in 5..ids.len() {
        let got = model
            .forward(&ids[p..p + 1], &mut ForwardCtx::new(&mut kv, Logits::Last))
            .expect("decode");
        let d = max_diff(&got, &want[p]);
        worst = worst.max(d);
        assert!(
            d <= tol,
            "{arch}: decode at position {p}: max |Δ logit| {d} > {tol}"
        );
    }
    eprintln!("{arch}: max |Δ logit| vs transformers = {worst:e}");

    // Traced, the fused ops (norm into quantization, RoPE into the cache
    // write, activation into quantization) run as separate steps so their
    // outputs can be shown: the same bits either way.
    let mut kv = model.new_cache(ids.len(), KvDtype::F32);
    let mut names = std::collections::BTreeSet::new();
    let mut hook = |name: &str, _: usize, _: &[f32]| {
        names.insert(name.to_string());
    };
    let mut ctx = ForwardCtx::new(&mut kv, Logits::All);
    ctx.trace = Some(&mut hook);
    let traced = model.forward(&ids, &mut ctx).expect("traced forward");
    assert!(
        traced
            .iter()
            .zip(&all)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{arch}: traced and fused passes differ"
    );
    let moe = model.active_expert_bytes() > 0;
    let glu = if moe { "ffn_moe_glu" } else { "ffn_glu" };
    for step in ["attn_norm", "Kcur", "ffn_norm", glu] {
        assert!(names.contains(step), "{arch}: no {step} in the trace");
    }

    // Greedy continuation as transformers' generate() makes it.
    if let Some(g) = expected.get("greedy") {
        let want: Vec<u32> = serde_json::from_value(g.clone()).expect("greedy");
        let mut kv = model.new_cache(ids.len() + want.len(), KvDtype::F32);
        let mut logits = model
            .forward(&ids, &mut ForwardCtx::new(&mut kv, Logits::Last))
            .expect("prefill");
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let t = argmax(&logits);
            got.push(t);
            logits = model
                .forward(&[t], &mut ForwardCtx::new(&mut kv, Logits::Last))
                .expect("decode");
        }
        assert_eq!(got, want, "{name}: greedy continuation");
    }
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn qwen2moe_matches_transformers() {
    check("qwen2moe");
}

#[test]
fn qwen3moe_matches_transformers() {
    check("qwen3moe");
}

#[test]
fn ernie4_5_moe_matches_transformers() {
    check("ernie4_5-moe");
}

#[test]
fn hunyuan_moe_matches_transformers() {
    check("hunyuan-moe");
}

#[test]
fn ernie4_5_matches_transformers() {
    check("ernie4_5");
}

#[test]
fn hunyuan_dense_matches_transformers() {
    check("hunyuan-dense");
}

#[test]
fn gpt_oss_matches_transformers() {
    check("gpt-oss");
}

#[test]
fn deepseek_v3_matches_transformers() {
    check_dir("deepseek-v3", "deepseek2");
}

/// Kimi K2: DeepSeek-V3's graph (config.json model_type `kimi_k2`), one
/// expert group, K2's YaRN betas and routed scale.
#[test]
fn kimi_k2_matches_transformers() {
    check_dir("kimi-k2", "deepseek2");
}

/// The checkpoint is stored in bf16 (27 layers, to stay under 1 MB; its
/// values are exact in bf16). transformers ran it in f32; bf16 matrices here
/// take their activations in bf16, as ggml's do, so the test widens the
/// checkpoint to f32 first (as loaded, bf16: within 0.11 of transformers).
#[test]
fn deepseek_v2_lite_matches_transformers() {
    use safetensors::tensor::{Dtype, TensorView};
    let src = fixture("deepseek-v2-lite");
    let dir = std::env::temp_dir().join(format!("suanli-hf-f32-{}", std::process::id()));
    let out = dir.join("deepseek-v2-lite");
    std::fs::create_dir_all(&out).expect("dir");
    for f in ["config.json", "expected.json"] {
        std::fs::copy(src.join(f), out.join(f)).expect("copy");
    }
    let st = suanli_formats::safetensors::SafetensorsModel::open(&src).expect("open");
    let widened: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors
        .iter()
        .map(|(name, t)| {
            let n: usize = t.shape.iter().product();
            let mut v = vec![0f32; n];
            (t.dtype.traits().to_float.expect("float tensor"))(t.data.bytes(), &mut v);
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = widened
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &out.join("model.safetensors")).expect("write");
    check_at(&out, "deepseek2", TOL);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mixtral_matches_transformers() {
    check_dir("mixtral", "llama");
}

#[test]
fn llama_with_llama3_rope_scaling_matches_transformers() {
    check("llama");
}

#[test]
fn qwen2_matches_transformers() {
    check("qwen2");
}

#[test]
fn qwen3_matches_transformers() {
    check("qwen3");
}

#[test]
fn gemma3_matches_transformers() {
    check("gemma3");
}

/// The same checkpoint split into shards with a `model.safetensors.index.json`
/// and stored in F16 or BF16 loads and agrees with the f32 logits within the
/// format's precision.
#[test]
fn sharded_and_half_precision_checkpoints() {
    use safetensors::tensor::{Dtype, TensorView};
    let src = fixture("qwen2");
    let st = suanli_formats::safetensors::SafetensorsModel::open(&src).expect("open");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(src.join("expected.json")).expect("expected"),
    )
    .expect("JSON");
    let ids: Vec<u32> = serde_json::from_value(expected["input_ids"].clone()).expect("ids");
    let want: Vec<Vec<f32>> = serde_json::from_value(expected["logits"].clone()).expect("logits");
    for (dtype, tol) in [(Dtype::F16, 0.05f32), (Dtype::BF16, 0.3)] {
        let dir =
            std::env::temp_dir().join(format!("suanli-shards-{dtype:?}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::copy(src.join("config.json"), dir.join("config.json")).expect("config");
        let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, t) in &st.tensors {
            let f: Vec<f32> = t
                .data
                .bytes()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let bytes: Vec<u8> = match dtype {
                Dtype::F16 => f
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                _ => f
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            data.push((name.clone(), t.shape.clone(), bytes));
        }
        let mut index = serde_json::Map::new();
        for (k, chunk) in data.chunks(data.len().div_ceil(2)).enumerate() {
            let file = format!("model-0000{}-of-00002.safetensors", k + 1);
            let views: Vec<(String, TensorView)> = chunk
                .iter()
                .map(|(n, s, b)| {
                    (
                        n.clone(),
                        TensorView::new(dtype, s.clone(), b).expect("view"),
                    )
                })
                .collect();
            safetensors::serialize_to_file(views, None, &dir.join(&file)).expect("write shard");
            for (n, _, _) in chunk {
                index.insert(n.clone(), serde_json::Value::String(file.clone()));
            }
        }
        let idx = serde_json::json!({ "metadata": {}, "weight_map": index });
        std::fs::write(dir.join("model.safetensors.index.json"), idx.to_string()).expect("index");
        let model = suanli_models::load(&dir).expect("load shards");
        let mut kv = model.new_cache(ids.len(), KvDtype::F32);
        let all = model
            .forward(&ids, &mut ForwardCtx::new(&mut kv, Logits::All))
            .expect("forward");
        let d = all
            .iter()
            .zip(want.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d <= tol, "{dtype:?} shards: max |Δ logit| {d} > {tol}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
