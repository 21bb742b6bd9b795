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

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

pub fn main(a: Args) -> Result<()> {
    let path = super::resolve_model(&a.model)?;
    let mut out = String::new();
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
        suanli_models::load_source(&GgufSource::new(f)?)?
    };
    let c = model.config();
    out.push_str(&format!(
        "architecture: {} — {} layers, n_embd {}, heads {}/{} (kv), head_dim {}, n_ff {}, vocab {}, ctx {}\n",
        c.arch, c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_vocab, c.n_ctx_train
    ));
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
    out.push_str(&format!(
        "kernels: {}\n",
        suanli_kernels::dispatch::kernels()
    ));
    print!("{out}");
    Ok(())
}
