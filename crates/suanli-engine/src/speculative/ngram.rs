//! Prompt lookup: drafts are what followed the latest earlier occurrence of
//! the context's last n tokens (the longest n from `max_n` down to `min_n`
//! that occurs). Edits of code or text given in the prompt, and summaries
//! quoting it, repeat long runs of it; free prose rarely does, and then no
//! draft is proposed at all.

use super::Drafter;
use crate::Result;

pub struct NgramDrafter {
    pub min_n: usize,
    pub max_n: usize,
}

impl Default for NgramDrafter {
    fn default() -> Self {
        NgramDrafter { min_n: 2, max_n: 4 }
    }
}

impl NgramDrafter {
    /// The continuation (up to `k` tokens) of the latest earlier occurrence
    /// of `context`'s last `n` tokens.
    fn lookup(context: &[u32], n: usize, k: usize) -> Option<Vec<u32>> {
        let len = context.len();
        if len <= n {
            return None;
        }
        let tail = &context[len - n..];
        (0..len - n)
            .rev()
            .find(|&j| &context[j..j + n] == tail)
            .map(|j| context[j + n..(j + n + k).min(len)].to_vec())
            .filter(|c| !c.is_empty())
    }
}

impl Drafter for NgramDrafter {
    fn draft(&mut self, context: &[u32], k: usize) -> Result<Vec<u32>> {
        Ok((self.min_n..=self.max_n)
            .rev()
            .find_map(|n| Self::lookup(context, n, k))
            .unwrap_or_default())
    }

    fn rewind(&mut self, _n: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_continue_the_latest_longest_match() {
        let mut d = NgramDrafter::default();
        // "1 2 3 4 5 … 9 1 2 3" → after "1 2 3" came "4 5" (latest match).
        let ctx = [1, 2, 3, 4, 5, 9, 1, 2, 3];
        assert_eq!(d.draft(&ctx, 2).unwrap(), vec![4, 5]);
        // The longest n wins over a later shorter match.
        let ctx = [7, 2, 3, 8, 0, 2, 3, 6, 7, 2, 3];
        assert_eq!(d.draft(&ctx, 1).unwrap(), vec![8]);
        // No repeat, no draft.
        assert!(d.draft(&[1, 2, 3, 4], 4).unwrap().is_empty());
    }
}
