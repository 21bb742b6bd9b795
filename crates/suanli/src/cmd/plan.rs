//! `suanli plan`: what it takes to run a model, from its hyper-parameters
//! alone — a GGUF's header or a Hugging Face `config.json`, no weight read
//! ([`suanli_models::plan`] counts): parameters, weight bytes, the bytes a
//! decoded token reads, the KV cache, whether weights and cache fit this
//! machine's memory, and the decode speed its memory bandwidth allows
//! (measured as `suanli bench --print-membw` does unless given).

use anyhow::{bail, Result};
use suanli_models::loader::SourceFormat;
use suanli_models::plan::{self, Plan, Quant};
use suanli_models::KvDtype;

use super::inspect::human;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a config.json, a directory holding one, or a model name.
    model: String,
    /// Plan the weights as llama-quantize would make them (Q4_K_M, Q5_K_M,
    /// Q4_K_S, Q8_0, Q6_K, Q4_0, F16, BF16, MXFP4…) instead of the file's
    /// own types.
    #[arg(long)]
    quant: Option<Quant>,
    /// Context length to plan the KV cache for (default: the model's
    /// training context).
    #[arg(short = 'c', long = "ctx-size")]
    ctx: Option<usize>,
    /// Memory read bandwidth in GB/s for the decode roofline (default:
    /// measured, a parallel read of a 512 MiB buffer).
    #[arg(long)]
    bandwidth: Option<f64>,
    /// KV cache precision (default: f16, as `run` and `serve` use; f32 for
    /// an f32 checkpoint).
    #[arg(long = "kv-type")]
    kv_type: Option<KvDtype>,
    /// Threads for the bandwidth measurement (default: all).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// MemTotal and MemAvailable from /proc/meminfo, in bytes.
fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n => format!("{:.1} M", n as f64 / 1e6),
    }
}

/// Whether `need` bytes fit: in the memory available now, in all of it
/// (once other programs give theirs back), or not at all.
fn fits(need: u64, mem: Option<(u64, u64)>) -> &'static str {
    match mem {
        None => "unknown",
        Some((_, avail)) if need <= avail => "yes",
        Some((total, _)) if need <= total => "only if other programs free memory",
        Some(_) => "no",
    }
}

pub fn main(a: Args) -> Result<()> {
    let path = super::resolve_model(&a.model)?;
    let s = plan::read(&path)?;
    let c = &s.cfg;
    let kv = a.kv_type.unwrap_or(match s.dtype {
        Some(suanli_kernels::DType::F32) if a.quant.is_none() => KvDtype::F32,
        _ => KvDtype::F16,
    });
    let p = Plan::new(&s, a.quant, kv);
    let ctx = a.ctx.unwrap_or(c.n_ctx_train);
    let (bw, measured) = match a.bandwidth {
        Some(b) if b.is_finite() && b > 0.0 => (b, false),
        Some(b) => bail!("--bandwidth {b}: expected a positive number of GB/s"),
        None => {
            super::set_threads(a.threads)?;
            (suanli::membw::measure_membw(), true)
        }
    };
    let mem = meminfo();
    let need = p.weight_bytes + p.kv_bytes(ctx);
    let (kw, vw) = c.kv_widths();
    let moe_layers = (0..c.n_layer).filter(|&il| c.is_moe_layer(il)).count();
    let weights_are = match (a.quant, s.format) {
        (Some(q), _) => format!("as llama-quantize {q} makes them"),
        (None, SourceFormat::Gguf) => "the file's tensor types, exact".into(),
        (None, SourceFormat::HuggingFace) => "the checkpoint's type".into(),
    };
    let types: Vec<String> = p
        .types
        .iter()
        .map(|(t, b)| {
            format!(
                "{t} {:.1}%",
                *b as f64 * 100.0 / p.weight_bytes.max(1) as f64
            )
        })
        .collect();
    let tps0 = p.tokens_per_s(bw, 0);
    let tps_ctx = p.tokens_per_s(bw, ctx);
    if a.json {
        let moe = c.moe.as_ref().map(|m| {
            serde_json::json!({
                "n_expert": m.n_expert,
                "n_expert_used": m.router.n_used,
                "n_ff_exp": m.n_ff_exp,
                "n_ff_shexp": m.n_ff_shexp,
                "moe_layers": moe_layers,
            })
        });
        let j = serde_json::json!({
            "model": path.display().to_string(),
            "format": match s.format {
                SourceFormat::Gguf => "gguf",
                SourceFormat::HuggingFace => "config.json",
            },
            "arch": c.arch,
            "n_layer": c.n_layer,
            "n_layer_mtp": s.nextn,
            "n_embd": c.n_embd,
            "n_vocab": c.n_vocab,
            "n_ctx_train": c.n_ctx_train,
            "moe": moe,
            "params_total": p.params,
            "params_active": p.params_active,
            "params_embd": p.params_embd,
            "params_mtp": p.params_mtp,
            "quant": a.quant.map(|q| q.to_string()),
            "weight_bytes": p.weight_bytes,
            "mtp_bytes": p.mtp_bytes,
            "weight_types": p.types.iter().map(|(t, b)| (t.clone(), serde_json::Value::from(*b))).collect::<serde_json::Map<_, _>>(),
            "bits_per_weight": p.bits_per_weight(),
            "decode_bytes_per_token": p.decode_bytes,
            "kv_type": format!("{kv:?}").to_lowercase(),
            "kv_bytes_per_token": p.kv_bytes_per_token,
            "ctx": ctx,
            "kv_bytes_at_ctx": p.kv_bytes(ctx),
            "memory_bytes": need,
            "mem_total_bytes": mem.map(|m| m.0),
            "mem_available_bytes": mem.map(|m| m.1),
            "fits": fits(need, mem),
            "bandwidth_gbps": bw,
            "bandwidth_measured": measured,
            "decode_tokens_per_s_start": tps0,
            "decode_tokens_per_s_at_ctx": tps_ctx,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    let mut out = String::new();
    let from = match s.format {
        SourceFormat::Gguf => "GGUF header",
        SourceFormat::HuggingFace => "config.json",
    };
    out.push_str(&format!(
        "model: {} ({from}; no weights read)\n",
        s.path.display()
    ));
    out.push_str(&format!(
        "architecture: {} — {} layers{}, n_embd {}, {} heads, vocab {}, trained context {}\n",
        c.arch,
        c.n_layer,
        match s.nextn {
            0 => String::new(),
            n => format!(" (+ {n} multi-token prediction)"),
        },
        c.n_embd,
        c.n_head,
        c.n_vocab,
        c.n_ctx_train
    ));
    if let Some(m) = &c.mla {
        out.push_str(&format!(
            "attention: multi-head latent (query rank {}, latent {} + {} rotated, heads of {}+{} / {})\n",
            m.q_lora_rank, m.kv_lora_rank, m.qk_rope, m.qk_nope, m.qk_rope, m.v_head
        ));
    }
    if let Some(m) = &c.moe {
        out.push_str(&format!(
            "experts: {} a layer, {} used a token, {} wide{}; on {moe_layers} of {} layers{}\n",
            m.n_expert,
            m.router.n_used,
            m.n_ff_exp,
            match m.n_ff_shexp {
                0 => String::new(),
                w => format!(", shared expert {w} wide"),
            },
            c.n_layer,
            match (m.leading_dense, m.step) {
                (0, 1) => String::new(),
                (d, 1) => format!(" (the first {d} dense)"),
                (d, s) => format!(" (the first {d} dense, then every {s})"),
            }
        ));
    }
    let mtp = match p.params_mtp {
        0 => String::new(),
        n => format!(
            "; + {} in the multi-token-prediction layer (loaded, not run)",
            count(n)
        ),
    };
    match c.moe {
        Some(_) => out.push_str(&format!(
            "parameters: {} total, {} active a token ({} without the embedding table){mtp}\n",
            count(p.params),
            count(p.params_active),
            count(p.params_active - p.params_embd)
        )),
        None => out.push_str(&format!("parameters: {}{mtp}\n", count(p.params))),
    }
    out.push_str(&format!(
        "weights: {}{} ({weights_are}: {}; {:.2} bits a weight)\n",
        human(p.weight_bytes),
        match p.mtp_bytes {
            0 => String::new(),
            b => format!(", {} of them the multi-token-prediction layer's", human(b)),
        },
        types.join(", "),
        p.bits_per_weight()
    ));
    out.push_str(&format!(
        "read per decoded token: {} of weights{}\n",
        human(p.decode_bytes),
        match &c.moe {
            Some(m) => format!(
                " (the routed experts' share: {} of {})",
                m.router.n_used, m.n_expert
            ),
            None => String::new(),
        }
    ));
    out.push_str(&format!(
        "KV cache: {} a token ({kv:?}, {} values a layer × {} layers); {} at {ctx} tokens{}\n",
        human(p.kv_bytes_per_token),
        kw + vw,
        c.n_layer,
        human(p.kv_bytes(ctx)),
        if ctx > c.n_ctx_train {
            " (beyond the trained context)"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "memory: weights + KV at {ctx} tokens = {}; this machine: {} — fits: {}\n",
        human(need),
        match mem {
            Some((t, av)) => format!("{} total, {} available", human(t), human(av)),
            None => "unknown (no /proc/meminfo)".into(),
        },
        fits(need, mem)
    ));
    out.push_str(&format!(
        "decode roofline at {bw:.1} GB/s ({}): {:.2} t/s at the start, {:.2} t/s at {ctx} tokens\n",
        if measured {
            format!(
                "measured: parallel read of 512 MiB, {} threads",
                rayon::current_num_threads()
            )
        } else {
            "given".to_string()
        },
        tps0,
        tps_ctx
    ));
    print!("{out}");
    Ok(())
}
