//! `plan`'s counts: the two committed config.json files against
//! transformers' own parameter counts and the published figures; for every
//! registered architecture, the tensors a config implies against those of a
//! real file, and the bytes a decoded token reads against the loaded
//! model's; bad configs fail naming the key and the file.

use std::path::{Path, PathBuf};

use suanli_formats::GgufFile;
use suanli_kernels::DType;
use suanli_models::arch::REGISTRY;
use suanli_models::plan::{self, Plan, Quant};
use suanli_models::KvDtype;

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs")
}

fn plan_of(path: &Path) -> (plan::Shapes, Plan) {
    let s = plan::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let p = Plan::new(&s, None, KvDtype::F16);
    (s, p)
}

fn near(x: u64, want: f64, tol: f64) -> bool {
    (x as f64 / want - 1.0).abs() <= tol
}

/// DeepSeek-V3/R1: `scripts/gen_plan_configs.py --count` has transformers
/// build it on the meta device: 671,026,404,352 parameters. The plan also
/// counts the routers' selection bias (`e_score_correction_bias`, 256 a
/// mixture layer), which transformers keeps as a buffer. "37B activated"
/// is DeepSeek's count without the embedding table (36.63 B; 37.55 B with
/// it); the multi-token-prediction layer (DeepSeek's "14B" of the "685B"
/// checkpoint) is apart.
#[test]
fn deepseek_v3_is_671b_with_37b_active() {
    let (s, p) = plan_of(&configs().join("deepseek-v3/config.json"));
    assert_eq!(s.cfg.arch, "deepseek2");
    assert_eq!((s.cfg.n_layer, s.nextn), (61, 1));
    let moe_layers = 58u64;
    assert_eq!(p.params, 671_026_404_352 + moe_layers * 256);
    // The routed experts a token skips: 248 of 256, each 3 × 7168 × 2048.
    let skipped = moe_layers * 248 * 3 * 7168 * 2048;
    assert_eq!(p.params_active, p.params - skipped);
    assert_eq!(p.params_embd, 129_280 * 7168);
    assert!(near(p.params_active - p.params_embd, 37e9, 0.011), "{p:?}");
    assert!(near(p.params + p.params_mtp, 685e9, 0.005), "{p:?}");
    // The latent cache: 512 + 64 values a layer, f16.
    assert_eq!(p.kv_bytes_per_token, 61 * 576 * 2);
    assert_eq!(s.cfg.n_ctx_train, 163_840);
    // bf16 checkpoint: two bytes a parameter.
    assert_eq!(p.weight_bytes, 2 * (p.params + p.params_mtp));
}

/// Qwen3-30B-A3B: transformers counts 30,532,122,624; Qwen's card says
/// 30.5B total, 3.3B activated (3.35 B with the embedding table, which
/// Qwen counts: 3.04 B without).
#[test]
fn qwen3_30b_a3b_is_30_5b_with_3_3b_active() {
    let (s, p) = plan_of(&configs().join("qwen3-30b-a3b"));
    assert_eq!(s.cfg.arch, "qwen3moe");
    assert_eq!(p.params, 30_532_122_624);
    assert_eq!(p.params_mtp, 0);
    let skipped = 48 * 120 * 3 * 2048 * 768;
    assert_eq!(p.params_active, p.params - skipped);
    assert!(near(p.params, 30.5e9, 0.002));
    assert!(near(p.params_active, 3.3e9, 0.02), "{p:?}");
    assert_eq!(p.kv_bytes_per_token, 48 * 4 * 128 * 2 * 2);
    // Decode reads one embedding row, the whole untied output.
    let row = 2048 * 2;
    let all_but_embd = 2 * (p.params_active - p.params_embd);
    assert_eq!(p.decode_bytes, all_but_embd + row);
    // At Q8_0: 34 bytes a 32 of every matrix but the routers, kept f32
    // with the norms.
    let q8 = Plan::new(&s, Some(Quant::Type(DType::Q8_0)), KvDtype::F16);
    let vectors = 48 * (2 * 2048 + 2 * 128) + 2048;
    let routers = 48 * 128 * 2048;
    let matrices = p.params - vectors - routers;
    assert_eq!(
        q8.weight_bytes,
        matrices / 32 * 34 + 4 * (vectors + routers)
    );
}

/// Every registered architecture's tiny GGUF: the tensors its config
/// implies are the file's, name for name and shape for shape; the file's
/// own types and a plan at Q8_0 (the type the tiny files are written in)
/// give the file's bytes; the bytes a decoded token reads are the loaded
/// model's (which leaves out norms and biases, and counts a tied table's
/// row besides the whole of it).
#[test]
fn every_architecture_plans_as_its_file_is() {
    let dir = std::env::temp_dir().join(format!("suanli-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (arch, moe) in suanli_models::tiny::variants() {
        let path = dir.join(format!("{arch}-{moe}.gguf"));
        suanli_models::tiny::write_tiny(arch, moe, &path, 3).expect("write");
        let (s, p) = plan_of(&path);
        let file = GgufFile::open(&path).expect("open");
        let entry = REGISTRY.iter().find(|e| e.name == arch).expect("entry");
        let tied = file.tensor("output.weight").is_none();
        let mut want: Vec<(String, Vec<usize>)> = plan::config_tensors(&s.cfg, entry, tied, 0)
            .into_iter()
            .map(|t| (t.name, t.shape))
            .collect();
        let mut got: Vec<(String, Vec<usize>)> = file
            .tensors
            .iter()
            .map(|t| {
                let shape = t.shape.iter().map(|&d| d as usize).collect();
                match arch {
                    // llama.cpp's gpt-oss names the feed-forward's norm so.
                    "gpt-oss" => (t.name.replace("post_attention_norm", "ffn_norm"), shape),
                    _ => (t.name.clone(), shape),
                }
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{arch} (moe {moe})");
        assert_eq!(p.weight_bytes, file.data_bytes(), "{arch}");
        let q8 = Plan::new(&s, Some(Quant::Type(DType::Q8_0)), KvDtype::F16);
        assert_eq!(q8.weight_bytes, file.data_bytes(), "{arch} at Q8_0");

        let model = suanli_models::load(&path).expect("load");
        let small: u64 = file
            .tensors
            .iter()
            .filter(|t| t.shape.iter().filter(|&&d| d > 1).count() < 2 || t.name.ends_with("bias"))
            .filter_map(|t| t.size)
            .sum();
        let row = match tied {
            true => file
                .tensor("token_embd.weight")
                .and_then(|t| t.size)
                .map_or(0, |b| b / s.cfg.n_vocab as u64),
            false => 0,
        };
        let bench = model.bytes_per_token();
        assert!(
            bench <= p.decode_bytes + row && p.decode_bytes + row - bench <= small,
            "{arch}: plan {} + row {row}, model {bench}, vectors {small}",
            p.decode_bytes
        );
        let (k, v) = model.config().kv_widths();
        assert_eq!(
            p.kv_bytes_per_token as usize,
            model.new_cache(1, KvDtype::F16).bytes(),
            "{arch}: {k} + {v} values a layer"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_config(name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let text = std::fs::read_to_string(configs().join("qwen3-30b-a3b/config.json")).expect("read");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut v);
    let dir = std::env::temp_dir().join(format!("suanli-plan-bad-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("config.json");
    std::fs::write(&p, serde_json::to_string(&v).expect("json")).expect("write");
    p
}

fn read_error(path: &Path) -> String {
    match plan::read(path) {
        Ok(_) => panic!("{}: read", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_key_is_named_with_the_file() {
    for (key, shown) in [
        ("num_hidden_layers", "num_hidden_layers"),
        ("hidden_size", "hidden_size"),
        ("num_experts", "num_experts"),
        ("intermediate_size", "intermediate_size"),
    ] {
        let p = write_config(key, |v| {
            v.as_object_mut().map(|o| o.remove(key));
        });
        let e = read_error(&p);
        assert!(
            e.contains(shown) && e.contains(&p.display().to_string()),
            "{key}: {e}"
        );
    }
    let p = write_config("type", |v| v["num_hidden_layers"] = "48".into());
    let e = read_error(&p);
    assert!(
        e.contains("num_hidden_layers") && e.contains("integer"),
        "{e}"
    );
    let p = write_config("dtype", |v| v["dtype"] = "float8_e4m3fn".into());
    assert!(read_error(&p).contains("float8_e4m3fn"));
}

#[test]
fn an_unknown_architecture_or_file_is_an_error() {
    let p = write_config("arch", |v| v["model_type"] = "mamba".into());
    let e = read_error(&p);
    assert!(
        e.contains("unknown architecture 'mamba'") && e.contains("qwen3moe"),
        "{e}"
    );
    let p = write_config("json", |_| {});
    std::fs::write(&p, "{ not json").expect("write");
    let e = read_error(&p);
    assert!(
        e.contains("invalid JSON") && e.contains(&p.display().to_string()),
        "{e}"
    );
    let e = read_error(Path::new("/nonexistent/config.json"));
    assert!(e.contains("/nonexistent/config.json"), "{e}");
}
