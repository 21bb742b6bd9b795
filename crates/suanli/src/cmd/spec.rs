//! Speculative decoding's options, shared by `run`, `chat` and `bench`:
//! `--draft MODEL` (a smaller model of the target's vocabulary, checked
//! token by token), `--spec ngram` (prompt lookup, no second model) and
//! `--draft-max N`.

use anyhow::Result;
use suanli_engine::{Adaptive, Drafter, ModelDrafter, NgramDrafter};

use super::Loaded;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SpecArgs {
    /// Speculative decoding with a draft model of the same vocabulary (a
    /// path or model name).
    #[arg(long, conflicts_with = "spec")]
    pub draft: Option<String>,
    /// Speculative decoding without a second model: `ngram` drafts what
    /// followed the context's last matching n-gram (prompt lookup).
    #[arg(long, value_parser = ["ngram"])]
    pub spec: Option<String>,
    /// Most tokens drafted a step (the length adapts below it).
    #[arg(long, default_value_t = 8)]
    pub draft_max: usize,
}

impl SpecArgs {
    /// Whether speculation was asked for.
    pub fn on(&self) -> bool {
        self.draft.is_some() || self.spec.is_some()
    }

    /// Before the target loads: verification passes of several tokens
    /// must give each row the bits a pass of one gives (the batch-invariant
    /// orders, which also decide the weights' layouts at load).
    pub fn set_numerics(&self) {
        if self.on() {
            suanli_kernels::dispatch::set_batch_invariant(true);
        }
    }

    /// The draft model, when one is asked for: loaded and its vocabulary
    /// checked against the target's.
    pub fn load_draft(&self, target: &Loaded) -> Result<Option<Loaded>> {
        let Some(d) = &self.draft else {
            return Ok(None);
        };
        let dl = super::load(d)?;
        check_vocab(&target.tokenizer, &dl.tokenizer)?;
        Ok(Some(dl))
    }

    /// A drafter (over `draft` when loaded, else prompt lookup) and its
    /// step controller, for contexts of up to `n_ctx` tokens.
    pub fn drafter<'a>(
        &self,
        draft: Option<&'a Loaded>,
        n_ctx: usize,
    ) -> (Box<dyn Drafter + 'a>, Adaptive) {
        let d: Box<dyn Drafter + 'a> = match draft {
            Some(dl) => Box::new(ModelDrafter::new(
                dl.model.as_ref(),
                dl.model.new_cache(n_ctx, dl.kv_dtype),
            )),
            None => Box::new(NgramDrafter::default()),
        };
        (d, Adaptive::new(self.draft_max.max(1)))
    }

    /// The drafter's name for reports: `ngram` or the draft model's file.
    pub fn name(&self, draft: Option<&Loaded>) -> String {
        match draft {
            Some(dl) => dl
                .path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None => "ngram".into(),
        }
    }
}

/// A draft model must read and write the target's tokens: its vocabulary,
/// token by token, the target's (it may lack the target's last ones).
pub fn check_vocab(
    target: &suanli_tokenizer::Tokenizer,
    draft: &suanli_tokenizer::Tokenizer,
) -> Result<()> {
    let n = target.n_vocab().min(draft.n_vocab());
    for id in 0..n as u32 {
        let (a, b) = (
            target.token_bytes(id, true).unwrap_or_default(),
            draft.token_bytes(id, true).unwrap_or_default(),
        );
        if a != b {
            anyhow::bail!(
                "the draft model's vocabulary differs from the target's at token {id}: \
                 {:?} in the target, {:?} in the draft",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            );
        }
    }
    if draft.n_vocab() > target.n_vocab() {
        anyhow::bail!(
            "the draft model has {} tokens, the target {}: drafts could name tokens the target lacks",
            draft.n_vocab(),
            target.n_vocab()
        );
    }
    Ok(())
}

/// One line on what speculation did, for stderr.
pub fn report(s: &suanli_engine::SpecStats, gen_tokens: usize) -> String {
    format!(
        "speculation: {} of {} drafted tokens accepted ({:.1}%), {:.2} tokens per verifying pass, \
         {} passes for {} tokens, {:.2} s drafting",
        s.accepted,
        s.drafted,
        100.0 * s.acceptance_rate(),
        s.mean_accepted_length(),
        s.passes,
        gen_tokens,
        s.draft_time.as_secs_f64()
    )
}
