//! A reply's text split into reasoning, content and tool calls, whatever
//! the model's way of writing them: `<think>` blocks and the tool parser's
//! call formats, or gpt-oss's harmony channels.

use serde_json::{json, Value};
use suanli_tokenizer::reasoning::ReasoningParser;

use crate::harmony::{self, Out};
use crate::tools::{self, Format, Piece};

/// What a piece of output contributed.
#[derive(Debug, Default)]
pub struct Split {
    pub reasoning: String,
    pub pieces: Vec<Piece>,
}

impl Split {
    /// The content pieces' text.
    pub fn content(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Content(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// As a chat chunk's delta (`{}` when there is nothing).
    pub fn delta(&self) -> Value {
        let mut v = json!({});
        if !self.reasoning.is_empty() {
            v["reasoning_content"] = json!(self.reasoning);
        }
        let mut content = String::new();
        let mut calls = Vec::new();
        for p in &self.pieces {
            if let Value::Object(mut o) = tools::delta(p) {
                if let Some(Value::String(t)) = o.remove("content") {
                    content.push_str(&t);
                }
                if let Some(Value::Array(c)) = o.remove("tool_calls") {
                    calls.extend(c);
                }
            }
        }
        if !content.is_empty() {
            v["content"] = json!(content);
        }
        if !calls.is_empty() {
            v["tool_calls"] = json!(calls);
        }
        v
    }
}

/// Splits one reply incrementally.
pub enum Splitter {
    /// Reasoning between `<think>` tags, calls in `Format` when the
    /// request has tools.
    Plain(ReasoningParser, Option<tools::Parser>),
    Harmony(harmony::Parser),
}

impl Splitter {
    /// For a model whose chat template is `template`; `thinking`: the
    /// prompt opened a think block; `calls`: the format to parse calls in
    /// (a request with tools).
    pub fn new(template: &str, thinking: bool, calls: Option<Format>) -> Self {
        match Format::of_template(template) {
            Some(Format::Harmony) => Splitter::Harmony(harmony::Parser::new()),
            _ => Splitter::Plain(
                ReasoningParser::new(thinking),
                calls.map(tools::Parser::new),
            ),
        }
    }

    pub fn push(&mut self, text: &str) -> Split {
        match self {
            Splitter::Plain(r, tp) => {
                let d = r.push(text);
                let pieces = match tp {
                    Some(tp) => tp.push(&d.content),
                    None if d.content.is_empty() => Vec::new(),
                    None => vec![Piece::Content(d.content)],
                };
                Split {
                    reasoning: d.reasoning,
                    pieces,
                }
            }
            Splitter::Harmony(h) => harmony_split(h.push(text)),
        }
    }

    /// End of the reply: whatever was held back.
    pub fn finish(&mut self) -> Split {
        match self {
            Splitter::Plain(r, tp) => {
                let d = r.finish();
                let pieces = match tp {
                    Some(tp) => {
                        let mut p = tp.push(&d.content);
                        p.extend(tp.finish());
                        p
                    }
                    None if d.content.is_empty() => Vec::new(),
                    None => vec![Piece::Content(d.content)],
                };
                Split {
                    reasoning: d.reasoning,
                    pieces,
                }
            }
            Splitter::Harmony(h) => harmony_split(h.finish()),
        }
    }

    /// Calls seen so far.
    pub fn calls(&self) -> usize {
        match self {
            Splitter::Plain(_, tp) => tp.as_ref().map_or(0, tools::Parser::calls),
            Splitter::Harmony(h) => h.calls(),
        }
    }

    /// A whole reply: its reasoning, content as written and calls as the
    /// OpenAI message's `tool_calls`.
    pub fn split_all(mut self, text: &str) -> (String, String, Vec<Value>) {
        let mut a = self.push(text);
        let b = self.finish();
        a.reasoning.push_str(&b.reasoning);
        a.pieces.extend(b.pieces);
        let (content, calls) = tools::collect(a.pieces);
        (a.reasoning, content, calls)
    }
}

fn harmony_split(outs: Vec<Out>) -> Split {
    let mut s = Split::default();
    for o in outs {
        match o {
            Out::Reasoning(t) => s.reasoning.push_str(&t),
            Out::Piece(p) => s.pieces.push(p),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_harmony_replies() {
        let hermes = "{% if tools %}<tool_call>{% endif %}";
        let text = "<think>hmm</think>\n\nI'll look.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>";
        let (r, c, calls) = Splitter::new(hermes, false, Some(Format::Hermes)).split_all(text);
        assert_eq!((r.as_str(), c.as_str()), ("hmm", "I'll look."));
        assert_eq!(calls[0]["function"]["arguments"], "{\"a\": 1}");
        // Without tools the call stays text.
        let (_, c, calls) = Splitter::new(hermes, false, None).split_all(text);
        assert!(calls.is_empty() && c.contains("<tool_call>"));
        let oss = "{{- '<|start|>assistant<|channel|>final<|message|>' }}";
        let text = "<|channel|>analysis<|message|>think<|start|>assistant<|channel|>final<|message|>answer";
        let (r, c, calls) = Splitter::new(oss, false, None).split_all(text);
        assert_eq!(
            (r.as_str(), c.as_str(), calls.len()),
            ("think", "answer", 0)
        );
    }
}
