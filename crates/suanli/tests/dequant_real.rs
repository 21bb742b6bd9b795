//! Dequantization of real tensors of the fetched models, bit-identical to the
//! `gguf` Python package (sha256 of its f32 output, from
//! scripts/gen_dequant_fixtures.py).

use sha2::{Digest, Sha256};
use suanli_formats::GgufFile;

#[test]
fn real_tensors_match_gguf_py() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/dequant/real_tensors.json");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let mut files = std::collections::HashMap::new();
    for c in &cases {
        let model = c["model"].as_str().expect("model");
        let f = files.entry(model.to_string()).or_insert_with(|| {
            GgufFile::open(suanli::hub::resolve(model, &mut |m| eprintln!("{m}")).expect("fetch"))
                .expect("open")
        });
        let name = c["tensor"].as_str().expect("tensor");
        let t = f.tensor(name).expect("tensor in file");
        let dtype = t.dtype.expect("supported type");
        assert_eq!(
            dtype.traits().name,
            c["type"].as_str().unwrap_or(""),
            "{model}/{name}: type"
        );
        let n = t.n_elements() as usize;
        let mut v = vec![0f32; n];
        (dtype.traits().to_float.expect("to_float"))(
            f.tensor_data(t).expect("data").bytes(),
            &mut v,
        );
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            got,
            c["sha256"].as_str().unwrap_or(""),
            "{model}/{name} ({}): dequantized values differ from gguf-py",
            c["type"]
        );
    }
    assert!(cases.len() >= 10, "fixture lists too few tensors");
}
