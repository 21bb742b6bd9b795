//! Mixture-of-experts checkpoints (and the dense siblings of the MoE
//! families, ERNIE 4.5 and HunYuan) converted by llama.cpp's own
//! `convert_hf_to_gguf.py` (tests/fixtures/gguf, made with the transformers
//! checkpoints of tests/fixtures/hf by scripts/gen_moe_fixtures.py) against
//! llama.cpp's logits on the same files (tests/goldens/moe): every position
//! of the prompt, and the greedy continuation token for token.
//!
//! The Q8_0 files run the kernels whose sums are llama.cpp's — the experts'
//! products included, at every row count — and the logits are
//! bit-identical. The f32 files differ in the last bits (max |Δ logit|
//! ~1.8e-3 on logits of ~6, amplified by the f16 rounding of llama.cpp's
//! flash attention, which suanli shares): the experts' products are not
//! the cause (one product per row, llama.cpp's `mul_mat_id` order, gives
//! the same logits) — small f32 matrices take other kernels in llama.cpp.
//! The greedy continuations are identical for both.

use std::path::PathBuf;

use suanli_models::{ForwardCtx, KvDtype, Logits};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Max |Δ logit| over every prompt position against llama.cpp, after
/// checking the greedy continuation.
fn check(name: &str, arch: &str, tol: f32) -> f32 {
    check_file(
        name,
        &root().join(format!("tests/fixtures/gguf/{name}.gguf")),
        arch,
        tol,
    )
}

/// [`check`] on the model at `path` against the goldens of `name`.
fn check_file(name: &str, path: &std::path::Path, arch: &str, tol: f32) -> f32 {
    suanli_kernels::pool::set_threads(2);
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!("tests/goldens/moe/{name}.json")))
            .expect("golden"),
    )
    .expect("JSON");
    let ids: Vec<u32> = serde_json::from_value(golden["input_ids"].clone()).expect("ids");
    let want: Vec<f32> = serde_json::from_value::<Vec<Vec<f32>>>(golden["logits"].clone())
        .expect("logits")
        .concat();
    let greedy: Vec<u32> = serde_json::from_value(golden["greedy"].clone()).expect("greedy");
    let model = suanli_models::load(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.config().arch, arch);
    let dense =
        name.starts_with("hunyuan-dense") || name.starts_with("ernie4_5") && !name.contains("moe");
    assert_eq!(model.active_expert_bytes() == 0, dense, "{name}: experts");
    let mut kv = model.new_cache(ids.len() + greedy.len(), KvDtype::F16);
    let all = model
        .forward(&ids, &mut ForwardCtx::new(&mut kv, Logits::All))
        .expect("forward");
    assert_eq!(all.len(), want.len(), "{name}: logits");
    let d = all
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("{name}: max |Δ logit| vs llama.cpp = {d:e}");
    assert!(d <= tol, "{name}: max |Δ logit| {d} > {tol}");
    let nv = model.config().n_vocab;
    let mut logits = all[(ids.len() - 1) * nv..].to_vec();
    let mut got = Vec::new();
    for _ in 0..greedy.len() {
        let t = logits
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > logits[b] { i } else { b }) as u32;
        got.push(t);
        logits = model
            .forward(&[t], &mut ForwardCtx::new(&mut kv, Logits::Last))
            .expect("decode");
    }
    assert_eq!(
        got, greedy,
        "{name}: greedy continuation differs from llama.cpp's"
    );
    d
}

const F32_TOL: f32 = 5e-3;

#[test]
fn qwen2moe_matches_llama_cpp() {
    assert_eq!(check("qwen2moe-q8_0", "qwen2moe", 0.0), 0.0);
    check("qwen2moe", "qwen2moe", F32_TOL);
}

#[test]
fn qwen3moe_matches_llama_cpp() {
    assert_eq!(check("qwen3moe-q8_0", "qwen3moe", 0.0), 0.0);
    check("qwen3moe", "qwen3moe", F32_TOL);
}

#[test]
fn mixtral_matches_llama_cpp() {
    assert_eq!(check("mixtral-q8_0", "llama", 0.0), 0.0);
    check("mixtral", "llama", F32_TOL);
}

#[test]
fn ernie4_5_moe_matches_llama_cpp() {
    assert_eq!(check("ernie4_5-moe-q8_0", "ernie4_5-moe", 0.0), 0.0);
    check("ernie4_5-moe", "ernie4_5-moe", F32_TOL);
}

#[test]
fn hunyuan_moe_matches_llama_cpp() {
    assert_eq!(check("hunyuan-moe-q8_0", "hunyuan-moe", 0.0), 0.0);
    check("hunyuan-moe", "hunyuan-moe", F32_TOL);
}

#[test]
fn ernie4_5_matches_llama_cpp() {
    assert_eq!(check("ernie4_5-q8_0", "ernie4_5", 0.0), 0.0);
    check("ernie4_5", "ernie4_5", F32_TOL);
}

#[test]
fn hunyuan_dense_matches_llama_cpp() {
    assert_eq!(check("hunyuan-dense-q8_0", "hunyuan-dense", 0.0), 0.0);
    check("hunyuan-dense", "hunyuan-dense", F32_TOL);
}

/// MXFP4 experts (sinks, sliding window, YaRN, biases, clamped SwiGLU):
/// with the rest in Q8_0, llama.cpp's bits; with the rest in f32, the
/// f32 matrices' last-bit differences through four layers of attention
/// sinks (max |Δ| 8.2e-3 on logits of ~6.3), greedy identical.
#[test]
fn gpt_oss_matches_llama_cpp() {
    assert_eq!(check("gpt-oss-q8_0", "gpt-oss", 0.0), 0.0);
    check("gpt-oss", "gpt-oss", 1e-2);
}

/// Latent attention in absorbed form over the one-row-a-token cache, YaRN,
/// sigmoid routing over 2 of 4 groups with the selection bias and routed
/// scale (V3); no query LoRA, softmax routing, 27 layers (V2-Lite). Q8_0
/// (with llama.cpp's F16 k_b and the like where rows are not whole
/// blocks): bit for bit; V3 in f32: 1.4e-3, greedy identical.
#[test]
fn deepseek_v3_matches_llama_cpp() {
    assert_eq!(check("deepseek-v3-q8_0", "deepseek2", 0.0), 0.0);
    check("deepseek-v3", "deepseek2", 1e-2);
}

/// Kimi K2 (one expert group, routed scale 2.827) — with one difference:
/// K2's YaRN has beta_fast = beta_slow = 1, which the converter writes and
/// transformers (tests/hf_parity.rs) and suanli use, but llama.cpp's
/// deepseek2 reads no `rope.scaling.yarn_beta_*` key and keeps its defaults
/// 32 and 1 (max |Δ logit| 0.30 against transformers on this checkpoint).
/// The files with those keys set to llama.cpp's values give its bits.
#[test]
fn kimi_k2_matches_llama_cpp() {
    use suanli_formats::{GgufFile, GgufWriter, Value};
    let dir = std::env::temp_dir().join(format!("suanli-kimi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, tol) in [("kimi-k2-q8_0", 0.0), ("kimi-k2", 1e-2)] {
        let f =
            GgufFile::open(root().join(format!("tests/fixtures/gguf/{name}.gguf"))).expect("open");
        let mut w = GgufWriter::new();
        for (k, v) in &f.metadata {
            let v = match k.as_str() {
                "deepseek2.rope.scaling.yarn_beta_fast" => Value::F32(32.0),
                "deepseek2.rope.scaling.yarn_beta_slow" => Value::F32(1.0),
                _ => v.clone(),
            };
            w.add(k.clone(), v);
        }
        for t in &f.tensors {
            let data = f.tensor_data(t).expect("data");
            let dtype = t.dtype.expect("dtype");
            w.add_tensor(&t.name, &t.shape, dtype, data.bytes().to_vec());
        }
        let path = dir.join(format!("{name}.gguf"));
        w.write(&path).expect("write");
        let d = check_file(name, &path, "deepseek2", tol);
        if tol == 0.0 {
            assert_eq!(d, 0.0);
        }
    }
}

#[test]
fn deepseek_v2_lite_matches_llama_cpp() {
    // (Its f32 file would be 1.7 MB: Q8_0 only.)
    assert_eq!(check("deepseek-v2-lite-q8_0", "deepseek2", 0.0), 0.0);
}
