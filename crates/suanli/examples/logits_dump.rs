//! Dump suanli's logits for a prompt, and trace the forward pass — the twin of
//! scripts/llama_logits.c, for diffing suanli against llama.cpp step by step.
//!
//! Usage: logits_dump MODEL.gguf PROMPT OUT.bin [N_GEN]
//!   PROMPT: a text file (tokenized with BOS per the model, specials parsed)
//!           or a `.ids` file of space-separated token ids.
//!   OUT.bin: f32 logits of every prompt position, then of each greedy step.
//! Environment:
//!   SUANLI_TRACE=1          print sum and first values of each traced step
//!   SUANLI_TRACE_LAYER=L    …of layer L (plus every layer's `l_out`)
//!   SUANLI_TRACE_ROW=R      …for token row R of the batch
//!   SUANLI_DUMP=NAME-L:FILE write that step's values (raw f32) to FILE
use suanli_formats::GgufFile;
use suanli_models::loader::GgufSource;
use suanli_models::{ForwardCtx, KvDtype, Logits, TraceFn};

fn env_usize(k: &str) -> Option<usize> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        a.len() >= 4,
        "usage: logits_dump MODEL PROMPT OUT.bin [N_GEN]"
    );
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
    let n_gen = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
    let tracing = std::env::var_os("SUANLI_TRACE").is_some();
    let layer = env_usize("SUANLI_TRACE_LAYER").unwrap_or(0);
    let row = env_usize("SUANLI_TRACE_ROW").unwrap_or(0);
    let dump = std::env::var("SUANLI_DUMP").ok().and_then(|d| {
        d.split_once(':')
            .map(|(n, p)| (n.to_string(), p.to_string()))
    });
    let mut kv = model.new_cache(ids.len() + n_gen + 1, KvDtype::F16);
    let nv = model.config().n_vocab;
    let mut out = Vec::new();
    let mut gen = Vec::new();
    let mut batch = ids.clone();
    for step in 0..=n_gen {
        let n_tok = batch.len();
        let mut tr = |name: &str, il: usize, x: &[f32]| {
            if let Some((n, p)) = &dump {
                if *n == format!("{name}-{il}") {
                    let b: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
                    let _ = std::fs::write(format!("{p}.{step}"), b);
                }
            }
            if il != layer && name != "l_out" {
                return;
            }
            let w = x.len() / n_tok;
            let r = if n_tok > 1 { row } else { 0 };
            if w == 0 || (r + 1) * w > x.len() {
                return;
            }
            let x = &x[r * w..(r + 1) * w];
            let sum: f64 = x.iter().map(|&v| v as f64).sum();
            eprintln!(
                "TRACE step {step} {name}-{il} sum={sum:.6} first={:.6} {:.6}",
                x[0],
                x[x.len().min(2) - 1]
            );
        };
        let trace: Option<TraceFn> = if tracing || dump.is_some() {
            Some(&mut tr)
        } else {
            None
        };
        let mode = if step == 0 { Logits::All } else { Logits::Last };
        let logits = model.forward(
            &batch,
            &mut ForwardCtx {
                kv: &mut kv,
                logits: mode,
                trace,
            },
        )?;
        out.extend_from_slice(&logits);
        if step == n_gen {
            break;
        }
        let t = suanli_engine::sampler::argmax(&logits[logits.len() - nv..]);
        if tok.is_eog(t) {
            break;
        }
        gen.push(t);
        batch = vec![t];
    }
    let b: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&a[3], b)?;
    println!("{{\"prompt_tokens\": {ids:?}, \"generated\": {gen:?}}}");
    Ok(())
}
