//! Latent attention's two prefill forms — absorbed (llama.cpp's: the
//! cache's latent as one shared key head) and decompressed (each head's
//! keys and values made from the latents) — compute the same attention.
//!
//! Compared where both see the same input: the first layer's attention
//! output (`kqv_out`, before the output projection) over an 80-token
//! prompt, and over 160 tokens more continuing it (the cached latents
//! decompressed too), of the tiny DeepSeek-V3 / V2-Lite / Kimi K2 fixtures. (Their final
//! logits are no measure: a random tiny router's near-ties flip experts on
//! the last bits, which moves logits by whole units.) And `Auto` takes the
//! decompressed form for passes that long.
//!
//! And the decompressed form against transformers (which computes MLA that
//! way): the f32 DeepSeek-V3 and Kimi K2 checkpoints' logits at every
//! position of their expected.json prompt.

use std::path::PathBuf;
use std::sync::Mutex;

use suanli_models::nn::{mla, MlaPrefill};
use suanli_models::{ForwardCtx, KvDtype, Logits};

/// The prefill form is process-wide: one test at a time sets it.
static FORM: Mutex<()> = Mutex::new(());

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/gguf/{name}.gguf"))
}

/// Layer 0's attention output and all logits of `ids`, in `form`, after
/// `before` tokens prefilled (absorbed: both forms continue the same cache).
fn run_after(name: &str, form: MlaPrefill, before: &[u32], ids: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let model = suanli_models::load(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut kv = model.new_cache(before.len() + ids.len(), KvDtype::F16);
    if !before.is_empty() {
        mla::set_prefill(MlaPrefill::Absorbed);
        model
            .forward(before, &mut ForwardCtx::new(&mut kv, Logits::Last))
            .expect("first pass");
    }
    mla::set_prefill(form);
    let mut att = Vec::new();
    let mut hook = |what: &str, il: usize, x: &[f32]| {
        if what == "kqv_out" && il == 0 {
            att = x.to_vec();
        }
    };
    let mut ctx = ForwardCtx::new(&mut kv, Logits::All);
    ctx.trace = Some(&mut hook);
    let logits = model.forward(ids, &mut ctx).expect("prefill");
    (att, logits)
}

fn check(name: &str) {
    let _one = FORM.lock().unwrap_or_else(|e| e.into_inner());
    suanli_kernels::pool::set_threads(2);
    let nv = suanli_models::load(&fixture(name))
        .expect("load")
        .config()
        .n_vocab as u64;
    // 80 tokens of a fixed xorshift walk over the vocabulary.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let ids: Vec<u32> = (0..240)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % nv) as u32
        })
        .collect();
    // A fresh prompt of 80, and 160 more continuing 80 cached.
    let (fresh, more) = (&ids[..80], &ids[80..]);
    for (before, now, what) in [(&[][..], fresh, "fresh"), (fresh, more, "continued")] {
        let (a, _) = run_after(name, MlaPrefill::Absorbed, before, now);
        let (d, dl) = run_after(name, MlaPrefill::Decompressed, before, now);
        let (_, auto) = run_after(name, MlaPrefill::Auto, before, now);
        mla::set_prefill(MlaPrefill::Auto);
        assert!(
            !a.is_empty() && a.len() == d.len(),
            "{name}: traced kqv_out"
        );
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&d)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        eprintln!(
            "{name} ({what}): layer 0 attention, absorbed vs decompressed: max |Δ| {diff:e} of values up to {scale}"
        );
        // Both quantize the values' latents to Q8_0 for v_b, at different
        // points (the weighted sum, or each latent): about 1% of the largest.
        assert!(diff > 0.0, "{name}: the two forms ran the same code");
        assert!(diff <= 0.02 * scale, "{name} ({what}): {diff} of {scale}");
        assert!(
            auto == dl,
            "{name} ({what}): auto takes the decompressed form"
        );
    }
}

#[test]
fn deepseek_v3_prefill_forms_agree() {
    check("deepseek-v3-q8_0");
}

#[test]
fn deepseek_v2_lite_prefill_forms_agree() {
    check("deepseek-v2-lite-q8_0");
}

#[test]
fn kimi_k2_prefill_forms_agree() {
    check("kimi-k2-q8_0");
}

/// The f32 checkpoint `name` in the decompressed form against
/// transformers' logits: max |Δ| over every position.
fn against_transformers(name: &str) -> f32 {
    let _one = FORM.lock().unwrap_or_else(|e| e.into_inner());
    suanli_kernels::pool::set_threads(2);
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/hf/{name}"));
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("JSON");
    let ids: Vec<u32> = serde_json::from_value(expected["input_ids"].clone()).expect("ids");
    let want: Vec<f32> = serde_json::from_value::<Vec<Vec<f32>>>(expected["logits"].clone())
        .expect("logits")
        .concat();
    mla::set_prefill(MlaPrefill::Decompressed);
    let model = suanli_models::load(&dir).expect("load");
    let mut kv = model.new_cache(ids.len(), KvDtype::F32);
    let got = model
        .forward(&ids, &mut ForwardCtx::new(&mut kv, Logits::All))
        .expect("forward");
    mla::set_prefill(MlaPrefill::Auto);
    assert_eq!(got.len(), want.len());
    let d = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{name}: decompressed prefill vs transformers: max |Δ logit| {d:e}");
    d
}

#[test]
fn decompressed_prefill_matches_transformers() {
    // hf_parity's tolerance for the absorbed form (1e-3; it measures 4e-5).
    assert!(against_transformers("deepseek-v3") <= 1e-3);
    assert!(against_transformers("kimi-k2") <= 1e-3);
}
