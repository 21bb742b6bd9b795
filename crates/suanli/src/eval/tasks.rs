//! The tasks: their data files, prompts and gold answers.

use std::str::FromStr;

use serde_json::Value;

use super::score;
use super::{EvalError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// GSM8K test: 1,319 grade-school word problems, a number each.
    Gsm8k,
    /// GPQA diamond: 198 graduate-level multiple-choice questions.
    GpqaDiamond,
    /// AIME 2025 (I and II): 30 problems, an integer 0–999 each.
    Aime2025,
}

pub const TASKS: &[Task] = &[Task::Gsm8k, Task::GpqaDiamond, Task::Aime2025];

impl FromStr for Task {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Task> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "gsm8k" => Ok(Task::Gsm8k),
            "gpqa-diamond" | "gpqa" => Ok(Task::GpqaDiamond),
            "aime2025" | "aime-2025" | "aime" => Ok(Task::Aime2025),
            _ => Err(EvalError::UnknownTask(s.into())),
        }
    }
}

/// One question: the user message to send, and what counts as right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub prompt: String,
    /// The gold answer: a normalised number, or a letter A–D.
    pub gold: String,
}

const MATH_INSTRUCTION: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Gsm8k => "gsm8k",
            Task::GpqaDiamond => "gpqa-diamond",
            Task::Aime2025 => "aime2025",
        }
    }

    /// The data file, as [`crate::hub::resolve_eval`] names it.
    pub fn data_file(self) -> &'static str {
        match self {
            Task::Gsm8k => "gsm8k_test.jsonl",
            Task::GpqaDiamond => "gpqa_diamond.csv",
            Task::Aime2025 => "aime2025.jsonl",
        }
    }

    /// Generated tokens per answer when the command line does not say.
    pub fn default_max_tokens(self) -> usize {
        match self {
            Task::Gsm8k => 1024,
            Task::GpqaDiamond => 2048,
            Task::Aime2025 => 4096,
        }
    }

    /// The items of `text`, the contents of the data file named `source`
    /// (for error messages). `seed` orders GPQA's choices.
    pub fn parse(self, text: &str, source: &str, seed: u64) -> Result<Vec<Item>> {
        let items = match self {
            Task::Gsm8k | Task::Aime2025 => parse_jsonl(self, text, source)?,
            Task::GpqaDiamond => parse_gpqa(text, source, seed)?,
        };
        if items.is_empty() {
            return Err(EvalError::Empty {
                file: source.into(),
            });
        }
        Ok(items)
    }

    /// The extracted answer (if any) of `answer` (the output after any
    /// reasoning) and whether it matches `gold`.
    pub fn score(self, answer: &str, gold: &str) -> (Option<String>, bool) {
        match self {
            Task::Gsm8k | Task::Aime2025 => {
                let got = score::extract_number(answer);
                let ok = got
                    .as_deref()
                    .is_some_and(|g| score::numbers_match(g, gold));
                (got, ok)
            }
            Task::GpqaDiamond => {
                let got = score::extract_letter(answer);
                let ok = got.is_some_and(|l| gold.len() == 1 && gold.starts_with(l));
                (got.map(String::from), ok)
            }
        }
    }
}

fn malformed(source: &str, line: usize, why: impl Into<String>) -> EvalError {
    EvalError::Malformed {
        file: source.into(),
        line,
        why: why.into(),
    }
}

/// GSM8K and AIME: one JSON object a line with "question" and "answer"
/// (GSM8K's answer is a worked solution ending in `#### N`).
fn parse_jsonl(task: Task, text: &str, source: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| malformed(source, n, format!("not JSON: {e}")))?;
        let field = |k: &str| -> Result<String> {
            match v.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(x)) => Ok(x.to_string()),
                Some(_) => Err(malformed(source, n, format!("\"{k}\" is not a string"))),
                None => Err(malformed(source, n, format!("no \"{k}\" field"))),
            }
        };
        let question = field("question")?;
        let answer = field("answer")?;
        let gold_text = match task {
            Task::Gsm8k => answer
                .rsplit_once("####")
                .map(|(_, g)| g.trim().to_string())
                .ok_or_else(|| malformed(source, n, "the answer has no '#### N' line"))?,
            _ => answer.trim().to_string(),
        };
        let gold = score::normalize_number(&gold_text).ok_or_else(|| {
            malformed(
                source,
                n,
                format!("the answer '{gold_text}' is not a number"),
            )
        })?;
        items.push(Item {
            id: format!("{}-{}", task.name(), items.len()),
            prompt: format!("{}\n\n{MATH_INSTRUCTION}", question.trim()),
            gold,
        });
    }
    Ok(items)
}

/// Records of a CSV text (RFC 4180: quoted fields may hold commas, newlines
/// and doubled quotes), each with the line it starts on.
pub fn parse_csv(text: &str, source: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1usize;
    let mut row_line = 1usize;
    let mut quoted = false;
    let mut quote_line = 0usize;
    let mut at_field_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    quoted = false;
                    match chars.peek() {
                        None | Some(',') | Some('\n') | Some('\r') => {}
                        Some(x) => {
                            return Err(malformed(
                                source,
                                line,
                                format!("'{x}' after a closing quote"),
                            ))
                        }
                    }
                }
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                quote_line = line;
                at_field_start = false;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push((row_line, std::mem::take(&mut row)));
                }
                row.clear();
                line += 1;
                row_line = line;
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err(malformed(
            source,
            quote_line,
            "a quoted field is not closed before the end of the file",
        ));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

/// GPQA: the CSV of the GPQA release; "Question", "Correct Answer" and
/// "Incorrect Answer 1..3" are used. The four choices are shuffled by
/// `seed` and the item's index, so a seed gives the same letters every run.
fn parse_gpqa(text: &str, source: &str, seed: u64) -> Result<Vec<Item>> {
    let rows = parse_csv(text, source)?;
    let Some((hline, header)) = rows.first() else {
        return Ok(Vec::new());
    };
    let col = |name: &str| -> Result<usize> {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| malformed(source, *hline, format!("no \"{name}\" column")))
    };
    let q = col("Question")?;
    let right = col("Correct Answer")?;
    let wrong = [
        col("Incorrect Answer 1")?,
        col("Incorrect Answer 2")?,
        col("Incorrect Answer 3")?,
    ];
    let id_col = col("Record ID").ok();
    let mut items = Vec::new();
    for (line, row) in &rows[1..] {
        if row.len() != header.len() {
            return Err(malformed(
                source,
                *line,
                format!("{} fields where the header has {}", row.len(), header.len()),
            ));
        }
        let get = |i: usize| row[i].trim().to_string();
        let question = get(q);
        if question.is_empty() {
            return Err(malformed(source, *line, "the question is empty"));
        }
        let mut choices = vec![(get(right), true)];
        choices.extend(wrong.iter().map(|&i| (get(i), false)));
        if choices.iter().any(|(c, _)| c.is_empty()) {
            return Err(malformed(source, *line, "a choice is empty"));
        }
        let index = items.len();
        shuffle(&mut choices, super::mix_seed(seed, index, usize::MAX));
        let letters = ['A', 'B', 'C', 'D'];
        let gold = choices
            .iter()
            .position(|(_, ok)| *ok)
            .map(|i| letters[i].to_string())
            .unwrap_or_default();
        let listed: Vec<String> = choices
            .iter()
            .zip(letters)
            .map(|((c, _), l)| format!("{l}) {c}"))
            .collect();
        items.push(Item {
            id: id_col
                .map(get)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("gpqa-diamond-{index}")),
            prompt: format!(
                "Answer the following multiple choice question. The last line of your \
                 response should be of the following format: 'Answer: $LETTER' (without \
                 quotes) where LETTER is one of ABCD. Think step by step before answering.\n\n\
                 {question}\n\n{}",
                listed.join("\n")
            ),
            gold,
        });
    }
    Ok(items)
}

/// Fisher–Yates with [`super::splitmix64`].
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed;
    for i in (1..v.len()).rev() {
        let j = (super::splitmix64(&mut s) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}
