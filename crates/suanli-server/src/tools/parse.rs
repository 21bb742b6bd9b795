//! The model's own call format parsed, streamed or whole: Hermes
//! `<tool_call>` JSON, Llama 3.1's `{"name", "parameters"}`, DeepSeek's
//! call tokens with a json fence, gpt-oss's harmony messages (split by
//! [`crate::harmony`]) — into content and OpenAI `tool_calls`.

use serde_json::{json, Value};

use super::{Format, DS_CALLS_BEGIN, DS_CALLS_END, DS_FENCE, DS_SEP};

/// One piece of parsed output.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Content(String),
    /// Call `index` begins: its id and the function's name.
    Call {
        index: usize,
        id: String,
        name: String,
    },
    /// More of call `index`'s arguments (JSON text).
    Args {
        index: usize,
        text: String,
    },
}

/// A call being generated.
struct Open {
    buf: String,
    /// Where the arguments start in `buf`, once the name has been seen.
    args_at: Option<usize>,
    /// Argument bytes already sent.
    sent: usize,
}

/// Splits generated text into content and calls, incrementally.
pub struct Parser {
    fmt: Format,
    held: String,
    open: Option<Open>,
    calls: usize,
    /// Llama 3's call is the whole reply: decided at the first non-blank.
    decided: bool,
}

impl Parser {
    pub fn new(fmt: Format) -> Self {
        Parser {
            fmt,
            held: String::new(),
            open: None,
            calls: 0,
            decided: false,
        }
    }

    /// Calls seen so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        self.held.push_str(text);
        if self.fmt == Format::DeepSeek {
            // The markers around the calls carry nothing (single tokens:
            // they come whole).
            for m in [DS_CALLS_BEGIN, DS_CALLS_END] {
                if self.held.contains(m) {
                    self.held = self.held.replace(m, "");
                }
            }
        }
        loop {
            if let Some(open) = &mut self.open {
                open.buf.push_str(&std::mem::take(&mut self.held));
                let close = self.fmt.close();
                if !close.is_empty() {
                    if let Some(at) = open.buf.find(close) {
                        self.held = open.buf[at + close.len()..].to_string();
                        open.buf.truncate(at);
                        self.end_call(&mut out);
                        continue;
                    }
                }
                self.stream_args(&mut out);
                return out;
            }
            if self.fmt == Format::Llama3 {
                if !self.decided {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        return out;
                    }
                    self.decided = true;
                    let t = t.strip_prefix("<|python_tag|>").unwrap_or(t);
                    if t.starts_with('{') {
                        self.open = Some(Open {
                            buf: t.to_string(),
                            args_at: None,
                            sent: 0,
                        });
                        self.held.clear();
                        continue;
                    }
                }
                out.push(Piece::Content(std::mem::take(&mut self.held)));
                return out;
            }
            let open = self.fmt.open();
            if let Some(at) = self.held.find(open) {
                let before = self.held[..at].to_string();
                self.content(before, &mut out);
                self.held = self.held[at + open.len()..].to_string();
                self.open = Some(Open {
                    buf: String::new(),
                    args_at: None,
                    sent: 0,
                });
                continue;
            }
            // Hold back what may be the start of the marker, and blanks.
            let keep = (0..self.held.len())
                .filter(|&i| self.held.is_char_boundary(i))
                .find(|&i| open.starts_with(&self.held[i..]))
                .unwrap_or(self.held.len());
            if !self.held[..keep].trim().is_empty() {
                let text: String = self.held.drain(..keep).collect();
                out.push(Piece::Content(text));
            }
            return out;
        }
    }

    /// Content before a call: blanks between calls are dropped.
    fn content(&mut self, text: String, out: &mut Vec<Piece>) {
        if !text.trim().is_empty() {
            out.push(Piece::Content(text));
        }
    }

    /// Once `{"name": "…", "<args>": ` is in, the name goes out; then the
    /// arguments, all but a tail that may be the object's closing brace.
    fn stream_args(&mut self, out: &mut Vec<Piece>) {
        let Some(open) = &mut self.open else { return };
        if open.args_at.is_none() {
            let h = match self.fmt {
                Format::DeepSeek => ds_head(&open.buf),
                f => head(&open.buf, f.args_key()),
            };
            if let Some((name, at)) = h {
                open.args_at = Some(at);
                out.push(Piece::Call {
                    index: self.calls,
                    id: call_id(),
                    name,
                });
            }
        }
        if let Some(at) = open.args_at {
            // Not what may be the start of the closing marker either.
            let close = self.fmt.close();
            let end = (at..open.buf.len())
                .filter(|&i| open.buf.is_char_boundary(i))
                .find(|&i| !close.is_empty() && close.starts_with(&open.buf[i..]))
                .unwrap_or(open.buf.len());
            let args = &open.buf[at..end];
            // Held back: what may be the wrapping object's closing brace, or
            // the closing fence.
            let safe = match self.fmt.bare_args() {
                true => args.trim_end_matches(|c: char| c == '`' || c.is_whitespace()),
                false => args.trim_end_matches(|c: char| c == '}' || c.is_whitespace()),
            };
            if safe.len() > open.sent {
                out.push(Piece::Args {
                    index: self.calls,
                    text: safe[open.sent..].to_string(),
                });
                open.sent = safe.len();
            }
        }
    }

    /// The call's text is complete: the rest of its arguments go out (or
    /// the whole call, when its head was not in the expected order).
    fn end_call(&mut self, out: &mut Vec<Piece>) {
        self.stream_args(out);
        let Some(open) = self.open.take() else { return };
        let body = open.buf.trim();
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let key = self.fmt.args_key();
        match open.args_at {
            Some(at) => {
                let raw = open.buf[at..].trim_end();
                let raw = match self.fmt.bare_args() {
                    true => raw.strip_suffix("```").unwrap_or(raw).trim_end(),
                    false => raw.strip_suffix('}').unwrap_or(raw).trim_end(),
                };
                if raw.len() > open.sent {
                    out.push(Piece::Args {
                        index: self.calls,
                        text: raw[open.sent..].to_string(),
                    });
                }
                self.calls += 1;
            }
            None => {
                let name = parsed
                    .as_ref()
                    .and_then(|v| v.get("name"))
                    .and_then(Value::as_str);
                match (name, &parsed) {
                    (Some(name), Some(v)) => {
                        let args = v
                            .get(key)
                            .or_else(|| v.get("arguments"))
                            .cloned()
                            .unwrap_or_else(|| json!({}));
                        out.push(Piece::Call {
                            index: self.calls,
                            id: call_id(),
                            name: name.to_string(),
                        });
                        out.push(Piece::Args {
                            index: self.calls,
                            text: args.to_string(),
                        });
                        self.calls += 1;
                    }
                    _ => {
                        // Not a call after all: give the text back.
                        let text = format!("{}{}{}", self.fmt.open(), open.buf, self.fmt.close());
                        out.push(Piece::Content(text));
                    }
                }
            }
        }
    }

    /// End of generation: an unclosed call is closed, held text released.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        if self.open.is_some() {
            if let Some(open) = &mut self.open {
                open.buf.push_str(&std::mem::take(&mut self.held));
            }
            self.end_call(&mut out);
        }
        let rest = std::mem::take(&mut self.held);
        if !rest.trim().is_empty() || (self.calls == 0 && !rest.is_empty()) {
            out.push(Piece::Content(rest));
        }
        out
    }
}

/// `{"name": "N", "KEY": ` at the start of `s` (blanks allowed): the name
/// and where the arguments begin.
fn head(s: &str, key: &str) -> Option<(String, usize)> {
    let mut i = 0;
    let b = s.as_bytes();
    let ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let lit = |i: &mut usize, l: &str| -> Option<()> {
        ws(i);
        if s[*i..].starts_with(l) {
            *i += l.len();
            Some(())
        } else {
            None
        }
    };
    lit(&mut i, "{")?;
    lit(&mut i, "\"name\"")?;
    lit(&mut i, ":")?;
    ws(&mut i);
    // The name string, escapes and all.
    let mut de = serde_json::Deserializer::from_str(&s[i..]).into_iter::<String>();
    let name = de.next()?.ok()?;
    i += de.byte_offset();
    lit(&mut i, ",")?;
    if lit(&mut i, &format!("\"{key}\"")).is_none() {
        lit(&mut i, "\"arguments\"")?;
    }
    lit(&mut i, ":")?;
    ws(&mut i);
    (i < s.len()).then_some((name, i))
}

/// DeepSeek's `function<｜tool▁sep｜>NAME\n```json\n` at the start of
/// `s`: the name and where the arguments begin.
fn ds_head(s: &str) -> Option<(String, usize)> {
    let sep = s.find(DS_SEP)?;
    let rest = &s[sep + DS_SEP.len()..];
    let nl = rest.find('\n')?;
    let name = rest[..nl].trim().to_string();
    let after = &rest[nl + 1..];
    let fence = after.trim_start();
    if !fence.starts_with(DS_FENCE) && !DS_FENCE.starts_with(fence) {
        return None;
    }
    let fence_at = after.len() - fence.len();
    let body = fence.strip_prefix(DS_FENCE)?;
    let at = sep + DS_SEP.len() + nl + 1 + fence_at + DS_FENCE.len();
    // The arguments start after the fence's line end.
    let skip = body.len() - body.trim_start_matches([' ', '\r', '\n']).len();
    (!name.is_empty() && !body.trim().is_empty()).then_some((name, at + skip))
}

pub(crate) fn call_id() -> String {
    format!("call_{:024x}", rand::random::<u128>() >> 32)
}

/// A whole reply, parsed: its content (`None` when blank) and calls as the
/// OpenAI message's `tool_calls`.
pub fn parse_all(fmt: Format, text: &str) -> (Option<String>, Vec<Value>) {
    if fmt == Format::Harmony {
        let (_, content, calls) = crate::harmony::parse_all(text);
        return (content, calls);
    }
    let mut p = Parser::new(fmt);
    let mut pieces = p.push(text);
    pieces.extend(p.finish());
    let (content, calls) = collect(pieces);
    (trimmed(&content), calls)
}

/// Pieces as a message's content, as written, and `tool_calls`.
pub(crate) fn collect(pieces: Vec<Piece>) -> (String, Vec<Value>) {
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Content(t) => content.push_str(&t),
            Piece::Call { id, name, .. } => calls.push(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": ""},
            })),
            Piece::Args { index, text } => {
                if let Some(Value::String(a)) = calls
                    .get_mut(index)
                    .and_then(|c| c.pointer_mut("/function/arguments"))
                {
                    a.push_str(&text);
                }
            }
        }
    }
    (content, calls)
}

/// Content as a message with calls gives it: trimmed, `None` when blank.
pub(crate) fn trimmed(content: &str) -> Option<String> {
    Some(content.trim().to_string()).filter(|c| !c.is_empty())
}

/// A streamed piece as a chat delta.
pub fn delta(p: &Piece) -> Value {
    match p {
        Piece::Content(t) => json!({"content": t}),
        Piece::Call { index, id, name } => json!({"tool_calls": [{
            "index": index, "id": id, "type": "function",
            "function": {"name": name, "arguments": ""},
        }]}),
        Piece::Args { index, text } => json!({"tool_calls": [{
            "index": index, "function": {"arguments": text},
        }]}),
    }
}
