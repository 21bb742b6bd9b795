//! SentencePiece-style tokenization from GGUF scores (`tokenizer.ggml.model =
//! llama`), as llama.cpp's `llm_tokenizer_spm` does it: start from UTF-8
//! characters, repeatedly merge the adjacent pair whose concatenation is a
//! token with the highest score (ties: leftmost), then resegment pieces that
//! are not tokens and fall back to `<0xXX>` byte tokens.

use std::collections::BinaryHeap;

use crate::special::{Fragment, SpecialSplitter};
use crate::vocab::{byte_token, TokenType, Vocab};

pub struct SpmTokenizer {
    pub vocab: Vocab,
    byte_ids: [Option<u32>; 256],
    specials: SpecialSplitter,
    specials_all: SpecialSplitter,
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Max-heap: higher score first, then the leftmost.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}

impl SpmTokenizer {
    pub fn new(vocab: Vocab) -> Self {
        let mut byte_ids = [None; 256];
        for (i, t) in vocab.tokens.iter().enumerate() {
            if vocab.types[i] == TokenType::Byte {
                if let Some(b) = byte_token(t) {
                    byte_ids[b as usize] = Some(i as u32);
                }
            }
        }
        let pick = |ps: bool| {
            SpecialSplitter::new(
                vocab
                    .special_tokens(ps)
                    .into_iter()
                    .map(|i| (i, vocab.tokens[i as usize].clone()))
                    .collect(),
            )
        };
        SpmTokenizer {
            specials: pick(false),
            specials_all: pick(true),
            vocab,
            byte_ids,
        }
    }

    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.vocab.add_bos {
            out.extend(self.vocab.bos);
        }
        let splitter = if parse_special {
            &self.specials_all
        } else {
            &self.specials
        };
        let mut prev_special = true;
        if !text.is_empty() {
            for frag in splitter.split(text) {
                match frag {
                    Fragment::Text(t) => {
                        let mut s = String::with_capacity(t.len() + 3);
                        if self.vocab.add_space_prefix && prev_special {
                            s.push(' ');
                        }
                        s.push_str(t);
                        let s = s.replace(' ', "\u{2581}");
                        self.tokenize_text(&s, &mut out);
                        prev_special = false;
                    }
                    Fragment::Token(id) => {
                        out.push(id);
                        prev_special = true;
                    }
                }
            }
        }
        if add_special && self.vocab.add_eos {
            out.extend(self.vocab.eos);
        }
        out
    }

    fn tokenize_text(&self, text: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<Symbol> = Vec::new();
        for (i, (off, c)) in text.char_indices().enumerate() {
            syms.push(Symbol {
                start: off,
                len: c.len_utf8(),
                prev: i as isize - 1,
                next: if off + c.len_utf8() == text.len() {
                    -1
                } else {
                    i as isize + 1
                },
            });
        }
        let mut heap = BinaryHeap::new();
        let try_add = |l: isize, r: isize, syms: &[Symbol], heap: &mut BinaryHeap<Bigram>| {
            if l < 0 || r < 0 {
                return;
            }
            let (l, r) = (l as usize, r as usize);
            let s = &text[syms[l].start..syms[l].start + syms[l].len + syms[r].len];
            if let Some(id) = self.vocab.id_of(s) {
                heap.push(Bigram {
                    score: self.vocab.scores[id as usize],
                    left: l,
                    right: r,
                    size: s.len(),
                });
            }
        };
        for i in 1..syms.len() {
            try_add(i as isize - 1, i as isize, &syms, &mut heap);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            syms[b.left].len += r.len;
            syms[b.right].len = 0;
            syms[b.left].next = r.next;
            if r.next >= 0 {
                syms[r.next as usize].prev = b.left as isize;
            }
            let prev = syms[b.left].prev;
            try_add(prev, b.left as isize, &syms, &mut heap);
            let next = syms[b.left].next;
            try_add(b.left as isize, next, &syms, &mut heap);
        }
        // Every merge formed a token, so a final symbol is either a token or a
        // single character missing from the vocabulary: that one goes out as
        // byte tokens (llama.cpp's `resegment`, whose `rev_merge` branch can
        // only be reached by multi-character symbols).
        let mut i: isize = if syms.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = syms[i as usize];
            let piece = &text[s.start..s.start + s.len];
            match self.vocab.id_of(piece) {
                Some(id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.extend(self.byte_ids[b as usize]);
                    }
                }
            }
            i = s.next;
        }
    }
}
