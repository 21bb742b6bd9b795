//! DeepSeek-V3's multi-token-prediction layer (`nextn`): a file that has
//! one loads it and keeps it, its trunk and logits exactly those of the
//! same model without it; a file that announces it but leaves its tensors
//! out (a trunk-only conversion) loads without it.

use suanli_models::{ForwardCtx, KvDtype, Logits, Model};

fn logits(m: &dyn Model) -> Vec<f32> {
    let tokens: Vec<u32> = vec![72, 101, 108, 108, 111, 32, 119, 111];
    let mut kv = m.new_cache(16, KvDtype::F16);
    m.forward(&tokens, &mut ForwardCtx::new(&mut kv, Logits::All))
        .expect("forward")
}

#[test]
fn the_mtp_layer_is_kept_and_never_run() {
    let dir = std::env::temp_dir().join(format!("suanli-mtp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (plain, with, trunk) = (
        dir.join("plain.gguf"),
        dir.join("mtp.gguf"),
        dir.join("trunk-only.gguf"),
    );
    suanli_models::tiny::write_tiny("deepseek2", true, &plain, 11).expect("write");
    suanli_models::tiny::write_tiny_mtp(&with, 11, true).expect("write");
    suanli_models::tiny::write_tiny_mtp(&trunk, 11, false).expect("write");
    let load = |p: &std::path::Path| suanli_models::load(p).unwrap_or_else(|e| panic!("{e}"));
    let (plain, with, trunk) = (load(&plain), load(&with), load(&trunk));
    assert_eq!(plain.mtp_layers(), 0);
    assert_eq!(with.mtp_layers(), 1);
    assert_eq!(trunk.mtp_layers(), 0);
    // The trunk alone: the same layer count, the same weights read a token.
    for m in [&with, &trunk] {
        assert_eq!(m.config().n_layer, plain.config().n_layer);
        assert_eq!(m.config().n_nextn, 1);
        assert_eq!(m.bytes_per_token(), plain.bytes_per_token());
    }
    let want = logits(plain.as_ref());
    for m in [&with, &trunk] {
        let got = logits(m.as_ref());
        assert_eq!(got.len(), want.len());
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "the MTP layer changed the trunk's logits"
        );
    }
}

/// More MTP layers announced than the file has layers: an error naming
/// the key, not a panic.
#[test]
fn more_mtp_layers_than_layers_names_the_key() {
    use suanli_formats::{GgufFile, GgufWriter, Value};
    let dir = std::env::temp_dir().join(format!("suanli-mtp-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.gguf");
    suanli_models::tiny::write_tiny_mtp(&good, 3, true).expect("write");
    let f = GgufFile::open(&good).expect("open");
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        let v = match k.as_str() {
            "deepseek2.nextn_predict_layers" => Value::U32(99),
            _ => v.clone(),
        };
        w.add(k.clone(), v);
    }
    for t in &f.tensors {
        let data = f.tensor_data(t).expect("data");
        w.add_tensor(
            &t.name,
            &t.shape,
            t.dtype.expect("dtype"),
            data.bytes().to_vec(),
        );
    }
    let bad = dir.join("bad.gguf");
    w.write(&bad).expect("write");
    match suanli_models::load(&bad) {
        Ok(_) => panic!("loaded"),
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("deepseek2.nextn_predict_layers"), "{e}");
        }
    }
}
