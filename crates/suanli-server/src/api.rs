//! Request bodies of the OpenAI API (the fields suanli reads; unknown
//! fields are ignored as the OpenAI server ignores them), and turning
//! their sampling fields into engine parameters.

use serde::Deserialize;
use serde_json::Value;
use suanli_engine::SamplingParams;

use crate::error::ApiError;

/// `stop`: a string or an array of strings.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn list(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields shared by chat and text completions.
#[derive(Debug, Deserialize, Default)]
pub struct Common {
    pub model: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub n: Option<i64>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub ignore_eos: bool,
    /// `{"type": "text" | "json_object" | "json_schema", …}`.
    pub response_format: Option<Value>,
    /// Extension: a Lark grammar, or `{"type": "lark" | "regex" |
    /// "json_schema", "value": …}`.
    pub grammar: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub common: Common,
    pub messages: Vec<Message>,
    pub max_completion_tokens: Option<i64>,
    /// `true` for logprobs of generated tokens.
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    pub tools: Option<Value>,
    /// `none`, `auto`, `required` or `{"type": "function", "function": {"name"}}`.
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// Extra template arguments (e.g. `enable_thinking`), as vLLM takes them.
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

/// A chat message; `content` may be a string or an array of text parts.
#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Value>,
    pub name: Option<String>,
    pub tool_calls: Option<Value>,
    pub tool_call_id: Option<String>,
    pub reasoning_content: Option<String>,
}

impl Message {
    /// The text of `content` (string or `[{"type": "text", "text": …}]`).
    pub fn text(&self, i: usize) -> Result<Option<String>, ApiError> {
        let param = || format!("messages[{i}].content");
        match &self.content {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(parts)) => {
                let mut out = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => out.push_str(t),
                        (ty, _) => {
                            return Err(ApiError::bad_param(
                                &param(),
                                format!(
                                    "part {j}: only text parts are supported, got type {}",
                                    ty.unwrap_or("(none)")
                                ),
                            ))
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(_) => Err(ApiError::bad_param(
                &param(),
                "content must be a string or an array of text parts",
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(flatten)]
    pub common: Common,
    pub prompt: Value,
    #[serde(default)]
    pub echo: bool,
    /// Logprobs with this many alternatives per token.
    pub logprobs: Option<i64>,
    pub suffix: Option<String>,
    pub best_of: Option<i64>,
}

/// Prompts of a completion request: text to tokenize or token ids.
#[derive(Debug, Clone)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// `prompt` as a string, a list of strings, a token array or a list of
/// token arrays.
pub fn prompts(v: &Value) -> Result<Vec<Prompt>, ApiError> {
    let bad = |m: &str| ApiError::bad_param("prompt", m);
    let tokens = |a: &[Value]| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|t| {
                t.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| bad("token ids must be non-negative integers"))
            })
            .collect()
    };
    let out = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(a) if a.is_empty() => return Err(bad("the prompt list is empty")),
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .map(|s| Prompt::Text(s.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(a) if a.iter().all(Value::is_number) => vec![Prompt::Tokens(tokens(a)?)],
        Value::Array(a) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| {
                Ok(Prompt::Tokens(tokens(
                    x.as_array().map_or(&[][..], |v| v.as_slice()),
                )?))
            })
            .collect::<Result<_, ApiError>>()?,
        _ => {
            return Err(bad(
                "must be a string, a list of strings, a token array or a list of token arrays",
            ))
        }
    };
    Ok(out)
}

impl Common {
    /// Sampling parameters, checked; `i` varies the seed of choice `i`.
    pub fn sampling(&self, i: usize) -> Result<SamplingParams, ApiError> {
        let t = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::bad_param(
                "temperature",
                "must be between 0 and 2",
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_param("top_p", "must be in (0, 1]"));
        }
        let min_p = self.min_p.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_p) {
            return Err(ApiError::bad_param("min_p", "must be in [0, 1]"));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if v.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
                return Err(ApiError::bad_param(name, "must be between -2 and 2"));
            }
        }
        let rep = self.repetition_penalty.unwrap_or(1.0);
        if !(rep > 0.0 && rep.is_finite()) {
            return Err(ApiError::bad_param(
                "repetition_penalty",
                "must be positive",
            ));
        }
        let seed = match self.seed {
            Some(s) => (s as u64).wrapping_add(i as u64),
            None => rand::random(),
        };
        Ok(SamplingParams {
            temperature: t,
            top_k: self.top_k.filter(|&k| k > 0).unwrap_or(0) as usize,
            top_p,
            min_p,
            repeat_penalty: rep,
            repeat_last_n: 64,
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed,
        })
    }

    /// Choices per prompt.
    pub fn n(&self) -> Result<usize, ApiError> {
        match self.n.unwrap_or(1) {
            n @ 1..=16 => Ok(n as usize),
            _ => Err(ApiError::bad_param("n", "must be between 1 and 16")),
        }
    }

    pub fn stops(&self) -> Result<Vec<String>, ApiError> {
        let s = self.stop.as_ref().map(Stop::list).unwrap_or_default();
        if s.len() > 16 {
            return Err(ApiError::bad_param("stop", "at most 16 stop strings"));
        }
        if let Some(i) = s.iter().position(|x| x.len() > MAX_STOP_BYTES) {
            return Err(ApiError::bad_param(
                "stop",
                format!(
                    "stop string {i} is {} bytes; at most {MAX_STOP_BYTES}",
                    s[i].len()
                ),
            ));
        }
        Ok(s)
    }
}

/// A token budget field: absent → `default`; negative, or more than the
/// `context` a sequence may hold, → 400.
pub fn max_tokens(
    name: &str,
    v: Option<i64>,
    default: usize,
    context: usize,
) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 0 && n as u64 <= context as u64 => Ok(n as usize),
        Some(n) if n >= 0 => Err(ApiError::bad_param(
            name,
            format!("{n} is more than the context of {context} tokens"),
        )),
        Some(_) => Err(ApiError::bad_param(name, "must be a non-negative integer")),
    }
}

/// Longest stop string accepted, in bytes.
pub const MAX_STOP_BYTES: usize = 1024;

/// Roles a chat message may have.
pub const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

impl ChatRequest {
    /// Fields whose JSON type is wrong are an error naming them, not
    /// ignored; so is a role no template knows.
    pub fn check(&self) -> Result<(), ApiError> {
        let kind = |field: &str, v: &Option<Value>, ok: fn(&Value) -> bool, want: &str| match v {
            Some(x) if !x.is_null() && !ok(x) => {
                Err(ApiError::bad_param(field, format!("must be {want}")))
            }
            _ => Ok(()),
        };
        kind("tools", &self.tools, Value::is_array, "an array of tools")?;
        kind(
            "tool_choice",
            &self.tool_choice,
            |v| v.is_string() || v.is_object(),
            "\"none\", \"auto\", \"required\" or an object naming a function",
        )?;
        self.common.check()?;
        for (i, m) in self.messages.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::bad_param(
                    &format!("messages[{i}].role"),
                    format!("unknown role {:?} (one of {})", m.role, ROLES.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

impl Common {
    /// The types of the structured-output fields.
    pub fn check(&self) -> Result<(), ApiError> {
        if self
            .response_format
            .as_ref()
            .is_some_and(|v| !v.is_null() && !v.is_object())
        {
            return Err(ApiError::bad_param(
                "response_format",
                "must be an object such as {\"type\": \"json_object\"}",
            ));
        }
        if self
            .grammar
            .as_ref()
            .is_some_and(|v| !v.is_null() && !v.is_string() && !v.is_object())
        {
            return Err(ApiError::bad_param(
                "grammar",
                "must be a Lark grammar or an object with type and value",
            ));
        }
        Ok(())
    }
}
