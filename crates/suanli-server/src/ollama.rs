//! Ollama's API beside the OpenAI one, for the clients that speak only it
//! (editor plug-ins' "Ollama" providers, Open WebUI's Ollama connection,
//! the `ollama` client libraries): `/api/version`, `/api/tags`, `/api/ps`,
//! `/api/show`, `/api/chat`, `/api/generate`; `/api/embed` answers 501.
//!
//! Streaming is Ollama's: newline-delimited JSON objects, `stream` on by
//! default, the last object `done: true` with `done_reason` and the
//! nanosecond timings. Errors are `{"error": "..."}`.

use std::convert::Infallible;
use std::time::Instant;

use crate::output::Splitter;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use suanli_engine::{Event, Grammar, Request, SamplingParams};
use suanli_tokenizer::{ChatMessage, ChatTemplate};

use crate::error::ApiError;
use crate::gen::{collect, merge, submit_all};
use crate::{structured, tools, Shared};

/// The Ollama version reported: clients gate features on it (tools,
/// structured outputs), so one that has them all.
pub const VERSION: &str = "0.12.0";

/// What `/api/tags`, `/api/ps` and `/api/show` say of the served model.
#[derive(Clone, Debug, Default)]
pub struct ModelInfo {
    pub architecture: String,
    pub parameters: u64,
    /// llama.cpp's name of the file type (`Q4_K_M`…), or empty.
    pub quantization: String,
    pub file_bytes: u64,
    pub context_length: usize,
    pub embedding_length: usize,
    pub format: String,
}

/// An Ollama error: `{"error": message}` with `status`.
#[derive(Debug)]
pub struct OError(pub StatusCode, pub String);

impl IntoResponse for OError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

impl From<ApiError> for OError {
    fn from(e: ApiError) -> Self {
        OError(e.status, e.message)
    }
}

fn bad(msg: impl Into<String>) -> OError {
    OError(StatusCode::BAD_REQUEST, msg.into())
}

fn parse<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, OError> {
    let b = body.map_err(|e| bad(format!("reading the body: {e}")))?;
    serde_json::from_slice(&b).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

fn created_at() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn digest(s: &Shared) -> String {
    // A stable id of the served model (its name and size), in the shape of
    // Ollama's sha256 digests.
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (s.opts.model_id.as_str(), s.opts.info.file_bytes).hash(&mut h);
    format!("{:016x}", h.finish()).repeat(4)
}

fn parameter_size(n: u64) -> String {
    match n {
        0 => String::new(),
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n => format!("{:.0}M", n as f64 / 1e6),
    }
}

fn details(s: &Shared) -> Value {
    let i = &s.opts.info;
    json!({
        "parent_model": "",
        "format": i.format,
        "family": i.architecture,
        "families": [i.architecture],
        "parameter_size": parameter_size(i.parameters),
        "quantization_level": i.quantization,
    })
}

pub async fn version() -> Response {
    axum::Json(json!({ "version": VERSION })).into_response()
}

pub async fn tags(State(s): State<Shared>) -> Response {
    axum::Json(json!({"models": [{
        "name": s.opts.model_id,
        "model": s.opts.model_id,
        "modified_at": created_at(),
        "size": s.opts.info.file_bytes,
        "digest": digest(&s),
        "details": details(&s),
    }]}))
    .into_response()
}

pub async fn ps(State(s): State<Shared>) -> Response {
    axum::Json(json!({"models": [{
        "name": s.opts.model_id,
        "model": s.opts.model_id,
        "size": s.opts.info.file_bytes,
        "digest": digest(&s),
        "details": details(&s),
        "expires_at": "2318-01-01T00:00:00Z",
        "size_vram": 0,
        "context_length": s.engine.max_seq_len,
    }]}))
    .into_response()
}

#[derive(Deserialize)]
struct ShowRequest {
    model: Option<String>,
    name: Option<String>,
}

/// Whether the chat template renders tool definitions.
fn has_tools(s: &Shared) -> bool {
    s.template.source.contains("tools")
}

pub async fn show(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Infallible> {
    Ok(show_inner(s, body).unwrap_or_else(IntoResponse::into_response))
}

fn show_inner(s: Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, OError> {
    let r: ShowRequest = parse(body)?;
    check_model(&s, r.model.as_deref().or(r.name.as_deref()))?;
    let i = &s.opts.info;
    let a = &i.architecture;
    let mut caps = vec!["completion"];
    if has_tools(&s) {
        caps.push("tools");
    }
    if s.template.source.contains("<think>") {
        caps.push("thinking");
    }
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), json!(a));
    info.insert("general.parameter_count".into(), json!(i.parameters));
    info.insert(format!("{a}.context_length"), json!(i.context_length));
    info.insert(format!("{a}.embedding_length"), json!(i.embedding_length));
    Ok(axum::Json(json!({
        "modelfile": format!("FROM {}\n", s.opts.model_id),
        "parameters": "",
        "template": s.template.source,
        "details": details(&s),
        "model_info": info,
        "capabilities": caps,
        "modified_at": created_at(),
    }))
    .into_response())
}

pub async fn embed() -> Response {
    OError(
        StatusCode::NOT_IMPLEMENTED,
        "embeddings are not implemented by this server".into(),
    )
    .into_response()
}

fn check_model(s: &Shared, m: Option<&str>) -> Result<(), OError> {
    // Ollama names carry a tag (`name:latest`); the served model answers
    // to its id with or without one.
    let bare = m.map(|m| m.strip_suffix(":latest").unwrap_or(m));
    s.check_model(bare).map_err(OError::from)
}

/// `options` of a chat or generate request.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Options {
    num_ctx: Option<i64>,
    num_predict: Option<i64>,
    temperature: Option<f64>,
    top_k: Option<i64>,
    top_p: Option<f64>,
    min_p: Option<f64>,
    repeat_penalty: Option<f64>,
    repeat_last_n: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    seed: Option<i64>,
    stop: Option<Vec<String>>,
}

/// Ollama's documented options: those suanli does not use (GPU layers,
/// mirostat…) are accepted and ignored, any other name is an error.
const KNOWN_OPTIONS: &[&str] = &[
    "numa",
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "f16_kv",
    "vocab_only",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "num_keep",
    "seed",
    "num_predict",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_last_n",
    "temperature",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "stop",
    "tfs_z",
];

/// `options`, each name checked.
fn options(v: &Value) -> Result<Options, OError> {
    match v {
        Value::Null => Ok(Options::default()),
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
                return Err(bad(format!("options.{k}: not an option Ollama knows")));
            }
            serde_json::from_value(v.clone()).map_err(|e| bad(format!("options: {e}")))
        }
        _ => Err(bad("options must be an object")),
    }
}

impl Options {
    /// Sampling with Ollama's defaults (temperature 0.8, top-k 40, top-p
    /// 0.9, repeat penalty 1.1 over the last 64 tokens).
    fn sampling(&self) -> Result<SamplingParams, OError> {
        let finite = |name: &str, v: Option<f64>, lo: f64, hi: f64, d: f64| {
            let v = v.unwrap_or(d);
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(v as f32)
            } else {
                Err(bad(format!("options.{name} must be between {lo} and {hi}")))
            }
        };
        let count = |name: &str, v: Option<i64>, d: i64| match v.unwrap_or(d) {
            v if v >= 0 => Ok(v as usize),
            -1 => Ok(usize::MAX),
            _ => Err(bad(format!("options.{name} must be 0 or more (or -1)"))),
        };
        Ok(SamplingParams {
            temperature: finite("temperature", self.temperature, 0.0, 100.0, 0.8)?,
            top_k: count("top_k", self.top_k, 40)?.min(1 << 20),
            top_p: finite("top_p", self.top_p, 0.0, 1.0, 0.9)?.max(f32::MIN_POSITIVE),
            min_p: finite("min_p", self.min_p, 0.0, 1.0, 0.0)?,
            repeat_penalty: finite("repeat_penalty", self.repeat_penalty, 0.0, 100.0, 1.1)?,
            repeat_last_n: count("repeat_last_n", self.repeat_last_n, 64)?,
            presence_penalty: finite(
                "presence_penalty",
                self.presence_penalty,
                -100.0,
                100.0,
                0.0,
            )?,
            frequency_penalty: finite(
                "frequency_penalty",
                self.frequency_penalty,
                -100.0,
                100.0,
                0.0,
            )?,
            seed: self.seed.map_or_else(rand::random, |v| v as u64),
        })
    }

    /// Tokens to generate at most: `num_predict` (−1 unbounded, −2 to the
    /// end of the context), within `num_ctx` when it is smaller than the
    /// server's context.
    fn max_tokens(&self, prompt: usize, ctx: usize) -> Result<usize, OError> {
        let ctx = match self.num_ctx {
            Some(n) if n > 0 => (n as usize).min(ctx),
            Some(_) => return Err(bad("options.num_ctx must be positive")),
            None => ctx,
        };
        let room = ctx.saturating_sub(prompt);
        match self.num_predict {
            None | Some(-1) | Some(-2) => Ok(room),
            Some(n) if n >= 0 => Ok((n as usize).min(room)),
            Some(n) => Err(bad(format!(
                "options.num_predict {n}: must be -2, -1 or more"
            ))),
        }
    }

    fn stops(&self) -> Result<Vec<String>, OError> {
        let s = self.stop.clone().unwrap_or_default();
        if s.len() > 16 || s.iter().any(|x| x.len() > 1024) {
            return Err(bad(
                "options.stop: at most 16 strings of at most 1024 bytes",
            ));
        }
        Ok(s)
    }
}

/// `format`: `"json"` or a JSON schema.
fn format_grammar(v: Option<&Value>) -> Result<Option<Grammar>, OError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Grammar::json_object())),
        Some(Value::Object(_)) => Ok(Some(Grammar::JsonSchema {
            schema: v.cloned().unwrap_or_default(),
            strict: false,
        })),
        Some(other) => Err(bad(format!(
            "format must be \"json\" or a JSON schema, not {other}"
        ))),
    }
}

#[derive(Deserialize)]
struct OMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    tool_name: Option<String>,
}

/// `/api/chat`'s body.
#[derive(Deserialize)]
pub struct ChatRequest {
    model: Option<String>,
    #[serde(default)]
    messages: Vec<OMessage>,
    stream: Option<bool>,
    format: Option<Value>,
    #[serde(default)]
    options: Value,
    tools: Option<Value>,
}

/// `/api/generate`'s body.
#[derive(Deserialize)]
pub struct GenerateRequest {
    model: Option<String>,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    stream: Option<bool>,
    format: Option<Value>,
    #[serde(default)]
    options: Value,
}

/// Ollama's tool calls (`function.arguments` an object) in OpenAI's shape
/// (`arguments` a JSON string), as the template code reads them.
fn calls_to_openai(calls: &[Value]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| {
                let f = &c["function"];
                let args = match &f["arguments"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                json!({"type": "function", "function": {"name": f["name"], "arguments": args}})
            })
            .collect(),
    )
}

/// OpenAI tool calls (arguments a JSON string) in Ollama's shape.
fn calls_to_ollama(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .map(|c| {
            let f = &c["function"];
            let args = f["arguments"]
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or_else(|| f["arguments"].clone());
            json!({"function": {"name": f["name"], "arguments": args}})
        })
        .collect()
}

/// The end-of-request fields: reason and Ollama's nanosecond timings.
struct Timing {
    t0: Instant,
    first: Option<Instant>,
}

impl Timing {
    fn done(&self, v: &mut Value, reason: &str, prompt: usize, completion: usize) {
        let end = Instant::now();
        let first = self.first.unwrap_or(end);
        let ns = |d: std::time::Duration| d.as_nanos() as u64;
        v["done"] = json!(true);
        v["done_reason"] = json!(reason);
        v["total_duration"] = json!(ns(end - self.t0));
        v["load_duration"] = json!(0);
        v["prompt_eval_count"] = json!(prompt);
        v["prompt_eval_duration"] = json!(ns(first - self.t0));
        v["eval_count"] = json!(completion);
        v["eval_duration"] = json!(ns(end - first));
    }
}

/// What a request runs: prompt, limits, grammar.
struct Job {
    prompt: Vec<u32>,
    thinking: bool,
    request: Request,
    stream: bool,
    tools: Option<tools::Format>,
}

/// A request's sampling, limits and grammar, checked.
pub struct Checked {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// The grammar asked for, by the tool setup or by `format`: compiled
    /// (and perhaps refused) next.
    pub asked: Option<structured::Asked>,
}

/// `options` (each name and range), `num_predict` and `num_ctx` for a
/// prompt of `prompt` tokens in a context of `ctx`, `format`, and the
/// tool setup's grammar: every check before the grammar compiles.
pub fn check_params(
    options_v: &Value,
    format: Option<&Value>,
    tool_grammar: Option<structured::Asked>,
    prompt: usize,
    ctx: usize,
) -> Result<Checked, OError> {
    let options = options(options_v)?;
    let max_tokens = options.max_tokens(prompt, ctx)?;
    // A forced call's grammar before `format`, `format` before the
    // grammar `auto` holds from the call marker on.
    let asked = match (tool_grammar, format_grammar(format)?) {
        (Some(a), None) => Some(a),
        (Some(a), Some(_)) if a.trigger.is_none() => Some(a),
        (_, Some(g)) => Some(structured::Asked::new(g, "format")),
        (None, None) => None,
    };
    Ok(Checked {
        sampling: options.sampling()?,
        max_tokens,
        stop: options.stops()?,
        asked,
    })
}

async fn job(
    s: &Shared,
    prompt: Vec<u32>,
    text: &str,
    (options, format): (&Value, Option<&Value>),
    stream: Option<bool>,
    (tool_fmt, tool_grammar): (Option<tools::Format>, Option<structured::Asked>),
) -> Result<Job, OError> {
    s.engine
        .check_prompt(prompt.len())
        .map_err(|e| bad(e.to_string()))?;
    let c = check_params(
        options,
        format,
        tool_grammar,
        prompt.len(),
        s.engine.max_seq_len,
    )?;
    let constraint = match &c.asked {
        Some(a) => structured::compile(s, a, 1).await?.pop(),
        None => None,
    };
    Ok(Job {
        request: Request {
            prompt: prompt.clone(),
            sampling: c.sampling,
            max_tokens: c.max_tokens,
            stop: c.stop,
            ignore_eos: false,
            logprobs: None,
            prompt_logprobs: None,
            constraint,
            speculate: true,
        },
        thinking: text.trim_end().ends_with("<think>"),
        prompt,
        stream: stream.unwrap_or(true),
        tools: tool_fmt,
    })
}

/// A reply's text as Ollama writes it: a `message` for chat (its
/// `thinking` inside), a `response` for generate (`thinking` beside it).
fn reply_fields(v: &mut Value, chat: bool, content: Value, thinking: &str) {
    match chat {
        true => {
            let mut m = json!({"role": "assistant", "content": content});
            if !thinking.is_empty() {
                m["thinking"] = json!(thinking);
            }
            v["message"] = m;
        }
        false => {
            v["response"] = content;
            if !thinking.is_empty() {
                v["thinking"] = json!(thinking);
            }
        }
    }
}

/// Runs `j`: one JSON object, or NDJSON as the tokens come. `chat` picks
/// the shape (`message` objects or `response` strings).
async fn run(s: Shared, j: Job, chat: bool, t0: Instant) -> Result<Response, OError> {
    let model = s.opts.model_id.clone();
    let n_prompt = j.prompt.len();
    let rxs = submit_all(&s, vec![j.request])?;
    // A tool call is parsed from the whole output, so with tools the
    // stream carries it in one object, as Ollama's does.
    if !j.stream || j.tools.is_some() {
        let out = collect(&s, rxs, t0).await?;
        let c = &out[0];
        let (reasoning, content, calls) =
            Splitter::new(&s.template.source, j.thinking, j.tools).split_all(&c.text);
        let mut v = json!({"model": model, "created_at": created_at()});
        let text = match chat && (j.tools.is_some() || !calls.is_empty()) {
            true => json!(tools::trimmed(&content)),
            false => json!(content),
        };
        reply_fields(&mut v, chat, text, &reasoning);
        if chat && !calls.is_empty() {
            v["message"]["tool_calls"] = json!(calls_to_ollama(&calls));
        }
        let reason = c.finish.map_or("stop", |f| f.as_str());
        // The whole output took its time; the first token is not known
        // apart from it here.
        let timing = Timing {
            t0,
            first: Some(t0 + (Instant::now() - t0) / 2),
        };
        timing.done(&mut v, reason, n_prompt, c.usage.completion_tokens);
        if !j.stream {
            return Ok(axum::Json(v).into_response());
        }
        let line = format!("{v}\n");
        return Ok(ndjson(futures_util::stream::iter([Ok::<_, Infallible>(
            Bytes::from(line),
        )])));
    }
    let mut events = merge(&s, rxs, t0);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, Infallible>>();
    let mut parser = Splitter::new(&s.template.source, j.thinking, None);
    tokio::spawn(async move {
        let mut timing = Timing { t0, first: None };
        let send = |v: Value| tx.send(Ok(Bytes::from(format!("{v}\n")))).is_ok();
        let piece = |content: &str, thinking: &str| {
            let mut v = json!({"model": model, "created_at": created_at(), "done": false});
            reply_fields(&mut v, chat, json!(content), thinking);
            v
        };
        loop {
            let ev = tokio::select! {
                ev = events.recv() => ev,
                _ = tx.closed() => return,
            };
            let Some((_, ev)) = ev else { return };
            match ev {
                Event::Token { text, .. } | Event::Text(text) => {
                    timing.first.get_or_insert_with(Instant::now);
                    let d = parser.push(&text);
                    let content = d.content();
                    if (!content.is_empty() || !d.reasoning.is_empty())
                        && !send(piece(&content, &d.reasoning))
                    {
                        return;
                    }
                }
                Event::Done { finish, usage } => {
                    let d = parser.finish();
                    let mut v = piece(&d.content(), &d.reasoning);
                    timing.done(&mut v, finish.as_str(), n_prompt, usage.completion_tokens);
                    send(v);
                    return;
                }
                Event::Error(e) => {
                    send(json!({"error": e}));
                    return;
                }
                Event::PromptLogprobs(_) => {}
            }
        }
    });
    Ok(ndjson(
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
    ))
}

fn ndjson<S>(stream: S) -> Response
where
    S: futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

impl ChatRequest {
    /// The messages in the template's shape (Ollama's tool calls as the
    /// template code reads them) and the checked tool setup.
    pub fn for_template(&self, template: &str) -> Result<(Vec<ChatMessage>, tools::Setup), OError> {
        let fmt = tools::Format::of_template(template);
        let messages = self
            .messages
            .iter()
            .map(|m| ChatMessage {
                role: m.role.clone(),
                content: m.content.clone(),
                reasoning_content: m.thinking.clone(),
                thinking: (fmt == Some(tools::Format::Harmony))
                    .then(|| m.thinking.clone())
                    .flatten(),
                tool_calls: tools::for_template(
                    m.tool_calls.as_deref().map(calls_to_openai).as_ref(),
                    fmt,
                ),
                name: m.tool_name.clone(),
                tool_call_id: None,
            })
            .collect();
        let setup = tools::setup(self.tools.as_ref(), None, None, template)?;
        Ok((setup.messages(template, messages), setup))
    }
}

impl GenerateRequest {
    /// The system prompt and the prompt as chat messages (when not `raw`).
    pub fn messages(&self) -> Vec<ChatMessage> {
        let mut messages = Vec::new();
        if let Some(sys) = &self.system {
            messages.push(ChatMessage::new("system", sys));
        }
        messages.push(ChatMessage::new("user", &self.prompt));
        messages
    }
}

/// Every check `/api/chat` (`chat`) or `/api/generate` makes of `body`
/// before the engine, with `template` for the model's chat template and
/// the rendered prompt's bytes standing in for its tokens in a context of
/// `ctx`: the JSON and its types, messages and tools, rendering, options,
/// limits, stop strings and `format`. The grammar to compile comes back.
pub fn check_body(
    chat: bool,
    body: &[u8],
    template: &ChatTemplate,
    ctx: usize,
) -> Result<Checked, OError> {
    let json = |e: serde_json::Error| bad(format!("invalid JSON body: {e}"));
    let (text, options, format, tool_grammar) = if chat {
        let r: ChatRequest = serde_json::from_slice(body).map_err(json)?;
        let (messages, setup) = r.for_template(&template.source)?;
        let text = template
            .render(&messages, true, setup.tools.as_ref(), None)
            .map_err(|e| bad(format!("messages: chat template: {e}")))?;
        (text, r.options, r.format, setup.grammar.or(setup.lazy))
    } else {
        let r: GenerateRequest = serde_json::from_slice(body).map_err(json)?;
        let text = match r.raw {
            true => r.prompt.clone(),
            false => template
                .render(&r.messages(), true, None, None)
                .map_err(|e| bad(format!("prompt: chat template: {e}")))?,
        };
        (text, r.options, r.format, None)
    };
    check_params(&options, format.as_ref(), tool_grammar, text.len(), ctx)
}

pub async fn chat(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Infallible> {
    Ok(chat_inner(s, body)
        .await
        .unwrap_or_else(IntoResponse::into_response))
}

async fn chat_inner(s: Shared, body: Result<Bytes, BytesRejection>) -> Result<Response, OError> {
    let t0 = Instant::now();
    let r: ChatRequest = parse(body)?;
    check_model(&s, r.model.as_deref())?;
    if r.messages.is_empty() {
        // Ollama answers an empty chat with the model loaded.
        let mut v = json!({"model": s.opts.model_id, "created_at": created_at(),
            "message": {"role": "assistant", "content": ""}});
        v["done"] = json!(true);
        v["done_reason"] = json!("load");
        return Ok(axum::Json(v).into_response());
    }
    let (messages, setup) = r.for_template(&s.template.source)?;
    let (text, prompt) = s
        .tok
        .apply_chat_template(&s.template, &messages, setup.tools.as_ref(), None)
        .map_err(|e| bad(format!("messages: chat template: {e}")))?;
    let j = job(
        &s,
        prompt,
        &text,
        (&r.options, r.format.as_ref()),
        r.stream,
        (setup.format, setup.grammar.clone().or(setup.lazy.clone())),
    )
    .await?;
    run(s, j, true, t0).await
}

pub async fn generate(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Infallible> {
    Ok(generate_inner(s, body)
        .await
        .unwrap_or_else(IntoResponse::into_response))
}

async fn generate_inner(
    s: Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OError> {
    let t0 = Instant::now();
    let r: GenerateRequest = parse(body)?;
    check_model(&s, r.model.as_deref())?;
    if r.prompt.is_empty() {
        let mut v = json!({"model": s.opts.model_id, "created_at": created_at(), "response": ""});
        v["done"] = json!(true);
        v["done_reason"] = json!("load");
        return Ok(axum::Json(v).into_response());
    }
    let (text, prompt) = if r.raw {
        let ids = s
            .tok
            .encode(&r.prompt, true, true)
            .map_err(|e| bad(format!("prompt: {e}")))?;
        (r.prompt.clone(), ids)
    } else {
        s.tok
            .apply_chat_template(&s.template, &r.messages(), None, None)
            .map_err(|e| bad(format!("prompt: chat template: {e}")))?
    };
    let j = job(
        &s,
        prompt,
        &text,
        (&r.options, r.format.as_ref()),
        r.stream,
        (None, None),
    )
    .await?;
    run(s, j, false, t0).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_convert_both_ways_and_parse_from_hermes_output() {
        let ollama = vec![json!({"function": {"name": "f", "arguments": {"x": 1}}})];
        let openai = calls_to_openai(&ollama);
        assert_eq!(openai[0]["function"]["arguments"], json!("{\"x\":1}"));
        assert_eq!(calls_to_ollama(openai.as_array().unwrap()), ollama);
        // What Qwen's template asks the model to write, parsed as the chat
        // route does, then given Ollama's shape.
        let out = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let (content, calls) = tools::parse_all(tools::Format::Hermes, out);
        assert_eq!(content.as_deref().map(str::trim), Some("Sure."));
        let calls = calls_to_ollama(&calls);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], json!({"city": "Paris"}));
    }

    #[test]
    fn options_map_to_sampling_and_limits() {
        let o: Options = serde_json::from_value(json!({
            "temperature": 0, "top_k": 5, "num_predict": 7, "num_ctx": 100, "stop": ["x"], "seed": 3
        }))
        .unwrap();
        let s = o.sampling().ok().unwrap();
        assert_eq!((s.temperature, s.top_k, s.seed), (0.0, 5, 3));
        assert_eq!(o.max_tokens(90, 4096).ok(), Some(7));
        assert_eq!(o.max_tokens(97, 4096).ok(), Some(3), "num_ctx bounds it");
        let bad: Options = serde_json::from_value(json!({"top_p": 2.0})).unwrap();
        assert!(bad.sampling().is_err());
        let nan = Options {
            temperature: Some(f64::NAN),
            ..Default::default()
        };
        assert!(nan.sampling().is_err());
        assert!(format_grammar(Some(&json!(7))).is_err());
        assert!(matches!(format_grammar(Some(&json!("json"))), Ok(Some(_))));
        // Unknown names are refused, Ollama's own accepted.
        let e = options(&json!({"temprature": 0.5})).err().unwrap();
        assert!(e.1.contains("options.temprature"), "{}", e.1);
        assert!(options(&json!({"num_gpu": 99, "mirostat": 0})).is_ok());
        assert!(options(&json!("fast")).is_err());
    }

    #[test]
    fn bodies_are_checked_as_the_routes_check_them() {
        let t = ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
             {% if tools %}<tools>{{ tools | tojson }}</tools> <tool_call>{% endif %}",
            "",
            "<|im_end|>",
        )
        .ok()
        .unwrap();
        let chat = |v: Value| check_body(true, v.to_string().as_bytes(), &t, 64);
        let c = chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "format": "json", "options": {"temperature": 0, "num_predict": 5, "stop": ["x"]}}),
        )
        .unwrap();
        assert!(c.asked.is_some() && c.max_tokens == 5 && c.stop == ["x"]);
        assert_eq!(c.sampling.temperature, 0.0);
        let e = chat(json!({"messages": [], "options": {"tempreture": 1}}))
            .err()
            .unwrap();
        assert!(e.1.contains("options.tempreture"), "{}", e.1);
        let e = chat(json!({"messages": [], "tools": "f"})).err().unwrap();
        assert!(e.1.contains("tools"), "{}", e.1);
        assert!(chat(json!({"messages": "hi"})).is_err());
        // The prompt's length counts against num_ctx.
        let long = json!({"prompt": "x".repeat(100), "raw": true, "options": {"num_predict": 10}});
        let g = check_body(false, long.to_string().as_bytes(), &t, 64).unwrap();
        assert_eq!(g.max_tokens, 0);
        assert!(check_body(false, b"{\"prompt\": 5}", &t, 64).is_err());
        assert!(check_body(false, b"\xff", &t, 64).is_err());
    }
}
