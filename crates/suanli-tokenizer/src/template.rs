//! Chat templates: the Jinja templates models ship, rendered with minijinja
//! the way transformers' `apply_chat_template` renders them (trim_blocks,
//! lstrip_blocks, Python string methods, `tojson`, `raise_exception`,
//! `strftime_now`, loop controls).

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::{Result, TokenizerError};

/// One chat message. `content` may be absent for assistant tool calls.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ChatMessage {
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// The reasoning as gpt-oss's template reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: Some(content.into()),
            ..Default::default()
        }
    }
}

/// Templates for models that ship none (llama.cpp detects these by architecture too).
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
pub const GEMMA: &str = "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{% if role == 'system' %}{% set role = 'user' %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

pub struct ChatTemplate {
    env: Environment<'static>,
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// `tojson` as transformers defines it: Python's `json.dumps` (", " and
/// ": " separators, non-ASCII kept, optional `indent` and `sort_keys`).
fn tojson(v: Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let j = serde_json::to_value(&v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    py_json(&j, indent, sort_keys.unwrap_or(false), 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn py_json(
    v: &serde_json::Value,
    indent: Option<usize>,
    sort: bool,
    level: usize,
    out: &mut String,
) {
    use serde_json::Value as J;
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match n.as_f64() {
            // Python prints floats with a fraction (18.0), integers without.
            Some(f) if !n.is_i64() && !n.is_u64() && f.fract() == 0.0 && f.abs() < 1e16 => {
                out.push_str(&format!("{f:.1}"))
            }
            _ => out.push_str(&n.to_string()),
        },
        J::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        J::Array(a) if a.is_empty() => out.push_str("[]"),
        J::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json(x, indent, sort, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        J::Object(m) if m.is_empty() => out.push_str("{}"),
        J::Object(m) => {
            let mut items: Vec<(&String, &serde_json::Value)> = m.iter().collect();
            if sort {
                items.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, x)) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(": ");
                py_json(x, indent, sort, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

fn strftime_now(fmt: String) -> String {
    chrono::Local::now().format(&fmt).to_string()
}

/// Instructions one render may execute.
const TEMPLATE_FUEL: u64 = 50_000_000;

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A template is code from a model file: bounded work per render
        // (real chat templates take well under 1% of this), so a hostile
        // one's endless loop is an error, not a server stuck on it.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(64);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| TokenizerError::Template(format!("{e:#}")))?;
        Ok(ChatTemplate {
            env,
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// Render `messages`; `tools` (OpenAI tool schemas) and extra keyword
    /// arguments (e.g. `enable_thinking`) are passed through as transformers does.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
        extra: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<String> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| TokenizerError::Template(e.to_string()))?;
        let mut ctx = serde_json::Map::new();
        if let Some(extra) = extra {
            ctx.extend(extra.clone());
        }
        ctx.insert(
            "messages".into(),
            serde_json::to_value(messages).unwrap_or_default(),
        );
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        if let Some(tools) = tools {
            ctx.insert("tools".into(), tools.clone());
        }
        t.render(Value::from_serialize(&ctx))
            .map_err(|e| TokenizerError::Template(format!("{e:#}")))
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    #[test]
    fn endless_loops_and_deep_recursion_are_errors_not_hangs() {
        let msgs = [ChatMessage::new("user", "hi")];
        let t0 = std::time::Instant::now();
        let loops = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "",
            "",
        )
        .expect("parses");
        let e = loops
            .render(&msgs, true, None, None)
            .expect_err("runs out of fuel");
        assert!(e.to_string().to_lowercase().contains("fuel"), "{e}");
        let deep = ChatTemplate::new(
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "",
            "",
        )
        .expect("parses");
        assert!(deep.render(&msgs, true, None, None).is_err());
        assert!(t0.elapsed().as_secs() < 20, "took {:?}", t0.elapsed());
        // A real template is nowhere near the limit.
        let qwen = ChatTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
            "",
            "",
        )
        .expect("parses");
        assert!(qwen.render(&msgs, true, None, None).is_ok());
    }
}
