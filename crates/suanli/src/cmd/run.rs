use std::io::Write;

use anyhow::{Context, Result};
use suanli_engine::{generate, generate_speculative, GenStats, Sampler, SamplingParams, SpecStats};
use suanli_tokenizer::{ChatMessage, StreamDecoder};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a directory with config.json + safetensors, or a model name.
    #[arg(short, long, default_value = suanli::hub::DEFAULT_MODEL)]
    pub model: String,
    /// The prompt.
    #[arg(short, long)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed (same seed, same output).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// KV cache precision: f16 (default for GGUF), q8_0 (half the memory),
    /// f32 (default for f32 checkpoints).
    #[arg(long = "kv-type")]
    pub kv_type: Option<suanli_models::KvDtype>,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx: Option<usize>,
    /// Tokenize the prompt as is (BOS per the model, special tokens parsed)
    /// instead of wrapping it in the chat template.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub spec: super::spec::SpecArgs,
}

impl Args {
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
        }
    }
}

pub fn main(a: Args) -> Result<()> {
    super::set_threads(a.threads)?;
    let speculate = a.spec.on();
    a.spec.set_numerics();
    let mut l = super::load(&a.model)?;
    l.set_kv_type(a.kv_type)?;
    let tokens = if a.raw {
        l.tokenizer.encode(&a.prompt, true, true)?
    } else {
        let tmpl = super::chat_template(&l)?;
        super::chat_tokens(&l, &tmpl, &[ChatMessage::new("user", &a.prompt)])?
    };
    let n_ctx = a.ctx.unwrap_or(l.model.config().n_ctx_train.min(4096));
    let mut kv = l.model.new_cache(n_ctx, l.kv_dtype);
    let mut sampler = Sampler::new(a.sampling());
    let mut dec = StreamDecoder::new();
    let mut out = std::io::stdout().lock();
    let mut write_err = None;
    let tok = &l.tokenizer;
    let mut on_token = |t| {
        let text = tok
            .token_bytes(t, false)
            .map(|b| dec.push(&b))
            .unwrap_or_default();
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            write_err = Some(e);
            return false;
        }
        true
    };
    let draft = a.spec.load_draft(&l)?;
    let (stats, spec): (GenStats, Option<SpecStats>) = if speculate {
        let (mut drafter, mut control) = a.spec.drafter(draft.as_ref(), n_ctx);
        let (g, s) = generate_speculative(
            l.model.as_ref(),
            &mut kv,
            &[],
            &tokens,
            &mut sampler,
            a.n_predict,
            &|t| tok.is_eog(t),
            &mut on_token,
            drafter.as_mut(),
            &mut control,
        )?;
        (g, Some(s))
    } else {
        let g = generate(
            l.model.as_ref(),
            &mut kv,
            &tokens,
            &mut sampler,
            a.n_predict,
            &|t| tok.is_eog(t),
            &mut on_token,
        )?;
        (g, None)
    };
    if let Some(e) = write_err {
        return Err(e).context("writing to stdout");
    }
    let rest = dec.finish();
    out.write_all(rest.as_bytes())?;
    writeln!(out)?;
    eprintln!(
        "prompt: {} tokens, {:.2} tokens/s | generation: {} tokens, {:.2} tokens/s",
        stats.prompt_tokens,
        stats.prompt_tps(),
        stats.gen_tokens,
        stats.gen_tps()
    );
    if let Some(s) = spec {
        eprintln!("{}", super::spec::report(&s, stats.gen_tokens));
    }
    Ok(())
}
