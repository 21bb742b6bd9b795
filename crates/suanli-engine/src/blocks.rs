//! The paged KV cache's block manager, with prefix caching.
//!
//! The pool holds `n_blocks` blocks of `block_size` positions. A sequence
//! owns a list of blocks (its block table); a block may be shared by
//! several sequences (reference counted) when they start with the same
//! tokens. Every *full* block is registered under the hash of all tokens up
//! to its end (a chain: the parent block's hash and this block's tokens), as
//! vLLM does; a new sequence whose prompt starts with those tokens takes the
//! blocks instead of recomputing them. A block nobody references keeps its
//! contents and its registration until the space is needed (least recently
//! freed first), so a system prompt shared across requests is computed once.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// A block's identity in the prefix cache: the hash of every token up to
/// its end, and its own tokens (compared on lookup, so a hash collision can
/// only miss, never return another prefix's K/V).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    hash: u64,
    tokens: Vec<u32>,
}

#[derive(Default, Clone)]
struct BlockMeta {
    refs: u32,
    key: Option<Key>,
}

/// Hash of a block given its parent's hash and its tokens.
pub fn chain_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// Counters the metrics endpoint reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    pub total: usize,
    /// Referenced by at least one sequence.
    pub used: usize,
    /// Free, including cached blocks nobody references.
    pub free: usize,
    /// Free blocks that still hold a cached prefix.
    pub cached: usize,
}

pub struct BlockManager {
    pub block_size: usize,
    meta: Vec<BlockMeta>,
    /// Never used or invalidated: taken first.
    free: Vec<u32>,
    /// Unreferenced but registered, oldest first: evicted when `free` is empty.
    evictable: VecDeque<u32>,
    /// hash → block holding that prefix.
    cache: HashMap<u64, u32>,
    /// Whether full blocks are registered and looked up.
    pub prefix_caching: bool,
}

impl BlockManager {
    pub fn new(n_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        BlockManager {
            block_size,
            meta: vec![BlockMeta::default(); n_blocks],
            // Popped from the back: hand out low block numbers first.
            free: (0..n_blocks as u32).rev().collect(),
            evictable: VecDeque::new(),
            cache: HashMap::new(),
            prefix_caching,
        }
    }

    pub fn n_blocks(&self) -> usize {
        self.meta.len()
    }

    /// Blocks that can be handed out now (free or evictable).
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    pub fn stats(&self) -> BlockStats {
        BlockStats {
            total: self.meta.len(),
            used: self.meta.len() - self.available(),
            free: self.available(),
            cached: self.evictable.len(),
        }
    }

    /// A block for new contents (refcount 1), or `None` when all are in use.
    pub fn allocate(&mut self) -> Option<u32> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let b = self.evictable.pop_front()?;
                if let Some(k) = self.meta[b as usize].key.take() {
                    if self.cache.get(&k.hash) == Some(&b) {
                        self.cache.remove(&k.hash);
                    }
                }
                b
            }
        };
        let m = &mut self.meta[b as usize];
        debug_assert_eq!(m.refs, 0);
        m.refs = 1;
        Some(b)
    }

    /// Blocks holding the longest cached prefix of `tokens` made of whole
    /// blocks, each taken (refcount + 1). At most `limit` tokens are matched.
    pub fn lookup(&mut self, tokens: &[u32], limit: usize) -> Vec<u32> {
        let mut out = Vec::new();
        if !self.prefix_caching {
            return out;
        }
        let bs = self.block_size;
        let mut parent = 0u64;
        for chunk in tokens[..limit.min(tokens.len())].chunks_exact(bs) {
            let hash = chain_hash(parent, chunk);
            let Some(&b) = self.cache.get(&hash) else {
                break;
            };
            let m = &self.meta[b as usize];
            if m.key.as_ref().is_none_or(|k| k.tokens != chunk) {
                break;
            }
            self.take(b);
            out.push(b);
            parent = hash;
        }
        out
    }

    fn take(&mut self, b: u32) {
        let m = &mut self.meta[b as usize];
        if m.refs == 0 {
            if let Some(i) = self.evictable.iter().position(|&x| x == b) {
                self.evictable.remove(i);
            }
        }
        self.meta[b as usize].refs += 1;
    }

    /// Register full block `b` (holding `tokens`, the prefix before it
    /// hashing to `parent`) in the prefix cache; returns its hash. A prefix
    /// already cached in another block keeps that block.
    pub fn register(&mut self, b: u32, parent: u64, tokens: &[u32]) -> u64 {
        let hash = chain_hash(parent, tokens);
        if !self.prefix_caching || self.meta[b as usize].key.is_some() {
            return hash;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cache.entry(hash) {
            e.insert(b);
            self.meta[b as usize].key = Some(Key {
                hash,
                tokens: tokens.to_vec(),
            });
        }
        hash
    }

    /// Drop one reference to each block; unreferenced blocks become free
    /// (cached ones stay findable until evicted, the last freed last).
    pub fn release(&mut self, blocks: &[u32]) {
        // The end of a sequence is the least likely to be reused: free it first.
        for &b in blocks.iter().rev() {
            let m = &mut self.meta[b as usize];
            debug_assert!(m.refs > 0, "block {b} released twice");
            m.refs = m.refs.saturating_sub(1);
            if m.refs == 0 {
                if m.key.is_some() {
                    self.evictable.push_back(b);
                } else {
                    self.free.push(b);
                }
            }
        }
    }

    /// References held on block `b`.
    pub fn refs(&self, b: u32) -> u32 {
        self.meta[b as usize].refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_release_and_exhaustion() {
        let mut m = BlockManager::new(3, 4, true);
        let a: Vec<u32> = (0..3).filter_map(|_| m.allocate()).collect();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(m.allocate(), None);
        assert_eq!(m.stats().used, 3);
        m.release(&a[1..2]);
        assert_eq!(m.stats().free, 1);
        assert_eq!(m.allocate(), Some(1));
    }

    #[test]
    fn prefix_blocks_are_shared_and_survive_release_until_evicted() {
        let mut m = BlockManager::new(4, 2, true);
        let toks = [1, 2, 3, 4, 5];
        let (b0, b1) = (m.allocate().unwrap(), m.allocate().unwrap());
        let h0 = m.register(b0, 0, &toks[0..2]);
        m.register(b1, h0, &toks[2..4]);
        // A second sequence with the same start shares both blocks.
        let hit = m.lookup(&[1, 2, 3, 4, 9], 4);
        assert_eq!(hit, vec![b0, b1]);
        assert_eq!(m.refs(b0), 2);
        // A different second block stops the match after the first.
        assert_eq!(m.lookup(&[1, 2, 7, 7], 4), vec![b0]);
        m.release(&[b0]);
        m.release(&hit);
        m.release(&[b0, b1]);
        assert_eq!(m.stats().cached, 2);
        // Still findable after every sequence let go.
        let again = m.lookup(&toks, 4);
        assert_eq!(again, vec![b0, b1]);
        m.release(&again);
        // Under pressure the cached blocks are reused and forgotten.
        let all: Vec<u32> = (0..4).filter_map(|_| m.allocate()).collect();
        assert_eq!(all.len(), 4);
        m.release(&all);
        assert!(m.lookup(&toks, 4).is_empty());
    }

    #[test]
    fn the_limit_and_the_switch_are_respected() {
        let mut m = BlockManager::new(4, 2, true);
        let b = m.allocate().unwrap();
        m.register(b, 0, &[1, 2]);
        assert!(m.lookup(&[1, 2, 3], 1).is_empty());
        let mut off = BlockManager::new(4, 2, false);
        let b = off.allocate().unwrap();
        off.register(b, 0, &[1, 2]);
        assert!(off.lookup(&[1, 2, 3], 3).is_empty());
    }
}
