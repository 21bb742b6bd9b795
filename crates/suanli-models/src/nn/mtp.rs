//! Multi-token prediction (DeepSeek-V3 §2.2; llama.cpp's `nextn` layers):
//! after the trunk, a module that predicts the token after next from the
//! trunk's last hidden state and the next token's embedding —
//! `eh_proj([enorm(embed(t₊₁)) | hnorm(h)])` through one more transformer
//! block, then a shared (or its own) norm and output head.
//!
//! The weights are loaded and kept for speculative decoding; a forward
//! pass never runs them (they are not part of the model's own logits, as
//! in llama.cpp's ordinary graph). A file that announces the layers but
//! leaves their tensors out (a trunk-only conversion) loads without them.

use suanli_kernels::QMatrix;

use super::Layer;
use crate::config::ModelConfig;
use crate::loader::Loader;
use crate::Result;

/// One multi-token-prediction module.
pub struct Mtp {
    /// The block, with the trunk's layer layout (index `n_layer + k`).
    pub layer: Layer,
    /// `(n_embd, 2·n_embd)`: the normalized embedding and hidden state,
    /// side by side, into the block's input.
    pub eh_proj: QMatrix,
    pub enorm: Vec<f32>,
    pub hnorm: Vec<f32>,
    /// Its own embedding table, head norm and output head where the file
    /// has them (else the trunk's are shared).
    pub embed: Option<QMatrix>,
    pub head_norm: Option<Vec<f32>>,
    pub head: Option<QMatrix>,
}

impl Mtp {
    /// The module at layer `il` (≥ the trunk's `n_layer`), or `None` where
    /// the file has no `blk.{il}.nextn.eh_proj.weight`.
    pub fn load(ld: &Loader, c: &ModelConfig, il: usize) -> Result<Option<Mtp>> {
        let p = |s: &str| format!("blk.{il}.{s}");
        if !ld.has(&p("nextn.eh_proj.weight")) {
            return Ok(None);
        }
        let d = c.n_embd;
        Ok(Some(Mtp {
            layer: Layer::load(ld, c, il)?,
            eh_proj: ld.matrix(&p("nextn.eh_proj.weight"), d, 2 * d)?,
            enorm: ld.vector(&p("nextn.enorm.weight"), d)?,
            hnorm: ld.vector(&p("nextn.hnorm.weight"), d)?,
            embed: ld.matrix_opt(&p("nextn.embed_tokens.weight"), c.n_vocab, d)?,
            head_norm: ld.vector_opt(&p("nextn.shared_head_norm.weight"), d)?,
            head: ld.matrix_opt(&p("nextn.shared_head_head.weight"), c.n_vocab, d)?,
        }))
    }
}
