//! Streaming detokenization and the reasoning splitter.

use suanli_tokenizer::reasoning::{Delta, ReasoningParser};
use suanli_tokenizer::StreamDecoder;

#[test]
fn characters_split_across_tokens_come_out_whole() {
    let text = "中文 and emoji 😀 done";
    let bytes = text.as_bytes();
    let mut d = StreamDecoder::new();
    let mut out = String::new();
    for b in bytes {
        let piece = d.push(&[*b]);
        assert!(!piece.contains('\u{FFFD}'), "broken character emitted");
        out.push_str(&piece);
    }
    out.push_str(&d.finish());
    assert_eq!(out, text);
    // A complete character is emitted as soon as its last byte arrives.
    let mut d = StreamDecoder::new();
    assert_eq!(d.push(&[0xE4]), "");
    assert_eq!(d.push(&[0xB8]), "");
    assert_eq!(d.push(&[0xAD, b'x']), "中x");
}

#[test]
fn invalid_bytes_become_replacement_characters() {
    let mut d = StreamDecoder::new();
    assert_eq!(d.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
    assert_eq!(d.push(&[0xE4, 0xB8]), "");
    assert_eq!(d.finish(), "\u{FFFD}");
}

fn split_every_way(text: &str, starts_in_reasoning: bool) -> Delta {
    let whole = ReasoningParser::split(text, starts_in_reasoning);
    let idx: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    for &a in &idx {
        for &b in idx.iter().filter(|&&b| b >= a) {
            let mut p = ReasoningParser::new(starts_in_reasoning);
            let mut d = Delta::default();
            for chunk in [&text[..a], &text[a..b], &text[b..]] {
                let x = p.push(chunk);
                d.reasoning.push_str(&x.reasoning);
                d.content.push_str(&x.content);
            }
            let x = p.finish();
            d.reasoning.push_str(&x.reasoning);
            d.content.push_str(&x.content);
            assert_eq!(d, whole, "split at {a}, {b} of {text:?}");
        }
    }
    whole
}

#[test]
fn reasoning_is_separated_also_while_streaming() {
    let d = split_every_way(
        "<think>\nLet me add: 2+2=4.\n</think>\n\nThe answer is 4.",
        false,
    );
    assert_eq!(d.reasoning, "\nLet me add: 2+2=4.\n");
    assert_eq!(d.content, "The answer is 4.");
    // DeepSeek-R1: the template opened the block, the output only closes it.
    let d = split_every_way("思考一下。</think>答案是四。", true);
    assert_eq!(d.reasoning, "思考一下。");
    assert_eq!(d.content, "答案是四。");
    // No think block at all: everything is content.
    let d = split_every_way("Just an answer with <b>tags</b>.", false);
    assert_eq!(d.reasoning, "");
    assert_eq!(d.content, "Just an answer with <b>tags</b>.");
}
