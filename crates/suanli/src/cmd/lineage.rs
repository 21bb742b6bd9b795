//! `suanli lineage A B [C…]`: were the later models' weights derived from
//! the earlier ones'? Every pair is compared, the earlier as the presumed
//! parent.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use suanli::lineage::{self, report, Model, Options};

#[derive(clap::Args)]
pub struct Args {
    /// Two or more models: .gguf files, safetensors files or directories,
    /// or model names.
    #[arg(num_args = 2.., required = true)]
    models: Vec<String>,
    /// One JSON object per pair (an array for more than two models).
    #[arg(long)]
    json: bool,
    /// Draw the layer-by-layer similarity heatmap into this PNG (for more
    /// than two models, one file per pair: NAME-1.png, NAME-2.png…).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Seed of the samples (dimensions, rows, neurons, shuffles).
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
}

pub fn main(a: Args) -> Result<()> {
    super::set_threads(a.threads)?;
    let t0 = Instant::now();
    let models = a
        .models
        .iter()
        .map(|m| {
            let path = super::resolve_model(m)?;
            eprintln!("lineage: reading {}", path.display());
            Model::open(&path).with_context(|| format!("reading {}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let o = Options {
        seed: a.seed,
        ..Options::default()
    };
    let mut out = Vec::new();
    let mut k = 0;
    for i in 0..models.len() {
        for j in i + 1..models.len() {
            k += 1;
            let c = lineage::compare(&models[i], &models[j], &o, &mut |m| {
                eprintln!("lineage: {m} ({:.1} s)", t0.elapsed().as_secs_f64())
            })?;
            if let Some(p) = &a.plot {
                let p = if models.len() > 2 {
                    let stem = p
                        .file_stem()
                        .map(|s| s.to_string_lossy())
                        .unwrap_or_default();
                    p.with_file_name(format!("{stem}-{k}.png"))
                } else {
                    p.clone()
                };
                report::plot(&c, &p)
                    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", p.display()))?;
                eprintln!("lineage: heatmap in {}", p.display());
            }
            if a.json {
                out.push(report::json(&c));
            } else {
                print!("{}", report::text(&c));
                println!();
            }
        }
    }
    if a.json {
        let v = match out.len() {
            1 => out.remove(0),
            _ => serde_json::Value::Array(out),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    eprintln!("lineage: done in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
