//! Write suanli's logits for every prompt position (f32) — the twin of
//! scripts/llama_logits.c, for diffing against llama.cpp.
//! Usage: logits_dump MODEL PROMPT_FILE OUT.bin [GEN]
use suanli_formats::GgufFile;
use suanli_models::loader::GgufSource;
use suanli_models::{ForwardCtx, KvDtype, Logits};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let f = GgufFile::open(&a[1])?;
    let tok = suanli_tokenizer::Tokenizer::from_gguf(&f)?;
    let model = suanli_models::load_source(&GgufSource::new(f)?)?;
    let prompt = std::fs::read_to_string(&a[2])?;
    let ids: Vec<u32> = if a[2].ends_with(".ids") {
        prompt
            .split_whitespace()
            .map(|t| t.parse())
            .collect::<Result<_, _>>()?
    } else {
        tok.encode(&prompt, true, true)?
    };
    let mut kv = model.new_cache(2048, KvDtype::F16);
    let n_tok = ids.len();
    let mut tr = |name: &str, il: usize, x: &[f32]| {
        if std::env::var("SUANLI_DUMP").ok().as_deref() == Some(&format!("{name}-{il}")) {
            let b: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            let _ = std::fs::write("/tmp/suanli_dump_p.bin", b);
        }
        if il
            == std::env::var("SUANLI_TRACE_LAYER")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0)
            || name == "l_out"
        {
            let row: usize = std::env::var("SUANLI_TRACE_ROW")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let w = x.len() / n_tok;
            if (row + 1) * w > x.len() {
                return;
            }
            let x = &x[row * w..(row + 1) * w];
            let sum: f64 = x.iter().map(|&v| v as f64).sum();
            eprintln!(
                "TRACE {name:<24} [{}] sum={sum:.6} first={:.6} {:.6} {:.6} {:.6}",
                x.len(),
                x[0],
                x[1],
                x[2],
                x[3]
            );
        }
    };
    let trace: Option<&mut dyn FnMut(&str, usize, &[f32])> =
        if std::env::var_os("SUANLI_TRACE").is_some() {
            Some(&mut tr)
        } else {
            None
        };
    let mut logits = model.forward(
        &ids,
        &mut ForwardCtx {
            kv: &mut kv,
            logits: Logits::All,
            trace,
        },
    )?;
    let nv = model.config().n_vocab;
    let mut gen = Vec::new();
    let n_gen: usize = a.get(4).map(|s| s.parse().unwrap_or(0)).unwrap_or(0);
    let mut last = logits[logits.len() - nv..].to_vec();
    for _ in 0..n_gen {
        let t = suanli_engine::sampler::argmax(&last);
        if tok.is_eog(t) {
            break;
        }
        gen.push(t);
        let step = gen.len();
        let mut tr2 = |name: &str, il: usize, x: &[f32]| {
            if std::env::var("SUANLI_DUMP").ok().as_deref() == Some(&format!("{name}-{il}")) {
                let b: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
                let _ = std::fs::write(format!("/tmp/suanli_dump_{step}.bin"), b);
            }
            if name == "l_out"
                || il
                    == std::env::var("SUANLI_TRACE_LAYER")
                        .ok()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(99)
            {
                let sum: f64 = x.iter().map(|&v| v as f64).sum();
                eprintln!(
                    "DTRACE {name}-{il} sum={sum:.6} first={:.6} {:.6}",
                    x[0], x[1]
                );
            }
        };
        let trace: Option<&mut dyn FnMut(&str, usize, &[f32])> =
            if std::env::var_os("SUANLI_TRACE").is_some() {
                Some(&mut tr2)
            } else {
                None
            };
        last = model.forward(
            &[t],
            &mut ForwardCtx {
                kv: &mut kv,
                logits: Logits::Last,
                trace,
            },
        )?;
        logits.extend_from_slice(&last);
    }
    let b: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&a[3], b)?;
    println!("{{\"prompt_tokens\": {ids:?}, \"generated\": {gen:?}}}");
    Ok(())
}
