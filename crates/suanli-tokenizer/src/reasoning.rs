//! Separating a reasoning model's thinking (`<think>…</think>`, DeepSeek-R1,
//! Qwen3) from its answer, on whole texts and while streaming.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before any output: a `<think>` may open (after whitespace).
    Start,
    Reasoning,
    /// Just after `</think>`: newlines before the answer are dropped.
    AfterThink,
    Content,
}

/// Streaming splitter. Output before `</think>` is reasoning when the prompt
/// opened a think block or the output starts with `<think>`.
pub struct ReasoningParser {
    state: State,
    /// Text held back because it may be the start of a tag.
    held: String,
}

/// What one chunk of output contributed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub reasoning: String,
    pub content: String,
}

/// Length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_tag(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&k| s.is_char_boundary(s.len() - k) && tag.starts_with(&s[s.len() - k..]))
        .unwrap_or(0)
}

impl ReasoningParser {
    /// `starts_in_reasoning`: the prompt already opened a think block
    /// (DeepSeek-R1's template ends with `<think>\n`).
    pub fn new(starts_in_reasoning: bool) -> Self {
        ReasoningParser {
            state: if starts_in_reasoning {
                State::Reasoning
            } else {
                State::Start
            },
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Delta {
        self.held.push_str(text);
        let mut d = Delta::default();
        loop {
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(t) {
                        return d; // maybe the tag, maybe not: wait
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Reasoning => match self.held.find(CLOSE) {
                    Some(i) => {
                        d.reasoning.push_str(&self.held[..i]);
                        self.held = self.held[i + CLOSE.len()..].to_string();
                        self.state = State::AfterThink;
                    }
                    None => {
                        let keep = partial_tag(&self.held, CLOSE);
                        let emit = self.held.len() - keep;
                        d.reasoning.push_str(&self.held[..emit]);
                        self.held.drain(..emit);
                        return d;
                    }
                },
                State::AfterThink => {
                    let t = self.held.trim_start_matches(['\n', '\r']);
                    if t.is_empty() {
                        self.held.clear();
                        return d;
                    }
                    self.held = t.to_string();
                    self.state = State::Content;
                }
                State::Content => {
                    d.content.push_str(&self.held);
                    self.held.clear();
                    return d;
                }
            }
        }
    }

    /// Flush at the end of output.
    pub fn finish(&mut self) -> Delta {
        let rest = std::mem::take(&mut self.held);
        match self.state {
            State::Reasoning => Delta {
                reasoning: rest,
                content: String::new(),
            },
            State::AfterThink => Delta::default(),
            State::Start | State::Content => Delta {
                reasoning: String::new(),
                content: rest,
            },
        }
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
