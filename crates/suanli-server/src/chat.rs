//! `POST /v1/chat/completions`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use suanli_engine::logprobs::TokenLogprob;
use suanli_engine::{Event, Request};
use suanli_tokenizer::ChatMessage;

use crate::api::{max_tokens, ChatRequest};
use crate::error::{parse_json, ApiError};
use crate::gen::{collect, merge, new_id, sse, submit_all, usage_json, ChunkHead, StreamUsage};
use crate::output::Splitter;
use crate::{now, structured, tools, Shared};

/// One entry of `logprobs.content`.
fn logprob_json(s: &Shared, lp: &TokenLogprob) -> Value {
    let entry = |id: u32, logprob: f32| {
        let (text, bytes) = s.token_str(id);
        json!({"token": text, "logprob": logprob, "bytes": bytes})
    };
    let mut e = entry(lp.token, lp.logprob);
    e["top_logprobs"] = lp.top.iter().map(|&(t, l)| entry(t, l)).collect();
    e
}

pub async fn handle(
    State(s): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let r: ChatRequest = parse_json(&body?)?;
    s.check_model(r.common.model.as_deref())?;
    r.check()?;
    if r.messages.is_empty() {
        return Err(ApiError::bad_param(
            "messages",
            "at least one message is needed",
        ));
    }
    let harmony = tools::Format::of_template(&s.template.source) == Some(tools::Format::Harmony);
    let messages = r
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Ok(ChatMessage {
                role: m.role.clone(),
                content: m.text(i)?,
                reasoning_content: m.reasoning_content.clone(),
                // gpt-oss's template reads an assistant's reasoning as
                // `thinking`.
                thinking: harmony.then(|| m.reasoning_content.clone()).flatten(),
                tool_calls: tools::for_template(
                    m.tool_calls.as_ref(),
                    tools::Format::of_template(&s.template.source),
                ),
                name: m.name.clone(),
                tool_call_id: m.tool_call_id.clone(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let setup = tools::setup(
        r.tools.as_ref(),
        r.tool_choice.as_ref(),
        r.parallel_tool_calls,
        &s.template.source,
    )?;
    let messages = setup.messages(&s.template.source, messages);
    for (field, schema) in &setup.schemas {
        let a = structured::Asked::new(
            suanli_engine::Grammar::JsonSchema {
                schema: schema.clone(),
                strict: false,
            },
            field,
        );
        structured::compile(&s, &a, 0).await?;
    }
    let (text, prompt) = s
        .tok
        .apply_chat_template(
            &s.template,
            &messages,
            setup.tools.as_ref(),
            r.chat_template_kwargs.as_ref(),
        )
        .map_err(|e| ApiError::bad_param("messages", format!("chat template: {e}")))?;
    let max = max_tokens(
        "max_completion_tokens",
        r.max_completion_tokens.or(r.common.max_tokens),
        usize::MAX,
        s.engine.max_seq_len,
    )?;
    let top = match (r.logprobs.unwrap_or(false), r.top_logprobs) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(ApiError::bad_param(
                "top_logprobs",
                "needs \"logprobs\": true",
            ))
        }
        (true, k) => match k.unwrap_or(0) {
            k @ 0..=20 => Some(k as usize),
            _ => {
                return Err(ApiError::bad_param(
                    "top_logprobs",
                    "must be between 0 and 20",
                ))
            }
        },
    };
    let n = r.common.n()?;
    let stop = r.common.stops()?;
    s.engine
        .check_prompt(prompt.len())
        .map_err(|e| ApiError::bad_param("messages", e.to_string()))?;
    // A forced tool call's grammar comes before any response format.
    // (With `auto`, a call's grammar from the model's marker on, unless a
    // response format is asked for.)
    let asked = match setup.grammar.clone() {
        Some(g) => Some(g),
        None => structured::asked(r.common.response_format.as_ref(), r.common.grammar.as_ref())?
            .or_else(|| setup.lazy.clone()),
    };
    let fmt = setup.format;
    let mut constraints = match &asked {
        Some(a) => structured::compile(&s, a, n)
            .await?
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; n],
    };
    let reqs = (0..n)
        .map(|i| {
            Ok(Request {
                prompt: prompt.clone(),
                sampling: r.common.sampling(i)?,
                max_tokens: max,
                stop: stop.clone(),
                ignore_eos: r.common.ignore_eos,
                logprobs: top,
                prompt_logprobs: None,
                constraint: constraints[i].take(),
                speculate: true,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let rxs = submit_all(&s, reqs)?;
    let thinking = text.trim_end().ends_with("<think>");
    let id = new_id("chatcmpl");
    let created = now();
    let model = s.opts.model_id.clone();
    if !r.common.stream {
        let out = collect(&s, rxs, t0).await?;
        let mut choices = Vec::new();
        let (mut completion, mut cached) = (0, 0);
        for (i, c) in out.iter().enumerate() {
            let splitter = Splitter::new(&s.template.source, thinking, fmt);
            let (reasoning, content, calls) = splitter.split_all(&c.text);
            let mut message = json!({"role": "assistant", "content": content});
            let mut finish = c.finish.map(|f| f.as_str());
            if fmt.is_some() || !calls.is_empty() {
                message["content"] = json!(tools::trimmed(&content));
            }
            if !calls.is_empty() {
                message["tool_calls"] = json!(calls);
                if finish == Some("stop") {
                    finish = Some("tool_calls");
                }
            }
            if !reasoning.is_empty() {
                message["reasoning_content"] = json!(reasoning);
            }
            let logprobs = top.map(|_| {
                json!({"content": c.tokens.iter()
                    .filter_map(|(_, lp)| lp.as_ref().map(|lp| logprob_json(&s, lp)))
                    .collect::<Vec<_>>()})
            });
            choices.push(json!({
                "index": i,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": finish,
            }));
            completion += c.usage.completion_tokens;
            if i == 0 {
                cached = c.usage.cached_tokens;
            }
        }
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage_json(prompt.len(), completion, cached),
        }))
        .into_response());
    }
    let include_usage = r
        .common
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let events = merge(&s, rxs, t0);
    let preamble = (0..n)
        .map(|i| {
            json!([{"index": i, "delta": {"role": "assistant", "content": ""},
                "logprobs": null, "finish_reason": null}])
        })
        .collect();
    let mut splitters: Vec<Splitter> = (0..n)
        .map(|_| Splitter::new(&s.template.source, thinking, fmt))
        .collect();
    let head = ChunkHead {
        id,
        object: "chat.completion.chunk",
        created,
        model,
    };
    let usage = StreamUsage {
        include: include_usage,
        prompt_tokens: prompt.len(),
        per_prompt: n,
    };
    Ok(sse(head, events, n, usage, preamble, move |i, ev| {
        let (d, lp, mut finish) = match ev {
            Event::Token { text, logprob, .. } => {
                let lp = logprob.map(|lp| json!({"content": [logprob_json(&s, &lp)]}));
                (splitters[i].push(&text), lp, None)
            }
            Event::Text(text) => (splitters[i].push(&text), None, None),
            Event::Done { finish, .. } => (splitters[i].finish(), None, Some(finish.as_str())),
            Event::PromptLogprobs(_) | Event::Error(_) => return None,
        };
        let delta = d.delta();
        if finish == Some("stop") && splitters[i].calls() > 0 {
            finish = Some("tool_calls");
        }
        if delta == json!({}) && lp.is_none() && finish.is_none() {
            return None;
        }
        Some(json!([{"index": i, "delta": delta, "logprobs": lp,
            "finish_reason": finish}]))
    }))
}
