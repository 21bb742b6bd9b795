use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use suanli_engine::{generate, generate_speculative, Sampler, SamplingParams};
use suanli_tokenizer::{ChatMessage, StreamDecoder};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a directory with config.json + safetensors, or a model name.
    #[arg(short, long, default_value = suanli::hub::DEFAULT_MODEL)]
    model: String,
    /// A system prompt.
    #[arg(short, long)]
    system: Option<String>,
    /// Tokens to generate per answer at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    n_predict: usize,
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(short, long)]
    threads: Option<usize>,
    /// KV cache precision: f16 (default for GGUF), q8_0 (half the memory),
    /// f32 (default for f32 checkpoints).
    #[arg(long = "kv-type")]
    kv_type: Option<suanli_models::KvDtype>,
    #[arg(short = 'c', long = "ctx-size")]
    ctx: Option<usize>,
    #[command(flatten)]
    spec: super::spec::SpecArgs,
}

pub fn main(a: Args) -> Result<()> {
    super::set_threads(a.threads)?;
    a.spec.set_numerics();
    let mut l = super::load(&a.model)?;
    l.set_kv_type(a.kv_type)?;
    let tmpl = super::chat_template(&l)?;
    let n_ctx = a.ctx.unwrap_or(l.model.config().n_ctx_train.min(4096));
    let mut kv = l.model.new_cache(n_ctx, l.kv_dtype);
    let draft = a.spec.load_draft(&l)?;
    // One drafter for the whole chat: a draft model's cache follows the
    // conversation as the target's does.
    let mut speculation = a.spec.on().then(|| a.spec.drafter(draft.as_ref(), n_ctx));
    // Tokens whose K/V are in the cache, to reuse the shared prefix each turn.
    let mut cached: Vec<u32> = Vec::new();
    let mut messages: Vec<ChatMessage> = a
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s))
        .collect();
    let mut sampler = Sampler::new(SamplingParams {
        temperature: a.temp,
        seed: a.seed,
        ..Default::default()
    });
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    eprintln!(
        "chat with {} — an empty line or end of input quits",
        l.path.display()
    );
    loop {
        eprint!("> ");
        let mut line = Vec::new();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        let Ok(line) = String::from_utf8(line) else {
            bail!("input is not valid UTF-8");
        };
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            break;
        }
        messages.push(ChatMessage::new("user", line));
        let tokens = super::chat_tokens(&l, &tmpl, &messages)?;
        let common = cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // Keep at least one token to run, so there are logits to sample from.
        let common = common.min(tokens.len().saturating_sub(1));
        kv.truncate(common);
        cached.truncate(common);
        let mut dec = StreamDecoder::new();
        let mut answer = Vec::new();
        let tok = &l.tokenizer;
        let mut on_token = |t| {
            answer.push(t);
            let text = tok
                .token_bytes(t, false)
                .map(|b| dec.push(&b))
                .unwrap_or_default();
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
            true
        };
        let is_eog = |t| tok.is_eog(t);
        let (history, prompt) = tokens.split_at(common);
        let r = match speculation.as_mut() {
            Some((drafter, control)) => generate_speculative(
                l.model.as_ref(),
                &mut kv,
                history,
                prompt,
                &mut sampler,
                a.n_predict,
                &is_eog,
                &mut on_token,
                drafter.as_mut(),
                control,
            )
            .map(|(_, s)| Some(s)),
            None => generate(
                l.model.as_ref(),
                &mut kv,
                prompt,
                &mut sampler,
                a.n_predict,
                &is_eog,
                &mut on_token,
            )
            .map(|_| None),
        };
        let rest = dec.finish();
        println!("{rest}");
        match r {
            Ok(Some(s)) => eprintln!("{}", super::spec::report(&s, answer.len())),
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e}");
                messages.pop();
                kv.truncate(0);
                cached.clear();
                continue;
            }
        }
        cached = tokens;
        cached.extend(&answer);
        // The cache holds all but the last sampled token.
        cached.truncate(kv.len());
        messages.push(ChatMessage::new("assistant", &tok.decode(&answer, false)?));
    }
    Ok(())
}
