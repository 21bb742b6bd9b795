//! Splitting special tokens out of text before tokenizing the rest.
//!
//! llama.cpp (`tokenizer_st_partition`) takes special tokens longest first
//! and, for each, splits every remaining text fragment at its leftmost
//! non-overlapping occurrences. Doing that with one `find` per token over the
//! text costs tokens × text (Gemma 3 has 6,000 such tokens), so we find all
//! occurrences of all tokens in one Aho-Corasick pass and then replay the same
//! longest-first procedure on the few tokens that occur.

use aho_corasick::{AhoCorasick, MatchKind};

/// A piece of the input: text still to tokenize, or a special token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

pub struct SpecialSplitter {
    ac: Option<AhoCorasick>,
    /// Token id per pattern index.
    ids: Vec<u32>,
    /// Pattern lengths in bytes.
    lens: Vec<usize>,
}

impl SpecialSplitter {
    /// `tokens`: (id, text) of every token to split out.
    pub fn new(tokens: Vec<(u32, String)>) -> Self {
        let tokens: Vec<(u32, String)> =
            tokens.into_iter().filter(|(_, t)| !t.is_empty()).collect();
        let ac = if tokens.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(tokens.iter().map(|(_, t)| t.as_bytes()))
                .ok()
        };
        SpecialSplitter {
            ac,
            ids: tokens.iter().map(|(i, _)| *i).collect(),
            lens: tokens.iter().map(|(_, t)| t.len()).collect(),
        }
    }

    pub fn split<'a>(&self, text: &'a str) -> Vec<Fragment<'a>> {
        let Some(ac) = &self.ac else {
            return vec![Fragment::Text(text)];
        };
        // All (overlapping) occurrences, grouped by pattern.
        let mut occ: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for m in ac.find_overlapping_iter(text) {
            occ.entry(m.pattern().as_usize())
                .or_default()
                .push(m.start());
        }
        if occ.is_empty() {
            return vec![Fragment::Text(text)];
        }
        // Longest first; among equal lengths, lower id first.
        let mut pats: Vec<usize> = occ.keys().copied().collect();
        pats.sort_by(|&a, &b| {
            self.lens[b]
                .cmp(&self.lens[a])
                .then(self.ids[a].cmp(&self.ids[b]))
        });
        // Fragments as byte ranges: (start, end, Some(token) | None for text).
        let mut frags: Vec<(usize, usize, Option<u32>)> = vec![(0, text.len(), None)];
        for p in pats {
            let len = self.lens[p];
            let starts = &occ[&p];
            let mut next = Vec::with_capacity(frags.len() + 2);
            for &(s, e, tok) in &frags {
                if tok.is_some() {
                    next.push((s, e, tok));
                    continue;
                }
                let mut cur = s;
                for &m in starts {
                    if m < cur || m + len > e {
                        continue;
                    }
                    if m > cur {
                        next.push((cur, m, None));
                    }
                    next.push((m, m + len, Some(self.ids[p])));
                    cur = m + len;
                }
                if cur < e {
                    next.push((cur, e, None));
                }
            }
            frags = next;
        }
        frags
            .into_iter()
            .map(|(s, e, tok)| match tok {
                Some(t) => Fragment::Token(t),
                None => Fragment::Text(&text[s..e]),
            })
            .collect()
    }
}
