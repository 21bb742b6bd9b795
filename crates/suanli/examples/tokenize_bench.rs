//! Time tokenizer construction and encoding of a file:
//! tokenize_bench MODEL.gguf|tokenizer-dir FILE [REPS]
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    anyhow::ensure!(a.len() >= 3, "usage: tokenize_bench SOURCE FILE [REPS]");
    let t0 = Instant::now();
    let p = std::path::Path::new(&a[1]);
    let tok = if p.is_dir() {
        suanli_tokenizer::Tokenizer::from_hf(p)?
    } else {
        suanli_tokenizer::Tokenizer::from_gguf(&suanli_formats::GgufFile::open(p)?)?
    };
    let load = t0.elapsed();
    let text = std::fs::read_to_string(&a[2])?;
    let reps: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut best = f64::MAX;
    let mut n = 0;
    for _ in 0..reps {
        let t = Instant::now();
        n = tok.encode(&text, true, true)?.len();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "load {:.3} s, encode {} bytes -> {n} ids in {best:.3} s ({:.2} MB/s)",
        load.as_secs_f64(),
        text.len(),
        text.len() as f64 / best / 1e6
    );
    Ok(())
}
