//! Truncated, corrupted and unsupported files end in an error naming the
//! file and where reading failed; nothing panics.

use std::path::PathBuf;

use suanli_formats::{FormatError, GgufFile, GgufWriter, Value, ValueType};
use suanli_kernels::DType;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("suanli-bad-files-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.join(name)
}

fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()));
    w.add("llama.block_count", Value::U32(1));
    w.add(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            vec![Value::String("a".into()), Value::String("b".into())],
        ),
    );
    w.add("some.float", Value::F64(0.5));
    w.add("some.flag", Value::Bool(true));
    w.add_tensor("t.weight", &[32, 2], DType::Q8_0, vec![0u8; 68]);
    w.add_tensor("v", &[4], DType::F32, vec![0u8; 16]);
    w.to_bytes()
}

#[test]
fn writer_output_reads_back() {
    let p = tmp("ok.gguf");
    std::fs::write(&p, sample()).expect("write");
    let f = GgufFile::open(&p).expect("open");
    assert_eq!(f.version, 3);
    assert_eq!(f.get("llama.block_count").and_then(Value::as_u64), Some(1));
    assert_eq!(f.get("some.flag").and_then(Value::as_bool), Some(true));
    assert_eq!(f.tensors.len(), 2);
    let t = f.tensor("t.weight").expect("tensor");
    assert_eq!(
        (t.dtype, t.shape.clone(), t.size),
        (Some(DType::Q8_0), vec![32, 2], Some(68))
    );
    assert_eq!(t.offset % f.alignment, 0);
    assert_eq!(f.tensor_data(t).expect("data").len(), 68);
}

#[test]
fn every_truncation_is_an_error_naming_the_file() {
    let full = sample();
    let p = tmp("trunc.gguf");
    std::fs::write(&p, &full).expect("write");
    // Bytes the file needs: up to the end of its last tensor (the rest is padding).
    let needed = GgufFile::open(&p)
        .expect("open")
        .tensors
        .iter()
        .map(|t| t.offset + t.size.unwrap_or(0))
        .max()
        .unwrap_or(0) as usize;
    for len in 0..needed {
        std::fs::write(&p, &full[..len]).expect("write");
        let err = GgufFile::open(&p)
            .err()
            .unwrap_or_else(|| panic!("truncated to {len} bytes was accepted"));
        let msg = err.to_string();
        assert!(
            msg.contains("trunc.gguf"),
            "message does not name the file: {msg}"
        );
        assert!(
            msg.contains("offset") || len < 4,
            "{len}: message does not give the offset: {msg}"
        );
    }
}

#[test]
fn bit_flips_never_panic() {
    let full = sample();
    let p = tmp("flip.gguf");
    let mut errors = 0;
    for i in 0..full.len() {
        for bit in [0u8, 3, 7] {
            let mut b = full.clone();
            b[i] ^= 1 << bit;
            std::fs::write(&p, &b).expect("write");
            // Either parses (the flip hit data) or errs clearly; never panics.
            if let Err(e) = GgufFile::open(&p) {
                errors += 1;
                assert!(e.to_string().contains("flip.gguf"));
            }
        }
    }
    assert!(
        errors > 50,
        "corruptions went unnoticed: only {errors} errors"
    );
}

#[test]
fn wrong_magic_version_and_missing_file() {
    let p = tmp("magic.gguf");
    std::fs::write(&p, b"GGML\x03\0\0\0").expect("write");
    assert!(matches!(
        GgufFile::open(&p),
        Err(FormatError::BadMagic { .. })
    ));
    let mut b = sample();
    b[4] = 9;
    std::fs::write(&p, &b).expect("write");
    let e = GgufFile::open(&p).expect_err("version 9 accepted");
    assert!(e.to_string().contains("version 9"), "{e}");
    let e = GgufFile::open(tmp("does-not-exist.gguf")).expect_err("missing file opened");
    assert!(e.to_string().contains("does-not-exist.gguf"), "{e}");
}

#[test]
fn unsupported_tensor_type_is_reported_when_used() {
    let mut b = sample();
    // Tensor infos follow the metadata; set the first tensor's type to IQ2_XXS (16).
    let name = b"t.weight";
    let at = b
        .windows(name.len())
        .position(|w| w == name)
        .expect("tensor name")
        + name.len();
    let ty = at + 4 + 2 * 8; // n_dims, two dims
    b[ty..ty + 4].copy_from_slice(&16u32.to_le_bytes());
    let p = tmp("iq.gguf");
    std::fs::write(&p, &b).expect("write");
    let f = GgufFile::open(&p).expect("open");
    let t = f.tensor("t.weight").expect("tensor");
    assert_eq!(t.dtype, None);
    let e = f.tensor_data(t).expect_err("unsupported type read");
    assert!(
        e.to_string().contains("t.weight") && e.to_string().contains("not supported"),
        "{e}"
    );
}

#[test]
fn safetensors_garbage_is_an_error() {
    let p = tmp("bad.safetensors");
    std::fs::write(&p, b"\x10\0\0\0\0\0\0\0{not json at all").expect("write");
    let e = suanli_formats::safetensors::SafetensorsModel::open(&p).expect_err("garbage accepted");
    assert!(e.to_string().contains("bad.safetensors"), "{e}");
}

#[test]
fn gguf_version_2_reads() {
    let mut b = sample();
    b[4] = 2;
    let p = tmp("v2.gguf");
    std::fs::write(&p, &b).expect("write");
    let f = GgufFile::open(&p).expect("v2");
    assert_eq!((f.version, f.tensors.len()), (2, 2));
}
