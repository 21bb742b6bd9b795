use anyhow::Result;
use suanli::hub;

#[derive(clap::Args)]
pub struct Args {
    /// Model name (default: the default model; `--list` shows them), or a
    /// hub reference: hf://ORG/REPO[:QUANT], hf://ORG/REPO/FILE.gguf, a
    /// safetensors repository as hf://ORG/REPO, and ms://… from ModelScope.
    name: Option<String>,
    /// List the models `pull` knows.
    #[arg(long)]
    list: bool,
    /// Fetch a tokenizer.json by name (qwen3, deepseek_v3) instead of a model.
    #[arg(long, conflicts_with = "text")]
    tokenizer: Option<String>,
    /// Fetch an evaluation text by name (en_shakespeare, zh_peoples_daily).
    #[arg(long)]
    text: Option<String>,
}

pub fn main(a: Args) -> Result<()> {
    if a.list {
        for e in hub::CATALOG {
            println!("{:<38} {}", e.name, e.about);
        }
        return Ok(());
    }
    let log = &mut |m: &str| eprintln!("{m}");
    if let Some(t) = &a.tokenizer {
        println!("{}", hub::resolve_tokenizer(t, log)?.display());
        return Ok(());
    }
    if let Some(t) = &a.text {
        println!("{}", hub::resolve_text(t, log)?.display());
        return Ok(());
    }
    let name = a.name.as_deref().unwrap_or(hub::DEFAULT_MODEL);
    if suanli::pull::is_hub_ref(name) {
        println!("{}", suanli::pull::pull(name)?.display());
        return Ok(());
    }
    let p = hub::resolve(name, &mut |m| eprintln!("{m}"))?;
    println!("{}", p.display());
    Ok(())
}
