//! A draft model: a smaller model of the target's vocabulary, decoding
//! greedily from its own KV cache, which follows the target's context
//! (rewound to what the target kept).

use suanli_models::{ForwardCtx, KvCache, Logits, Model};

use super::Drafter;
use crate::sampler::argmax;
use crate::Result;

pub struct ModelDrafter<'a> {
    model: &'a dyn Model,
    kv: KvCache,
}

impl<'a> ModelDrafter<'a> {
    pub fn new(model: &'a dyn Model, kv: KvCache) -> Self {
        ModelDrafter { model, kv }
    }
}

impl Drafter for ModelDrafter<'_> {
    fn draft(&mut self, context: &[u32], k: usize) -> Result<Vec<u32>> {
        let fed = self.kv.len();
        // Room for the unseen context and the drafts.
        let unseen = &context[fed.min(context.len())..];
        if unseen.is_empty() || fed + unseen.len() + k >= self.kv.capacity {
            return Ok(Vec::new());
        }
        let mut logits = self
            .model
            .forward(unseen, &mut ForwardCtx::new(&mut self.kv, Logits::Last))?;
        if k == 0 {
            // Only catching up (the prompt, before the first step).
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(k);
        loop {
            let t = argmax(&logits);
            out.push(t);
            if out.len() == k {
                return Ok(out);
            }
            logits = self
                .model
                .forward(&[t], &mut ForwardCtx::new(&mut self.kv, Logits::Last))?;
        }
    }

    fn rewind(&mut self, n: usize) {
        if self.kv.len() > n {
            self.kv.truncate(n);
        }
    }
}
