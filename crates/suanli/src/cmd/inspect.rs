use anyhow::Result;
use suanli_formats::GgufFile;
use suanli_models::loader::{GgufSource, HfSource};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a model directory, or a model name.
    model: String,
    /// Print every metadata value in full.
    #[arg(long)]
    full: bool,
}

pub(super) fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

pub fn main(a: Args) -> Result<()> {
    let path = super::resolve_model(&a.model)?;
    let mut out = String::new();
    let mut total_params = None;
    let model = if path.is_dir() {
        let src = HfSource::open(&path)?;
        out.push_str(&format!("file: {} (safetensors)\n", path.display()));
        suanli_models::load_source(&src)?
    } else {
        let f = GgufFile::open(&path)?;
        out.push_str(&format!(
            "file: {} (GGUF v{}, alignment {})\n",
            path.display(),
            f.version,
            f.alignment
        ));
        out.push_str("\nmetadata:\n");
        for (k, v) in &f.metadata {
            let s = if a.full {
                format!("{v:?}")
            } else {
                v.summary()
            };
            out.push_str(&format!("  {k:<45} {s}\n"));
        }
        out.push_str(&format!("\ntensors ({}):\n", f.tensors.len()));
        let mut params = 0u64;
        for t in &f.tensors {
            params += t.n_elements();
            out.push_str(&format!(
                "  {:<40} {:<6} {:?}\n",
                t.name,
                t.type_name(),
                t.shape
            ));
        }
        out.push_str(&format!(
            "\nparameters: {params} ({:.1} M)\n",
            params as f64 / 1e6
        ));
        out.push_str(&format!("tensor data: {}\n", human(f.data_bytes())));
        total_params = Some(params);
        suanli_models::load_source(&GgufSource::new(f)?)?
    };
    let c = model.config();
    out.push_str(&format!(
        "architecture: {} — {} layers, n_embd {}, heads {}/{} (kv), head_dim {}, n_ff {}, vocab {}, ctx {}\n",
        c.arch, c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_vocab, c.n_ctx_train
    ));
    if let Some(m) = &c.moe {
        let r = &m.router;
        let layers = (0..c.n_layer).filter(|&il| c.is_moe_layer(il)).count();
        out.push_str(&format!(
            "experts: {} a layer, {} used a token, {} wide{}; on {layers} of {} layers{}\n",
            m.n_expert,
            r.n_used,
            m.n_ff_exp,
            match m.n_ff_shexp {
                0 => String::new(),
                w => format!(", shared expert {w} wide"),
            },
            c.n_layer,
            match (m.leading_dense, m.step) {
                (0, 1) => String::new(),
                (d, s) => format!(" ({d} dense first, then every {s})"),
            }
        ));
        out.push_str(&format!(
            "router: {:?}, top {}{}{}{}\n",
            r.gating,
            r.n_used,
            if r.norm { ", weights renormalised" } else { "" },
            if r.scale != 1.0 && r.scale != 0.0 {
                format!(", scaled by {}", r.scale)
            } else {
                String::new()
            },
            if r.groups > 1 {
                format!(", {} of {} expert groups", r.groups_used, r.groups)
            } else {
                String::new()
            }
        ));
        if let Some(total) = total_params {
            let routed = (3 * m.n_ff_exp * c.n_embd * m.n_expert * layers) as u64;
            let active = total - routed + routed * r.n_used as u64 / m.n_expert as u64;
            let count = |n: u64| match n {
                n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
                n => format!("{:.1} M", n as f64 / 1e6),
            };
            out.push_str(&format!(
                "parameters: {} total, {} active a token\n",
                count(total),
                count(active)
            ));
        }
    }
    let swa = match c.sliding_window {
        Some(w) => format!(
            "; sliding window {w} (theta {}) on {} of {} layers",
            c.rope_theta_swa,
            c.swa_layers.iter().filter(|&&s| s).count(),
            c.n_layer
        ),
        None => String::new(),
    };
    out.push_str(&format!(
        "rope: {:?}, theta {}, {} dims, freq scale {}, freq factors {:?}{swa}\n",
        c.rope_style, c.rope_theta, c.rope_dim, c.rope_freq_scale, c.rope_freq_factors
    ));
    out.push_str(&format!(
        "bytes read per generated token: {}\n",
        human(model.bytes_per_token())
    ));
    if let Some(m) = &c.mla {
        out.push_str(&format!(
            "attention: multi-head latent (query rank {}, latent {} + {} rotated, heads of {}+{} / {})\n",
            m.q_lora_rank, m.kv_lora_rank, m.qk_rope, m.qk_nope, m.qk_rope, m.v_head
        ));
    }
    if c.n_nextn > 0 {
        out.push_str(&format!(
            "multi-token prediction: {} of {} layer(s) in the file, kept for speculative decoding (not run)\n",
            model.mtp_layers(),
            c.n_nextn
        ));
    }
    // A position's K and V over all layers (f16 cache, the default).
    let kv = model.new_cache(1, suanli_models::KvDtype::F16).bytes();
    out.push_str(&format!(
        "KV cache per token: {} (f16; {} values a layer)\n",
        human(kv as u64),
        {
            let (k, v) = c.kv_widths();
            k + v
        }
    ));
    out.push_str(&format!(
        "kernels: {}\n",
        suanli_kernels::dispatch::kernels()
    ));
    print!("{out}");
    Ok(())
}
