//! The chunks of a text through the model, several to a forward pass.
//!
//! As llama-perplexity batches them (`n_batch`): when a chunk is shorter
//! than a pass, `pass_tokens / n_ctx` whole chunks go through each pass as
//! separate sequences, each from position 0 in a block of a shared
//! [`KvPool`](suanli_models::KvPool); a longer chunk goes through in
//! pieces of `pass_tokens`. So every pass is as wide as the matmuls want,
//! attention stays within each chunk, and a chunk is cut where llama.cpp
//! cuts it: how many query rows a piece has picks the attention kernel
//! (below 64, the per-row one with its f16 queries), which moves the
//! perplexity in its third or fourth digit. Only the positions to be scored
//! ask for logits ([`Logits::Tail`]): the output matrix never runs over the
//! first half of a chunk.

use suanli_models::{Batch, KvDtype, Logits, Model, ModelError, Pages, SeqSpan};

use super::{Layout, Result};

/// How to run the chunks.
pub struct Eval<'a> {
    pub model: &'a dyn Model,
    pub kv_dtype: KvDtype,
    /// Tokens per forward pass.
    pub pass_tokens: usize,
    /// The token put first in every chunk, when the model adds a BOS.
    pub bos: Option<u32>,
}

impl Eval<'_> {
    /// Runs the chunks of `layout` over `tokens`. After each pass,
    /// `on_pass(tokens run)`; when a chunk is done, `on_chunk(k, rows)`
    /// with its logits at positions `first..n_ctx` (`n_ctx − first` rows
    /// of `n_vocab`), chunks in order.
    pub fn run(
        &self,
        tokens: &[u32],
        layout: &Layout,
        on_pass: &mut dyn FnMut(usize),
        on_chunk: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let (c, first) = (layout.n_ctx, layout.first);
        let nv = self.model.config().n_vocab;
        if tokens.len() < c * layout.n_chunk {
            return Err(ModelError::BadBatch(format!(
                "{} tokens for {} chunks of {c}",
                tokens.len(),
                layout.n_chunk
            ))
            .into());
        }
        let pass = self.pass_tokens.max(1);
        // Chunks a pass, and pieces a chunk.
        let n_seq = (pass / c).clamp(1, layout.n_chunk);
        let piece = pass.min(c);
        let block = c.next_power_of_two();
        let mut pool = self.model.new_pool(n_seq, block, self.kv_dtype);
        let tables: Vec<[u32; 1]> = (0..n_seq as u32).map(|s| [s]).collect();
        let mut ids = Vec::with_capacity(n_seq * piece);
        let mut rows = Vec::new();
        for group in (0..layout.n_chunk).step_by(n_seq) {
            let chunks = group..(group + n_seq).min(layout.n_chunk);
            rows.clear();
            for pos in (0..c).step_by(piece) {
                let n = piece.min(c - pos);
                // The logits rows of this piece: its positions from `first` on.
                let tail = (pos + n).saturating_sub(first.max(pos));
                ids.clear();
                let spans: Vec<SeqSpan> = chunks
                    .clone()
                    .enumerate()
                    .map(|(s, k)| {
                        let start = k * c + pos;
                        ids.extend_from_slice(&tokens[start..start + n]);
                        if let (0, Some(b)) = (pos, self.bos) {
                            let at = ids.len() - n;
                            ids[at] = b;
                        }
                        SeqSpan {
                            n,
                            pos0: pos,
                            pages: Pages::new(&tables[s], block),
                            logits: Logits::Tail(tail),
                        }
                    })
                    .collect();
                let mut batch = Batch::new(&mut pool, &spans, None)?;
                let out = self.model.forward_batch(&ids, &mut batch)?;
                on_pass(ids.len());
                if out.len() != spans.len() * tail * nv {
                    return Err(ModelError::BadBatch(format!(
                        "{} logits for {} rows of {nv}",
                        out.len(),
                        spans.len() * tail
                    ))
                    .into());
                }
                if pos == 0 && n == c {
                    // Whole chunks in one pass: their rows as they came.
                    for (k, r) in chunks.clone().zip(out.chunks_exact((tail * nv).max(1))) {
                        on_chunk(k, r)?;
                    }
                    break;
                }
                rows.extend_from_slice(&out);
            }
            if c > piece {
                // One chunk, its rows gathered over its pieces.
                on_chunk(group, &rows)?;
            }
        }
        Ok(())
    }
}
