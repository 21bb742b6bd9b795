//! Constrained decoding through llguidance: a grammar (a JSON schema, a
//! Lark grammar or a regular expression) compiled against the model's
//! vocabulary into a per-request [`Constraint`] whose token mask the
//! engine applies before every draw, so no token the grammar forbids is
//! ever sampled.
//!
//! [`Constrainer`] is built once per model: it turns every token id into
//! the bytes it stands for (control tokens as llguidance's `0xFF`-prefixed
//! special tokens, ids past the tokenizer's vocabulary as nothing) and the
//! end-of-generation tokens into the trie's EOS set. Compiling is done by
//! the caller (the server, off the engine thread); the mask of the first
//! token is computed then too.
//!
//! A lazy constraint ([`Constrainer::compile_lazy`]) leaves the output
//! free until a marker (a model's tool-call tag) has been generated, then
//! holds what follows to its grammar until that is complete, and waits for
//! the marker again: `tool_choice: auto` with calls that always parse.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use serde_json::Value;
use suanli_tokenizer::Tokenizer;

/// What the output must match.
#[derive(Debug, Clone)]
pub enum Grammar {
    /// JSON valid against a schema. Not `strict`: keywords llguidance
    /// cannot enforce are approximated or ignored rather than refused.
    JsonSchema { schema: Value, strict: bool },
    /// llguidance's Lark dialect.
    Lark(String),
    /// A regular expression (Rust `regex` syntax) the whole output matches.
    Regex(String),
}

impl Grammar {
    /// Any JSON object (`response_format: json_object`).
    pub fn json_object() -> Grammar {
        Grammar::JsonSchema {
            schema: serde_json::json!({"type": "object"}),
            strict: false,
        }
    }

    fn top_level(&self) -> TopLevelGrammar {
        match self {
            Grammar::JsonSchema { schema, strict } => {
                let mut schema = schema.clone();
                // Compact separators as `json.dumps` writes them and no free
                // whitespace (a model could pad forever); a schema's own
                // `x-guidance` options win.
                if let Some(obj) = schema.as_object_mut() {
                    if !obj.contains_key("x-guidance") {
                        obj.insert("x-guidance".into(), json_options(*strict));
                    }
                }
                TopLevelGrammar::from_json_schema(schema)
            }
            Grammar::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
            Grammar::Regex(r) => TopLevelGrammar::from_regex(r),
        }
    }
}

/// llguidance's JSON options as suanli uses them (a schema's
/// `x-guidance`): `json.dumps` separators, no free whitespace, and when not
/// `strict`, what cannot be enforced approximated instead of refused.
pub fn json_options(strict: bool) -> Value {
    let opts = JsonCompileOptions {
        item_separator: ", ".into(),
        key_separator: ": ".into(),
        whitespace_flexible: false,
        lenient: !strict,
        coerce_one_of: !strict,
        ..Default::default()
    };
    serde_json::to_value(&opts).unwrap_or(Value::Null)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstrainError {
    /// The grammar does not compile (the reason as llguidance gives it).
    #[error("{0}")]
    Compile(String),
    /// The vocabulary could not be turned into a token trie.
    #[error("building the token trie: {0}")]
    Vocab(String),
}

/// The tokenizer as llguidance sees it.
struct Env {
    trie: TokTrie,
    tok: Arc<Tokenizer>,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |s| {
            self.tok
                .encode(s, false, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s.as_bytes()))
        })
    }
}

/// Compiles grammars for one model's vocabulary.
pub struct Constrainer {
    factory: ParserFactory,
}

impl std::fmt::Debug for Constrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constrainer").finish_non_exhaustive()
    }
}

/// Each token's bytes as llguidance wants them: text tokens as their
/// bytes, control tokens as `0xFF` + their text, ids the tokenizer does not
/// know (the model's padding rows) as nothing.
pub fn token_bytes(tok: &Tokenizer, n_vocab: usize) -> Vec<Vec<u8>> {
    (0..n_vocab as u32)
        .map(|id| {
            let plain = tok.token_bytes(id, false).unwrap_or_default();
            if !plain.is_empty() {
                return plain;
            }
            let special = tok.token_bytes(id, true).unwrap_or_default();
            if special.is_empty() {
                return special;
            }
            let mut b = Vec::with_capacity(special.len() + 1);
            b.push(TokTrie::SPECIAL_TOKEN_MARKER);
            b.extend(special);
            b
        })
        .collect()
}

impl Constrainer {
    /// For a model with `n_vocab` logits per position (at least the
    /// tokenizer's vocabulary).
    pub fn new(tok: Arc<Tokenizer>, n_vocab: usize) -> Result<Self, ConstrainError> {
        let words = token_bytes(&tok, n_vocab);
        let mut eos: Vec<u32> = tok.eog.clone();
        eos.extend(tok.eos);
        eos.retain(|&t| (t as usize) < n_vocab);
        eos.dedup();
        let Some(&first) = eos.first() else {
            return Err(ConstrainError::Vocab(
                "the model has no end-of-generation token".into(),
            ));
        };
        let built = catch_unwind(AssertUnwindSafe(|| {
            let info = TokRxInfo::new(n_vocab as u32, first);
            TokTrie::from(&info, &words).with_eos_tokens(&eos)
        }));
        let trie = built.map_err(|_| ConstrainError::Vocab("the trie builder failed".into()))?;
        let env = Arc::new(Env { trie, tok });
        let mut factory = ParserFactory::new_simple(&(env as _))
            .map_err(|e| ConstrainError::Vocab(e.to_string()))?;
        factory.quiet();
        Ok(Constrainer { factory })
    }

    /// A fresh constraint for one sequence, its first mask computed (a
    /// grammar that fails only when run fails here).
    pub fn compile(&self, g: &Grammar) -> Result<Constraint, ConstrainError> {
        let parser = self
            .factory
            .create_parser(g.top_level())
            .map_err(|e| ConstrainError::Compile(e.to_string()))?;
        let mut c = Constraint {
            matcher: Box::new(Matcher::new(Ok(parser))),
            mask: None,
            lazy: None,
        };
        if let Some(e) = c.matcher.get_error() {
            return Err(ConstrainError::Compile(e));
        }
        c.precompute();
        if let Some(e) = c.matcher.get_error() {
            return Err(ConstrainError::Compile(e));
        }
        Ok(c)
    }

    /// A constraint that holds the output to a grammar only after its
    /// trigger: from the moment `trigger.marker` ends a token's text until
    /// the grammar is complete, then free until the next marker.
    ///
    /// Without a header, `grammars` is one grammar (its key unused). With
    /// one (`trigger.header_start`), the text since the last header start
    /// (or the output's start) picks the grammar whose key it names — a key
    /// followed by no name character, so `f` is not `f2` — and a header
    /// that names none leaves the output free: harmony's
    /// `to=functions.NAME … <|message|>` holds that function's arguments,
    /// its `<|channel|>final<|message|>` nothing.
    pub fn compile_lazy(
        &self,
        trigger: &Trigger,
        grammars: &[(String, Grammar)],
    ) -> Result<Constraint, ConstrainError> {
        if trigger.marker.is_empty() {
            return Err(ConstrainError::Compile("an empty marker".into()));
        }
        let Some(((_, first), rest)) = grammars.split_first() else {
            return Err(ConstrainError::Compile(
                "a lazy grammar needs a grammar".into(),
            ));
        };
        if trigger.header_start.is_none() && !rest.is_empty() {
            return Err(ConstrainError::Compile(
                "grammars picked by key need a header".into(),
            ));
        }
        let mut c = self.compile(first)?;
        let mut fresh = vec![(grammars[0].0.as_bytes().to_vec(), c.matcher.deep_clone())];
        for (key, g) in rest {
            fresh.push((key.as_bytes().to_vec(), *self.compile(g)?.matcher));
        }
        c.lazy = Some(Box::new(Lazy {
            marker: trigger.marker.as_bytes().to_vec(),
            header_start: trigger.header_start.as_ref().map(|h| h.as_bytes().to_vec()),
            fresh,
            active: false,
            tail: Vec::new(),
        }));
        Ok(c)
    }
}

/// When a lazy grammar takes hold (see [`Constrainer::compile_lazy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The text whose end, at the end of a token's text, starts a grammar:
    /// a model's tool-call tag.
    pub marker: String,
    /// Where a header starts, for grammars picked by the key the header
    /// names; `None`: one grammar, whatever came before the marker.
    pub header_start: Option<String>,
}

impl Trigger {
    /// A grammar from `marker` on.
    pub fn marker(marker: &str) -> Trigger {
        Trigger {
            marker: marker.into(),
            header_start: None,
        }
    }
}

/// The longest header kept while looking for a key (a header past it is
/// not one).
const MAX_HEADER: usize = 1024;

/// A lazy constraint's trigger (see [`Constrainer::compile_lazy`]).
struct Lazy {
    marker: Vec<u8>,
    header_start: Option<Vec<u8>>,
    /// Each grammar's matcher before any token, for the next call, with
    /// the key its header names.
    fresh: Vec<(Vec<u8>, Matcher)>,
    /// Whether the grammar holds the output now.
    active: bool,
    /// The last bytes generated while free: the marker's length, or the
    /// header so far.
    tail: Vec<u8>,
}

impl Lazy {
    /// The grammar the header in `tail` picks, if any.
    fn pick(&self) -> Option<usize> {
        if self.header_start.is_none() {
            return Some(0);
        }
        let name_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
        self.fresh.iter().position(|(key, _)| {
            !key.is_empty()
                && self.tail.windows(key.len()).enumerate().any(|(i, w)| {
                    w == key.as_slice()
                        && self.tail.get(i + key.len()).is_none_or(|&b| !name_char(b))
                })
        })
    }

    /// Take the generated `bytes` in while free; the grammar to start, when
    /// they end the marker.
    fn take(&mut self, bytes: &[u8]) -> Option<usize> {
        self.tail.extend_from_slice(bytes);
        if let Some(h) = &self.header_start {
            if let Some(at) = find_last(&self.tail, h) {
                self.tail.drain(..at);
            }
        }
        let picked = if self.tail.ends_with(&self.marker) {
            let p = self.pick();
            if self.header_start.is_some() {
                // The header is over: the next one starts afresh.
                self.tail.clear();
            }
            p
        } else {
            None
        };
        let keep = match self.header_start {
            Some(_) => MAX_HEADER,
            None => self.marker.len(),
        };
        if self.tail.len() > keep {
            self.tail.drain(..self.tail.len() - keep);
        }
        picked
    }
}

/// Where the last `needle` starts in `hay`.
fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .rev()
        .find(|&i| &hay[i..i + needle.len()] == needle)
}

impl Clone for Lazy {
    fn clone(&self) -> Self {
        Lazy {
            marker: self.marker.clone(),
            header_start: self.header_start.clone(),
            fresh: self
                .fresh
                .iter()
                .map(|(k, m)| (k.clone(), m.deep_clone()))
                .collect(),
            active: self.active,
            tail: self.tail.clone(),
        }
    }
}

/// One sequence's grammar state and the mask of its next token.
pub struct Constraint {
    /// Boxed: a matcher is large and requests travel by value.
    matcher: Box<Matcher>,
    /// The next token's mask (or why there is none), once computed.
    mask: Option<Result<SimpleVob, String>>,
    /// Boxed: most constraints are not lazy.
    lazy: Option<Box<Lazy>>,
}

impl Clone for Constraint {
    fn clone(&self) -> Self {
        Constraint {
            matcher: Box::new(self.matcher.deep_clone()),
            mask: self.mask.clone(),
            lazy: self.lazy.clone(),
        }
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("mask_ready", &self.mask.is_some())
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Whether the grammar holds the next token (a lazy one's only after
    /// its marker).
    fn holds(&self) -> bool {
        self.lazy.as_ref().is_none_or(|l| l.active)
    }

    /// Whether the next mask still has to be computed.
    pub fn needs_mask(&self) -> bool {
        self.holds() && self.mask.is_none()
    }

    /// Compute the next token's mask now (the engine does this on a helper
    /// thread while the forward pass runs).
    pub fn precompute(&mut self) {
        if self.holds() && self.mask.is_none() {
            let m = self
                .matcher
                .compute_mask_or_eos()
                .map_err(|e| e.to_string());
            self.mask = Some(m);
        }
    }

    /// Set every forbidden token's logit to −∞. An error when the grammar
    /// failed or admits no token at all.
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<(), String> {
        if !self.holds() {
            return Ok(());
        }
        self.precompute();
        let mask = match &self.mask {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("grammar: {e}")),
            None => return Err("grammar: no mask".into()),
        };
        let mut any = false;
        for (w, chunk) in mask.as_slice().iter().zip(logits.chunks_mut(32)) {
            match *w {
                0 => chunk.fill(f32::NEG_INFINITY),
                u32::MAX => any = true,
                w => {
                    for (b, l) in chunk.iter_mut().enumerate() {
                        if w & (1 << b) == 0 {
                            *l = f32::NEG_INFINITY;
                        } else {
                            any = true;
                        }
                    }
                }
            }
        }
        // Logits past the mask (none when the mask covers the model's
        // vocabulary) are forbidden too.
        let covered = mask.as_slice().len() * 32;
        if logits.len() > covered {
            logits[covered..].fill(f32::NEG_INFINITY);
        }
        if !any {
            return Err("the grammar admits no token here".into());
        }
        Ok(())
    }

    /// Advance past the sampled token.
    pub fn accept(&mut self, token: u32) -> Result<(), String> {
        self.mask = None;
        let Some(lazy) = self.lazy.as_mut() else {
            return self
                .matcher
                .consume_token(token)
                .map_err(|e| format!("grammar: {e}"));
        };
        if lazy.active {
            self.matcher
                .consume_token(token)
                .map_err(|e| format!("grammar: {e}"))?;
            if self.matcher.is_stopped() {
                // The call is complete: free again until the next marker.
                lazy.active = false;
                lazy.tail.clear();
            }
            return Ok(());
        }
        let env = self
            .matcher
            .tok_env()
            .map_err(|e| format!("grammar: {e}"))?;
        let bytes = env.tok_trie().token(token);
        let bytes = bytes
            .strip_prefix(&[TokTrie::SPECIAL_TOKEN_MARKER])
            .unwrap_or(bytes);
        if let Some(i) = lazy.take(bytes) {
            *self.matcher = lazy.fresh[i].1.deep_clone();
            lazy.active = true;
        }
        Ok(())
    }

    /// Whether the grammar is complete and admits nothing more (never for
    /// a lazy one: the reply may go on after a call).
    pub fn is_stopped(&self) -> bool {
        self.lazy.is_none() && self.matcher.is_stopped()
    }
}
