//! Submitting a request's choices to the engine and relaying their events:
//! merged into one stream (for SSE) or collected (for a JSON answer), with
//! time-to-first-token and inter-token latency recorded on the way.

use std::time::Instant;

use suanli_engine::logprobs::TokenLogprob;
use suanli_engine::{Event, FinishReason, Request, Usage};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::ApiError;
use crate::Shared;

/// Submit every choice; if one is refused the others are cancelled (their
/// receivers dropped) and the error returned.
pub fn submit_all(
    s: &Shared,
    reqs: Vec<Request>,
) -> Result<Vec<UnboundedReceiver<Event>>, ApiError> {
    reqs.into_iter()
        .map(|r| s.engine.submit(r).map_err(ApiError::from))
        .collect()
}

/// Events of all choices, tagged with their index, in arrival order. The
/// relays end (and cancel their sequences) as soon as the returned
/// receiver is dropped.
pub fn merge(
    s: &Shared,
    rxs: Vec<UnboundedReceiver<Event>>,
    t0: Instant,
) -> UnboundedReceiver<(usize, Event)> {
    let (tx, out) = unbounded_channel();
    for (i, mut rx) in rxs.into_iter().enumerate() {
        let tx = tx.clone();
        let s = s.clone();
        tokio::spawn(async move {
            let mut last: Option<Instant> = None;
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = tx.closed() => None,
                };
                let Some(ev) = ev else { break };
                if let Event::Token { .. } = ev {
                    let now = Instant::now();
                    match last {
                        None => s.metrics.ttft.observe((now - t0).as_secs_f64()),
                        Some(p) => s.metrics.itl.observe((now - p).as_secs_f64()),
                    }
                    last = Some(now);
                }
                let end = matches!(ev, Event::Done { .. } | Event::Error(_));
                if tx.send((i, ev)).is_err() || end {
                    break;
                }
            }
        });
    }
    out
}

/// One choice's whole output.
#[derive(Debug, Default)]
pub struct Collected {
    pub text: String,
    pub tokens: Vec<(u32, Option<TokenLogprob>)>,
    pub prompt_logprobs: Option<Vec<TokenLogprob>>,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
    pub error: Option<String>,
}

/// Wait for every choice to end.
pub async fn collect(
    s: &Shared,
    rxs: Vec<UnboundedReceiver<Event>>,
    t0: Instant,
) -> Result<Vec<Collected>, ApiError> {
    let n = rxs.len();
    let mut out: Vec<Collected> = (0..n).map(|_| Collected::default()).collect();
    let mut ended = 0;
    let mut rx = merge(s, rxs, t0);
    while ended < n {
        let Some((i, ev)) = rx.recv().await else {
            break;
        };
        let c = &mut out[i];
        match ev {
            Event::PromptLogprobs(lp) => c.prompt_logprobs = Some(lp),
            Event::Token {
                token,
                text,
                logprob,
            } => {
                c.text.push_str(&text);
                c.tokens.push((token, logprob));
            }
            Event::Text(t) => c.text.push_str(&t),
            Event::Done { finish, usage } => {
                c.finish = Some(finish);
                c.usage = usage;
                ended += 1;
            }
            Event::Error(e) => {
                c.error = Some(e);
                ended += 1;
            }
        }
    }
    if let Some(e) = out.iter().find_map(|c| c.error.clone()) {
        return Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            e,
        ));
    }
    if out.iter().any(|c| c.finish.is_none()) {
        return Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the engine ended a request without a result",
        ));
    }
    Ok(out)
}

/// Usage summed over choices (the prompt counted once per prompt).
pub fn usage_json(prompt: usize, completion: usize, cached: usize) -> serde_json::Value {
    serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// A fresh id with a prefix (`chatcmpl-…`, `cmpl-…`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

/// What every chunk of one streamed response shares.
pub struct ChunkHead {
    pub id: String,
    /// `chat.completion.chunk` or `text_completion`.
    pub object: &'static str,
    pub created: u64,
    pub model: String,
}

impl ChunkHead {
    fn wrap(&self, choices: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "object": self.object, "created": self.created,
            "model": self.model, "choices": choices,
        })
    }
}

/// How the usage chunk of a stream is counted.
pub struct StreamUsage {
    /// Send it (`stream_options.include_usage`).
    pub include: bool,
    /// Prompt tokens, each prompt once.
    pub prompt_tokens: usize,
    /// Choices per prompt: cached tokens are counted from the first.
    pub per_prompt: usize,
}

/// Relays the merged events of `total` choices as server-sent events:
/// `preamble` (each a `choices` array) first, then `map(index, event)` for
/// every event (`None` skips it); once every choice ended, the usage chunk
/// when asked for, then `data: [DONE]`. An error event ends the stream with
/// OpenAI's error object. A client that goes away stops the relay, which
/// cancels its sequences.
pub fn sse(
    head: ChunkHead,
    mut events: UnboundedReceiver<(usize, Event)>,
    total: usize,
    usage: StreamUsage,
    preamble: Vec<serde_json::Value>,
    mut map: impl FnMut(usize, Event) -> Option<serde_json::Value> + Send + 'static,
) -> axum::response::Response {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use axum::response::IntoResponse;
    let (tx, rx) = unbounded_channel::<Result<SseEvent, std::convert::Infallible>>();
    let data = |v: &serde_json::Value| Ok(SseEvent::default().data(v.to_string()));
    tokio::spawn(async move {
        for choices in preamble {
            if tx.send(data(&head.wrap(choices))).is_err() {
                return;
            }
        }
        let (mut ended, mut completion, mut cached) = (0, 0, 0);
        while ended < total {
            let ev = tokio::select! {
                ev = events.recv() => ev,
                _ = tx.closed() => return,
            };
            let Some((i, ev)) = ev else { return };
            match &ev {
                Event::Done { usage: u, .. } => {
                    ended += 1;
                    completion += u.completion_tokens;
                    if i % usage.per_prompt.max(1) == 0 {
                        cached += u.cached_tokens;
                    }
                }
                Event::Error(e) => {
                    let err =
                        ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.clone());
                    let _ = tx.send(data(&err.body()));
                    let _ = tx.send(Ok(SseEvent::default().data("[DONE]")));
                    return;
                }
                _ => {}
            }
            if let Some(choices) = map(i, ev) {
                if tx.send(data(&head.wrap(choices))).is_err() {
                    return;
                }
            }
        }
        if usage.include {
            let mut v = head.wrap(serde_json::json!([]));
            v["usage"] = usage_json(usage.prompt_tokens, completion, cached);
            let _ = tx.send(data(&v));
        }
        let _ = tx.send(Ok(SseEvent::default().data("[DONE]")));
    });
    Sse::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
