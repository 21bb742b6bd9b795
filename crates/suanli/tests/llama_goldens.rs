//! suanli against llama.cpp on real models: identical prompt tokens,
//! identical greedy 48-token continuations, and at every position the
//! reference's 8 highest logits reproduced within `TOL` (suanli's kernels sum
//! in llama.cpp's order, so on x86 with AVX-512 the logits agree bit for bit;
//! the tolerance leaves room for other CPUs' libm).
//!
//! Goldens: tests/goldens/llama/*.json, made by scripts/gen_llama_goldens.py.
//! Models come through `suanli::hub` (fetched once, cached).

use std::path::Path;

use serde_json::Value;
use suanli_formats::GgufFile;
use suanli_models::loader::GgufSource;
use suanli_models::{ForwardCtx, KvDtype, Logits};
use suanli_tokenizer::Tokenizer;

/// Largest |Δ logit| accepted at the reference's top-8 ids.
const TOL: f32 = 1e-3;

/// The golden file of `name`, its tokenizer and model (fetched through the hub).
fn golden_and_model(name: &str) -> (Value, Tokenizer, Box<dyn suanli_models::Model>) {
    // The goldens were made with 2 threads, and past 256 positions
    // llama.cpp's decode attention cuts the keys into one range per thread.
    assert_eq!(
        suanli_kernels::pool::set_threads(2),
        2,
        "the thread pool started with another count"
    );
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/goldens/llama/{name}.json"));
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).expect("golden file"))
            .expect("golden JSON");
    let path = suanli::hub::resolve(name, &mut |m| eprintln!("{m}")).expect("fetching the model");
    let file = GgufFile::open(&path).expect("open model");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    let file_bytes = decode_bytes_in_file(&file);
    let model = suanli_models::load_source(&GgufSource::new(file).expect("source")).expect("model");
    // What `bench`'s roofline counts: the layouts made at load must stream
    // no more bytes than the file holds for one token.
    assert_eq!(
        model.bytes_per_token(),
        file_bytes,
        "{name}: weight bytes read per token differ from the file's"
    );
    (golden, tok, model)
}

/// The file's bytes that one decoded token reads: every matrix but the
/// token embedding, one embedding row, and the embedding whole where it is
/// also the output matrix (no `output.weight`).
fn decode_bytes_in_file(file: &GgufFile) -> u64 {
    let size = |t: &suanli_formats::TensorInfo| t.size.expect("tensor size");
    let embd = file.tensor("token_embd.weight").expect("token_embd");
    let matrices: u64 = file
        .tensors
        .iter()
        .filter(|t| t.name != embd.name && t.shape.len() >= 2 && t.shape[1] > 1)
        .map(size)
        .sum();
    let row = size(embd) / embd.shape[1];
    let tied = file.tensor("output.weight").is_none();
    matrices + row + if tied { size(embd) } else { 0 }
}

fn check_model(name: &str) {
    let (golden, tok, model) = golden_and_model(name);
    let n_vocab = model.config().n_vocab;
    let mut worst = 0f32;
    for case in golden["cases"].as_array().expect("cases") {
        let cname = case["name"].as_str().unwrap_or("?");
        let prompt = case["prompt"].as_str().expect("prompt");
        let want_tokens: Vec<u32> =
            serde_json::from_value(case["prompt_tokens"].clone()).expect("tokens");
        let want_gen: Vec<u32> =
            serde_json::from_value(case["generated"].clone()).expect("generated");
        let top: Vec<Vec<(u32, f32)>> =
            serde_json::from_value(case["top_logits"].clone()).expect("top logits");
        let tokens = tok.encode(prompt, true, true).expect("encode");
        assert_eq!(
            tokens, want_tokens,
            "{name}/{cname}: prompt tokens differ from llama.cpp"
        );

        let mut check = |pos: usize, logits: &[f32]| {
            let best = suanli_engine::sampler::argmax(logits);
            assert_eq!(
                best, top[pos][0].0,
                "{name}/{cname}: top-1 at position {pos}"
            );
            for &(id, want) in &top[pos] {
                let d = (logits[id as usize] - want).abs();
                worst = worst.max(d);
                assert!(
                    d <= TOL,
                    "{name}/{cname}: logit of {id} at position {pos}: {} vs llama.cpp {want}",
                    logits[id as usize]
                );
            }
        };
        let mut kv = model.new_cache(tokens.len() + want_gen.len() + 1, KvDtype::F16);
        let all = model
            .forward(&tokens, &mut ForwardCtx::new(&mut kv, Logits::All))
            .expect("prefill");
        for (p, row) in all.chunks_exact(n_vocab).enumerate() {
            check(p, row);
        }
        let mut last = all[all.len() - n_vocab..].to_vec();
        let mut got = Vec::new();
        for (step, &want) in want_gen.iter().enumerate() {
            let t = suanli_engine::sampler::argmax(&last);
            got.push(t);
            assert_eq!(
                t, want,
                "{name}/{cname}: greedy token {step} differs (so far {got:?})"
            );
            last = model
                .forward(&[t], &mut ForwardCtx::new(&mut kv, Logits::Last))
                .expect("decode");
            // Row n + step: the logits after decoding generated token `step`.
            check(tokens.len() + step, &last);
        }
        assert_eq!(got, want_gen, "{name}/{cname}: greedy continuation");
    }
    eprintln!("{name}: max |Δ logit| vs llama.cpp = {worst:e}");
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("smollm2-135m-instruct-q4_1");
}

#[test]
fn qwen2_5_coder_matches_llama_cpp() {
    check_model("qwen2.5-coder-0.5b-instruct");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("gemma3-270m-q4_k_m");
}

/// The q8_0 KV cache (an option, about half the memory of f16): teacher-
/// forced over llama.cpp's prompts and greedy continuations, the logits stay
/// within `Q8_TOL` of llama.cpp's f16-cache logits at the reference's top-8
/// ids and the top-1 id agrees at 92% of positions or more (measured over
/// prompts of up to 1051 tokens: SmolLM2 2.76 / 96.3%, Gemma 3 2.01 /
/// 94.4%; the drift grows with the context, 1.83 at 250 tokens). Qwen2.5, whose K rows carry
/// large biased outliers, drifts further (13.6 / 92.5%) and is left out
/// until that is understood (see issue #4's note).
fn check_q8_kv(name: &str) {
    const Q8_TOL: f32 = 3.0;
    let (golden, _, model) = golden_and_model(name);
    let n_vocab = model.config().n_vocab;
    let (mut worst, mut agree, mut total) = (0f32, 0usize, 0usize);
    for case in golden["cases"].as_array().expect("cases") {
        let tokens: Vec<u32> =
            serde_json::from_value(case["prompt_tokens"].clone()).expect("tokens");
        let gen: Vec<u32> = serde_json::from_value(case["generated"].clone()).expect("generated");
        let top: Vec<Vec<(u32, f32)>> =
            serde_json::from_value(case["top_logits"].clone()).expect("top logits");
        let mut kv = model.new_cache(tokens.len() + gen.len() + 1, KvDtype::Q8_0);
        let mut rows = model
            .forward(&tokens, &mut ForwardCtx::new(&mut kv, Logits::All))
            .expect("prefill");
        for &t in &gen {
            let last = model
                .forward(&[t], &mut ForwardCtx::new(&mut kv, Logits::Last))
                .expect("decode");
            rows.extend_from_slice(&last);
        }
        for (pos, row) in rows.chunks_exact(n_vocab).enumerate().take(top.len()) {
            total += 1;
            agree += (suanli_engine::sampler::argmax(row) == top[pos][0].0) as usize;
            for &(id, want) in &top[pos] {
                worst = worst.max((row[id as usize] - want).abs());
            }
        }
    }
    eprintln!("{name}, q8_0 KV: max |Δ logit| vs llama.cpp f16 KV = {worst:.4}, top-1 agrees at {agree}/{total}");
    assert!(
        worst <= Q8_TOL,
        "{name}: q8_0 KV moved a top logit by {worst}"
    );
    assert!(
        agree * 100 >= total * 94,
        "{name}: top-1 agrees at only {agree}/{total} positions"
    );
}

#[test]
fn q8_0_kv_cache_stays_close() {
    for name in ["smollm2-135m-instruct-q4_1", "gemma3-270m-q4_k_m"] {
        check_q8_kv(name);
    }
}
