use std::path::Path;

use anyhow::{bail, Context, Result};
use suanli_formats::GgufFile;
use suanli_tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a model directory, a tokenizer.json, or a model name.
    #[arg(short, long)]
    model: String,
    /// Text to tokenize.
    #[arg(short, long, conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the text from this file.
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// Print only the ids, on one line, separated by spaces.
    #[arg(long)]
    ids: bool,
    /// Treat special tokens written in the text as plain text.
    #[arg(long)]
    no_special: bool,
}

pub fn open_tokenizer(spec: &str) -> Result<Tokenizer> {
    let p = super::resolve_model(spec)?;
    if p.is_dir()
        || p.file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".json"))
    {
        return Ok(Tokenizer::from_hf(&p)?);
    }
    let f = GgufFile::open(Path::new(&p))?;
    Ok(Tokenizer::from_gguf(&f)?)
}

pub fn main(a: Args) -> Result<()> {
    let tok = open_tokenizer(&a.model)?;
    let bytes = match (&a.prompt, &a.file) {
        (Some(p), _) => p.as_bytes().to_vec(),
        (None, Some(f)) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, None) => bail!("give the text with -p TEXT or --file F"),
    };
    let ids = tok.encode_bytes(&bytes, true, !a.no_special)?;
    let mut out = String::new();
    if a.ids {
        out = ids
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        out.push('\n');
    } else {
        for &i in &ids {
            let piece = String::from_utf8_lossy(&tok.token_bytes(i, true)?).into_owned();
            out.push_str(&format!("{i}\t{piece}\n"));
        }
    }
    use std::io::Write;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}
