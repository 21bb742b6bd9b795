//! `suanli serve`: the OpenAI-compatible server.

use std::sync::Arc;

use anyhow::{Context, Result};
use suanli_engine::scheduler::SchedConfig;
use suanli_engine::{Engine, EngineConfig, SpecConfig};
use suanli_server::{AppState, ServerOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a directory with config.json + safetensors, or a model name.
    #[arg(short, long, default_value = suanli::hub::DEFAULT_MODEL)]
    model: String,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 route.
    #[arg(long = "api-key", env = "SUANLI_API_KEY")]
    api_key: Option<String>,
    /// Sequences decoded together (slots).
    #[arg(long, short = 'P', default_value_t = 8)]
    parallel: usize,
    /// KV cache positions shared by all sequences (one sequence may use up
    /// to the model's training context of them).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 8192)]
    ctx: usize,
    #[arg(short, long)]
    threads: Option<usize>,
    /// The model id clients send and /v1/models lists (default: file name).
    #[arg(long)]
    alias: Option<String>,
    /// Tokens per forward pass: decode tokens plus prefill chunks. Smaller
    /// keeps streams flowing while long prompts come in.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    batch: usize,
    /// Positions per KV block (a power of two); also the prefix-cache grain.
    #[arg(long = "block-size", default_value_t = 16)]
    block_size: usize,
    /// Requests that may wait for a slot before new ones get 503.
    #[arg(long = "max-queue", default_value_t = 256)]
    max_queue: usize,
    /// Turn off reuse of cached prompt prefixes across requests.
    #[arg(long = "no-prefix-cache")]
    no_prefix_cache: bool,
    /// Speculative decoding: `ngram` drafts what followed the context's
    /// last matching n-gram (prompt lookup), checked in the next step's
    /// pass, for requests without penalties, grammars or logprobs.
    #[arg(long, value_parser = ["ngram"])]
    spec: Option<String>,
    /// Most tokens drafted a step (the length adapts below it).
    #[arg(long, default_value_t = 8)]
    draft_max: usize,
    /// Draft only while at most this many sequences run (and none waits):
    /// a batch that small leaves the memory bandwidth idle for the check.
    #[arg(long = "spec-max-running", default_value_t = 1)]
    spec_max_running: usize,
    /// KV cache precision: f16 (default for GGUF), q8_0, f32.
    #[arg(long = "kv-type")]
    kv_type: Option<suanli_models::KvDtype>,
    /// Largest request body, in bytes.
    #[arg(long = "max-body", default_value_t = 8 << 20)]
    max_body: usize,
    /// Connections served at once; one more gets 503 with Retry-After.
    #[arg(long = "max-connections", default_value_t = 256)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers, as a whole.
    #[arg(long = "header-timeout", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a client has to send a request's body, as a whole.
    #[arg(long = "body-timeout", default_value_t = 60)]
    body_timeout: u64,
    /// Seconds a stopping server (SIGTERM, ctrl-c) lets requests in flight
    /// finish before ending them with an error event
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
}

pub fn main(a: Args) -> Result<()> {
    let threads = super::set_threads(a.threads)?;
    anyhow::ensure!(
        a.block_size.is_power_of_two() && a.block_size >= 1,
        "--block-size {} is not a power of two",
        a.block_size
    );
    anyhow::ensure!(a.parallel >= 1, "--parallel must be at least 1");
    // Each request's output must not depend on what it is batched with.
    suanli_kernels::dispatch::set_batch_invariant(true);
    let mut l = super::load(&a.model)?;
    l.set_kv_type(a.kv_type)?;
    let template = super::chat_template(&l)?;
    let model_id = a.alias.clone().unwrap_or_else(|| {
        l.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let n_blocks = a.ctx.div_ceil(a.block_size).max(1);
    let cfg = EngineConfig {
        sched: SchedConfig {
            max_running: a.parallel,
            token_budget: a.batch.max(a.parallel),
            max_waiting: a.max_queue,
            max_seq_len: a.ctx,
        },
        block_size: a.block_size,
        n_blocks,
        kv_dtype: l.kv_dtype,
        prefix_caching: !a.no_prefix_cache,
        spec: a.spec.as_ref().map(|_| SpecConfig {
            draft_max: a.draft_max.max(1),
            max_running: a.spec_max_running,
        }),
    };
    let info = model_info(&l);
    let tok = Arc::new(l.tokenizer);
    let engine = Engine::start(Arc::from(l.model), tok.clone(), cfg);
    let max_len = engine.max_seq_len;
    let state = Arc::new(AppState::new(
        engine,
        tok,
        template,
        ServerOptions {
            api_key: a.api_key.clone(),
            model_id: model_id.clone(),
            max_body_bytes: a.max_body,
            info,
            limits: suanli_server::Limits {
                max_connections: a.max_connections,
                header_deadline: std::time::Duration::from_secs(a.header_timeout.max(1)),
                body_deadline: std::time::Duration::from_secs(a.body_timeout.max(1)),
                drain: std::time::Duration::from_secs(a.drain_timeout),
            },
        },
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", a.host, a.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr().context("listening address")?;
        eprintln!(
            "serving '{model_id}' on http://{local}/v1 — {} slots, {} KV positions \
             ({} per sequence at most), {threads} threads, kernels: {}",
            a.parallel,
            n_blocks * a.block_size,
            max_len,
            suanli_kernels::dispatch::kernels()
        );
        suanli_server::serve(listener, state)
            .await
            .context("serving HTTP")
    })
}

/// What Ollama's `/api/tags` and `/api/show` report of the model: from its
/// config, and for a GGUF file its parameter count and file type.
fn model_info(l: &super::Loaded) -> suanli_server::ollama::ModelInfo {
    let c = l.model.config();
    let mut info = suanli_server::ollama::ModelInfo {
        architecture: c.arch.clone(),
        context_length: c.n_ctx_train,
        embedding_length: c.n_embd,
        format: if l.path.is_dir() {
            "safetensors"
        } else {
            "gguf"
        }
        .into(),
        ..Default::default()
    };
    if let Ok(f) = suanli_formats::GgufFile::open(&l.path) {
        info.parameters = f.tensors.iter().map(|t| t.n_elements()).sum();
        info.file_bytes = std::fs::metadata(&l.path).map(|m| m.len()).unwrap_or(0);
        info.quantization = f
            .get("general.file_type")
            .and_then(|v| v.as_u64())
            .map(file_type_name)
            .unwrap_or_default()
            .to_string();
    }
    info
}

/// llama.cpp's name of a `general.file_type`.
fn file_type_name(t: u64) -> &'static str {
    match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        38 => "MXFP4",
        _ => "",
    }
}
