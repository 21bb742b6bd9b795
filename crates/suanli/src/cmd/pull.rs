use anyhow::Result;
use suanli::hub;

#[derive(clap::Args)]
pub struct Args {
    /// Model name (default: the default model); `--list` shows them.
    name: Option<String>,
    /// List the models `pull` knows.
    #[arg(long)]
    list: bool,
}

pub fn main(a: Args) -> Result<()> {
    if a.list {
        for e in hub::CATALOG {
            println!("{:<38} {}", e.name, e.about);
        }
        return Ok(());
    }
    let name = a.name.as_deref().unwrap_or(hub::DEFAULT_MODEL);
    let p = hub::resolve(name, &mut |m| eprintln!("{m}"))?;
    println!("{}", p.display());
    Ok(())
}
