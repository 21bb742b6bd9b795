//! Pulling the final answer out of a model's output and comparing it with
//! the gold answer.
//!
//! Numbers (GSM8K, AIME): the content of the last `\boxed{}` (or `\fbox{}`),
//! else the last number in the text; commas, `$`, units such as `^\circ` and
//! `%`, and a trailing `.0` are normalised away before comparing.
//!
//! Letters (GPQA): the last "answer is (X)", "Answer: X" or boxed letter,
//! else the last standalone A–D (not the article "A" before a word).
//!
//! Outputs of reasoning models are scored on what follows their reasoning
//! ([`answer_part`]).

use std::sync::OnceLock;

use regex::Regex;
use suanli_tokenizer::reasoning::ReasoningParser;

/// The answer part of an output: the text after a `<think>…</think>` block
/// (`starts_in_reasoning` when the prompt itself opened the block). An
/// output whose reasoning never closed has no answer part.
pub fn answer_part(output: &str, starts_in_reasoning: bool) -> String {
    ReasoningParser::split(output, starts_in_reasoning).content
}

/// The content of the last `\boxed{…}` or `\fbox{…}`, braces balanced.
pub fn last_boxed(text: &str) -> Option<String> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|k| text.rfind(k).map(|i| i + k.len()))
        .max()?;
    let rest = text[start..].trim_start();
    let rest = rest.strip_prefix('{')?;
    let mut depth = 1usize;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[..i].trim().to_string());
                }
            }
            _ => {}
        }
    }
    None
}

fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+").unwrap_or_else(|_| unreachable!())
    })
}

/// The last number in `text`, as written (commas kept).
pub fn last_number(text: &str) -> Option<String> {
    number_re()
        .find_iter(text)
        .last()
        .map(|m| m.as_str().trim_end_matches(',').to_string())
}

/// A number in a canonical form: commas, `$`, spaces, degree and percent
/// marks dropped; `18.0`, `18.` and `18` all become `18`. `None` when what
/// is left is not a number.
pub fn normalize_number(s: &str) -> Option<String> {
    let mut t = s.trim().to_string();
    for junk in [
        "\\$",
        "$",
        "\\%",
        "%",
        "^\\circ",
        "^{\\circ}",
        "\\circ",
        "°",
        "\\,",
        "\\!",
        ",",
        " ",
    ] {
        t = t.replace(junk, "");
    }
    let t = t.trim_end_matches('.');
    let v: f64 = t.parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return Some(format!("{}", v as i64));
    }
    Some(format!("{v}"))
}

/// The final number of an answer: the last boxed content (normalised, or
/// the last number inside it), else the last number in the text.
pub fn extract_number(answer: &str) -> Option<String> {
    if let Some(b) = last_boxed(answer) {
        if let Some(n) = normalize_number(&b).or_else(|| fraction(&b)) {
            return Some(n);
        }
        // One number with words or units around it ("70 \text{ dollars}");
        // an expression of several is not read as its last number.
        let nums: Vec<_> = number_re().find_iter(&b).collect();
        if let [n] = nums.as_slice() {
            let rest = format!("{}{}", &b[..n.start()], &b[n.end()..]);
            let arithmetic = rest.contains(['+', '*', '/', '^'])
                || rest.contains("\\times")
                || rest.contains("\\cdot");
            if !arithmetic {
                return normalize_number(n.as_str());
            }
        }
        return Some(b);
    }
    last_number(answer).and_then(|n| normalize_number(&n))
}

/// `\frac{a}{b}` (or `\dfrac`, `\tfrac`, `a/b`) as a number.
fn fraction(s: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r"^\s*(-?)\s*(?:\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}|([-\d.,]+)\s*/\s*([\d.,]+))\s*$",
        )
        .unwrap_or_else(|_| unreachable!())
    });
    let c = re.captures(s)?;
    let (a, b) = match (c.get(2), c.get(3)) {
        (Some(a), Some(b)) => (a.as_str(), b.as_str()),
        _ => (c.get(4)?.as_str(), c.get(5)?.as_str()),
    };
    let a: f64 = normalize_number(a)?.parse().ok()?;
    let b: f64 = normalize_number(b)?.parse().ok()?;
    if b == 0.0 {
        return None;
    }
    let sign = if c.get(1).is_some_and(|m| m.as_str() == "-") {
        -1.0
    } else {
        1.0
    };
    normalize_number(&format!("{}", sign * a / b))
}

/// Whether an extracted number equals the gold one (both normalised).
pub fn numbers_match(got: &str, gold: &str) -> bool {
    match (normalize_number(got), normalize_number(gold)) {
        (Some(a), Some(b)) => {
            a == b
                || match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                    _ => false,
                }
        }
        _ => false,
    }
}

fn letter_res() -> &'static [Regex] {
    static RE: OnceLock<Vec<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        [
            r"(?i)answer\s*(?:is|:)\s*:?\s*(?:\*\*)?\s*(?:option|choice)?\s*[\(\[]?\s*\$?([A-D])\b",
            r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-D])\)?\s*\}?\s*\}",
        ]
        .iter()
        .map(|p| Regex::new(p).unwrap_or_else(|_| unreachable!()))
        .collect()
    })
}

/// The choice letter (A–D) of an answer: the last "answer is (X)",
/// "Answer: X" or `\boxed{X}`, else the last standalone letter A–D.
pub fn extract_letter(answer: &str) -> Option<char> {
    let mut best: Option<(usize, char)> = None;
    for re in letter_res() {
        for c in re.captures_iter(answer) {
            if let Some(m) = c.get(1) {
                let l = m.as_str().chars().next()?.to_ascii_uppercase();
                if best.is_none_or(|(p, _)| m.start() >= p) {
                    best = Some((m.start(), l));
                }
            }
        }
    }
    if let Some((_, l)) = best {
        return Some(l);
    }
    standalone_letter(answer)
}

/// The last A–D standing alone: not inside a word, and not the article "A"
/// followed by a lowercase word.
fn standalone_letter(text: &str) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len()).rev().find_map(|i| {
        let c = chars[i];
        if !matches!(c, 'A'..='D') {
            return None;
        }
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        if before.is_some_and(|b| b.is_alphanumeric() || b == '_' || b == '\\') {
            return None;
        }
        if after.is_some_and(|a| a.is_alphanumeric() || a == '_' || a == '\'') {
            return None;
        }
        // "A ball", "A) is" is fine: only a space then a lowercase letter.
        if after == Some(' ') && chars.get(i + 2).is_some_and(|n| n.is_lowercase()) {
            return None;
        }
        Some(c)
    })
}
