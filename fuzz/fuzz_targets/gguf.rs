//! The GGUF reader on arbitrary bytes: header, metadata, tensor table and
//! data bounds. Any input is an `Ok` or an `Err`; a panic, hang or
//! unbounded allocation is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader maps a file: write the input to one in memory-backed tmp.
    let dir = std::env::temp_dir();
    let path = dir.join(format!("suanli-fuzz-{}.gguf", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(f) = suanli_formats::GgufFile::open(&path) {
        for t in &f.tensors {
            let _ = f.tensor_data(t);
        }
        let _ = f.data_bytes();
        let _ = suanli_tokenizer::Tokenizer::from_gguf(&f);
    }
});
