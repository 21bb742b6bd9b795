//! `suanli eval`: the scoring on hand-made answers, the data parsers on good
//! and bad files, and each task end to end on a few items with a real model.

use std::process::{Command, Output};

use suanli::eval::score::{extract_letter, extract_number, last_boxed, numbers_match};
use suanli::eval::{accuracy, score, EvalError, Task};

fn suanli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_suanli"))
        .args(args)
        .output()
        .expect("run suanli")
}

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {err}");
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("suanli-eval-{}-{name}", std::process::id()))
}

#[test]
fn numbers_boxed_last_and_normalised() {
    let g = Task::Gsm8k;
    // Right: boxed, with commas, dollars and a trailing .0.
    assert_eq!(
        g.score("so she makes \\boxed{18} dollars", "18"),
        (Some("18".into()), true)
    );
    assert!(g.score("Total: \\boxed{\\$1,234.0}", "1234").1);
    assert!(g.score("The answer is $1,234.", "1234").1);
    // The boxed answer wins over a later number.
    assert_eq!(
        g.score("\\boxed{42}\nThat took 3 steps.", "42"),
        (Some("42".into()), true)
    );
    // No box: the last number.
    assert_eq!(
        g.score("9 eggs, 9 * 2 = 18", "18"),
        (Some("18".into()), true)
    );
    // Wrong.
    assert_eq!(g.score("\\boxed{17}", "18"), (Some("17".into()), false));
    // Unparseable: no number at all.
    assert_eq!(g.score("I do not know.", "18"), (None, false));
    // Nested braces, units inside the box, the last of several boxes.
    assert_eq!(
        last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}").as_deref(),
        Some("\\frac{1}{2}")
    );
    assert_eq!(
        extract_number("\\boxed{70 \\text{ dollars}}").as_deref(),
        Some("70")
    );
    assert_eq!(
        extract_number("\\boxed{336^\\circ}").as_deref(),
        Some("336")
    );
    assert_eq!(extract_number("-3.50").as_deref(), Some("-3.5"));
    // A boxed fraction is its value, not its denominator; an expression is
    // not read as its last number.
    assert_eq!(
        extract_number("\\boxed{\\frac{6}{4}}").as_deref(),
        Some("1.5")
    );
    assert_eq!(
        extract_number("\\boxed{-\\dfrac{10}{5}}").as_deref(),
        Some("-2")
    );
    assert!(!g.score("\\boxed{\\frac{6}{5}}", "5").1);
    assert!(!g.score("\\boxed{x + 5}", "5").1);
    assert!(numbers_match("18.00", "18"));
    assert!(!numbers_match("18.5", "18"));
    // AIME scores the same way; a gold with a degree sign still matches.
    assert!(Task::Aime2025.score("\\boxed{336}", "336").1);
    assert!(numbers_match("336", "336^\\circ"));
}

#[test]
fn gpqa_letter_formats() {
    let cases = [
        ("Let me think. Answer: C", Some('C')),
        ("Answer: (B)", Some('B')),
        ("The answer is (D).", Some('D')),
        ("the correct answer is A", Some('A')),
        ("**Answer:** B", Some('B')),
        ("So \\boxed{C}", Some('C')),
        ("So \\boxed{\\text{D}}", Some('D')),
        // The last stated answer wins.
        ("Answer: A ... on reflection, the answer is B", Some('B')),
        // No pattern: the last standalone letter, not the article "A".
        ("I pick (C) here. A good choice.", Some('C')),
        ("Between B and D, D", Some('D')),
        // Unparseable.
        ("A tricky one; I cannot decide.", None),
        ("", None),
    ];
    for (text, want) in cases {
        assert_eq!(extract_letter(text), want, "{text:?}");
    }
    let t = Task::GpqaDiamond;
    assert_eq!(t.score("Answer: B", "B"), (Some("B".into()), true));
    assert_eq!(t.score("Answer: C", "B"), (Some("C".into()), false));
    assert_eq!(t.score("no idea", "B"), (None, false));
}

#[test]
fn reasoning_is_not_scored() {
    let out = "<think>maybe \\boxed{5}? no</think>\n\nSo \\boxed{7}";
    assert_eq!(score::answer_part(out, false).trim(), "So \\boxed{7}");
    assert!(Task::Gsm8k.score(&score::answer_part(out, false), "7").1);
    // A prompt that opened the think block; reasoning that never closed has
    // no answer.
    assert_eq!(
        score::answer_part("4 + 3 = 7</think>The answer: 7", true),
        "The answer: 7"
    );
    assert_eq!(score::answer_part("still thinking about 7", true), "");
}

#[test]
fn confidence_interval() {
    let a = accuracy(&[1.0, 0.0, 1.0, 1.0]);
    assert!((a.mean - 0.75).abs() < 1e-12);
    // Wilson for 3/4: 0.3006..0.9544.
    assert!(
        (a.lo - 0.3006).abs() < 1e-3 && (a.hi - 0.9544).abs() < 1e-3,
        "{a:?}"
    );
    let b = accuracy(&[0.5, 0.25, 1.0]);
    assert!(b.lo <= b.mean && b.mean <= b.hi && b.lo >= 0.0 && b.hi <= 1.0);
    assert_eq!(accuracy(&[0.0, 0.0]).lo, 0.0);
}

const GPQA_CSV: &str =
    "Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n\
r1,What is 2+2?,four,five,six,\"seven, or \"\"eight\"\"\"\n\
r2,\"Multi-line\nquestion?\",yes,no,maybe,never\n\
r3,Which gas?,helium,neon,argon,xenon\n\
r4,Which metal?,iron,gold,tin,lead\n";

#[test]
fn gpqa_choices_shuffled_by_seed() {
    let t = Task::GpqaDiamond;
    let a = t.parse(GPQA_CSV, "g.csv", 1).expect("parse");
    let b = t.parse(GPQA_CSV, "g.csv", 1).expect("parse");
    assert_eq!(a, b, "the same seed gives the same order");
    assert_eq!(a.len(), 4);
    assert_eq!(a[0].id, "r1");
    assert!(a[1].prompt.contains("Multi-line\nquestion?"));
    assert!(a[0].prompt.contains(") seven, or \"eight\""));
    // The gold letter points at the correct answer's line.
    for (it, right) in a.iter().zip(["four", "yes", "helium", "iron"]) {
        let line = format!("{}) {right}", it.gold);
        assert!(it.prompt.contains(&line), "{line:?} in {}", it.prompt);
    }
    let orders = |seed| {
        t.parse(GPQA_CSV, "g.csv", seed)
            .expect("parse")
            .iter()
            .map(|i| i.gold.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        (2..10).any(|s| orders(s) != orders(1)),
        "other seeds give other orders"
    );
}

#[test]
fn malformed_data_names_file_and_line() {
    let bad = |task: Task, text: &str, line: usize| {
        let e = task.parse(text, "data.x", 0).unwrap_err();
        match &e {
            EvalError::Malformed { file, line: l, .. } => {
                assert_eq!((file.as_str(), *l), ("data.x", line), "{e}")
            }
            _ => panic!("{e}"),
        }
        assert!(
            e.to_string().starts_with(&format!("data.x:{line}: ")),
            "{e}"
        );
    };
    let good = r#"{"question": "1+1?", "answer": "1+1=2\n#### 2"}"#;
    bad(Task::Gsm8k, &format!("{good}\n{{\"question\": \"x\""), 2);
    bad(
        Task::Gsm8k,
        &format!("{good}\n{good}\n{{\"question\": \"x\", \"answer\": \"no marker\"}}"),
        3,
    );
    bad(Task::Aime2025, r#"{"answer": "5"}"#, 1);
    bad(Task::Aime2025, r#"{"question": "q", "answer": "five"}"#, 1);
    bad(Task::GpqaDiamond, "Question,Correct Answer\nq,a\n", 1);
    bad(
        Task::GpqaDiamond,
        "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\nq,a,b,c,d\nq,\"a,b,c\n",
        3,
    );
    bad(
        Task::GpqaDiamond,
        "Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\nq,a,b,c\n",
        2,
    );
    assert!(matches!(
        Task::Gsm8k.parse("\n\n", "e", 0),
        Err(EvalError::Empty { .. })
    ));
    assert_eq!(Task::Gsm8k.parse(good, "g", 0).expect("parse")[0].gold, "2");
    let e = "mmlu".parse::<Task>().unwrap_err();
    assert!(e.to_string().contains("unknown task 'mmlu'"), "{e}");
}

#[test]
fn cli_bad_input() {
    fails_with(&suanli(&["eval", "--task", "mmlu"]), "unknown task 'mmlu'");
    let p = tmp("bad.jsonl");
    std::fs::write(
        &p,
        "{\"question\": \"q\", \"answer\": \"#### 3\"}\nnot json\n",
    )
    .expect("write");
    let ps = p.display().to_string();
    fails_with(
        &suanli(&["eval", "--task", "gsm8k", "--data", &ps]),
        &format!("{ps}:2: not JSON"),
    );
    fails_with(
        &suanli(&["eval", "--task", "gsm8k", "--data", "/nonexistent/x.jsonl"]),
        "/nonexistent/x.jsonl",
    );
    let _ = std::fs::remove_file(&p);
}

/// Each task on two items with a real model: the lines have the fields,
/// and the summary's accuracy is the mean of the items' `correct`.
#[test]
fn tasks_end_to_end() {
    let model = suanli::hub::resolve("smollm2-135m-instruct-q4_1", &mut |m| eprintln!("{m}"))
        .expect("fetch the model")
        .display()
        .to_string();
    for task in ["gsm8k", "gpqa-diamond", "aime2025"] {
        let out = tmp(&format!("{task}.jsonl"));
        let o = suanli(&[
            "eval",
            "-m",
            &model,
            "--task",
            task,
            "--limit",
            "2",
            "--samples",
            "2",
            "--temp",
            "0.7",
            "--max-tokens",
            "12",
            "--seed",
            "3",
            "-t",
            "2",
            "--out",
            &out.display().to_string(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{task}: {err}");
        let stdout = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .expect("read the answers")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 4, "{task}: 2 items x 2 samples");
        let mut right = 0usize;
        for l in &lines {
            for k in [
                "id",
                "sample",
                "prompt",
                "output",
                "extracted",
                "gold",
                "correct",
                "tokens",
                "finish",
            ] {
                assert!(l.get(k).is_some(), "{task}: no {k} in {l}");
            }
            assert!(l["tokens"].as_u64().is_some_and(|t| (1..=12).contains(&t)));
            let correct = l["correct"].as_bool().expect("correct is a bool");
            right += correct as usize;
            // The recorded verdict is the scoring's on the recorded output.
            let t: Task = task.parse().expect("task");
            let output = l["output"].as_str().expect("output");
            let gold = l["gold"].as_str().expect("gold");
            assert_eq!(t.score(&score::answer_part(output, false), gold).1, correct);
        }
        let want = format!("accuracy {:.2}%", 100.0 * right as f64 / 4.0);
        assert!(stdout.starts_with(&format!("{task}: {want}")), "{stdout}");
        assert!(stdout.contains("2 items x 2 samples"), "{stdout}");
        let _ = std::fs::remove_file(&out);
    }
}
