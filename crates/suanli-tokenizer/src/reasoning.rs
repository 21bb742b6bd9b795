//! Separating a reasoning model's thinking (`<think>…</think>`, DeepSeek-R1,
//! Qwen3) from its answer, on whole texts and while streaming.

/// Streaming splitter. Text before `</think>` is reasoning when the output
/// starts inside a think block (the template opened it) or after `<think>`.
pub struct ReasoningParser {
    open: String,
    close: String,
    in_reasoning: bool,
    /// Text held back because it may be the start of a tag.
    held: String,
    /// Whether any content has been seen (an opening tag only counts at the start).
    seen_content: bool,
}

/// What one chunk of output contributed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub reasoning: String,
    pub content: String,
}

impl ReasoningParser {
    /// `starts_in_reasoning`: the prompt already opened a think block
    /// (DeepSeek-R1's template ends with `<think>\n`).
    pub fn new(starts_in_reasoning: bool) -> Self {
        ReasoningParser {
            open: "<think>".into(),
            close: "</think>".into(),
            in_reasoning: starts_in_reasoning,
            held: String::new(),
            seen_content: false,
        }
    }

    pub fn push(&mut self, text: &str) -> Delta {
        self.held.push_str(text);
        let mut d = Delta::default();
        loop {
            let tag = if self.in_reasoning {
                &self.close
            } else {
                &self.open
            };
            if !self.in_reasoning && self.seen_content {
                d.content.push_str(&self.held);
                self.held.clear();
                return d;
            }
            if let Some(i) = self.held.find(tag.as_str()) {
                let before: String = self.held[..i].to_string();
                let rest = self.held[i + tag.len()..].to_string();
                if self.in_reasoning {
                    d.reasoning.push_str(&before);
                    self.in_reasoning = false;
                    self.held = rest.trim_start_matches('\n').to_string();
                    // Leading newlines after </think> are dropped; an empty
                    // rest means more may follow.
                    self.seen_content = false;
                } else if before.trim().is_empty() {
                    self.in_reasoning = true;
                    self.held = rest;
                } else {
                    self.seen_content = true;
                    continue;
                }
                continue;
            }
            // Keep back a suffix that could begin the tag.
            let keep = (1..tag.len().min(self.held.len() + 1))
                .rev()
                .find(|&k| {
                    self.held.is_char_boundary(self.held.len() - k)
                        && tag.starts_with(&self.held[self.held.len() - k..])
                })
                .unwrap_or(0);
            let emit_to = self.held.len() - keep;
            let emit = self.held[..emit_to].to_string();
            self.held.drain(..emit_to);
            if self.in_reasoning {
                d.reasoning.push_str(&emit);
            } else if !emit.trim().is_empty() {
                self.seen_content = true;
                d.content.push_str(&emit);
            } else {
                // Whitespace before a possible opening tag: hold it.
                self.held.insert_str(0, &emit);
                return d;
            }
            return d;
        }
    }

    /// Flush at the end of output.
    pub fn finish(&mut self) -> Delta {
        let mut d = Delta::default();
        let rest = std::mem::take(&mut self.held);
        if self.in_reasoning {
            d.reasoning = rest;
        } else {
            d.content = rest;
        }
        d
    }

    /// Split a whole text.
    pub fn split(text: &str, starts_in_reasoning: bool) -> Delta {
        let mut p = ReasoningParser::new(starts_in_reasoning);
        let mut d = p.push(text);
        let f = p.finish();
        d.reasoning.push_str(&f.reasoning);
        d.content.push_str(&f.content);
        d
    }
}
