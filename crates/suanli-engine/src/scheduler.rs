//! The continuous-batching scheduler: a state machine over sequences and
//! KV blocks, with no model in it (its tests run none).
//!
//! Every step [`Scheduler::schedule`] plans one batched forward pass under a
//! token budget: first every running sequence (a decoding one needs one
//! token; one still in prefill gets the next chunk of its prompt), then
//! waiting sequences in arrival order while slots, budget and blocks last —
//! so a long new prompt is prefilled in chunks between decode steps and
//! running streams keep flowing. A new sequence first takes whatever prefix
//! of its prompt the block manager has cached. When blocks run out, the
//! youngest running sequence is preempted: its blocks are released (full
//! ones stay in the prefix cache) and it goes back to the head of the queue
//! to be recomputed — never dropped.

use std::collections::{HashMap, VecDeque};

use suanli_models::Logits;

use crate::blocks::{BlockManager, BlockStats};

pub type SeqId = u64;

#[derive(Debug, Clone, Copy)]
pub struct SchedConfig {
    /// Sequences that run at once (slots).
    pub max_running: usize,
    /// Tokens per forward pass (decode tokens + prefill chunks).
    pub token_budget: usize,
    /// Sequences that may wait for a slot; more are refused.
    pub max_waiting: usize,
    /// Positions one sequence may fill (prompt + generated).
    pub max_seq_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error("the queue is full ({0} requests waiting)")]
    QueueFull(usize),
    #[error("the prompt is {prompt} tokens, {over} more than the context of {ctx} allows (leave room for at least one generated token)")]
    TooLong {
        prompt: usize,
        ctx: usize,
        over: usize,
    },
    #[error("the prompt is empty")]
    Empty,
    #[error("sequence {0} already exists")]
    Duplicate(SeqId),
}

#[derive(Debug)]
pub struct Seq {
    pub id: SeqId,
    /// Prompt, then generated tokens.
    pub tokens: Vec<u32>,
    pub n_prompt: usize,
    /// Positions whose K/V are in `blocks`.
    pub computed: usize,
    pub blocks: Vec<u32>,
    /// Chain hashes of the full blocks registered so far.
    hashes: Vec<u64>,
    /// Speculative tokens at the end of `tokens`, checked by the next pass:
    /// their K/V count as computed only once they are kept ([`Scheduler::keep_drafts`]),
    /// and no block holding them enters the prefix cache before.
    pub drafts: usize,
    /// Prompt tokens found in the prefix cache at (the last) admission.
    pub cached_tokens: usize,
    /// Logits wanted for every prompt position (prompt logprobs): such a
    /// sequence does not take cached prefixes.
    pub prompt_logits: bool,
    pub preemptions: u32,
}

impl Seq {
    /// Tokens not yet run through the model.
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }
}

/// One sequence's part of a step: tokens `start..start + n` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub id: SeqId,
    pub start: usize,
    pub n: usize,
    pub logits: Logits,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub work: Vec<Work>,
    /// Sequences sent back to the queue this step (their K/V dropped).
    pub preempted: Vec<SeqId>,
}

pub struct Scheduler {
    pub cfg: SchedConfig,
    pub blocks: BlockManager,
    seqs: HashMap<SeqId, Seq>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    /// Prompt tokens served from the prefix cache, all time.
    pub prefix_hit_tokens: u64,
    pub preemptions: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedConfig, blocks: BlockManager) -> Self {
        let capacity = blocks.n_blocks() * blocks.block_size;
        Scheduler {
            cfg: SchedConfig {
                max_seq_len: cfg.max_seq_len.min(capacity),
                max_running: cfg.max_running.max(1),
                token_budget: cfg.token_budget.max(cfg.max_running).max(1),
                ..cfg
            },
            blocks,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            prefix_hit_tokens: 0,
            preemptions: 0,
        }
    }

    /// Whether a prompt of `n` tokens fits (room for one generated token).
    pub fn check_prompt(&self, n: usize) -> Result<(), AddError> {
        if n == 0 {
            return Err(AddError::Empty);
        }
        let ctx = self.cfg.max_seq_len;
        if n >= ctx {
            return Err(AddError::TooLong {
                prompt: n,
                ctx,
                over: n + 1 - ctx,
            });
        }
        Ok(())
    }

    /// Queue a new sequence.
    pub fn add(
        &mut self,
        id: SeqId,
        prompt: Vec<u32>,
        prompt_logits: bool,
    ) -> Result<(), AddError> {
        self.check_prompt(prompt.len())?;
        if self.waiting.len() >= self.cfg.max_waiting {
            return Err(AddError::QueueFull(self.waiting.len()));
        }
        if self.seqs.contains_key(&id) {
            return Err(AddError::Duplicate(id));
        }
        self.seqs.insert(
            id,
            Seq {
                id,
                n_prompt: prompt.len(),
                tokens: prompt,
                computed: 0,
                blocks: Vec::new(),
                hashes: Vec::new(),
                drafts: 0,
                cached_tokens: 0,
                prompt_logits,
                preemptions: 0,
            },
        );
        self.waiting.push_back(id);
        Ok(())
    }

    pub fn seq(&self, id: SeqId) -> Option<&Seq> {
        self.seqs.get(&id)
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn is_idle(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn ids(&self) -> Vec<SeqId> {
        self.seqs.keys().copied().collect()
    }

    pub fn block_stats(&self) -> BlockStats {
        self.blocks.stats()
    }

    /// Plan the next forward pass.
    pub fn schedule(&mut self) -> Plan {
        let mut plan = Plan::default();
        let mut budget = self.cfg.token_budget;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            if self.seqs[&id].pending() > budget {
                // A draft is checked in one pass or not at all.
                self.drop_drafts(id);
            }
            let n = self.seqs[&id].pending().min(budget);
            if !self.grow(id, n, &mut plan) {
                // `id` itself was the youngest and went back to the queue.
                continue;
            }
            plan.work.push(self.work(id, n));
            budget -= n;
            i += 1;
        }
        while budget > 0 && self.running.len() < self.cfg.max_running {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let bs = self.blocks.block_size;
            let seq = self.seqs.get_mut(&id).expect("waiting sequence exists");
            if seq.blocks.is_empty() && !seq.prompt_logits {
                // Leave at least one token to compute: its logits are needed.
                let hit = self.blocks.lookup(&seq.tokens, seq.tokens.len() - 1);
                seq.computed = hit.len() * bs;
                seq.cached_tokens = seq.computed.min(seq.n_prompt);
                seq.blocks = hit;
            }
            // Whatever fits in the budget and in the free blocks.
            let room = (seq.blocks.len() + self.blocks.available()) * bs - seq.computed;
            let n = seq.pending().min(budget).min(room);
            if n == 0 || !self.alloc(id, n) {
                // Wait for blocks to free up. The prefix found goes back to
                // the cache meanwhile, so a waiting sequence holds nothing.
                let seq = self.seqs.get_mut(&id).expect("waiting sequence exists");
                self.blocks.release(&seq.blocks);
                seq.blocks.clear();
                seq.computed = 0;
                seq.cached_tokens = 0;
                break;
            }
            self.prefix_hit_tokens += self.seqs[&id].cached_tokens as u64;
            self.waiting.pop_front();
            self.running.push(id);
            plan.work.push(self.work(id, n));
            budget -= n;
        }
        plan
    }

    fn work(&self, id: SeqId, n: usize) -> Work {
        let s = &self.seqs[&id];
        let end = s.computed + n;
        let logits = if (s.prompt_logits && s.computed < s.n_prompt)
            || (s.drafts > 0 && end == s.tokens.len())
        {
            // A draft's check needs every position's logits.
            Logits::All
        } else if end == s.tokens.len() {
            Logits::Last
        } else {
            Logits::None
        };
        Work {
            id,
            start: s.computed,
            n,
            logits,
        }
    }

    /// Blocks for `n` more positions of running sequence `id`, preempting
    /// the youngest running sequences as needed. False if `id` itself had
    /// to be preempted.
    fn grow(&mut self, id: SeqId, n: usize, plan: &mut Plan) -> bool {
        loop {
            if self.alloc(id, n) {
                return true;
            }
            let victim = *self.running.last().expect("id is running");
            self.preempt(victim);
            plan.preempted.push(victim);
            if victim == id {
                return false;
            }
        }
    }

    /// Makes `id`'s table cover `computed + n` positions; all or nothing.
    fn alloc(&mut self, id: SeqId, n: usize) -> bool {
        let bs = self.blocks.block_size;
        let seq = self.seqs.get_mut(&id).expect("sequence exists");
        let need = (seq.computed + n)
            .div_ceil(bs)
            .saturating_sub(seq.blocks.len());
        if need > self.blocks.available() {
            return false;
        }
        for _ in 0..need {
            let b = self.blocks.allocate().expect("checked available");
            seq.blocks.push(b);
        }
        true
    }

    fn preempt(&mut self, id: SeqId) {
        self.drop_drafts(id);
        self.running.retain(|&r| r != id);
        if let Some(s) = self.seqs.get_mut(&id) {
            self.blocks.release(&s.blocks);
            s.blocks.clear();
            s.hashes.clear();
            s.computed = 0;
            s.preemptions += 1;
        }
        self.preemptions += 1;
        self.waiting.push_front(id);
    }

    /// Record that the plan's forward pass ran: positions are computed and
    /// newly full blocks enter the prefix cache.
    pub fn complete(&mut self, plan: &Plan) {
        let bs = self.blocks.block_size;
        for w in &plan.work {
            let Some(s) = self.seqs.get_mut(&w.id) else {
                continue;
            };
            s.computed = s.computed.max(w.start + w.n);
            register(&mut self.blocks, s, bs);
        }
    }

    /// Speculative tokens for `id` to be checked next step (after the
    /// token it generated, already appended).
    pub fn append_drafts(&mut self, id: SeqId, drafts: &[u32]) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.tokens.extend_from_slice(drafts);
            s.drafts += drafts.len();
        }
    }

    /// The pass checked `id`'s drafts and kept the first `kept`: the others
    /// leave (their K/V, past the positions computed, is overwritten
    /// later) and full blocks of kept tokens enter the prefix cache.
    pub fn keep_drafts(&mut self, id: SeqId, kept: usize) {
        let bs = self.blocks.block_size;
        if let Some(s) = self.seqs.get_mut(&id) {
            let gone = s.drafts - kept.min(s.drafts);
            s.tokens.truncate(s.tokens.len() - gone);
            s.computed = s.computed.min(s.tokens.len());
            s.drafts = 0;
            register(&mut self.blocks, s, bs);
        }
    }

    /// Drafts not yet checked, dropped (no room in a step, or preempted).
    fn drop_drafts(&mut self, id: SeqId) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.tokens.truncate(s.tokens.len() - s.drafts);
            s.computed = s.computed.min(s.tokens.len());
            s.drafts = 0;
        }
    }

    /// A token generated for `id` (to be run next step).
    pub fn append(&mut self, id: SeqId, token: u32) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.tokens.push(token);
        }
    }

    /// Finished, cancelled or failed: its blocks are released at once.
    pub fn finish(&mut self, id: SeqId) -> Option<Seq> {
        let s = self.seqs.remove(&id)?;
        self.running.retain(|&r| r != id);
        self.waiting.retain(|&r| r != id);
        self.blocks.release(&s.blocks);
        Some(s)
    }
}

/// Newly full blocks of `s`'s computed tokens enter the prefix cache —
/// never one holding an unchecked draft.
fn register(blocks: &mut BlockManager, s: &mut Seq, bs: usize) {
    let confirmed = s.computed.min(s.tokens.len() - s.drafts);
    while s.hashes.len() < confirmed / bs {
        let b = s.hashes.len();
        let parent = s.hashes.last().copied().unwrap_or(0);
        let h = blocks.register(s.blocks[b], parent, &s.tokens[b * bs..(b + 1) * bs]);
        s.hashes.push(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(blocks: usize, bs: usize, running: usize, budget: usize) -> Scheduler {
        Scheduler::new(
            SchedConfig {
                max_running: running,
                token_budget: budget,
                max_waiting: 8,
                max_seq_len: 1 << 20,
            },
            BlockManager::new(blocks, bs, true),
        )
    }

    /// Run one step as an engine would: complete, then give every sequence
    /// whose logits came out a token.
    fn step(s: &mut Scheduler, next: u32) -> Plan {
        let p = s.schedule();
        s.complete(&p);
        for w in &p.work {
            if w.logits == Logits::Last {
                s.append(w.id, next);
            }
        }
        p
    }

    #[test]
    fn long_prompts_are_chunked_while_decodes_keep_running() {
        let mut s = sched(64, 4, 4, 8);
        s.add(1, vec![1, 2, 3], false).unwrap();
        let p = step(&mut s, 9);
        assert_eq!(
            p.work,
            vec![Work {
                id: 1,
                start: 0,
                n: 3,
                logits: Logits::Last
            }]
        );
        s.add(2, (0..20).collect(), false).unwrap();
        // Sequence 1 decodes every step; 2's prompt goes in chunks of 7.
        let p = step(&mut s, 9);
        assert_eq!(
            p.work[0],
            Work {
                id: 1,
                start: 3,
                n: 1,
                logits: Logits::Last
            }
        );
        assert_eq!(
            p.work[1],
            Work {
                id: 2,
                start: 0,
                n: 7,
                logits: Logits::None
            }
        );
        let p = step(&mut s, 9);
        assert_eq!(
            p.work[1],
            Work {
                id: 2,
                start: 7,
                n: 7,
                logits: Logits::None
            }
        );
        let p = step(&mut s, 9);
        assert_eq!(p.work[0].n, 1);
        assert_eq!(
            p.work[1],
            Work {
                id: 2,
                start: 14,
                n: 6,
                logits: Logits::Last
            }
        );
        let p = step(&mut s, 9);
        assert_eq!(p.work.iter().map(|w| w.n).collect::<Vec<_>>(), vec![1, 1]);
        s.finish(1);
        s.finish(2);
        assert_eq!(s.block_stats().used, 0);
    }

    #[test]
    fn slots_limit_running_and_the_queue_is_bounded() {
        let mut s = sched(64, 4, 2, 64);
        for id in 0..3 {
            s.add(id, vec![1, 2, 3, id as u32], false).unwrap();
        }
        let p = step(&mut s, 0);
        assert_eq!(p.work.len(), 2);
        assert_eq!((s.running(), s.waiting()), (2, 1));
        for id in 3..10 {
            s.add(id, vec![1], false).unwrap();
        }
        assert_eq!(s.add(10, vec![1], false), Err(AddError::QueueFull(8)));
        s.finish(0);
        let p = step(&mut s, 0);
        assert_eq!(p.work.iter().map(|w| w.id).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn shared_prefixes_are_computed_once() {
        let mut s = sched(64, 4, 4, 64);
        let system: Vec<u32> = (100..110).collect();
        let mut a = system.clone();
        a.extend([1, 2]);
        s.add(1, a, false).unwrap();
        step(&mut s, 7);
        let mut b = system.clone();
        b.extend([3]);
        s.add(2, b, false).unwrap();
        let p = step(&mut s, 7);
        // Two full blocks (8 tokens) of the system prompt were cached.
        assert_eq!(
            p.work[1],
            Work {
                id: 2,
                start: 8,
                n: 3,
                logits: Logits::Last
            }
        );
        assert_eq!(s.seq(2).unwrap().cached_tokens, 8);
        assert_eq!(s.seq(2).unwrap().blocks[..2], s.seq(1).unwrap().blocks[..2]);
        // Prompt logprobs need every position: no reuse.
        let mut c = system.clone();
        c.push(4);
        s.add(3, c, true).unwrap();
        let p = step(&mut s, 7);
        assert_eq!(
            p.work[2],
            Work {
                id: 3,
                start: 0,
                n: 11,
                logits: Logits::All
            }
        );
        // The whole prompt cached: still one token is computed for logits.
        s.finish(1);
        let mut d = system.clone();
        d.extend([1, 2]);
        s.add(4, d, false).unwrap();
        let p = step(&mut s, 7);
        let w = p.work.iter().find(|w| w.id == 4).unwrap();
        assert_eq!((w.start, w.n), (8, 4));
    }

    #[test]
    fn out_of_blocks_preempts_the_youngest_and_recomputes_it() {
        // 6 blocks of 2: two sequences of 5 tokens fill 6 blocks quickly.
        let mut s = sched(6, 2, 2, 64);
        s.add(1, vec![1, 2, 3, 4, 5], false).unwrap();
        s.add(2, vec![6, 7, 8, 9, 10], false).unwrap();
        step(&mut s, 11);
        assert_eq!(s.block_stats().used, 6);
        // Position 5 still fits the third block of each.
        assert!(step(&mut s, 11).preempted.is_empty());
        // Both need a 4th block for position 6: 2 is preempted, 1 goes on.
        let p = step(&mut s, 11);
        assert_eq!(p.preempted, vec![2]);
        assert_eq!(p.work.iter().map(|w| w.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!((s.running(), s.waiting()), (1, 1));
        // Once 1 finishes, 2 is recomputed with its generated token kept.
        s.finish(1);
        let p = step(&mut s, 11);
        let w = p.work[0];
        assert_eq!(w.id, 2);
        assert_eq!(w.start + w.n, 7);
        // Its two generated tokens were recomputed, a third sampled.
        assert_eq!(s.seq(2).unwrap().tokens[5..], [11, 11, 11]);
        assert_eq!(s.seq(2).unwrap().preemptions, 1);
        s.finish(2);
        assert_eq!(s.block_stats().used, 0);
    }

    #[test]
    fn a_waiting_sequence_holds_no_blocks() {
        // 4 blocks of 4, all taken by sequence 1 once it decodes; 2 finds
        // its first two blocks cached but no room for the rest, so it waits
        // empty-handed.
        let mut s = sched(4, 4, 4, 64);
        s.add(1, (0..12).collect(), false).unwrap();
        step(&mut s, 99);
        let mut p: Vec<u32> = (0..8).collect();
        p.extend(100..105);
        s.add(2, p, false).unwrap();
        let plan = step(&mut s, 99);
        assert!(plan.work.iter().all(|w| w.id == 1), "{plan:?}");
        assert!(s.seq(2).unwrap().blocks.is_empty());
        assert_eq!(s.seq(2).unwrap().computed, 0);
        s.finish(1);
        let plan = step(&mut s, 99);
        let w = plan.work[0];
        // Admitted now, still reusing the cached prefix.
        assert_eq!((w.id, w.start), (2, 8));
        assert_eq!(s.prefix_hit_tokens, 8);
    }

    #[test]
    fn too_long_and_empty_prompts_are_refused() {
        let mut s = Scheduler::new(
            SchedConfig {
                max_running: 2,
                token_budget: 16,
                max_waiting: 4,
                max_seq_len: 100,
            },
            BlockManager::new(8, 4, true),
        );
        // The pool (32 positions) bounds the context below max_seq_len.
        assert_eq!(s.cfg.max_seq_len, 32);
        assert_eq!(
            s.add(1, vec![0; 40], false),
            Err(AddError::TooLong {
                prompt: 40,
                ctx: 32,
                over: 9
            })
        );
        assert_eq!(s.add(1, vec![], false), Err(AddError::Empty));
        assert!(s.add(1, vec![0; 31], false).is_ok());
    }

    #[test]
    fn cancelling_a_waiting_or_running_sequence_frees_its_blocks() {
        let mut s = sched(16, 4, 1, 64);
        s.add(1, vec![1; 9], false).unwrap();
        s.add(2, vec![2; 9], false).unwrap();
        step(&mut s, 0);
        assert!(s.block_stats().used >= 3);
        s.finish(2);
        s.finish(1);
        assert_eq!(s.block_stats().used, 0);
        assert!(s.is_idle());
        assert_eq!(s.schedule().work, vec![]);
    }

    /// Drafts ride in the next step's work with every position's logits,
    /// keep only what was kept, never enter the prefix cache unchecked, and
    /// leave when they do not fit a step or the sequence is preempted.
    #[test]
    fn drafts_are_checked_in_one_pass_and_cached_only_once_kept() {
        let mut s = sched(64, 2, 2, 8);
        s.add(1, vec![1, 2, 3], false).unwrap();
        step(&mut s, 4);
        s.append_drafts(1, &[5, 6, 7]);
        let p = s.schedule();
        assert_eq!(
            p.work,
            vec![Work {
                id: 1,
                start: 3,
                n: 4,
                logits: Logits::All
            }]
        );
        s.complete(&p);
        // Positions 0..7 computed, but the full block of drafts 5, 6 is
        // not cached before they are kept.
        assert_eq!(s.blocks.lookup(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 8).len(), 2);
        s.keep_drafts(1, 1);
        let q = s.seq(1).unwrap();
        assert_eq!(
            (q.tokens.clone(), q.computed, q.drafts),
            (vec![1, 2, 3, 4, 5], 5, 0)
        );
        s.append(1, 8);
        s.append_drafts(1, &[9, 10, 11, 12, 13, 14, 15, 16]);
        // Nine pending tokens against a budget of eight: the draft goes.
        let p = s.schedule();
        assert_eq!(p.work[0].n, 1);
        assert_eq!(s.seq(1).unwrap().tokens, vec![1, 2, 3, 4, 5, 8]);
    }
}
