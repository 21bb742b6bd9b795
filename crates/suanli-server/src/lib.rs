//! suanli-server: the OpenAI-compatible HTTP API over the engine.
//!
//! - `POST /v1/chat/completions`, `POST /v1/completions` ([`chat`],
//!   [`completions`]): streaming by server-sent events, logprobs, stop
//!   strings, `n`, usage; structured output by `response_format` and
//!   `grammar` ([`structured`]); tool calls ([`tools`]).
//! - `GET /v1/models`, `POST /tokenize`, `POST /detokenize`,
//!   `GET /tokenizer_info` (vLLM's shapes: what lm-evaluation-harness's
//!   `tokenizer_backend=remote` reads), `GET /health`, `GET /metrics`
//!   (Prometheus).
//!
//! Errors are OpenAI's error JSON with the matching status ([`error`]); a
//! failing request never takes the server down. The engine runs on its own
//! thread ([`suanli_engine::Engine`]); handlers only tokenize, submit and
//! relay events.

pub mod api;
pub mod chat;
pub mod completions;
pub mod error;
pub mod gen;
pub mod harmony;
pub mod metrics;
pub mod ollama;
pub mod output;
pub mod structured;
pub mod tools;

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use suanli_engine::{Constrainer, Engine};
use suanli_tokenizer::{ChatTemplate, Tokenizer};

use crate::error::{parse_json, ApiError};
use crate::metrics::Metrics;

pub struct ServerOptions {
    /// Every /v1 route then needs `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// The model id clients use (and `/v1/models` lists).
    pub model_id: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// The model's facts for Ollama's `/api/tags`, `/api/show`, `/api/ps`.
    pub info: ollama::ModelInfo,
    pub limits: Limits,
}

/// What a connection may take: how many at once, and how long a client
/// has to send a request's headers, and then its body, as a whole (not per
/// read: a client trickling a byte a second is cut off all the same).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_deadline: std::time::Duration,
    pub body_deadline: std::time::Duration,
    /// How long a stopping server lets requests in flight finish.
    pub drain: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_deadline: std::time::Duration::from_secs(10),
            body_deadline: std::time::Duration::from_secs(60),
            drain: std::time::Duration::from_secs(30),
        }
    }
}

pub struct AppState {
    pub engine: Engine,
    pub tok: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub opts: ServerOptions,
    pub metrics: Metrics,
    pub created: u64,
    /// Grammar compilation for this model, built on the first request
    /// that asks for structured output.
    pub constrainer: OnceLock<Result<Arc<Constrainer>, String>>,
    /// Set once a stop signal came: `/health` answers 503.
    pub draining: std::sync::atomic::AtomicBool,
}

pub type Shared = Arc<AppState>;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    pub fn new(
        engine: Engine,
        tok: Arc<Tokenizer>,
        template: ChatTemplate,
        opts: ServerOptions,
    ) -> Self {
        AppState {
            engine,
            tok,
            template,
            opts,
            metrics: Metrics::new(),
            created: now(),
            constrainer: OnceLock::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// 404 unless `model` (when given) names the served model.
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if !m.is_empty() && m != self.opts.model_id => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the model '{m}' does not exist; this server serves '{}'",
                    self.opts.model_id
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The text a token stands for, specials included (for logprobs).
    pub fn token_str(&self, id: u32) -> (String, Vec<u8>) {
        let b = self.tok.token_bytes(id, true).unwrap_or_default();
        (String::from_utf8_lossy(&b).into_owned(), b)
    }
}

pub fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/models", get(models))
        // Ollama's API, behind the same key when one is set.
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embed))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/tokenizer_info", get(tokenizer_info))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), body_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(state.opts.max_body_bytes))
        .with_state(state)
}

/// The most a request's line and headers may take together (without a
/// limit, hyper's ~400 KB read buffer bounds them, and a header block that
/// arrives at once may pass it): more is answered 431 and the connection
/// closed, the server going on. Browsers' and proxies' headers stay far
/// below (nginx's default is 32 KB).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Resolves on ctrl-c or SIGTERM (what Kubernetes sends a pod).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Serve until ctrl-c or SIGTERM, then stop accepting (`/health` answers
/// 503) and let requests in flight finish, up to `limits.drain`; those
/// still running then end with a final error event (idle keep-alive
/// connections close at once).
/// Each connection is HTTP/1.1 with the header deadline and a 64 KiB
/// header limit, at most `limits.max_connections` at once — one more is
/// answered 503 with `Retry-After` and closed, and the server goes on.
pub async fn serve(listener: tokio::net::TcpListener, state: Shared) -> std::io::Result<()> {
    let limits = state.opts.limits.clone();
    let app = router(state.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                // Out of descriptors or a connection reset before accept:
                // wait a little, keep serving.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => {
                drop(listener);
                state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
                let shut = graceful.shutdown();
                tokio::pin!(shut);
                if tokio::time::timeout(limits.drain, &mut shut).await.is_err() {
                    state.engine.abort_all("the server is shutting down");
                    let grace = std::time::Duration::from_secs(2);
                    let _ = tokio::time::timeout(grace, &mut shut).await;
                }
                return Ok(());
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let deadline = limits.header_deadline;
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(deadline)
                .max_header_size(MAX_HEADER_BYTES);
            let _ = watcher.watch(b.serve_connection(io, svc)).await;
        });
    }
}

/// 503 with `Retry-After` for a connection over the cap.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many connections; retry shortly",
    )
    .body()
    .to_string();
    let msg = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let _ = stream.write_all(msg.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The whole body within the body deadline, then the handler (which reads
/// it from memory): a client that trickles its body gets 408.
async fn body_deadline(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limit = s.opts.max_body_bytes;
    match tokio::time::timeout(
        s.opts.limits.body_deadline,
        axum::body::to_bytes(body, limit),
    )
    .await
    {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => {
            let too_long = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_long {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over {limit} bytes"),
                )
                .into_response()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
                    .into_response()
            }
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                s.opts.limits.body_deadline.as_secs()
            ),
        )
        .into_response(),
    }
}

async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.opts.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid or missing API key (send Authorization: Bearer KEY)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Requests by route and status.
async fn count(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let resp = next.run(req).await;
    s.metrics
        .requests
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn models(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": s.opts.model_id,
            "object": "model",
            "created": s.created,
            "owned_by": "suanli",
            "max_model_len": s.engine.max_seq_len,
        }]
    }))
}

async fn health(State(s): State<Shared>) -> Response {
    if s.draining.load(std::sync::atomic::Ordering::Relaxed) {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
        .into_response()
    } else if s.engine.is_alive() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped").into_response()
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    let text = s.metrics.render(&s.engine.stats(), &s.opts.model_id);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `/tokenize`: llama-server's `content` or vLLM's `prompt`, and either's
/// name for adding BOS/EOS.
#[derive(Deserialize)]
struct TokenizeReq {
    content: Option<String>,
    prompt: Option<String>,
    #[serde(default = "yes", alias = "add_special_tokens")]
    add_special: bool,
    #[serde(default)]
    with_pieces: bool,
}

fn yes() -> bool {
    true
}

async fn tokenize(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r: TokenizeReq = parse_json(&body?)?;
    let text = r
        .content
        .or(r.prompt)
        .ok_or_else(|| ApiError::bad_param("content", "missing (or give 'prompt')"))?;
    let ids = s
        .tok
        .encode(&text, r.add_special, true)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tokens: Vec<serde_json::Value> = if r.with_pieces {
        ids.iter()
            .map(|&id| json!({"id": id, "piece": s.token_str(id).0}))
            .collect()
    } else {
        ids.iter().map(|&id| json!(id)).collect()
    };
    Ok(Json(json!({
        "tokens": tokens,
        "count": ids.len(),
        "max_model_len": s.engine.max_seq_len,
    })))
}

/// `GET /tokenizer_info`: the special tokens as text, the chat template and
/// the BOS/EOS settings, as vLLM's endpoint gives them (lm-evaluation-harness
/// encodes the token texts through `/tokenize` to get their ids).
async fn tokenizer_info(State(s): State<Shared>) -> Json<serde_json::Value> {
    let text = |id: Option<u32>| id.map(|t| s.token_str(t).0);
    Json(json!({
        "tokenizer_class": "suanli",
        "bos_token": text(s.tok.bos),
        "eos_token": text(s.tok.eos),
        "pad_token": text(s.tok.eos),
        "add_bos_token": s.tok.add_bos,
        "add_eos_token": s.tok.add_eos,
        "chat_template": s.template.source,
        "model_max_length": s.engine.max_seq_len,
        "vocab_size": s.tok.n_vocab(),
    }))
}

#[derive(Deserialize)]
struct DetokenizeReq {
    tokens: Vec<u32>,
}

async fn detokenize(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r: DetokenizeReq = parse_json(&body?)?;
    let n_vocab = s.tok.n_vocab() as u32;
    if let Some(bad) = r.tokens.iter().find(|&&t| t >= n_vocab) {
        return Err(ApiError::bad_param(
            "tokens",
            format!("token id {bad} is outside the vocabulary of {n_vocab}"),
        ));
    }
    let text = s
        .tok
        .decode(&r.tokens, false)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(json!({"content": text, "prompt": text})))
}
