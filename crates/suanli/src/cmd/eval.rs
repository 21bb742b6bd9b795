//! `suanli eval`: a benchmark (GSM8K, GPQA-diamond, AIME 2025) on a model,
//! every question in flight at once through the batching engine.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use suanli::eval::{self, score, Task};
use suanli_engine::scheduler::SchedConfig;
use suanli_engine::{Engine, EngineConfig, Event, FinishReason, Request, SamplingParams};
use suanli_tokenizer::ChatMessage;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a directory with config.json + safetensors, or a model name.
    #[arg(short, long, default_value = suanli::hub::DEFAULT_MODEL)]
    model: String,
    /// gsm8k, gpqa-diamond or aime2025.
    #[arg(long)]
    task: String,
    /// The task's data file instead of the fetched one (same format).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Samples per item; the score is pass@1 averaged over them.
    #[arg(long, default_value_t = 1)]
    samples: usize,
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Nucleus sampling threshold (1 disables).
    #[arg(long = "top-p", default_value_t = 1.0)]
    top_p: f32,
    /// Seeds the sampling and GPQA's choice order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tokens generated per answer at most (default: 1024 for gsm8k, 2048
    /// for gpqa-diamond, 4096 for aime2025).
    #[arg(long = "max-tokens")]
    max_tokens: Option<usize>,
    /// Write one JSON line per answer here: id, sample, prompt, output,
    /// extracted, gold, correct, tokens, finish.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Sequences decoded together.
    #[arg(long, short = 'P', default_value_t = 32)]
    parallel: usize,
    /// Tokens per forward pass: decode tokens plus prefill chunks.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    batch: usize,
    #[arg(short, long)]
    threads: Option<usize>,
    /// KV cache precision: f16 (default for GGUF), q8_0, f32.
    #[arg(long = "kv-type")]
    kv_type: Option<suanli_models::KvDtype>,
}

/// One generated answer.
struct Answer {
    text: String,
    tokens: usize,
    finish: FinishReason,
}

const BLOCK: usize = 16;

pub fn main(a: Args) -> Result<()> {
    let task: Task = a.task.parse()?;
    anyhow::ensure!(a.samples >= 1, "--samples must be at least 1");
    anyhow::ensure!(a.parallel >= 1, "--parallel must be at least 1");
    anyhow::ensure!(a.temp >= 0.0, "--temp must not be negative");
    if a.samples > 1 && a.temp == 0.0 {
        eprintln!(
            "warning: --samples {} with --temp 0 draws the same answer each time",
            a.samples
        );
    }
    let max_tokens = a.max_tokens.unwrap_or(task.default_max_tokens());
    anyhow::ensure!(max_tokens >= 1, "--max-tokens must be at least 1");

    // The data first: a bad task or file fails before the model loads.
    let path = match &a.data {
        Some(p) => p.clone(),
        None => suanli::hub::resolve_eval(task.data_file(), &mut |m| eprintln!("{m}"))?,
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} data from {}", task.name(), path.display()))?;
    let mut items = task.parse(&text, &path.display().to_string(), a.seed)?;
    if let Some(n) = a.limit {
        anyhow::ensure!(n >= 1, "--limit must be at least 1");
        items.truncate(n);
    }

    let threads = super::set_threads(a.threads)?;
    // An answer must not depend on what it was batched with.
    suanli_kernels::dispatch::set_batch_invariant(true);
    let mut l = super::load(&a.model)?;
    l.set_kv_type(a.kv_type)?;
    let tmpl = super::chat_template(&l)?;

    // Prompts through the chat template; whether each opens a think block.
    let mut prompts = Vec::with_capacity(items.len());
    for it in &items {
        let (rendered, ids) = l
            .tokenizer
            .apply_chat_template(&tmpl, &[ChatMessage::new("user", &it.prompt)], None, None)
            .with_context(|| format!("rendering the prompt of {}", it.id))?;
        prompts.push((ids, rendered.trim_end().ends_with("<think>")));
    }
    let longest = prompts.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let n_ctx = l.model.config().n_ctx_train.max(1);
    if longest + 1 >= n_ctx {
        bail!(
            "the longest {} prompt is {longest} tokens; the model's context is {n_ctx}",
            task.name()
        );
    }
    let max_seq_len = (longest + max_tokens).min(n_ctx);
    let total = items.len() * a.samples;
    let slots = a.parallel.min(total);
    let cfg = EngineConfig {
        sched: SchedConfig {
            max_running: slots,
            token_budget: a.batch.max(slots),
            max_waiting: total,
            max_seq_len,
        },
        block_size: BLOCK,
        n_blocks: slots * max_seq_len.div_ceil(BLOCK) + slots,
        kv_dtype: l.kv_dtype,
        prefix_caching: true,
        spec: None,
    };
    let tok = Arc::new(l.tokenizer);
    let engine = Engine::start(Arc::from(l.model), tok.clone(), cfg);
    eprintln!(
        "{}: {} items × {} samples, {} at a time, up to {max_tokens} tokens each, {threads} threads",
        task.name(),
        items.len(),
        a.samples,
        slots
    );

    // Every request in flight at once; the engine schedules them.
    let t0 = Instant::now();
    let mut receivers = Vec::with_capacity(total);
    for (i, (ids, _)) in prompts.iter().enumerate() {
        for s in 0..a.samples {
            let req = Request {
                prompt: ids.clone(),
                sampling: SamplingParams {
                    temperature: a.temp,
                    top_k: 0,
                    top_p: a.top_p,
                    min_p: 0.0,
                    seed: eval::mix_seed(a.seed, i, s),
                    ..Default::default()
                },
                max_tokens: max_tokens.min(max_seq_len - ids.len()),
                stop: Vec::new(),
                ignore_eos: false,
                logprobs: None,
                prompt_logprobs: None,
                constraint: None,
                speculate: false,
            };
            let rx = engine
                .submit(req)
                .with_context(|| format!("queueing {}", items[i].id))?;
            receivers.push(((i, s), rx));
        }
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(task.name());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("starting the async runtime")?;
    let mut answers: Vec<Vec<Option<Answer>>> = (0..items.len())
        .map(|_| (0..a.samples).map(|_| None).collect())
        .collect();
    let (mut right, mut done) = (0usize, 0usize);
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for ((i, s), mut rx) in receivers {
            set.spawn(async move {
                let mut text = String::new();
                while let Some(ev) = rx.recv().await {
                    match ev {
                        Event::Token { text: t, .. } => text.push_str(&t),
                        Event::Text(t) => text.push_str(&t),
                        Event::Done { finish, usage } => {
                            return (
                                i,
                                s,
                                Ok(Answer {
                                    text,
                                    tokens: usage.completion_tokens,
                                    finish,
                                }),
                            )
                        }
                        Event::Error(e) => return (i, s, Err(e)),
                        Event::PromptLogprobs(_) => {}
                    }
                }
                (i, s, Err("the engine stopped".to_string()))
            });
        }
        while let Some(r) = set.join_next().await {
            let (i, s, ans) = r.context("an answer's task failed")?;
            let ans = ans.map_err(|e| anyhow::anyhow!("generating {}: {e}", items[i].id))?;
            let (_, ok) = task.score(&score::answer_part(&ans.text, prompts[i].1), &items[i].gold);
            right += ok as usize;
            done += 1;
            pb.set_message(format!("{:.1}% right", 100.0 * right as f64 / done as f64));
            pb.inc(1);
            answers[i][s] = Some(ans);
        }
        anyhow::Ok(())
    })?;
    pb.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    drop(engine);

    // Score, and write the per-answer lines.
    let mut out = match &a.out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let mut item_scores = Vec::with_capacity(items.len());
    let (mut generated, mut cut) = (0usize, 0usize);
    for (i, it) in items.iter().enumerate() {
        let mut ok_count = 0usize;
        for (s, ans) in answers[i].iter().enumerate() {
            let Some(ans) = ans else {
                bail!("no answer for {} sample {s}", it.id);
            };
            let (got, ok) = task.score(&score::answer_part(&ans.text, prompts[i].1), &it.gold);
            ok_count += ok as usize;
            generated += ans.tokens;
            cut += (ans.finish == FinishReason::Length) as usize;
            if let Some(w) = out.as_mut() {
                let line = json!({
                    "id": it.id,
                    "sample": s,
                    "prompt": it.prompt,
                    "output": ans.text,
                    "extracted": got,
                    "gold": it.gold,
                    "correct": ok,
                    "tokens": ans.tokens,
                    "finish": ans.finish.as_str(),
                });
                writeln!(w, "{line}").context("writing the answers")?;
            }
        }
        item_scores.push(ok_count as f64 / a.samples as f64);
    }
    if let Some(mut w) = out {
        w.flush().context("writing the answers")?;
    }
    let acc = eval::accuracy(&item_scores);
    if cut > 0 {
        eprintln!("note: {cut} of {total} answers reached --max-tokens {max_tokens}");
    }
    println!(
        "{}: accuracy {:.2}% (95% CI {:.2}%-{:.2}%), {} items x {} samples, {} tokens generated, {:.1} s ({:.1} tok/s)",
        task.name(),
        100.0 * acc.mean,
        100.0 * acc.lo,
        100.0 * acc.hi,
        items.len(),
        a.samples,
        generated,
        wall,
        generated as f64 / wall.max(1e-9)
    );
    Ok(())
}
