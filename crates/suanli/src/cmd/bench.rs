//! `suanli bench`: prompt processing (pp) and generation (tg) speed with
//! llama-bench's definitions — pp: one batch of `p` prompt tokens; tg: `n`
//! tokens decoded one at a time — as mean ± stddev of tokens/s over
//! repetitions, plus the fraction of the memory-bandwidth roofline reached by
//! tg (every generated token reads the model's active weights once).
//!
//! The bandwidth of a shared machine moves from second to second (here
//! between about 30 and 55 GB/s), so one reading at start says little about
//! the next minute. Unless `--membw` fixes it, the roofline is measured right
//! before and right after every tg repetition by streaming the model's own
//! decode weights with all threads, and each repetition is held against the
//! mean of the two readings around it. Repacked weights lie in huge pages
//! (`suanli_kernels`' `hugemem`), which stream faster than the 4 KiB pages of
//! `membw`'s buffer (~63 against ~55 GB/s in this VM's fast state): this
//! roofline is that of the bytes as they lie, the stricter one. A repetition
//! whose two readings differ by more than a tenth ran across a change of
//! state, so neither reading is its roofline: the fraction is taken over the
//! others (over all when none is steady), and the count is shown.
//!
//! `-d` runs every test after a context already holding that many tokens
//! (llama-bench's `-d`), to see attention at long context; tg's roofline
//! then counts the KV cache read per token besides the weights.
//!
//! `--spec ngram` or `--draft MODEL` adds a speculative test: `-n` tokens
//! decoded greedily from a real request (`-f`, or a built-in code-editing
//! one), plain and speculative runs interleaved, with the speedup, the
//! drafts accepted and the tokens each verifying pass made.

use std::time::Instant;

use anyhow::{Context, Result};
use suanli::membw::{measure_membw, stream_gbps};
use suanli_models::{ForwardCtx, KvDtype, Logits, Model};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a model directory, or a model name.
    #[arg(short, long, default_value = suanli::hub::DEFAULT_MODEL)]
    model: String,
    /// Prompt tokens per pp test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    n_prompt: usize,
    /// Generated tokens per tg test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    n_gen: usize,
    /// Tokens already in the context before each test (prefilled, untimed).
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    n_depth: usize,
    #[arg(short, long)]
    threads: Option<usize>,
    /// KV cache precision: f16 (default for GGUF), q8_0 (half the memory),
    /// f32 (default for f32 checkpoints).
    #[arg(long = "kv-type")]
    kv_type: Option<suanli_models::KvDtype>,
    /// Repetitions of each test.
    #[arg(short, long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Print a JSON array (one object per test) instead of a table.
    #[arg(long)]
    json: bool,
    /// Memory read bandwidth in GB/s for the roofline (default: measured
    /// before and after each tg repetition by streaming the model's decode
    /// weights).
    #[arg(long)]
    membw: Option<f64>,
    /// Only measure the memory bandwidth over a 512 MiB buffer, print it in
    /// GB/s and exit.
    #[arg(long)]
    print_membw: bool,
    /// With `--spec` or `--draft`: a speculative tg test besides pp and tg —
    /// `-n` tokens decoded greedily from this file's text as a user turn
    /// (default: a built-in code-editing request), plain and speculative
    /// runs interleaved, with the acceptance.
    #[arg(short = 'f', long = "spec-prompt")]
    spec_prompt: Option<std::path::PathBuf>,
    #[command(flatten)]
    spec: super::spec::SpecArgs,
}

/// The speculative test's default request: edit code given in the prompt,
/// where drafts of what the prompt already holds pay most.
const SPEC_PROMPT: &str =
    "Rename `total` to `sum` and `items` to `values` everywhere in this Rust \
module and add a doc comment to every function. Reply with the whole module.

```rust
pub struct Item {
    pub name: String,
    pub price: f64,
    pub quantity: u32,
}

pub fn total(items: &[Item]) -> f64 {
    let mut total = 0.0;
    for item in items {
        if item.price > 0.0 && item.quantity > 0 {
            total += item.price * item.quantity as f64;
        }
    }
    (total * 100.0).round() / 100.0
}

pub fn report(items: &[Item]) -> Vec<String> {
    let mut lines = Vec::new();
    for item in items {
        lines.push(format!(\"{}: {:.2}\", item.name, item.price * item.quantity as f64));
    }
    lines.push(format!(\"total: {:.2}\", total(items)));
    lines
}

pub fn most_expensive(items: &[Item]) -> Option<&Item> {
    items.iter().max_by(|a, b| a.price.total_cmp(&b.price))
}
```";

/// What the speculative test measured: plain and speculative tokens/s
/// (one sample each a repetition) and the speculative runs' counts.
struct SpecResult {
    name: String,
    plain: Vec<f64>,
    spec: Vec<f64>,
    stats: suanli_engine::SpecStats,
}

/// tg's share of the memory-bandwidth roofline: the mean over steady
/// repetitions of each one's fraction, and the bandwidth readings (one
/// before the first repetition and one after each).
struct Roofline {
    fraction: f64,
    /// Repetitions the fraction is taken over, of all.
    steady: usize,
    gbps: Vec<f64>,
}

/// Readings around one repetition that differ by at most this factor
/// count as one state of the machine.
const STEADY: f64 = 1.10;

/// Each repetition's fraction of the mean of the readings around it, and
/// whether those readings agree ([`STEADY`]).
fn fractions(samples: &[f64], gbps: &[f64], bytes: f64) -> Vec<(f64, bool)> {
    samples
        .iter()
        .zip(gbps.windows(2))
        .map(|(ts, g)| {
            let (lo, hi) = (g[0].min(g[1]), g[0].max(g[1]));
            (ts * bytes / ((g[0] + g[1]) / 2.0 * 1e9), hi <= lo * STEADY)
        })
        .collect()
}

fn stats(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = if x.len() > 1 {
        x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Deterministic token ids spread over the vocabulary, as llama-bench feeds random ones.
fn tokens(n: usize, n_vocab: usize, seed: usize) -> Vec<u32> {
    (0..n)
        .map(|i| {
            (i.wrapping_mul(7919)
                .wrapping_add(seed.wrapping_mul(104_729))
                .wrapping_add(13)
                % n_vocab) as u32
        })
        .collect()
}

/// Tokens/s of one test: `n` tokens as one batch (pp) or one at a time
/// (tg), after `depth` tokens prefilled untimed (in batches of 512); and
/// the routed experts' weight bytes the timed tokens read (a mixture of
/// experts' share of the roofline; 0 for a dense model).
fn run_test(
    model: &dyn Model,
    depth: usize,
    n: usize,
    batch: bool,
    rep: usize,
    kv_dtype: KvDtype,
) -> Result<(f64, u64)> {
    let mut kv = model.new_cache(depth + n + 1, kv_dtype);
    let n_vocab = model.config().n_vocab;
    for chunk in tokens(depth, n_vocab, rep.wrapping_add(1 << 20)).chunks(512) {
        model.forward(chunk, &mut ForwardCtx::new(&mut kv, Logits::Last))?;
    }
    let toks = tokens(n, n_vocab, rep);
    let step = if batch { n } else { 1 };
    let read = model.expert_bytes_read();
    let t = Instant::now();
    for chunk in toks.chunks(step) {
        model.forward(chunk, &mut ForwardCtx::new(&mut kv, Logits::Last))?;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((n as f64 / secs, model.expert_bytes_read() - read))
}

pub fn main(a: Args) -> Result<()> {
    let threads = super::set_threads(a.threads)?;
    if a.print_membw {
        println!("{:.2}", measure_membw());
        return Ok(());
    }
    // Speculation checks drafts in the batch-invariant orders: every test
    // then runs in them, the plain ones it is held against too.
    a.spec.set_numerics();
    let mut l = super::load(&a.model)?;
    l.set_kv_type(a.kv_type)?;
    let model = l.model.as_ref();
    // Every test holds the depth and its own tokens in one context.
    let need = a.n_depth + a.n_prompt.max(a.n_gen) + 1;
    let n_ctx = model.config().n_ctx_train;
    anyhow::ensure!(
        need <= n_ctx,
        "-d {} with -p {} / -n {} needs {need} positions; {} holds {n_ctx} (its training context)",
        a.n_depth,
        a.n_prompt,
        a.n_gen,
        a.model
    );
    // Decode reads the weights once per token, and the KV cache up to its
    // position: at depth d, tg's n tokens read d + (n − 1)/2 positions on
    // average.
    let kv_per_pos = {
        let probe = model.new_cache(64, l.kv_dtype);
        probe.bytes() as f64 / 64.0
    };
    let kv_read = kv_per_pos * (a.n_depth as f64 + a.n_gen.saturating_sub(1) as f64 / 2.0);
    // A mixture of experts' routed bytes are those its tokens' experts
    // actually had (counted over tg's repetitions below); until then, the
    // average expert's.
    let mut bytes = model.bytes_per_token() + kv_read as u64;
    let weights = model.decode_weights();
    // The roofline before one tg repetition: fixed, or streamed now.
    let roof_bw = || a.membw.unwrap_or_else(|| stream_gbps(&weights, 3));
    let kernels = suanli_kernels::dispatch::kernels();
    let mut results = Vec::new();
    for (kind, n) in [("pp", a.n_prompt), ("tg", a.n_gen)] {
        if n == 0 {
            continue;
        }
        // One untimed warm-up run, as llama-bench does.
        let run = |r| run_test(model, a.n_depth, n, kind == "pp", r, l.kv_dtype);
        run(usize::MAX).with_context(|| format!("{kind}{n} at depth {}", a.n_depth))?;
        let mut samples = Vec::new();
        let mut bw = Vec::new();
        let mut routed = 0u64;
        for r in 0..a.reps.max(1) {
            if kind == "tg" && r == 0 {
                bw.push(roof_bw());
            }
            let (ts, read) = run(r)?;
            samples.push(ts);
            routed += read;
            if kind == "tg" {
                bw.push(roof_bw());
            }
        }
        if kind == "tg" && routed > 0 {
            let per_token = routed / (n * samples.len()) as u64;
            bytes = bytes - model.active_expert_bytes() + per_token;
        }
        let (mean, sd) = stats(&samples);
        // Each repetition against the mean of the readings around it.
        let roofline = (kind == "tg").then(|| {
            let f = fractions(&samples, &bw, bytes as f64);
            let steady: Vec<f64> = f.iter().filter(|x| x.1).map(|x| x.0).collect();
            let all: Vec<f64> = f.iter().map(|x| x.0).collect();
            let used = if steady.is_empty() { &all } else { &steady };
            Roofline {
                fraction: stats(used).0,
                steady: used.len(),
                gbps: bw,
            }
        });
        results.push((kind, n, mean, sd, samples, roofline));
    }
    let draft = a.spec.load_draft(&l)?;
    let spec = match a.spec.on() && a.n_gen > 0 {
        true => Some(spec_test(&a, &l, draft.as_ref())?),
        false => None,
    };
    let file = l
        .path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if a.json {
        let arr: Vec<serde_json::Value> = results
            .iter()
            .map(|(kind, n, mean, sd, samples, roof)| {
                serde_json::json!({
                    "model_filename": file,
                    "model_type": model.config().arch,
                    "n_threads": threads,
                    "n_prompt": if *kind == "pp" { *n } else { 0 },
                    "n_gen": if *kind == "tg" { *n } else { 0 },
                    "n_depth": a.n_depth,
                    "avg_ts": mean,
                    "stddev_ts": sd,
                    "samples_ts": samples,
                    "bytes_per_token": bytes,
                    "membw_gbps": roof.as_ref().map(|r| stats(&r.gbps).0),
                    "membw_samples_gbps": roof.as_ref().map(|r| &r.gbps),
                    "roofline_fraction": roof.as_ref().map(|r| r.fraction),
                    "roofline_reps": roof.as_ref().map(|r| r.steady),
                    "kernels": kernels,
                })
            })
            .collect();
        let mut arr = arr;
        if let Some(s) = &spec {
            let (plain, sp) = (stats(&s.plain).0, stats(&s.spec));
            arr.push(serde_json::json!({
                "model_filename": file,
                "model_type": model.config().arch,
                "n_threads": threads,
                "n_prompt": 0,
                "n_gen": a.n_gen,
                "n_depth": 0,
                "speculative": s.name,
                "avg_ts": sp.0,
                "stddev_ts": sp.1,
                "samples_ts": s.spec,
                "plain_avg_ts": plain,
                "plain_samples_ts": s.plain,
                "speedup": sp.0 / plain,
                "drafted": s.stats.drafted,
                "accepted": s.stats.accepted,
                "acceptance_rate": s.stats.acceptance_rate(),
                "tokens_per_verifying_pass": s.stats.mean_accepted_length(),
                "kernels": kernels,
            }));
        }
        println!("{}", serde_json::to_string_pretty(&arr)?);
    } else {
        println!(
            "model: {file} ({}), threads: {threads}, kernels: {kernels}",
            model.config().arch
        );
        println!(
            "KV cache per token: {:.1} KiB ({:?})",
            kv_per_pos / 1024.0,
            l.kv_dtype
        );
        println!(
            "weights read per token: {:.1} MiB{}{}",
            (bytes as f64 - kv_read) / (1 << 20) as f64,
            match model.active_expert_bytes() {
                0 => String::new(),
                _ => " (the routed experts' as tg read them)".into(),
            },
            match a.n_depth {
                0 => String::new(),
                _ => format!(
                    " (+ {:.1} MiB of KV cache at tg's mean position)",
                    kv_read / (1 << 20) as f64
                ),
            }
        );
        println!("{:>8} {:>16} {:>10}", "test", "t/s", "roofline");
        for (kind, n, mean, sd, _, roof) in &results {
            let r = roof
                .as_ref()
                .map(|r| match r.steady == r.gbps.len() - 1 {
                    true => format!("{:.1}%", r.fraction * 100.0),
                    false => format!(
                        "{:.1}% ({} of {} reps)",
                        r.fraction * 100.0,
                        r.steady,
                        r.gbps.len() - 1
                    ),
                })
                .unwrap_or_default();
            let depth = match a.n_depth {
                0 => String::new(),
                d => format!(" @ d{d}"),
            };
            println!(
                "{:>8} {:>16} {:>10}",
                format!("{kind}{n}{depth}"),
                format!("{mean:.2} ± {sd:.2}"),
                r
            );
            if let Some(r) = roof {
                let g: Vec<String> = r.gbps.iter().map(|g| format!("{g:.1}")).collect();
                println!(
                    "{:>8} memory bandwidth before and after each repetition: {} GB/s",
                    "",
                    g.join(", ")
                );
            }
        }
        if let Some(s) = &spec {
            let ((m, sd), plain) = (stats(&s.spec), stats(&s.plain).0);
            println!(
                "{:>8} {:>16} {:>10}",
                format!("tg{}+{}", a.n_gen, s.name),
                format!("{m:.2} ± {sd:.2}"),
                format!("{:.2}x", m / plain)
            );
            println!(
                "{:>8} plain greedy {plain:.2} t/s on the same prompt; {} of {} drafts accepted ({:.1}%), \
                 {:.2} tokens per verifying pass",
                "",
                s.stats.accepted,
                s.stats.drafted,
                100.0 * s.stats.acceptance_rate(),
                s.stats.mean_accepted_length()
            );
        }
    }
    Ok(())
}

/// `-n` tokens decoded greedily from the speculative test's prompt, plain
/// then speculative, each repetition (after one untimed warm-up of each).
fn spec_test(a: &Args, l: &super::Loaded, draft: Option<&super::Loaded>) -> Result<SpecResult> {
    use suanli_engine::{generate, generate_speculative, Sampler, SamplingParams, SpecStats};
    let text = match &a.spec_prompt {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => SPEC_PROMPT.to_string(),
    };
    let tmpl = super::chat_template(l)?;
    let prompt = super::chat_tokens(
        l,
        &tmpl,
        &[suanli_tokenizer::ChatMessage::new("user", &text)],
    )?;
    let model = l.model.as_ref();
    let n_ctx = prompt.len() + a.n_gen + a.spec.draft_max + 2;
    anyhow::ensure!(
        n_ctx <= model.config().n_ctx_train,
        "the speculative test's prompt ({} tokens) and -n {} need {n_ctx} positions; the model holds {}",
        prompt.len(),
        a.n_gen,
        model.config().n_ctx_train
    );
    // Every run decodes all `-n` tokens: an end of generation is not one.
    let never = |_| false;
    let mut total = SpecStats::default();
    let (mut plain, mut spec) = (Vec::new(), Vec::new());
    for r in 0..=a.reps.max(1) {
        let mut kv = model.new_cache(n_ctx, l.kv_dtype);
        let mut s = Sampler::new(SamplingParams::greedy());
        let g = generate(
            model,
            &mut kv,
            &prompt,
            &mut s,
            a.n_gen,
            &never,
            &mut |_| true,
        )?;
        let mut kv = model.new_cache(n_ctx, l.kv_dtype);
        let mut s = Sampler::new(SamplingParams::greedy());
        let (mut drafter, mut control) = a.spec.drafter(draft, n_ctx);
        let (gs, st) = generate_speculative(
            model,
            &mut kv,
            &[],
            &prompt,
            &mut s,
            a.n_gen,
            &never,
            &mut |_| true,
            drafter.as_mut(),
            &mut control,
        )?;
        // The first round is the warm-up.
        if r > 0 {
            plain.push(g.gen_tps());
            spec.push(gs.gen_tps());
            total.drafted += st.drafted;
            total.accepted += st.accepted;
            total.verify_passes += st.verify_passes;
            total.passes += st.passes;
            total.draft_time += st.draft_time;
        }
    }
    Ok(SpecResult {
        name: a.spec.name(draft),
        plain,
        spec,
        stats: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repetition_across_a_change_of_state_is_marked() {
        // 1 GB per token: 30 t/s against 33 and 34 GB/s is 30/33.5 of the
        // roofline; against 33 and 57 the readings disagree.
        let f = fractions(&[30.0, 30.0], &[33.0, 34.0, 57.0], 1e9);
        assert!((f[0].0 - 30.0 / 33.5).abs() < 1e-12 && f[0].1);
        assert!((f[1].0 - 30.0 / 45.5).abs() < 1e-12 && !f[1].1);
    }
}
