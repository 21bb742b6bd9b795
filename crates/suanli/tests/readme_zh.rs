//! README.zh-CN.md is kept in step with README.md: the same headings at the
//! same levels in the same order, the same fenced code blocks byte for
//! byte, and tables of the same shapes. A section added to one and not the
//! other, a changed command, or a table row left out fails here.

use std::path::Path;

struct Shape {
    headings: Vec<usize>,
    code: Vec<String>,
    /// Each table's (rows, columns of its header).
    tables: Vec<(usize, usize)>,
}

fn shape(text: &str) -> Shape {
    let (mut headings, mut code, mut tables) = (Vec::new(), Vec::new(), Vec::new());
    let mut fence: Option<String> = None;
    let mut table: Option<(usize, usize)> = None;
    for line in text.lines() {
        if let Some(block) = fence.as_mut() {
            if line.starts_with("```") {
                code.push(std::mem::take(block));
                fence = None;
            } else {
                block.push_str(line);
                block.push('\n');
            }
            continue;
        }
        if line.starts_with("```") {
            fence = Some(String::new());
            continue;
        }
        if line.starts_with('|') {
            let cols = line.trim().trim_matches('|').split('|').count();
            let t = table.get_or_insert((0, cols));
            t.0 += 1;
            continue;
        }
        if let Some(t) = table.take() {
            tables.push(t);
        }
        let level = line.chars().take_while(|&c| c == '#').count();
        if level > 0 && line[level..].starts_with(' ') {
            headings.push(level);
        }
    }
    tables.extend(table);
    Shape {
        headings,
        code,
        tables,
    }
}

#[test]
fn the_chinese_readme_keeps_step_with_the_english_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let en = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let zh = std::fs::read_to_string(root.join("README.zh-CN.md")).expect("README.zh-CN.md");
    let (a, b) = (shape(&en), shape(&zh));
    assert_eq!(a.headings, b.headings, "heading levels, in order");
    assert_eq!(a.code.len(), b.code.len(), "code blocks");
    for (i, (x, y)) in a.code.iter().zip(&b.code).enumerate() {
        assert_eq!(x, y, "code block {i} differs");
    }
    assert_eq!(a.tables, b.tables, "tables' rows and columns");
    // And it is Chinese.
    let han = zh
        .chars()
        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        .count();
    assert!(han > 5000, "{han} Han characters");
}
