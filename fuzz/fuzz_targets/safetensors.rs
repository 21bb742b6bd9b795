//! The safetensors reader on arbitrary bytes. The first byte picks what
//! the rest is: even, a safetensors file (header, dtypes, shapes, data
//! offsets); odd, a `model.safetensors.index.json`. Any input is an `Ok`
//! or an `Err`; a panic, hang, unbounded allocation or a tensor whose
//! data is not inside the input is a finding.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use suanli_formats::safetensors::{index_shards, SafetensorsModel};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(m) = SafetensorsModel::from_bytes(rest.to_vec(), "fuzz.safetensors") else {
            return;
        };
        let mut total = 0usize;
        for (name, t) in &m.tensors {
            let elems = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            let want = elems.and_then(|n| n.checked_mul(t.dtype.block_bytes()));
            assert_eq!(
                want,
                Some(t.data.len()),
                "{name}: length disagrees with shape"
            );
            // Touch every byte: a view past the input is a sanitizer report.
            let bytes = t.data.bytes();
            assert_eq!(bytes.len(), t.data.len());
            let sum = bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b));
            std::hint::black_box(sum);
            total += bytes.len();
        }
        assert!(total <= rest.len(), "tensors hold more bytes than the file");
    } else {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let Ok(files) = index_shards(text, Path::new("model.safetensors.index.json")) else {
            return;
        };
        for f in &files {
            assert!(
                !f.is_empty()
                    && Path::new(f)
                        .components()
                        .all(|c| matches!(c, Component::Normal(_))),
                "shard {f:?} leaves the directory"
            );
        }
        assert!(
            files.windows(2).all(|w| w[0] < w[1]),
            "not sorted and unique"
        );
    }
});
