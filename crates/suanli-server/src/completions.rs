//! `POST /v1/completions`: prompts as text or token ids, `echo` with
//! prompt logprobs (what lm-evaluation-harness's `local-completions`
//! reads), `n` choices per prompt, streaming.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use suanli_engine::logprobs::TokenLogprob;
use suanli_engine::{Event, Request};

use crate::api::{max_tokens, prompts, CompletionRequest, Prompt};
use crate::error::{parse_json, ApiError};
use crate::gen::{collect, merge, new_id, sse, submit_all, usage_json, ChunkHead, StreamUsage};
use crate::{now, structured, Shared};

/// The legacy logprobs object, built token by token.
#[derive(Default)]
struct Logprobs {
    tokens: Vec<Value>,
    token_logprobs: Vec<Value>,
    top_logprobs: Vec<Value>,
    text_offset: Vec<usize>,
}

impl Logprobs {
    /// Token `id` whose text starts at `offset`, with its logprob (none for
    /// the first prompt token).
    fn push(&mut self, s: &Shared, id: u32, lp: Option<&TokenLogprob>, offset: usize) -> usize {
        let text = s.token_str(id).0;
        self.tokens.push(json!(text));
        self.token_logprobs
            .push(lp.map_or(Value::Null, |l| json!(l.logprob)));
        self.top_logprobs.push(lp.map_or(Value::Null, |l| {
            let mut m = Map::new();
            for &(t, v) in &l.top {
                m.entry(s.token_str(t).0).or_insert(json!(v));
            }
            Value::Object(m)
        }));
        self.text_offset.push(offset);
        offset + text.chars().count()
    }

    fn json(self) -> Value {
        json!({
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        })
    }
}

/// Prompt logprobs aligned with the prompt: `None` for the first token.
fn prompt_logprobs(
    s: &Shared,
    lp: &mut Logprobs,
    prompt: &[u32],
    given: Option<&[TokenLogprob]>,
) -> usize {
    let mut off = 0;
    for (i, &t) in prompt.iter().enumerate() {
        let l = if i == 0 {
            None
        } else {
            given.and_then(|g| g.get(i - 1))
        };
        off = lp.push(s, t, l, off);
    }
    off
}

pub async fn handle(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let r: CompletionRequest = parse_json(&body?)?;
    s.check_model(r.common.model.as_deref())?;
    if r.suffix.as_deref().is_some_and(|x| !x.is_empty()) {
        return Err(ApiError::bad_param("suffix", "not supported"));
    }
    let n = r.common.n()?;
    if r.best_of.is_some_and(|b| b != n as i64) {
        return Err(ApiError::bad_param(
            "best_of",
            "only best_of = n is supported",
        ));
    }
    let top = match r.logprobs {
        None => None,
        Some(k @ 0..=20) => Some(k as usize),
        Some(_) => return Err(ApiError::bad_param("logprobs", "must be between 0 and 20")),
    };
    r.common.check()?;
    let max = max_tokens("max_tokens", r.common.max_tokens, 16, s.engine.max_seq_len)?;
    let stop = r.common.stops()?;
    let mut toks: Vec<Vec<u32>> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    for (i, p) in prompts(&r.prompt)?.into_iter().enumerate() {
        let ids = match &p {
            Prompt::Text(t) => s
                .tok
                .encode(t, true, true)
                .map_err(|e| ApiError::bad_param("prompt", e.to_string()))?,
            Prompt::Tokens(t) => t.clone(),
        };
        let n_vocab = s.tok.n_vocab();
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ApiError::bad_param(
                "prompt",
                format!("prompt {i}: token id {bad} is outside the vocabulary of {n_vocab}"),
            ));
        }
        s.engine
            .check_prompt(ids.len())
            .map_err(|e| ApiError::bad_param("prompt", format!("prompt {i}: {e}")))?;
        texts.push(match p {
            Prompt::Text(t) => t,
            Prompt::Tokens(_) => s.tok.decode(&ids, false).unwrap_or_default(),
        });
        toks.push(ids);
    }
    let echo_lp = r.echo && top.is_some();
    let asked = structured::asked(r.common.response_format.as_ref(), r.common.grammar.as_ref())?;
    let mut constraints = match &asked {
        Some(a) => structured::compile(&s, a, toks.len() * n).await?,
        None => Vec::new(),
    }
    .into_iter();
    let mut reqs = Vec::new();
    for ids in &toks {
        for j in 0..n {
            reqs.push(Request {
                prompt: ids.clone(),
                sampling: r.common.sampling(j)?,
                max_tokens: max,
                stop: stop.clone(),
                ignore_eos: r.common.ignore_eos,
                logprobs: top,
                prompt_logprobs: if echo_lp { top } else { None },
                constraint: constraints.next(),
                speculate: true,
            });
        }
    }
    let rxs = submit_all(&s, reqs)?;
    let id = new_id("cmpl");
    let created = now();
    let model = s.opts.model_id.clone();
    let n_prompt: usize = toks.iter().map(Vec::len).sum();
    if !r.common.stream {
        let out = collect(&s, rxs, t0).await?;
        let (mut completion, mut cached) = (0, 0);
        let mut choices = Vec::new();
        for (i, c) in out.iter().enumerate() {
            let p = i / n;
            let mut text = String::new();
            let mut lp = Logprobs::default();
            let mut off = 0;
            if r.echo {
                text.push_str(&texts[p]);
                if top.is_some() {
                    off = prompt_logprobs(&s, &mut lp, &toks[p], c.prompt_logprobs.as_deref());
                }
            }
            text.push_str(&c.text);
            for (t, l) in &c.tokens {
                off = lp.push(&s, *t, l.as_ref(), off);
            }
            choices.push(json!({
                "index": i,
                "text": text,
                "logprobs": top.map(|_| lp.json()),
                "finish_reason": c.finish.map(|f| f.as_str()),
            }));
            completion += c.usage.completion_tokens;
            if i % n == 0 {
                cached += c.usage.cached_tokens;
            }
        }
        return Ok(Json(json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage_json(n_prompt, completion, cached),
        }))
        .into_response());
    }
    let include_usage = r
        .common
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let total = toks.len() * n;
    let events = merge(&s, rxs, t0);
    let choice = |i: usize, text: &str, lp: Option<Value>, finish: Option<&str>| json!([{"index": i, "text": text, "logprobs": lp, "finish_reason": finish}]);
    // The echoed prompt opens each choice (with logprobs it waits for them).
    let mut offsets = vec![0usize; total];
    let mut preamble = Vec::new();
    if r.echo {
        for (i, off) in offsets.iter_mut().enumerate() {
            *off = texts[i / n].chars().count();
            if top.is_none() {
                preamble.push(choice(i, &texts[i / n], None, None));
            }
        }
    }
    let head = ChunkHead {
        id,
        object: "text_completion",
        created,
        model,
    };
    let usage = StreamUsage {
        include: include_usage,
        prompt_tokens: n_prompt,
        per_prompt: n,
    };
    Ok(sse(head, events, total, usage, preamble, move |i, ev| {
        Some(match ev {
            Event::PromptLogprobs(given) => {
                let mut lp = Logprobs::default();
                offsets[i] = prompt_logprobs(&s, &mut lp, &toks[i / n], Some(&given));
                choice(i, &texts[i / n], Some(lp.json()), None)
            }
            Event::Token {
                token,
                text,
                logprob,
            } => {
                let lp = top.map(|_| {
                    let mut lp = Logprobs::default();
                    offsets[i] = lp.push(&s, token, logprob.as_ref(), offsets[i]);
                    lp.json()
                });
                if text.is_empty() && lp.is_none() {
                    return None;
                }
                choice(i, &text, lp, None)
            }
            Event::Text(text) => choice(i, &text, None, None),
            Event::Done { finish, .. } => choice(i, "", None, Some(finish.as_str())),
            Event::Error(_) => return None,
        })
    }))
}
