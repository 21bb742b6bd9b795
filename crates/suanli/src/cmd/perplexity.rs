//! `suanli perplexity`: perplexity of a model on a text, and its KL
//! divergence from a base model, with llama-perplexity's definitions and
//! output (the math is in [`suanli::perplexity`]).
//!
//! Plain: the running `[k]ppl` after each chunk, then `Final estimate: PPL
//! = X +/- Y`. `--save-logits FILE` also writes the scored tokens'
//! log-probabilities (llama.cpp's `--kl-divergence-base` file: either
//! tool reads the other's); `--kl-divergence FILE` runs another model (a
//! quantization of the same one) over the same tokens and prints
//! llama-perplexity's table and statistics against that base.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use suanli::perplexity::logits_file::{Reader, Writer};
use suanli::perplexity::rows::{kld_rows, nll_quantized_rows, nll_rows, row_len};
use suanli::perplexity::stats::KldLine;
use suanli::perplexity::{Eval, KldStats, KldSummary, Layout, PplStats};
use suanli_models::UBATCH;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a model directory, or a model name.
    #[arg(short, long)]
    model: String,
    /// The text to score (UTF-8; one trailing newline is dropped, as
    /// llama.cpp's -f does).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Tokens per chunk [default: 512; with --kl-divergence, the base
    /// file's].
    #[arg(short = 'c', long = "ctx-size")]
    ctx: Option<usize>,
    /// Score only the first N chunks.
    #[arg(long)]
    chunks: Option<usize>,
    /// Tokens per forward pass, as llama-perplexity's -b: BATCH / CTX whole
    /// chunks share a pass, a longer chunk goes through in pieces of BATCH.
    #[arg(short = 'b', long = "batch-size", default_value_t = UBATCH)]
    batch: usize,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// KV cache precision: f16 (default for GGUF), q8_0, f32.
    #[arg(long = "kv-type")]
    kv_type: Option<suanli_models::KvDtype>,
    /// Print one JSON object with the results instead of llama-perplexity's
    /// text.
    #[arg(long)]
    json: bool,
    /// Also write the scored tokens' log-probabilities to FILE, the base for
    /// --kl-divergence (llama.cpp's --kl-divergence-base format).
    #[arg(long, value_name = "FILE", conflicts_with = "kl_divergence")]
    save_logits: Option<PathBuf>,
    /// Compare with the base model whose log-probabilities FILE holds (made
    /// by --save-logits on the same text): KL divergence, top-token
    /// agreement, perplexity ratio and difference.
    #[arg(long, value_name = "FILE")]
    kl_divergence: Option<PathBuf>,
    /// Also write every scored token's log-probability to FILE: one JSON
    /// line a chunk, `{"chunk", "tokens" (the chunk as run), "first" (the
    /// index in it of the first token scored), "logprobs" (of
    /// `tokens[first..]`, each given the tokens before it)}` — to check other tools'
    /// log-likelihoods (the server's echo, lm-evaluation-harness) against.
    #[arg(long, value_name = "FILE", conflicts_with = "kl_divergence")]
    token_logprobs: Option<PathBuf>,
}

/// The text of `path` as llama.cpp's `-f` reads it: all of it, less one
/// trailing newline.
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

/// The base file's tokens must be the text's under this model's tokenizer:
/// otherwise the two models were not scored on the same thing.
fn check_base(
    base: &Reader,
    tokens: &[u32],
    n_vocab: usize,
    model: &str,
    text: &Path,
) -> Result<()> {
    let file = base.path.display();
    ensure!(
        base.n_vocab == n_vocab,
        "{file}: log-probabilities over a vocabulary of {} tokens, but {model} has {n_vocab}: \
         the base was another model (a different tokenizer)",
        base.n_vocab
    );
    let n = base.tokens.len();
    if let Some(i) = (0..n.min(tokens.len())).find(|&i| base.tokens[i] != tokens[i]) {
        bail!(
            "{file}: token {i} of the text is {} there but {} with {model}'s tokenizer on {}: \
             the base was made with a different tokenizer (or from another text)",
            base.tokens[i],
            tokens[i],
            text.display()
        );
    }
    ensure!(
        tokens.len() >= n,
        "{file} holds {n} tokens of text, but {} tokenizes to only {} with {model}: \
         the base was made from another text",
        text.display(),
        tokens.len()
    );
    Ok(())
}

/// Where the running values go: straight to stdout, or — when stdout is
/// the terminal the progress bar is drawn on — into the bar's message and
/// out at the end, so the bar does not overwrite them.
struct Out {
    pb: ProgressBar,
    held: Option<String>,
    json: bool,
    err: Option<std::io::Error>,
}

impl Out {
    fn new(total: u64, json: bool) -> Out {
        let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template(
                "perplexity [{bar:30}] {pos}/{len} tokens, {per_sec}, ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let held = (std::io::stdout().is_terminal() && !pb.is_hidden()).then(String::new);
        Out {
            pb,
            held,
            json,
            err: None,
        }
    }

    /// `text` to stdout now, or held (with `msg` shown on the bar).
    fn emit(&mut self, text: &str, msg: &str) {
        if self.json {
            self.pb.set_message(msg.to_string());
            return;
        }
        match &mut self.held {
            Some(h) => {
                h.push_str(text);
                self.pb.set_message(msg.to_string());
            }
            None => {
                let mut o = std::io::stdout().lock();
                if let Err(e) = o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
                    self.err.get_or_insert(e);
                }
            }
        }
    }

    /// Clears the bar and prints what was held.
    fn finish(mut self) -> Result<()> {
        self.pb.finish_and_clear();
        if let Some(h) = self.held.take() {
            let mut o = std::io::stdout().lock();
            o.write_all(h.as_bytes())?;
            o.flush()?;
        }
        match self.err {
            Some(e) => Err(e).context("writing to stdout"),
            None => Ok(()),
        }
    }
}

fn kld_line(k: usize, l: &KldLine) -> String {
    format!(
        "{k:4}    {:9.4} ± {:9.4}    {:10.5} ± {:10.5}    {:10.5} ± {:10.5}    {:6.3} ± {:6.3} %    {:6.3} ± {:6.3} %\n",
        l.ppl.value,
        l.ppl.uncertainty,
        l.ln_ppl_ratio.value,
        l.ln_ppl_ratio.uncertainty,
        l.kld.value,
        l.kld.uncertainty,
        100.0 * l.p_diff_rms.value,
        100.0 * l.p_diff_rms.uncertainty,
        100.0 * l.same_top.value,
        100.0 * l.same_top.uncertainty,
    )
}

const KLD_HEADER: &str = "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p\n";

/// llama-perplexity's closing statistics of a KL-divergence run.
fn kld_report(s: &KldSummary) -> String {
    let mut o = String::new();
    let e =
        |x: &suanli::perplexity::stats::Est| format!("{:10.6} ± {:10.6}", x.value, x.uncertainty);
    let _ = writeln!(o, "====== Perplexity statistics ======");
    let _ = writeln!(o, "Mean PPL(Q)                   : {}", e(&s.ppl));
    let _ = writeln!(o, "Mean PPL(base)                : {}", e(&s.ppl_base));
    let _ = writeln!(
        o,
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * s.ln_ppl_correlation
    );
    let _ = writeln!(o, "Mean ln(PPL(Q)/PPL(base))     : {}", e(&s.ln_ppl_ratio));
    let _ = writeln!(o, "Mean PPL(Q)/PPL(base)         : {}", e(&s.ppl_ratio));
    let _ = writeln!(o, "Mean PPL(Q)-PPL(base)         : {}", e(&s.ppl_diff));
    let _ = writeln!(o, "\n====== KL divergence statistics ======");
    let _ = writeln!(o, "Mean    KLD: {}", e(&s.kld));
    for (name, v) in &s.kld_spread.points {
        let _ = writeln!(o, "{name:<8}KLD: {v:10.6}");
    }
    let _ = writeln!(o, "\n====== Token probability statistics ======");
    let _ = writeln!(
        o,
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * s.p_diff.value,
        100.0 * s.p_diff.uncertainty
    );
    for (name, v) in &s.p_diff_spread.points {
        let _ = writeln!(o, "{name:<8}Δp: {:6.3}%", 100.0 * v);
    }
    let _ = writeln!(
        o,
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * s.p_diff_rms.value,
        100.0 * s.p_diff_rms.uncertainty
    );
    let _ = writeln!(
        o,
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * s.same_top.value,
        100.0 * s.same_top.uncertainty
    );
    o
}

pub fn main(a: Args) -> Result<()> {
    let threads = super::set_threads(a.threads)?;
    // A base file is checked before the model loads: a wrong one fails at once.
    let mut base = a.kl_divergence.as_deref().map(Reader::open).transpose()?;
    if let (Some(b), Some(c)) = (&base, a.ctx) {
        ensure!(
            c == b.n_ctx,
            "-c {c}: {} was made with a context of {}; give that or leave -c out",
            b.path.display(),
            b.n_ctx
        );
    }
    ensure!(a.chunks != Some(0), "--chunks 0 scores nothing");
    let text = read_text(&a.file)?;
    // Half of every chunk goes through the output matrix: in its prefill
    // layout, as the layers' matrices.
    suanli_models::loader::set_output_prefill(true);
    let mut l = super::load(&a.model)?;
    l.set_kv_type(a.kv_type)?;
    // Every pass returns its logits in a fresh buffer of hundreds of MB
    // (256 rows of a 152k vocabulary: 155 MB), which glibc would map anew
    // each time — the kernel zeroing every page, 7% of Qwen2.5-0.5B's run —
    // and unmap when freed. Served from the heap instead, the buffer freed
    // by one pass is the next one's.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
    let model = l.model.as_ref();
    let n_vocab = model.config().n_vocab;
    let n_ctx = base.as_ref().map_or(a.ctx.unwrap_or(512), |b| b.n_ctx);
    // The tokens the chunks take (two chunks' at least, to tell a short
    // text); all of the text's without --chunks. Where the tokenizer can,
    // only that much of the text is tokenized — the same tokens, as the
    // whole text's first ones.
    let need = match (&base, a.chunks) {
        (Some(b), _) => b.tokens.len(),
        (None, Some(n)) => n.max(2).saturating_mul(n_ctx),
        (None, None) => usize::MAX,
    };
    let t_tok = Instant::now();
    let tokens = l
        .tokenizer
        .encode_prefix(&text, true, false, need)
        .with_context(|| format!("tokenizing {}", a.file.display()))?;
    let tokenize_s = t_tok.elapsed().as_secs_f64();
    let layout = match &base {
        Some(b) => {
            check_base(b, &tokens, n_vocab, &a.model, &a.file)?;
            Layout {
                n_ctx: b.n_ctx,
                n_chunk: a.chunks.map_or(b.n_chunk, |n| n.min(b.n_chunk)),
                first: b.n_ctx / 2,
            }
        }
        None => Layout::new(tokens.len(), n_ctx, a.chunks)
            .with_context(|| format!("{}", a.file.display()))?,
    };
    let n_ctx_train = model.config().n_ctx_train;
    if layout.n_ctx > n_ctx_train {
        eprintln!(
            "warning: a context of {} is past the {n_ctx_train} {} was trained on",
            layout.n_ctx, a.model
        );
    }
    let bos = l.tokenizer.bos.filter(|_| l.tokenizer.add_bos);
    let tokenized = match tokens.len() >= need {
        true => format!(
            "the text tokenized as far as the chunks need ({} tokens, ",
            tokens.len()
        ),
        false => format!("{} tokens (", tokens.len()),
    };
    eprintln!(
        "perplexity: {tokenized}{tokenize_s:.2} s to tokenize); {} chunks of {}, the last {} of each scored; \
         {} tokens a pass, {threads} threads",
        layout.n_chunk,
        layout.n_ctx,
        layout.scored(),
        a.batch
    );
    let mut writer = match &a.save_logits {
        Some(p) => {
            let bytes = layout.n_chunk * layout.scored() * row_len(n_vocab) * 2;
            eprintln!(
                "perplexity: writing {:.1} MB of log-probabilities to {}",
                bytes as f64 / 1e6,
                p.display()
            );
            Some(Writer::create(p, &layout, n_vocab, &tokens)?)
        }
        None => None,
    };
    let mut lp_out = match &a.token_logprobs {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let eval = Eval {
        model,
        kv_dtype: l.kv_dtype,
        pass_tokens: a.batch,
        bos,
    };
    let mut out = Out::new((layout.n_chunk * layout.n_ctx) as u64, a.json);
    let (mut ppl, mut kld) = (PplStats::default(), KldStats::default());
    let mut running = Vec::new();
    let (mut quantized, mut base_rows) = (Vec::new(), Vec::new());
    if base.is_some() {
        out.emit(KLD_HEADER, "");
    }
    let t_eval = Instant::now();
    let pb = out.pb.clone();
    eval.run(
        &tokens,
        &layout,
        &mut |n| pb.inc(n as u64),
        &mut |k, rows| {
            let targets = layout.targets(&tokens, k);
            if let Some(b) = base.as_mut() {
                b.read_chunk(&mut base_rows)?;
                for r in kld_rows(rows, n_vocab, targets, &base_rows) {
                    kld.push(&r);
                }
                let line = kld.line();
                out.emit(
                    &kld_line(k + 1, &line),
                    &format!("KLD {:.5}", line.kld.value),
                );
                running.push(line.kld.value);
                return Ok(());
            }
            let nll = match writer.as_mut() {
                Some(w) => {
                    quantized.resize(targets.len() * row_len(n_vocab), 0);
                    let nll = nll_quantized_rows(rows, n_vocab, targets, &mut quantized);
                    w.write_chunk(&quantized)?;
                    nll
                }
                None => nll_rows(rows, n_vocab, targets),
            };
            if let Some(w) = lp_out.as_mut() {
                let mut chunk = tokens[k * layout.n_ctx..(k + 1) * layout.n_ctx].to_vec();
                if let Some(b) = bos {
                    chunk[0] = b;
                }
                let logprobs: Vec<f64> = nll.iter().map(|&v| -v).collect();
                let line = serde_json::json!({
                    "chunk": k,
                    "tokens": chunk,
                    "first": layout.first + 1,
                    "logprobs": logprobs,
                });
                writeln!(w, "{line}").map_err(|err| suanli::perplexity::PerplexityError::Io {
                    path: a.token_logprobs.clone().unwrap_or_default(),
                    err,
                })?;
            }
            nll.into_iter().for_each(|v| ppl.push(v));
            let p = format!("[{}]{:.4},", k + 1, ppl.ppl());
            out.emit(&p, &p);
            running.push(ppl.ppl());
            Ok(())
        },
    )
    .with_context(|| format!("perplexity of {} on {}", a.model, a.file.display()))?;
    let secs = t_eval.elapsed().as_secs_f64();
    let n_run = layout.n_chunk * layout.n_ctx;
    out.finish()?;
    eprintln!(
        "perplexity: {} chunks, {n_run} tokens in {secs:.2} s ({:.1} tokens/s)",
        layout.n_chunk,
        n_run as f64 / secs
    );
    if let (Some(mut w), Some(p)) = (lp_out, &a.token_logprobs) {
        w.flush()
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!(
            "wrote the scored tokens' log-probabilities to {}",
            p.display()
        );
    }
    if let (Some(w), Some(p)) = (writer, &a.save_logits) {
        w.finish()?;
        eprintln!(
            "saved the log-probabilities of {} tokens to {}",
            ppl.count,
            p.display()
        );
    }
    let file = l
        .path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut o = std::io::stdout().lock();
    if base.is_some() {
        let summary = kld.summary();
        if a.json {
            let j = serde_json::json!({
                "model": file,
                "text": a.file.display().to_string(),
                "base": a.kl_divergence.as_ref().map(|p| p.display().to_string()),
                "n_ctx": layout.n_ctx,
                "n_chunk": layout.n_chunk,
                "scored_tokens": kld.count(),
                "chunk_kld": running,
                "kld": summary.as_ref().map(KldSummary::json),
                "seconds": secs,
                "tokens_per_second": n_run as f64 / secs,
                "threads": threads,
            });
            writeln!(o, "{}", serde_json::to_string_pretty(&j)?)?;
        } else {
            writeln!(o)?;
            match summary {
                Some(s) => write!(o, "{}", kld_report(&s))?,
                None => eprintln!(
                    "{} tokens scored: too few for statistics (llama-perplexity gives none under 100)",
                    kld.count()
                ),
            }
        }
        return Ok(());
    }
    let (value, unc) = ppl.estimate();
    if a.json {
        let j = serde_json::json!({
            "model": file,
            "text": a.file.display().to_string(),
            "n_ctx": layout.n_ctx,
            "n_chunk": layout.n_chunk,
            "text_tokens": tokens.len(),
            "scored_tokens": ppl.count,
            "ppl": value,
            "ppl_uncertainty": unc,
            "chunk_ppl": running,
            "seconds": secs,
            "tokens_per_second": n_run as f64 / secs,
            "tokenize_seconds": tokenize_s,
            "threads": threads,
            "saved_logits": a.save_logits.as_ref().map(|p| p.display().to_string()),
        });
        writeln!(o, "{}", serde_json::to_string_pretty(&j)?)?;
    } else {
        writeln!(o)?;
        match unc {
            Some(u) => writeln!(o, "Final estimate: PPL = {value:.4} +/- {u:.5}")?,
            None => {
                writeln!(o, "Final estimate: PPL = {value:.4}")?;
                eprintln!(
                    "unexpected non-positive variance of the log-likelihoods: no uncertainty"
                );
            }
        }
    }
    Ok(())
}
