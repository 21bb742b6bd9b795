//! Chat-template rendering of hostile templates and messages: the input's
//! first line is the template, the rest the messages' contents (one a
//! line, roles alternating). Loops, recursion and huge outputs must end in
//! an error or an output, within the fuel every render gets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use suanli_tokenizer::{ChatMessage, ChatTemplate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, rest) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(t) = ChatTemplate::new(source, "<s>", "</s>") else {
        return;
    };
    let roles = ["system", "user", "assistant", "tool"];
    let msgs: Vec<ChatMessage> = rest
        .lines()
        .take(16)
        .enumerate()
        .map(|(i, l)| ChatMessage::new(roles[i % roles.len()], l))
        .collect();
    let _ = t.render(&msgs, true, None, None);
});
