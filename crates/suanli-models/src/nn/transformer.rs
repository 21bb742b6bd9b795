//! The decoder-only transformer: embeddings, the stack of layers (each
//! architecture supplies the layer function), the output head.

use suanli_kernels::QMatrix;

use super::{linear, rms_norm_rows, Ffn, Mla, Moe};
use crate::config::ModelConfig;
use crate::loader::Loader;
use crate::{Batch, Model, ModelError, Result};

/// One decoder layer's weights. Shapes are (rows, cols) of the matrix, i.e.
/// (out, in); `hd` = head_dim, `hdv` = head_dim_v.
pub struct Layer {
    pub attn_norm: Vec<f32>, // (n_embd)
    /// Q, K and V projections; `None` in a latent-attention layer.
    pub qkv: Option<[QMatrix; 3]>, // (n_head·hd | n_head_kv·hd | n_head_kv·hdv, n_embd)
    /// Multi-head latent attention's weights (DeepSeek) instead of Q/K/V.
    pub mla: Option<Box<Mla>>,
    pub wo: QMatrix,                      // (n_embd, n_head·hdv)
    pub bq: Option<Vec<f32>>,             // (n_head·hd) — qwen2
    pub bk: Option<Vec<f32>>,             // (n_head_kv·hd) — qwen2
    pub bv: Option<Vec<f32>>,             // (n_head_kv·hdv) — qwen2
    pub q_norm: Option<Vec<f32>>,         // (hd) — qwen3, gemma3
    pub k_norm: Option<Vec<f32>>,         // (hd) — qwen3, gemma3
    pub bo: Option<Vec<f32>>,             // (n_embd) — gpt-oss
    pub attn_sinks: Option<Vec<f32>>,     // (n_head) — gpt-oss
    pub post_attn_norm: Option<Vec<f32>>, // (n_embd) — gemma3
    pub ffn_norm: Vec<f32>,               // (n_embd)
    pub ffn: Ffn,                         // dense or a mixture of experts
    pub post_ffw_norm: Option<Vec<f32>>,  // (n_embd) — gemma3
}

impl Layer {
    pub fn load(ld: &Loader, c: &ModelConfig, il: usize) -> Result<Layer> {
        let (d, hd, hdv) = (c.n_embd, c.head_dim, c.head_dim_v);
        let p = |s: &str| format!("blk.{il}.{s}");
        Ok(Layer {
            attn_norm: ld.vector(&p("attn_norm.weight"), d)?,
            qkv: match c.mla {
                Some(_) => None,
                None => Some([
                    ld.matrix(&p("attn_q.weight"), c.n_head * hd, d)?,
                    ld.matrix(&p("attn_k.weight"), c.n_head_kv * hd, d)?,
                    ld.matrix(&p("attn_v.weight"), c.n_head_kv * hdv, d)?,
                ]),
            },
            mla: match &c.mla {
                Some(m) => Some(Box::new(Mla::load(ld, c, m, il)?)),
                None => None,
            },
            wo: ld.matrix(&p("attn_output.weight"), d, c.n_head * c.head_dim_out())?,
            bq: ld.vector_opt(&p("attn_q.bias"), c.n_head * hd)?,
            bk: ld.vector_opt(&p("attn_k.bias"), c.n_head_kv * hd)?,
            bv: ld.vector_opt(&p("attn_v.bias"), c.n_head_kv * hdv)?,
            q_norm: ld.vector_opt(&p("attn_q_norm.weight"), hd)?,
            k_norm: ld.vector_opt(&p("attn_k_norm.weight"), hd)?,
            bo: ld.vector_opt(&p("attn_output.bias"), d)?,
            attn_sinks: ld.vector_opt(&p("attn_sinks.weight"), c.n_head)?,
            post_attn_norm: ld.vector_opt(&p("post_attention_norm.weight"), d)?,
            ffn_norm: ld.vector(&p("ffn_norm.weight"), d)?,
            ffn: Ffn::load(ld, c, il)?,
            post_ffw_norm: ld.vector_opt(&p("post_ffw_norm.weight"), d)?,
        })
    }

    /// The matrices every token reads (a mixture's routed experts are
    /// counted as they are used).
    fn matrices(&self) -> Vec<&QMatrix> {
        let mut m: Vec<&QMatrix> = self.qkv.iter().flatten().collect();
        m.extend(self.mla.iter().flat_map(|a| a.matrices()));
        m.push(&self.wo);
        m.extend(self.ffn.shared_matrices());
        m
    }
}

/// Runs one layer in place on the residual stream `x` (`n × n_embd`).
pub type LayerFn = fn(m: &Transformer, il: usize, x: &mut [f32], n: usize, ctx: &mut Batch);

/// A decoder-only transformer; the architecture supplies `layer`.
pub struct Transformer {
    pub cfg: ModelConfig,
    pub tok_embd: QMatrix,     // (n_vocab, n_embd)
    pub output_norm: Vec<f32>, // (n_embd)
    pub output: QMatrix,       // (n_vocab, n_embd); the embedding matrix when tied
    pub layers: Vec<Layer>,
    /// Multi-token-prediction modules after the trunk (kept, never run).
    pub mtp: Vec<super::Mtp>,
    pub layer: LayerFn,
    /// The embedding table is separate from the output (only looked up).
    pub untied: bool,
}

impl Transformer {
    pub fn load(ld: &Loader, cfg: ModelConfig, layer: LayerFn) -> Result<Self> {
        let mut tok_embd = ld.embeddings("token_embd.weight", cfg.n_vocab, cfg.n_embd)?;
        let untied = ld.has("output.weight");
        let output = match ld.output_opt("output.weight", cfg.n_vocab, cfg.n_embd)? {
            Some(o) => {
                // Untied: the table is only looked up, a row per token.
                tok_embd.data.random_access();
                o
            }
            None => {
                // Tied: every token multiplies all of it, in the layout
                // the matmul kernels stream best that keeps rows readable.
                tok_embd = tok_embd.repack_rows4().to_planes();
                tok_embd.clone()
            }
        };
        let layers = (0..cfg.n_layer)
            .map(|il| Layer::load(ld, &cfg, il))
            .collect::<Result<Vec<_>>>()?;
        let mut mtp = Vec::new();
        for il in cfg.n_layer..cfg.n_layer + cfg.n_nextn {
            mtp.extend(super::Mtp::load(ld, &cfg, il)?);
        }
        Ok(Transformer {
            mtp,
            output_norm: ld.vector("output_norm.weight", cfg.n_embd)?,
            tok_embd,
            output,
            layers,
            layer,
            untied,
            cfg,
        })
    }

    /// Where a row of an untied table could not be read out of the file
    /// ([`QMatrix::lookup_row`], which maps nothing and costs no fault —
    /// this release and its refault cost ~80 µs a decoded token):
    /// lets the pages around embedding row `t` go from this process once
    /// the row is copied out (untied tables are only looked up). A mapped
    /// file in the page cache maps neighbours of each faulted row — up to
    /// 16 pages (fault-around, a 64 KiB-aligned window), or the whole folio
    /// where the page cache holds the file in large folios (up to 2 MiB, as
    /// after the file was just written) — which would otherwise stay
    /// resident: Qwen2.5-0.5B peak RSS 577 or 645 MiB depending on whether
    /// the file was cached; over a freshly written file, 618 MiB when a
    /// 512-token prompt's rows were all read before any was let go, 545 MiB
    /// with each let go as it is read (547 from a cold cache). Only the 2 MiB
    /// window of the row: advising the whole table every token cost ~50 µs
    /// (and its refault as much again).
    fn release_embedding_row(&self, t: usize) {
        const WINDOW: usize = 2 << 20;
        let data = &self.tok_embd.data;
        let (base, rb) = (data.bytes().as_ptr() as usize, self.tok_embd.row_bytes());
        let at = base + t * rb;
        let lo = (at / WINDOW * WINDOW).max(base) - base;
        let hi = ((at + rb).next_multiple_of(WINDOW) - base).min(data.len());
        data.release_range(lo, hi.saturating_sub(lo));
    }
}

impl Transformer {
    fn moe_layers(&self) -> impl Iterator<Item = &Moe> {
        self.layers.iter().filter_map(|l| match &l.ffn {
            Ffn::Moe(m) => Some(m.as_ref()),
            Ffn::Dense(_) => None,
        })
    }
}

impl Model for Transformer {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn forward_batch(&self, tokens: &[u32], ctx: &mut Batch) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let n = tokens.len();
        if n != ctx.len() || n == 0 {
            return Err(ModelError::BadBatch(format!(
                "{n} tokens for spans of {} positions",
                ctx.len()
            )));
        }
        let mut x = vec![0f32; n * c.n_embd];
        for (&t, row) in tokens.iter().zip(x.chunks_exact_mut(c.n_embd)) {
            if t as usize >= c.n_vocab {
                return Err(ModelError::BadToken {
                    id: t,
                    n_vocab: c.n_vocab,
                });
            }
            // An untied table is only looked up: its rows are read from
            // the file, not through the mapping, where the storage can.
            if !(self.untied && self.tok_embd.lookup_row(t as usize, row)) {
                self.tok_embd.dequantize_row(t as usize, row);
                if self.untied {
                    self.release_embedding_row(t as usize);
                }
            }
            if let Some(s) = c.embed_scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        ctx.trace("inp_embd", 0, &x);
        for il in 0..c.n_layer {
            (self.layer)(self, il, &mut x, n, ctx);
            ctx.trace("l_out", il, &x);
        }
        let d = c.n_embd;
        let mut rows: Vec<f32> = Vec::new();
        let mut t0 = 0;
        for s in ctx.seqs {
            let keep = s.logits.rows(s.n);
            rows.extend_from_slice(&x[(t0 + s.n - keep) * d..(t0 + s.n) * d]);
            t0 += s.n;
        }
        let m = rows.len() / d;
        if m == 0 {
            return Ok(Vec::new());
        }
        let h = rms_norm_rows(&rows, &self.output_norm, c.rms_eps);
        ctx.trace("result_norm", 0, &h);
        let mut logits = linear(&self.output, None, &h, m);
        if let Some(cap) = c.final_softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok(logits)
    }

    fn decode_weights(&self) -> Vec<&[u8]> {
        let embd = self.tok_embd.data.bytes();
        let row = embd.get(..self.tok_embd.row_bytes()).unwrap_or(embd);
        self.layers
            .iter()
            .flat_map(|l| l.matrices())
            .chain([&self.output])
            .map(|m| m.data.bytes())
            .chain([row])
            .collect()
    }

    fn active_expert_bytes(&self) -> u64 {
        self.moe_layers().map(Moe::active_expert_bytes).sum()
    }

    fn expert_bytes_read(&self) -> u64 {
        self.moe_layers().map(Moe::bytes_read).sum()
    }

    fn mtp_layers(&self) -> usize {
        self.mtp.len()
    }
}
