//! The serving engine: one thread that owns the model's KV pool and the
//! [`Scheduler`], and runs a batched forward pass per step over every
//! sequence in flight. Requests come in through [`Engine::submit`]; each
//! gets a channel of [`Event`]s (tokens with their text, logprobs, the end
//! and its usage). A dropped receiver (a client that went away) cancels the
//! sequence and frees its KV blocks before the next step.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use suanli_models::{Batch, KvDtype, KvPool, Logits, Model, Pages, SeqSpan};
use suanli_tokenizer::{StreamDecoder, Tokenizer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::blocks::{BlockManager, BlockStats};
use crate::constrain::Constraint;
use crate::logprobs::{token_logprob, TokenLogprob};
use crate::sampler::{Sampler, SamplingParams};
use crate::scheduler::{AddError, Plan, SchedConfig, Scheduler, SeqId};
use crate::speculative::{verify_row, Adaptive, Drafter, NgramDrafter};
use crate::stop::StopScanner;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub sched: SchedConfig,
    /// Positions per KV block (a power of two).
    pub block_size: usize,
    /// Blocks in the pool.
    pub n_blocks: usize,
    pub kv_dtype: KvDtype,
    pub prefix_caching: bool,
    /// Speculative decoding by prompt lookup for the requests that allow it
    /// ([`Request::speculate`]), while few sequences run.
    pub spec: Option<SpecConfig>,
}

/// When and how far the engine drafts (prompt lookup).
#[derive(Debug, Clone, Copy)]
pub struct SpecConfig {
    /// Most tokens drafted a step (the length adapts below it).
    pub draft_max: usize,
    /// Draft only while at most this many sequences run and none waits:
    /// a batch that small leaves the memory bandwidth idle for the check.
    pub max_running: usize,
}

/// One generation request, already tokenized.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    /// Tokens to generate at most (the context bounds it too).
    pub max_tokens: usize,
    /// Generation stops before any of these strings; they are not returned.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Logprobs of each generated token with this many alternatives.
    pub logprobs: Option<usize>,
    /// Logprobs of each prompt token (after the first) with this many
    /// alternatives; the prompt is then computed in full (no prefix reuse).
    pub prompt_logprobs: Option<usize>,
    /// A grammar the output must match: its mask is applied before every
    /// draw, and generation stops once it is complete.
    pub constraint: Option<Constraint>,
    /// May be decoded speculatively (when the engine drafts): the output
    /// distribution is kept. Grammars and logprobs turn it off.
    pub speculate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` or the context reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose K/V came from the prefix cache.
    pub cached_tokens: usize,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Logprobs of prompt tokens `1..` (the first token has none).
    PromptLogprobs(Vec<TokenLogprob>),
    /// A generated token; `text` is what became printable with it (stop
    /// strings and incomplete characters are held back).
    Token {
        token: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    /// Text released at the end (held-back characters).
    Text(String),
    Done {
        finish: FinishReason,
        usage: Usage,
    },
    Error(String),
}

/// What the engine is doing, for metrics and health.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    pub waiting: usize,
    pub running: usize,
    pub blocks: BlockStats,
    pub block_size: usize,
    pub prefix_hit_tokens: u64,
    pub preemptions: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub steps: u64,
    /// Speculative decoding: tokens drafted, drafted tokens kept, and the
    /// passes that checked a draft.
    pub spec_drafted: u64,
    pub spec_accepted: u64,
    pub spec_checks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Rejected(#[from] AddError),
    #[error("a token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("the engine has stopped")]
    Stopped,
}

enum Msg {
    Add(SeqId, Box<Request>, UnboundedSender<Event>),
    /// End every sequence with this error.
    AbortAll(String),
    Shutdown,
}

struct Shared {
    stats: Mutex<EngineStats>,
    /// Submitted requests not yet running (bounded by max_waiting).
    queued: AtomicUsize,
}

pub struct Engine {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    /// Positions one sequence may fill.
    pub max_seq_len: usize,
    pub max_waiting: usize,
    n_vocab: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    pub fn start(model: Arc<dyn Model>, tokenizer: Arc<Tokenizer>, cfg: EngineConfig) -> Engine {
        let pool = model.new_pool(cfg.n_blocks, cfg.block_size, cfg.kv_dtype);
        let blocks = BlockManager::new(cfg.n_blocks, cfg.block_size, cfg.prefix_caching);
        let sched = Scheduler::new(
            SchedConfig {
                max_waiting: usize::MAX,
                ..cfg.sched
            },
            blocks,
        );
        let max_seq_len = sched.cfg.max_seq_len.min(model.config().n_ctx_train.max(1));
        let shared = Arc::new(Shared {
            stats: Mutex::new(EngineStats {
                block_size: cfg.block_size,
                blocks: sched.block_stats(),
                ..Default::default()
            }),
            queued: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let n_vocab = model.config().n_vocab;
        let mut worker = Worker {
            model,
            tok: tokenizer,
            pool,
            sched,
            active: HashMap::new(),
            shared: shared.clone(),
            max_seq_len,
            spec: cfg.spec,
            stats: EngineStats {
                block_size: cfg.block_size,
                ..Default::default()
            },
        };
        let thread = std::thread::Builder::new()
            .name("suanli-engine".into())
            .spawn(move || worker.run(rx))
            .ok();
        Engine {
            tx,
            shared,
            next_id: AtomicU64::new(1),
            max_seq_len,
            max_waiting: cfg.sched.max_waiting,
            n_vocab,
            thread,
        }
    }

    /// Whether a prompt of `n` tokens fits the context.
    pub fn check_prompt(&self, n: usize) -> Result<(), AddError> {
        if n == 0 {
            return Err(AddError::Empty);
        }
        if n >= self.max_seq_len {
            return Err(AddError::TooLong {
                prompt: n,
                ctx: self.max_seq_len,
                over: n + 1 - self.max_seq_len,
            });
        }
        Ok(())
    }

    /// Queue a request; its events arrive on the returned channel. Drop
    /// the receiver to cancel.
    pub fn submit(&self, req: Request) -> Result<UnboundedReceiver<Event>, SubmitError> {
        self.check_prompt(req.prompt.len())?;
        if let Some(&id) = req.prompt.iter().find(|&&t| t as usize >= self.n_vocab) {
            return Err(SubmitError::BadToken {
                id,
                n_vocab: self.n_vocab,
            });
        }
        let q = self.shared.queued.fetch_add(1, Ordering::SeqCst);
        if q >= self.max_waiting {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(AddError::QueueFull(q).into());
        }
        let (etx, erx) = unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Add(id, Box::new(req), etx)).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Stopped);
        }
        Ok(erx)
    }

    /// Logits per position (the model's vocabulary, padding included).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting = s.waiting.max(self.shared.queued.load(Ordering::Relaxed));
        s
    }

    /// End every sequence in flight or queued with a final
    /// [`Event::Error`] saying `why` (a server out of time to drain).
    pub fn abort_all(&self, why: &str) {
        let _ = self.tx.send(Msg::AbortAll(why.to_string()));
    }

    /// Whether the engine thread is alive.
    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per-sequence state beside the scheduler's.
struct Active {
    tx: UnboundedSender<Event>,
    sampler: Sampler,
    req: Request,
    dec: StreamDecoder,
    stop: StopScanner,
    n_gen: usize,
    prompt_lp: Vec<TokenLogprob>,
    admitted: bool,
    constraint: Option<Constraint>,
    /// The draft length's controller, for a sequence decoded speculatively.
    spec: Option<Adaptive>,
}

struct Worker {
    model: Arc<dyn Model>,
    tok: Arc<Tokenizer>,
    pool: KvPool,
    sched: Scheduler,
    active: HashMap<SeqId, Active>,
    shared: Arc<Shared>,
    max_seq_len: usize,
    spec: Option<SpecConfig>,
    stats: EngineStats,
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            // Block while idle; otherwise take what arrived and go on.
            let first = if self.sched.is_idle() {
                match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                }
            } else {
                None
            };
            for m in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                match m {
                    Msg::Add(id, req, tx) => self.add(id, *req, tx),
                    Msg::AbortAll(why) => {
                        let ids: Vec<SeqId> = self.active.keys().copied().collect();
                        for id in ids {
                            if let Some(a) = self.active.get(&id) {
                                let _ = a.tx.send(Event::Error(why.clone()));
                            }
                            self.end(id);
                        }
                    }
                    Msg::Shutdown => return,
                }
            }
            // Cancel sequences whose client went away.
            let gone: Vec<SeqId> = self
                .active
                .iter()
                .filter(|(_, a)| a.tx.is_closed())
                .map(|(&id, _)| id)
                .collect();
            for id in gone {
                self.end(id);
            }
            if !self.sched.is_idle() {
                let plan = self.sched.schedule();
                if plan.work.is_empty() {
                    std::thread::sleep(Duration::from_millis(2));
                } else {
                    self.step(&plan);
                }
            }
            self.publish();
        }
    }

    fn add(&mut self, id: SeqId, mut req: Request, tx: UnboundedSender<Event>) {
        let speculate = self.spec.is_some()
            && req.speculate
            && req.constraint.is_none()
            && req.logprobs.is_none();
        if speculate && req.sampling.penalized() {
            // Penalties read the tokens drawn so far, which a check of
            // several drafted tokens at once would not see in turn.
            eprintln!(
                "request {id}: speculative decoding off (repetition, presence or frequency penalty)"
            );
        }
        let speculate = speculate && !req.sampling.penalized();
        let prompt_logits = req.prompt_logprobs.is_some();
        if let Err(e) = self.sched.add(id, req.prompt.clone(), prompt_logits) {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(Event::Error(e.to_string()));
            return;
        }
        self.active.insert(
            id,
            Active {
                tx,
                sampler: Sampler::new(req.sampling.clone()),
                stop: StopScanner::new(req.stop.clone()),
                dec: StreamDecoder::new(),
                n_gen: 0,
                prompt_lp: Vec::new(),
                admitted: false,
                spec: self
                    .spec
                    .filter(|_| speculate)
                    .map(|c| Adaptive::new(c.draft_max.max(1))),
                constraint: req.constraint.take(),
                req,
            },
        );
        if let Some(a) = self.active.get_mut(&id) {
            a.sampler.accept(&a.req.prompt);
        }
    }

    /// Remove a sequence (finished, failed or cancelled): blocks freed now.
    fn end(&mut self, id: SeqId) {
        if let Some(a) = self.active.remove(&id) {
            if !a.admitted {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.sched.finish(id);
    }

    fn step(&mut self, plan: &Plan) {
        let bs = self.sched.blocks.block_size;
        let mut tokens = Vec::new();
        let mut spans = Vec::with_capacity(plan.work.len());
        for w in &plan.work {
            let Some(s) = self.sched.seq(w.id) else {
                continue;
            };
            tokens.extend_from_slice(&s.tokens[w.start..w.start + w.n]);
            spans.push(SeqSpan {
                n: w.n,
                pos0: w.start,
                pages: Pages::new(&s.blocks, bs),
                logits: w.logits,
            });
            if let Some(a) = self.active.get_mut(&w.id) {
                if !a.admitted {
                    a.admitted = true;
                    self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        // The next masks of constrained sequences whose logits come out of
        // this pass are computed beside it, on a helper thread.
        let mut masks: Vec<(SeqId, Constraint)> = Vec::new();
        for w in plan.work.iter().filter(|w| w.logits != Logits::None) {
            if let Some(a) = self.active.get_mut(&w.id) {
                if a.constraint.as_ref().is_some_and(Constraint::needs_mask) {
                    masks.extend(a.constraint.take().map(|c| (w.id, c)));
                }
            }
        }
        let model = self.model.clone();
        let pool = &mut self.pool;
        let t0 = Instant::now();
        let mut secs = 0.0;
        let result = std::thread::scope(|scope| {
            let helper = (!masks.is_empty()).then(|| {
                scope.spawn(|| {
                    for (_, c) in masks.iter_mut() {
                        c.precompute();
                    }
                })
            });
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut batch = Batch::new(pool, &spans, None)?;
                model.forward_batch(&tokens, &mut batch)
            }));
            secs = t0.elapsed().as_secs_f64();
            // A panic in the helper leaves a mask uncomputed: it is
            // computed (or fails) when the token is drawn.
            let _ = helper.map(|h| h.join());
            r
        });
        for (id, c) in masks {
            if let Some(a) = self.active.get_mut(&id) {
                a.constraint = Some(c);
            }
        }
        drop(spans);
        let logits = match result {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return self.fail(plan, &e.to_string()),
            Err(p) => {
                let why = p
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("panic");
                return self.fail(plan, &format!("internal error in the forward pass: {why}"));
            }
        };
        self.sched.complete(plan);
        self.stats.steps += 1;
        // A decode step of one sequence alone times its passes for the
        // draft length's controller.
        if let [w] = plan.work.as_slice() {
            let decoding = self.sched.seq(w.id).is_some_and(|s| w.start >= s.n_prompt);
            if let (true, Some(c)) = (
                decoding,
                self.active.get_mut(&w.id).and_then(|a| a.spec.as_mut()),
            ) {
                c.pass(w.n, secs);
            }
        }
        let nv = self.model.config().n_vocab;
        let mut at = 0;
        for w in &plan.work {
            let rows = w.logits.rows(w.n);
            let out = &logits[at * nv..(at + rows) * nv];
            at += rows;
            if w.start < self.sched.seq(w.id).map_or(0, |s| s.n_prompt) {
                self.stats.prompt_tokens += w.n as u64;
            }
            self.on_logits(w.id, w.start, w.n, w.logits, out, nv);
        }
    }

    fn fail(&mut self, plan: &Plan, why: &str) {
        for w in &plan.work {
            if let Some(a) = self.active.get(&w.id) {
                let _ = a.tx.send(Event::Error(why.to_string()));
            }
            self.end(w.id);
        }
    }

    /// Logits of sequence `id` for positions `start..start + n` (all of
    /// them, the last, or none).
    fn on_logits(
        &mut self,
        id: SeqId,
        start: usize,
        n: usize,
        mode: Logits,
        out: &[f32],
        nv: usize,
    ) {
        let Some(seq) = self.sched.seq(id) else {
            return;
        };
        let (n_prompt, len) = (seq.n_prompt, seq.tokens.len());
        let Some(a) = self.active.get_mut(&id) else {
            return;
        };
        if mode == Logits::All {
            if let Some(top) = a.req.prompt_logprobs {
                for (r, row) in out.chunks_exact(nv).enumerate() {
                    let p = start + r;
                    if p + 1 < n_prompt && a.prompt_lp.len() < n_prompt - 1 {
                        a.prompt_lp.push(token_logprob(row, seq.tokens[p + 1], top));
                    }
                }
                if start + n >= n_prompt && a.prompt_lp.len() == n_prompt - 1 {
                    let lp = std::mem::take(&mut a.prompt_lp);
                    let _ = a.tx.send(Event::PromptLogprobs(lp));
                }
            }
        }
        if start + n != len || out.is_empty() {
            return;
        }
        if a.n_gen >= a.req.max_tokens {
            // max_tokens = 0: the prompt was only scored.
            return self.finish(id, FinishReason::Length);
        }
        // A draft's tokens, checked against the logits of the positions
        // before them (the target keeps a token where it would have drawn
        // it: `verify_row`), each kept one emitted as any token.
        let d = seq.drafts;
        let drafts = seq.tokens[len - d..].to_vec();
        let rows = &out[out.len() - (d + 1) * nv..];
        let mut kept = 0;
        let mut replaced = None;
        for (i, &t) in drafts.iter().enumerate() {
            let Some(a) = self.active.get_mut(&id) else {
                return;
            };
            let mut row = rows[i * nv..(i + 1) * nv].to_vec();
            match verify_row(&mut a.sampler, &mut row, t) {
                Ok(()) => {
                    kept += 1;
                    if !self.emit(id, t, None, len - d + i + 1) {
                        return;
                    }
                }
                Err(t) => {
                    replaced = Some(t);
                    break;
                }
            }
        }
        if d > 0 {
            self.sched.keep_drafts(id, kept);
            self.stats.spec_drafted += d as u64;
            self.stats.spec_accepted += kept as u64;
            self.stats.spec_checks += 1;
            if let Some(c) = self.active.get_mut(&id).and_then(|a| a.spec.as_mut()) {
                c.drafted(d, kept, 0.0);
            }
        }
        let Some(a) = self.active.get_mut(&id) else {
            return;
        };
        let (tok, logprob) = match replaced {
            Some(t) => (t, None),
            None => {
                let mut row = rows[kept * nv..(kept + 1) * nv].to_vec();
                let logprob = a.req.logprobs.map(|top| (top, row.clone()));
                if let Some(c) = a.constraint.as_mut() {
                    if let Err(e) = c.apply(&mut row) {
                        let _ = a.tx.send(Event::Error(e));
                        return self.end(id);
                    }
                }
                let tok = a.sampler.sample(&mut row);
                (tok, logprob.map(|(top, raw)| token_logprob(&raw, tok, top)))
            }
        };
        if self.emit(id, tok, logprob, len - d + kept + 1) {
            self.sched.append(id, tok);
            self.draft(id);
        }
    }

    /// Emit generated token `tok` of `id` (the sequence then `len` tokens
    /// long): false when the sequence ended with it.
    fn emit(&mut self, id: SeqId, tok: u32, logprob: Option<TokenLogprob>, len: usize) -> bool {
        let Some(a) = self.active.get_mut(&id) else {
            return false;
        };
        // A grammar ends at its end-of-generation token even when EOS is
        // otherwise ignored.
        if self.tok.is_eog(tok) && (!a.req.ignore_eos || a.constraint.is_some()) {
            self.finish(id, FinishReason::Stop);
            return false;
        }
        if let Some(c) = a.constraint.as_mut() {
            if let Err(e) = c.accept(tok) {
                let _ = a.tx.send(Event::Error(e));
                self.end(id);
                return false;
            }
        }
        a.sampler.accept(&[tok]);
        a.n_gen += 1;
        self.stats.generated_tokens += 1;
        let bytes = self.tok.token_bytes(tok, false).unwrap_or_default();
        let piece = a.dec.push(&bytes);
        let (text, stopped) = a.stop.push(&piece);
        let sent = a.tx.send(Event::Token {
            token: tok,
            text,
            logprob,
        });
        if sent.is_err() {
            self.end(id);
            return false;
        }
        if stopped || a.constraint.as_ref().is_some_and(Constraint::is_stopped) {
            self.finish(id, FinishReason::Stop);
            return false;
        }
        if a.n_gen >= a.req.max_tokens || len >= self.max_seq_len {
            self.finish(id, FinishReason::Length);
            return false;
        }
        true
    }

    /// Draft the tokens after `id`'s last (prompt lookup) for the next step
    /// to check, when it decodes speculatively, few sequences run, and the
    /// draft length's controller says drafting pays.
    fn draft(&mut self, id: SeqId) {
        let Some(cfg) = self.spec else {
            return;
        };
        if self.sched.running() > cfg.max_running || self.sched.waiting() > 0 {
            return;
        }
        let (Some(a), Some(seq)) = (self.active.get_mut(&id), self.sched.seq(id)) else {
            return;
        };
        let Some(c) = a.spec.as_mut() else {
            return;
        };
        // Never past what may still be emitted, nor past the context.
        let room =
            (a.req.max_tokens - a.n_gen).min(self.max_seq_len.saturating_sub(seq.tokens.len() + 1));
        let k = c.choose().min(room.saturating_sub(1));
        if k == 0 {
            return;
        }
        let drafts = NgramDrafter::default()
            .draft(&seq.tokens, k)
            .unwrap_or_default();
        if !drafts.is_empty() {
            self.sched.append_drafts(id, &drafts);
        }
    }

    fn finish(&mut self, id: SeqId, finish: FinishReason) {
        if let (Some(a), Some(s)) = (self.active.get_mut(&id), self.sched.seq(id)) {
            if finish != FinishReason::Stop || !a.stop.stopped() {
                let rest = a.dec.finish();
                let (mut text, _) = a.stop.push(&rest);
                text.push_str(&a.stop.flush());
                if !text.is_empty() {
                    let _ = a.tx.send(Event::Text(text));
                }
            }
            let usage = Usage {
                prompt_tokens: s.n_prompt,
                completion_tokens: a.n_gen,
                cached_tokens: s.cached_tokens,
            };
            let _ = a.tx.send(Event::Done { finish, usage });
        }
        self.end(id);
    }

    fn publish(&mut self) {
        let s = EngineStats {
            waiting: self.shared.queued.load(Ordering::Relaxed),
            running: self.sched.running(),
            blocks: self.sched.block_stats(),
            prefix_hit_tokens: self.sched.prefix_hit_tokens,
            preemptions: self.sched.preemptions,
            ..self.stats
        };
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }
}
