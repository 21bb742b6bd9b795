//! Dequantization bit-identical to the `gguf` Python package on random blocks
//! of every format (fixtures from scripts/gen_dequant_fixtures.py).

use suanli_kernels::DType;

fn check(name: &str, t: DType) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/fixtures/dequant/{name}.bin"));
    let b = std::fs::read(&path).expect("fixture");
    let nb = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let n = nb * t.block_size();
    let raw = &b[4..4 + nb * t.block_bytes()];
    let want: Vec<f32> = b[4 + raw.len()..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(want.len(), n, "{name}: fixture size");
    let mut got = vec![0f32; n];
    (t.traits().to_float.expect("to_float"))(raw, &mut got);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{name}: element {i}: {g} vs gguf-py {w}"
        );
    }
}

#[test]
fn every_format_matches_gguf_py_bit_for_bit() {
    for (name, t) in [
        ("F32", DType::F32),
        ("F16", DType::F16),
        ("BF16", DType::BF16),
        ("Q4_0", DType::Q4_0),
        ("Q4_1", DType::Q4_1),
        ("Q5_0", DType::Q5_0),
        ("Q5_1", DType::Q5_1),
        ("Q8_0", DType::Q8_0),
        ("Q2_K", DType::Q2_K),
        ("Q3_K", DType::Q3_K),
        ("Q4_K", DType::Q4_K),
        ("Q5_K", DType::Q5_K),
        ("Q6_K", DType::Q6_K),
        ("MXFP4", DType::MXFP4),
    ] {
        check(name, t);
    }
}
