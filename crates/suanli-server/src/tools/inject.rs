//! Tool definitions for a chat template that renders none (DeepSeek-V3's
//! own template writes past calls and their results, never the tools on
//! offer): written into the system message with the call syntax of the
//! model's format, as Ollama and llama.cpp do for such templates, so that
//! `tool_choice: auto` has something to choose from.

use serde_json::Value;
use suanli_tokenizer::ChatMessage;

use super::{Format, DS_CALLS_BEGIN, DS_CALLS_END, DS_FENCE, DS_SEP};

/// Whether a template writes the request's tool definitions itself.
pub fn renders_tools(template: &str) -> bool {
    template.contains("tools")
}

/// How a call is written in `fmt`.
fn example(fmt: Format) -> String {
    match fmt {
        Format::DeepSeek => format!(
            "{DS_CALLS_BEGIN}{}function{DS_SEP}FUNCTION_NAME\n{DS_FENCE}\n{{\"argument\": \"value\"}}\n```{}{DS_CALLS_END}",
            fmt.open(),
            fmt.close()
        ),
        Format::Hermes => "<tool_call>\n{\"name\": \"FUNCTION_NAME\", \"arguments\": {\"argument\": \"value\"}}\n</tool_call>".into(),
        Format::Llama3 => "{\"name\": \"FUNCTION_NAME\", \"parameters\": {\"argument\": \"value\"}}".into(),
        Format::Harmony => "<|channel|>commentary to=functions.FUNCTION_NAME <|constrain|>json<|message|>{\"argument\": \"value\"}".into(),
    }
}

/// `messages` with the definitions of `tools` in the system message (one
/// is added first when there is none).
pub fn with_tool_definitions(
    mut messages: Vec<ChatMessage>,
    tools: &Value,
    fmt: Format,
) -> Vec<ChatMessage> {
    let defs: Vec<String> = tools
        .as_array()
        .map(|a| a.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    let text = format!(
        "# Tools\n\nYou may call one or more of the following functions to answer the user. Their definitions:\n{}\n\nTo call a function, reply with the call alone, written exactly like this:\n{}\nThen wait for its result.",
        defs.join("\n"),
        example(fmt)
    );
    match messages.first_mut() {
        Some(m) if m.role == "system" => {
            let c = m.content.get_or_insert_with(String::new);
            if !c.is_empty() {
                c.push_str("\n\n");
            }
            c.push_str(&text);
        }
        _ => messages.insert(0, ChatMessage::new("system", &text)),
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use suanli_tokenizer::ChatTemplate;

    /// DeepSeek-V3's own template (from the goldens), which renders no
    /// tools: the definitions and the call syntax reach the prompt, and a
    /// call written as the example parses as one.
    #[test]
    fn deepseek_v3_gets_the_tools_in_its_system_prompt() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/goldens/templates.json");
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
        let src = doc["templates"]["deepseek_v3"]["source"]
            .as_str()
            .unwrap_or_default();
        assert!(!src.is_empty(), "the goldens carry DeepSeek-V3's template");
        assert!(!renders_tools(src));
        assert_eq!(Format::of_template(src), Some(Format::DeepSeek));
        let tools = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let t = ChatTemplate::new(src, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
            .unwrap_or_else(|e| panic!("{e}"));
        for first in [None, Some("Be brief.")] {
            let mut messages = vec![ChatMessage::new("user", "Weather in Paris?")];
            if let Some(s) = first {
                messages.insert(0, ChatMessage::new("system", s));
            }
            let messages = with_tool_definitions(messages, &tools, Format::DeepSeek);
            let text = t
                .render(&messages, true, Some(&tools), None)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(text.contains("\"name\":\"get_weather\""), "{text}");
            assert!(
                text.contains(DS_CALLS_BEGIN) && text.contains("FUNCTION_NAME"),
                "{text}"
            );
            assert_eq!(
                first.is_some(),
                text.contains("Be brief.\n\n# Tools"),
                "{text}"
            );
        }
        let reply = example(Format::DeepSeek).replace("FUNCTION_NAME", "get_weather");
        let (_, calls) = super::super::parse_all(Format::DeepSeek, &reply);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        // Templates that write the tools themselves are left alone.
        assert!(renders_tools(
            doc["templates"]["qwen3"]["source"]
                .as_str()
                .unwrap_or_default()
        ));
    }
}
