//! gpt-oss's harmony output split into its channels, whole or streamed:
//! `analysis` is the reasoning (`reasoning_content`), `final` the answer
//! (`content`), a `commentary` message addressed `to=functions.NAME` a
//! tool call (its body the JSON arguments), other commentary content.
//!
//! The generation prompt ends with `<|start|>assistant`; the model writes
//! messages as `[ to=RECIPIENT]<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>TYPE]<|message|>BODY`,
//! each ended by `<|end|>` and followed by `<|start|>assistant…`, the last
//! by `<|return|>` or `<|call|>` (end of generation). The tokenizer writes
//! `<|start|>`, `<|channel|>`, `<|message|>` and `<|constrain|>` into the
//! text (as llama.cpp does) and drops the ending tokens, so a message ends
//! where the next `<|start|>` begins or where the text ends.

use crate::tools::Piece;

pub(crate) const START: &str = "<|start|>";
const CHANNEL: &str = "<|channel|>";
pub(crate) const MESSAGE: &str = "<|message|>";
/// Ending tokens, should a tokenizer write them after all.
const ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];

/// What one message of the output is.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Reasoning,
    Content,
    /// A call: its index among the reply's calls.
    Call(usize),
}

/// One piece of split output.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Reasoning(String),
    /// Content or a call, as the tool parser gives them.
    Piece(Piece),
}

/// Splits harmony output incrementally.
pub struct Parser {
    /// Text not yet handed out: a header being read, or a body's tail that
    /// may be the start of a marker.
    held: String,
    /// The message whose body is being read; `None` while in a header.
    body: Option<Kind>,
    calls: usize,
    /// Whether any header was seen (text before one is content).
    seen_header: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of a marker.
fn partial_marker(s: &str) -> usize {
    let markers = [START, CHANNEL, MESSAGE, ENDS[0], ENDS[1], ENDS[2]];
    (1..s.len().min(16) + 1)
        .rev()
        .find(|&k| {
            s.is_char_boundary(s.len() - k)
                && markers
                    .iter()
                    .any(|m| m.len() > k && m.starts_with(&s[s.len() - k..]))
        })
        .unwrap_or(0)
}

/// The recipient of a header (`… to=functions.get_weather …`).
fn recipient(header: &str) -> Option<&str> {
    let at = header.find("to=")?;
    let r = &header[at + 3..];
    let end = r
        .find(|c: char| c.is_whitespace() || c == '<')
        .unwrap_or(r.len());
    Some(&r[..end])
}

/// The channel a header names.
fn channel(header: &str) -> Option<&str> {
    let at = header.find(CHANNEL)?;
    let c = header[at + CHANNEL.len()..].trim_start();
    let end = c
        .find(|ch: char| ch.is_whitespace() || ch == '<')
        .unwrap_or(c.len());
    Some(&c[..end])
}

impl Parser {
    pub fn new() -> Self {
        Parser {
            held: String::new(),
            body: None,
            calls: 0,
            seen_header: false,
        }
    }

    /// Calls seen so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// The kind of message a complete header starts, and a call's opening
    /// piece.
    fn open(&mut self, header: &str, out: &mut Vec<Out>) -> Kind {
        self.seen_header = true;
        if let Some(name) = recipient(header).and_then(|r| r.strip_prefix("functions.")) {
            let index = self.calls;
            self.calls += 1;
            out.push(Out::Piece(Piece::Call {
                index,
                id: crate::tools::call_id(),
                name: name.to_string(),
            }));
            return Kind::Call(index);
        }
        match channel(header) {
            Some("analysis") => Kind::Reasoning,
            _ => Kind::Content,
        }
    }

    fn emit(kind: &Kind, text: &str, out: &mut Vec<Out>) {
        if text.is_empty() {
            return;
        }
        out.push(match kind {
            Kind::Reasoning => Out::Reasoning(text.to_string()),
            Kind::Content => Out::Piece(Piece::Content(text.to_string())),
            Kind::Call(index) => Out::Piece(Piece::Args {
                index: *index,
                text: text.to_string(),
            }),
        });
    }

    pub fn push(&mut self, text: &str) -> Vec<Out> {
        let mut out = Vec::new();
        self.held.push_str(text);
        for end in ENDS {
            if self.held.contains(end) {
                self.held = self.held.replace(end, "");
            }
        }
        loop {
            match self.body.clone() {
                Some(kind) => match self.held.find(START) {
                    Some(at) => {
                        Self::emit(&kind, &self.held[..at], &mut out);
                        self.held.drain(..at + START.len());
                        self.body = None;
                    }
                    None => {
                        let keep = partial_marker(&self.held);
                        let emit = self.held.len() - keep;
                        Self::emit(&kind, &self.held[..emit], &mut out);
                        self.held.drain(..emit);
                        return out;
                    }
                },
                None => {
                    // A header: the whole of it is needed.
                    if let Some(at) = self.held.find(MESSAGE) {
                        let header = self.held[..at].to_string();
                        self.held.drain(..at + MESSAGE.len());
                        let kind = self.open(&header, &mut out);
                        self.body = Some(kind);
                        continue;
                    }
                    if !self.seen_header && !self.looks_like_header() {
                        // Plain text, not harmony: content as it comes.
                        self.seen_header = true;
                        self.body = Some(Kind::Content);
                        continue;
                    }
                    return out;
                }
            }
        }
    }

    /// Whether the text held before the first message could still become
    /// a header (`<|channel|>…`, ` to=…`, `assistant…`).
    fn looks_like_header(&self) -> bool {
        let t = self.held.trim_start();
        t.is_empty()
            || t.starts_with(CHANNEL)
            || CHANNEL.starts_with(t)
            || t.starts_with("to=")
            || "to=".starts_with(t)
            || t.starts_with("assistant")
            || "assistant".starts_with(t)
            || t.starts_with(START)
            || START.starts_with(t)
    }

    /// End of generation: held text goes out (a header left unfinished is
    /// given back as content).
    pub fn finish(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.held);
        match self.body.take() {
            Some(kind) => Self::emit(&kind, &rest, &mut out),
            None if !rest.trim().is_empty() => {
                out.push(Out::Piece(Piece::Content(rest)));
            }
            None => {}
        }
        out
    }
}

/// A whole reply split: reasoning, content (`None` when blank) and calls
/// as the OpenAI message's `tool_calls`.
pub fn parse_all(text: &str) -> (String, Option<String>, Vec<serde_json::Value>) {
    let mut p = Parser::new();
    let mut outs = p.push(text);
    outs.extend(p.finish());
    collect(outs)
}

/// Split pieces as reasoning, content (`None` when blank) and calls.
fn collect(outs: Vec<Out>) -> (String, Option<String>, Vec<serde_json::Value>) {
    let mut reasoning = String::new();
    let mut pieces = Vec::new();
    for o in outs {
        match o {
            Out::Reasoning(t) => reasoning.push_str(&t),
            Out::Piece(piece) => pieces.push(piece),
        }
    }
    let (content, calls) = crate::tools::collect(pieces);
    (reasoning, crate::tools::trimmed(&content), calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "<|channel|>analysis<|message|>The user wants the weather; call the tool.<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"巴黎\"}";

    fn run(pieces: &[&str]) -> (String, Option<String>, Vec<serde_json::Value>) {
        let mut p = Parser::new();
        let mut outs = Vec::new();
        for x in pieces {
            outs.extend(p.push(x));
        }
        outs.extend(p.finish());
        collect(outs)
    }

    #[test]
    fn analysis_then_final() {
        let text = "<|channel|>analysis<|message|>2 and 2 make 4.<|end|><|start|>assistant<|channel|>final<|message|>**4**, of course.<|return|>";
        let (r, c, calls) = parse_all(text);
        assert_eq!(r, "2 and 2 make 4.");
        assert_eq!(c.as_deref(), Some("**4**, of course."));
        assert!(calls.is_empty());
        // As the tokenizer writes it (ending tokens dropped), the same.
        let dropped = text.replace("<|end|>", "").replace("<|return|>", "");
        assert_eq!(parse_all(&dropped), (r, c, calls));
    }

    #[test]
    fn a_call_in_any_split_streams_like_the_whole() {
        let (r, c, calls) = parse_all(REPLY);
        assert_eq!(r, "The user wants the weather; call the tool.");
        assert_eq!(c, None);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], "{\"city\": \"巴黎\"}");
        for cut in 1..REPLY.len() {
            if !REPLY.is_char_boundary(cut) {
                continue;
            }
            let (r2, c2, calls2) = run(&[&REPLY[..cut], &REPLY[cut..]]);
            assert_eq!((&r2, &c2), (&r, &c), "cut at {cut}");
            assert_eq!(calls2.len(), 1, "cut at {cut}");
            assert_eq!(calls2[0]["function"], calls[0]["function"], "cut at {cut}");
        }
        // Token by token (characters here).
        let chars: Vec<String> = REPLY.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        let (r3, _, calls3) = run(&refs);
        assert_eq!(r3, r);
        assert_eq!(calls3[0]["function"], calls[0]["function"]);
    }

    #[test]
    fn recipient_before_the_channel_and_two_calls() {
        let text = " to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>";
        let (_, c, calls) = parse_all(text);
        assert_eq!(c, None);
        assert_eq!(calls[0]["function"]["name"], "get_time");
        assert_eq!(calls[0]["function"]["arguments"], "{}");
        let two = format!("{REPLY}<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{{}}");
        let (_, _, calls) = parse_all(&two);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1]["function"]["name"], "get_time");
    }

    #[test]
    fn plain_text_and_unfinished_headers_are_content() {
        assert_eq!(parse_all("Hello there.").1.as_deref(), Some("Hello there."));
        let (r, c, _) = parse_all("<|channel|>analysis<|message|>thinking, then cut off");
        assert_eq!((r.as_str(), c), ("thinking, then cut off", None));
        // A preamble on the commentary channel without a recipient: content.
        let (_, c, _) = parse_all("<|channel|>commentary<|message|>Checking.<|start|>assistant<|channel|>final<|message|>Done.");
        assert_eq!(c.as_deref(), Some("Checking.Done."));
        // A header the generation never finished.
        let (r, c, _) = parse_all("<|channel|>analysis<|message|>x<|start|>assistant<|chan");
        assert_eq!((r.as_str(), c.as_deref()), ("x", Some("assistant<|chan")));
    }
}
