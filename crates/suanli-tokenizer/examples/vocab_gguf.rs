//! Write a vocabulary-only GGUF from a byte-level BPE tokenizer.json with a
//! given pre-tokenizer name: vocab_gguf TOKENIZER.json PRE OUT.gguf
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: vocab_gguf TOKENIZER.json PRE OUT.gguf");
        std::process::exit(2);
    }
    let r = suanli_tokenizer::convert::gguf_vocab_from_tokenizer_json(
        std::path::Path::new(&a[1]),
        &a[2],
    )
    .map(|kv| {
        let mut w = suanli_formats::GgufWriter::new();
        for (k, v) in kv {
            w.add(k, v);
        }
        w.write(&a[3])
    });
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    }
}
