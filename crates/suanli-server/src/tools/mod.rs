//! Tool calling: `tools`, `tool_choice` (`none`, `auto`, `required`, a
//! named function) and `parallel_tool_calls` checked; `required` and named
//! choices enforced by a grammar in the model's own call format; the
//! model's output parsed into OpenAI `tool_calls`, whole or streamed
//! (`delta.tool_calls`: the id and name once, then the arguments in
//! fragments as they are generated).
//!
//! Call formats: Hermes-style `<tool_call>{"name", "arguments"}</tool_call>`
//! (Qwen2.5, Qwen3 and others whose template writes `<tool_call>`),
//! Llama 3.1's bare `{"name", "parameters"}` object, and DeepSeek V3/R1's
//! tool tokens (`<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME` and the
//! arguments in a ```json fence, the calls between
//! `<｜tool▁calls▁begin｜>` and `<｜tool▁calls▁end｜>`), and gpt-oss's
//! harmony messages to `functions.NAME` (split by [`crate::harmony`]).

use serde_json::{json, Map, Value};
use suanli_engine::constrain::json_options;
use suanli_engine::{Grammar, Trigger};
use suanli_tokenizer::ChatMessage;

mod inject;
mod parse;

pub(crate) use parse::{call_id, collect, trimmed};
pub use parse::{delta, parse_all, Parser, Piece};

use crate::error::ApiError;
use crate::structured::Asked;

/// How a model writes its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>`.
    Hermes,
    /// `{"name": …, "parameters": …}` as the whole reply.
    Llama3,
    /// DeepSeek V3/R1: `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>`.
    DeepSeek,
    /// gpt-oss: `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>ARGS`.
    Harmony,
}

/// DeepSeek's markers around all of a reply's calls, and within a call.
const DS_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
const DS_CALLS_END: &str = "<｜tool▁calls▁end｜>";
const DS_SEP: &str = "<｜tool▁sep｜>";
const DS_FENCE: &str = "```json";

impl Format {
    /// From the chat template's source.
    pub fn of_template(src: &str) -> Option<Format> {
        if src.contains("<|channel|>") {
            Some(Format::Harmony)
        } else if src.contains(DS_CALLS_BEGIN) {
            Some(Format::DeepSeek)
        } else if src.contains("<tool_call>") {
            Some(Format::Hermes)
        } else if src.contains("<|python_tag|>") || src.contains("ipython") {
            Some(Format::Llama3)
        } else {
            None
        }
    }

    fn args_key(self) -> &'static str {
        match self {
            Format::Hermes | Format::DeepSeek | Format::Harmony => "arguments",
            Format::Llama3 => "parameters",
        }
    }

    fn open(self) -> &'static str {
        match self {
            Format::Hermes => "<tool_call>",
            Format::Llama3 | Format::Harmony => "",
            Format::DeepSeek => "<｜tool▁call▁begin｜>",
        }
    }

    fn close(self) -> &'static str {
        match self {
            Format::Hermes => "</tool_call>",
            Format::Llama3 | Format::Harmony => "",
            Format::DeepSeek => "<｜tool▁call▁end｜>",
        }
    }

    /// Whether the arguments are the call's whole JSON text (DeepSeek's
    /// fence) rather than a member of a `{"name", …}` object.
    fn bare_args(self) -> bool {
        matches!(self, Format::DeepSeek | Format::Harmony)
    }
}

/// What a request asked of tools, checked.
#[derive(Debug, Default)]
pub struct Setup {
    /// Tool definitions for the template (`None` with `tool_choice: none`).
    pub tools: Option<Value>,
    /// Parse the output for calls in this format.
    pub format: Option<Format>,
    /// The grammar that forces a call (`required` or named).
    pub grammar: Option<Asked>,
    /// With `auto`: the grammar of a call, held from the model's call
    /// marker on.
    pub lazy: Option<Asked>,
    /// Each tool's parameter schema with the field it came from, to be
    /// checked by compiling.
    pub schemas: Vec<(String, Value)>,
}

impl Setup {
    /// The messages as the template is given them: with the tool
    /// definitions in the system message when the template writes none
    /// ([`inject`]).
    pub fn messages(&self, template: &str, messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
        match (&self.tools, self.format) {
            (Some(t), Some(fmt)) if !inject::renders_tools(template) => {
                inject::with_tool_definitions(messages, t, fmt)
            }
            _ => messages,
        }
    }
}

/// Check `tools`, `tool_choice` and `parallel_tool_calls`.
pub fn setup(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<bool>,
    template: &str,
) -> Result<Setup, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => {
            return match choice {
                None | Some(Value::Null) => Ok(Setup::default()),
                Some(Value::String(s)) if s == "none" || s == "auto" => Ok(Setup::default()),
                Some(_) => Err(ApiError::bad_param("tool_choice", "needs tools")),
            };
        }
        Some(Value::Array(a)) if a.is_empty() => return Ok(Setup::default()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::bad_param("tools", "must be an array")),
    };
    let mut names = Vec::new();
    let mut schemas = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let at = |f: &str| format!("tools[{i}]{f}");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::bad_param(
                &at(".type"),
                "only \"function\" tools are supported",
            ));
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_param(&at(".function"), "must be an object"))?;
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !name_ok {
            return Err(ApiError::bad_param(
                &at(".function.name"),
                "must be 1 to 64 letters, digits, '_', '-' or '.'",
            ));
        }
        if names.contains(&name) {
            return Err(ApiError::bad_param(
                &at(".function.name"),
                format!("'{name}' is defined twice"),
            ));
        }
        names.push(name);
        let params = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p) if p.is_object() => p.clone(),
            Some(_) => {
                return Err(ApiError::bad_param(
                    &at(".function.parameters"),
                    "must be a JSON schema object",
                ))
            }
        };
        schemas.push((at(".function.parameters"), params));
    }
    let forced: Option<Vec<usize>> = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => None,
            // No definitions in the prompt and nothing parsed: the model
            // answers in words (earlier calls stay in the conversation).
            "none" => return Ok(Setup::default()),
            "required" => Some((0..names.len()).collect()),
            other => {
                return Err(ApiError::bad_param(
                    "tool_choice",
                    format!("unknown value '{other}' (none, auto, required or a function)"),
                ))
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::bad_param(
                        "tool_choice",
                        "must name a function: {\"type\": \"function\", \"function\": {\"name\": …}}",
                    )
                })?;
            let i = names.iter().position(|&n| n == name).ok_or_else(|| {
                ApiError::bad_param(
                    "tool_choice",
                    format!("names the function '{name}', which is not among the tools"),
                )
            })?;
            Some(vec![i])
        }
        Some(_) => {
            return Err(ApiError::bad_param(
                "tool_choice",
                "must be none, auto, required or a named function",
            ))
        }
    };
    let format = Format::of_template(template);
    let grammar = match (&forced, format) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ApiError::bad_param(
                "tool_choice",
                "this model's chat template has no tool-call format suanli knows",
            ))
        }
        (Some(which), Some(f @ (Format::DeepSeek | Format::Harmony))) => {
            // Harmony ends a call at `<|call|>`, the end of generation: one
            // call a reply.
            let many = parallel.unwrap_or(true) && which.len() > 1 && f == Format::DeepSeek;
            let calls = if many {
                "call (\"\\n\" call (\"\\n\" call (\"\\n\" call)?)?)?"
            } else {
                "call"
            };
            let start = match f {
                Format::Harmony => format!("start: {calls}"),
                _ => {
                    let begin = serde_json::to_string(DS_CALLS_BEGIN).unwrap_or_default();
                    let end = serde_json::to_string(DS_CALLS_END).unwrap_or_default();
                    format!("start: {begin} {calls} {end}")
                }
            };
            let rules = named_calls(f, which, &names, &schemas, true);
            Some(Asked::new(
                Grammar::Lark(format!("{start}\n{rules}")),
                "tool_choice",
            ))
        }
        (Some(which), Some(fmt)) => {
            let schema = json_calls(fmt, which, &names, &schemas);
            let one = match fmt {
                Format::Hermes => format!("\"<tool_call>\\n\" %json {schema} \"\\n</tool_call>\""),
                Format::Llama3 | Format::DeepSeek | Format::Harmony => format!("%json {schema}"),
            };
            // A named function is called once; `required` may call up to
            // four in parallel (a bound: a small model can loop).
            let many = parallel.unwrap_or(true) && fmt == Format::Hermes && which.len() > 1;
            let start = if many {
                "start: call (\"\\n\" call (\"\\n\" call (\"\\n\" call)?)?)?"
            } else {
                "start: call"
            };
            Some(Asked::new(
                Grammar::Lark(format!("{start}\ncall: {one}\n")),
                "tool_choice",
            ))
        }
    };
    // `auto`: free text, but what follows the model's call marker is a
    // call that parses (a grammar held only from the marker on).
    let all: Vec<usize> = (0..names.len()).collect();
    let lazy = match (&forced, format) {
        (None, Some(Format::Hermes)) => {
            let schema = json_calls(Format::Hermes, &all, &names, &schemas);
            Some(Asked {
                trigger: Some(Trigger::marker(Format::Hermes.open())),
                ..Asked::new(
                    Grammar::Lark(format!(
                        "start: \"\\n\" %json {schema} \"\\n</tool_call>\"\n"
                    )),
                    "tools",
                )
            })
        }
        (None, Some(Format::DeepSeek)) => Some(Asked {
            trigger: Some(Trigger::marker(Format::DeepSeek.open())),
            ..Asked::new(
                Grammar::Lark(format!(
                    "start: call\n{}",
                    named_calls(Format::DeepSeek, &all, &names, &schemas, false)
                )),
                "tools",
            )
        }),
        // Harmony names the function in a header that tokens split
        // anywhere: at the header's `<|message|>`, the function it names
        // (`to=functions.NAME`) picks that function's arguments' grammar;
        // a header naming none (analysis, final) leaves the text free.
        (None, Some(Format::Harmony)) => {
            let args: Vec<String> = all
                .iter()
                .map(|&i| {
                    let mut schema = schemas[i].1.clone();
                    if let Some(o) = schema.as_object_mut() {
                        o.insert("x-guidance".into(), json_options(false));
                    }
                    format!("%json {schema}")
                })
                .collect();
            let keyed = all
                .iter()
                .zip(&args)
                .map(|(&i, a)| {
                    let key = format!("to=functions.{}", names[i]);
                    (key, Grammar::Lark(format!("start: {a}\n")))
                })
                .collect();
            // Any function's arguments (what the header narrows to one).
            let mut any = format!(
                "start: {}\n",
                (0..args.len())
                    .map(|j| format!("a{j}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            for (j, a) in args.iter().enumerate() {
                any.push_str(&format!("a{j}: {a}\n"));
            }
            Some(Asked {
                trigger: Some(Trigger {
                    marker: crate::harmony::MESSAGE.into(),
                    header_start: Some(crate::harmony::START.into()),
                }),
                keyed,
                ..Asked::new(Grammar::Lark(any), "tools")
            })
        }
        _ => None,
    };
    Ok(Setup {
        tools: Some(Value::Array(tools.clone())),
        format,
        grammar,
        lazy,
        schemas,
    })
}

/// Calls to the functions `which` in DeepSeek's or harmony's form, where
/// the name is text outside the JSON: `call: call0 | call1 …` and one rule
/// each (DeepSeek's with its opening token when `open`).
fn named_calls(
    f: Format,
    which: &[usize],
    names: &[&str],
    schemas: &[(String, Value)],
    open: bool,
) -> String {
    let alts: Vec<String> = (0..which.len()).map(|j| format!("call{j}")).collect();
    let mut rules = format!("call: {}\n", alts.join(" | "));
    for (j, &i) in which.iter().enumerate() {
        let mut schema = schemas[i].1.clone();
        if let Some(o) = schema.as_object_mut() {
            o.insert("x-guidance".into(), json_options(false));
        }
        let (head, tail) = match f {
            Format::Harmony => (
                format!(
                    "<|channel|>commentary to=functions.{} <|constrain|>json<|message|>",
                    names[i]
                ),
                String::new(),
            ),
            _ => (
                format!(
                    "{}function{DS_SEP}{}\n{DS_FENCE}\n",
                    if open { f.open() } else { "" },
                    names[i]
                ),
                format!("\n```{}", f.close()),
            ),
        };
        let head = serde_json::to_string(&head).unwrap_or_default();
        let tail = match tail.is_empty() {
            true => String::new(),
            false => serde_json::to_string(&tail).unwrap_or_default(),
        };
        rules.push_str(&format!("call{j}: {head} %json {schema} {tail}\n"));
    }
    rules
}

/// The JSON schema of a call to one of the functions `which` in `fmt`'s
/// `{"name", …}` object form.
fn json_calls(fmt: Format, which: &[usize], names: &[&str], schemas: &[(String, Value)]) -> Value {
    let calls: Vec<Value> = which
        .iter()
        .map(|&i| call_schema(names[i], &schemas[i].1, fmt))
        .collect();
    let mut schema = match calls.as_slice() {
        [one] => one.clone(),
        _ => json!({"anyOf": calls}),
    };
    if let Some(o) = schema.as_object_mut() {
        o.insert("x-guidance".into(), json_options(false));
    }
    schema
}

/// The object one call to `name` is written as.
fn call_schema(name: &str, params: &Value, fmt: Format) -> Value {
    let mut props = Map::new();
    props.insert("name".into(), json!({"const": name}));
    props.insert(fmt.args_key().into(), params.clone());
    json!({
        "type": "object",
        "properties": props,
        "required": ["name", fmt.args_key()],
        "additionalProperties": false,
    })
}

/// Assistant messages' `tool_calls` as templates expect them: `arguments`
/// as an object (clients send the JSON text) — but for DeepSeek's, which
/// writes the text as it is.
pub fn for_template(calls: Option<&Value>, fmt: Option<Format>) -> Option<Value> {
    let mut calls = calls?.clone();
    if fmt == Some(Format::DeepSeek) {
        return Some(calls);
    }
    if let Some(a) = calls.as_array_mut() {
        for c in a {
            let args = c.pointer_mut("/function/arguments");
            if let Some(args) = args {
                if let Some(parsed) = args
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                {
                    *args = parsed;
                }
            }
        }
    }
    Some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(fmt: Format, pieces: &[&str]) -> (Option<String>, Vec<Value>) {
        let mut p = Parser::new(fmt);
        let mut all = Vec::new();
        for x in pieces {
            all.extend(p.push(x));
        }
        all.extend(p.finish());
        let mut text = String::new();
        for piece in &all {
            if let Piece::Content(t) = piece {
                text.push_str(t);
            }
        }
        let whole: String = pieces.concat();
        let (content, calls) = parse_all(fmt, &whole);
        assert_eq!(
            content.as_deref(),
            Some(text.trim()).filter(|t| !t.is_empty())
        );
        (content, calls)
    }

    #[test]
    fn hermes_calls_streamed_in_any_split_parse_as_a_whole() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        let (content, calls) = parse_all(Format::Hermes, text);
        assert_eq!(content.as_deref(), Some("Let me check."));
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(
            calls[0]["function"]["arguments"],
            "{\"city\": \"Paris\", \"days\": [1, 2]}"
        );
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        // Every split point gives the same arguments, sent in fragments.
        for cut in 1..text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let mut p = Parser::new(Format::Hermes);
            let mut pieces = p.push(&text[..cut]);
            pieces.extend(p.push(&text[cut..]));
            pieces.extend(p.finish());
            let mut args = [String::new(), String::new()];
            let (mut names, mut content) = (0, String::new());
            for piece in &pieces {
                match piece {
                    Piece::Args { index, text } => args[*index].push_str(text),
                    Piece::Call { .. } => names += 1,
                    Piece::Content(t) => content.push_str(t),
                }
            }
            assert_eq!((names, content.trim()), (2, "Let me check."), "cut {cut}");
            assert_eq!(
                args[0], "{\"city\": \"Paris\", \"days\": [1, 2]}",
                "cut {cut}"
            );
            assert_eq!(args[1], "{}", "cut {cut}");
        }
    }

    #[test]
    fn unclosed_calls_text_and_other_orders() {
        let (c, calls) = stream(
            Format::Hermes,
            &[
                "<tool_",
                "call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
            ],
        );
        assert_eq!((c, calls.len()), (None, 1));
        assert_eq!(calls[0]["function"]["arguments"], "{\"a\": 1}");
        let (c, calls) = stream(
            Format::Hermes,
            &["<tool_call>{\"arguments\": {\"a\": 1}, \"name\": \"f\"}</tool_call>"],
        );
        assert_eq!(
            (c, calls[0]["function"]["name"].clone()),
            (None, json!("f"))
        );
        let (c, calls) = stream(Format::Hermes, &["a < b, <tool", " not a call"]);
        assert_eq!(
            (c.as_deref(), calls.len()),
            (Some("a < b, <tool not a call"), 0)
        );
        let (c, calls) = stream(Format::Hermes, &["<tool_call>oops</tool_call>"]);
        assert_eq!(
            (c.as_deref(), calls.len()),
            (Some("<tool_call>oops</tool_call>"), 0)
        );
    }

    #[test]
    fn llama3_json_calls() {
        let (c, calls) = stream(
            Format::Llama3,
            &["{\"name\": \"f\", \"param", "eters\": {\"x\": \"y\"}}"],
        );
        assert_eq!((c, calls.len()), (None, 1));
        assert_eq!(calls[0]["function"]["arguments"], "{\"x\": \"y\"}");
        let (c, calls) = stream(Format::Llama3, &["Hello", " there"]);
        assert_eq!((c.as_deref(), calls.len()), (Some("Hello there"), 0));
    }

    #[test]
    fn deepseek_calls_streamed_in_any_split_parse_as_a_whole() {
        let text = "I will look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"北京\", \"days\": [1, 2]}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        let (content, calls) = parse_all(Format::DeepSeek, text);
        assert_eq!(content.as_deref(), Some("I will look."));
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(
            calls[0]["function"]["arguments"],
            "{\"city\": \"北京\", \"days\": [1, 2]}"
        );
        assert_eq!(calls[1]["function"]["name"], "get_time");
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        // The markers are single tokens: split between them, and inside the
        // text anywhere else.
        let cuts: Vec<usize> = (1..text.len())
            .filter(|&c| text.is_char_boundary(c))
            .filter(|&c| {
                ![
                    "<｜tool▁calls▁begin｜>",
                    "<｜tool▁calls▁end｜>",
                    "<｜tool▁call▁begin｜>",
                    "<｜tool▁call▁end｜>",
                    "<｜tool▁sep｜>",
                ]
                .iter()
                .any(|m| {
                    text.match_indices(m)
                        .any(|(at, _)| at < c && c < at + m.len())
                })
            })
            .collect();
        for cut in cuts {
            let mut p = Parser::new(Format::DeepSeek);
            let mut pieces = p.push(&text[..cut]);
            pieces.extend(p.push(&text[cut..]));
            pieces.extend(p.finish());
            let mut args = [String::new(), String::new()];
            let (mut names, mut content) = (Vec::new(), String::new());
            for piece in &pieces {
                match piece {
                    Piece::Args { index, text } => args[*index].push_str(text),
                    Piece::Call { name, .. } => names.push(name.clone()),
                    Piece::Content(t) => content.push_str(t),
                }
            }
            assert_eq!(names, ["get_weather", "get_time"], "cut {cut}");
            assert_eq!(content.trim(), "I will look.", "cut {cut}");
            assert_eq!(
                args[0], "{\"city\": \"北京\", \"days\": [1, 2]}",
                "cut {cut}"
            );
            assert_eq!(args[1], "{}", "cut {cut}");
        }
    }

    #[test]
    fn deepseek_forced_calls_have_a_grammar_and_keep_argument_text() {
        let tools = json!([
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "g"}},
        ]);
        let tmpl = "{{'<｜tool▁calls▁begin｜>'}}";
        let s = setup(Some(&tools), Some(&json!("required")), None, tmpl).unwrap();
        assert_eq!(s.format, Some(Format::DeepSeek));
        let Some(Asked {
            grammar: Grammar::Lark(g),
            ..
        }) = s.grammar
        else {
            panic!("a Lark grammar")
        };
        assert!(g.contains("call: call0 | call1"), "{g}");
        assert!(g.contains("function<｜tool▁sep｜>g\\n```json\\n"), "{g}");
        let calls = json!([{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]);
        let kept = for_template(Some(&calls), Some(Format::DeepSeek)).unwrap();
        assert_eq!(kept[0]["function"]["arguments"], "{\"a\": 1}");
        let objects = for_template(Some(&calls), Some(Format::Hermes)).unwrap();
        assert_eq!(objects[0]["function"]["arguments"], json!({"a": 1}));
    }

    #[test]
    fn choices_are_checked() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
        let tmpl = "<tool_call>";
        let e = setup(
            Some(&tools),
            Some(&json!({"type": "function", "function": {"name": "g"}})),
            None,
            tmpl,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        let e = setup(
            Some(&json!([{"type": "function", "function": {"name": "f", "parameters": 3}}])),
            None,
            None,
            tmpl,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].function.parameters"));
        let s = setup(Some(&tools), Some(&json!("required")), Some(false), tmpl).unwrap();
        assert!(s.grammar.is_some() && s.format == Some(Format::Hermes));
        let s = setup(Some(&tools), Some(&json!("none")), None, tmpl).unwrap();
        assert!(s.tools.is_none() && s.format.is_none());
    }

    #[test]
    fn auto_holds_a_call_from_the_marker_on() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let lark = |a: &Asked| match &a.grammar {
            Grammar::Lark(g) => g.clone(),
            g => panic!("not Lark: {g:?}"),
        };
        for (tmpl, marker) in [
            ("<tool_call>", "<tool_call>"),
            (DS_CALLS_BEGIN, "<｜tool▁call▁begin｜>"),
        ] {
            let s = setup(Some(&tools), None, None, tmpl).unwrap();
            let lazy = s.lazy.as_ref().expect("auto has a lazy grammar");
            assert_eq!(lazy.trigger, Some(Trigger::marker(marker)));
            assert!(lazy.keyed.is_empty());
            let g = lark(lazy);
            assert!(g.contains("get_weather") && !g.contains(marker), "{g}");
            assert!(s.grammar.is_none());
            // Forced calls have their own grammar, held from the start.
            let s = setup(Some(&tools), Some(&json!("required")), None, tmpl).unwrap();
            assert!(s.lazy.is_none() && s.grammar.is_some_and(|a| a.trigger.is_none()));
        }
        // Harmony: the header's `to=functions.NAME` picks the arguments'
        // grammar at `<|message|>`.
        let s = setup(Some(&tools), None, None, "<|channel|>").unwrap();
        let lazy = s.lazy.expect("auto has a lazy grammar");
        let t = lazy.trigger.as_ref().expect("trigger");
        assert_eq!(
            (t.marker.as_str(), t.header_start.as_deref()),
            ("<|message|>", Some("<|start|>"))
        );
        assert_eq!(lazy.keyed.len(), 1);
        assert_eq!(lazy.keyed[0].0, "to=functions.get_weather");
        // Llama 3's call is the whole reply: no marker to wait for.
        assert!(setup(Some(&tools), None, None, "<|python_tag|>")
            .unwrap()
            .lazy
            .is_none());
    }
}
