//! The mixture-of-experts feed-forward, one block for every architecture
//! that has one; what differs between them is data ([`Router`], shared
//! experts, the layer plan of [`crate::config::MoeConfig`]).
//!
//! A router scores every expert for each token and keeps the best k; each
//! chosen expert is a gated MLP, and the token's output is the sum of the
//! chosen experts' outputs weighted by the router, plus an optional shared
//! expert every token goes through. Experts run through the kernels'
//! grouped matmul: the batch's rows are quantized once, every expert
//! multiplies only the rows routed to it, and all experts' gate and up
//! products share one pass over the thread pool (then the down products
//! another).
//!
//! The sum over a token's experts runs in the router's order (best first),
//! each expert's output multiplied by its weight first, as llama.cpp's
//! graph does (`ggml_mul` then `ggml_add` slot by slot). Each expert's
//! products use the kernel its row count picks; with batch-invariant
//! numerics that is one order whatever the count, so a request's bits do
//! not depend on which other requests share its experts.

use std::sync::atomic::{AtomicU64, Ordering};

use suanli_kernels::{matmul_grouped, ops, Acts, Blob, DType, Product, QMatrix};

use super::{gated_ffn, linear, scratch, Input, Mlp};
use crate::config::{ModelConfig, MoeConfig};
use crate::loader::Loader;
use crate::{Batch, ModelError, Result};

/// How a router turns an expert's logit into its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over every expert, then the top k (Mixtral, Qwen, ERNIE,
    /// DeepSeek-V2, Hunyuan).
    Softmax,
    /// Each logit's sigmoid (DeepSeek-V3, GLM-4.5).
    Sigmoid,
    /// The top k logits, then a softmax over those k (gpt-oss).
    SoftmaxTopK,
}

/// A router's rules: how it scores, picks and weighs experts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Router {
    pub gating: Gating,
    /// Experts a token goes to.
    pub n_used: usize,
    /// Divide the chosen weights by their sum.
    pub norm: bool,
    /// Floor of that sum (llama.cpp clamps to f16's smallest normal,
    /// 6.1e-5; ERNIE's `moe_norm_min` is 1e-12).
    pub norm_min: f32,
    /// Multiplier of the chosen weights (1 for none).
    pub scale: f32,
    /// Group-limited routing (DeepSeek-V3): the experts fall into `groups`
    /// equal groups, each scored by the sum of its two best selection
    /// scores, and only the `groups_used` best groups' experts compete.
    /// One group: no limit.
    pub groups: usize,
    pub groups_used: usize,
}

/// llama.cpp's floor of the renormalising sum.
pub const NORM_MIN_GGML: f32 = 6.103_515_6e-5;

impl Router {
    /// A softmax-then-top-k router of `n_used` experts, renormalised or not.
    pub fn softmax(n_used: usize, norm: bool) -> Router {
        Router {
            gating: Gating::Softmax,
            n_used,
            norm,
            norm_min: NORM_MIN_GGML,
            scale: 1.0,
            groups: 1,
            groups_used: 1,
        }
    }

    /// One token's experts and their weights, best first, into `out`.
    /// `logits` (one per expert) is overwritten with the scores; `bias`
    /// (one per expert) only picks, the weights are the unbiased scores.
    pub fn route(&self, logits: &mut [f32], bias: Option<&[f32]>, out: &mut Vec<(usize, f32)>) {
        let ne = logits.len();
        match self.gating {
            Gating::Softmax => ops::softmax(logits),
            Gating::Sigmoid => logits
                .iter_mut()
                .for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Gating::SoftmaxTopK => {}
        }
        let mut sel: Vec<f32> = match bias {
            Some(b) => logits.iter().zip(b).map(|(p, b)| p + b).collect(),
            None => logits.to_vec(),
        };
        if self.groups > 1 && self.groups_used < self.groups {
            let per = ne / self.groups;
            let mut score: Vec<(usize, f32)> = sel
                .chunks_exact(per)
                .map(|g| {
                    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
                    for &v in g {
                        if v > a {
                            (a, b) = (v, a);
                        } else if v > b {
                            b = v;
                        }
                    }
                    a + b
                })
                .enumerate()
                .collect();
            best_first(&mut score, self.groups_used);
            let mut keep = vec![false; self.groups];
            score[..self.groups_used]
                .iter()
                .for_each(|&(g, _)| keep[g] = true);
            for (g, chunk) in sel.chunks_exact_mut(per).enumerate() {
                if !keep[g] {
                    chunk.fill(f32::NEG_INFINITY);
                }
            }
        }
        let mut idx: Vec<(usize, f32)> = sel.into_iter().enumerate().collect();
        let k = self.n_used.min(ne);
        best_first(&mut idx, k);
        out.clear();
        out.extend(idx[..k].iter().map(|&(e, _)| (e, logits[e])));
        if self.gating == Gating::SoftmaxTopK {
            let mut w: Vec<f32> = out.iter().map(|&(_, w)| w).collect();
            ops::softmax(&mut w);
            out.iter_mut().zip(w).for_each(|(o, w)| o.1 = w);
        }
        if self.norm {
            let sum = out.iter().map(|&(_, w)| w as f64).sum::<f64>() as f32;
            let sum = sum.max(self.norm_min);
            out.iter_mut().for_each(|o| o.1 /= sum);
        }
        if self.scale != 0.0 && self.scale != 1.0 {
            out.iter_mut().for_each(|o| o.1 *= self.scale);
        }
    }
}

/// Moves the `k` best `(index, score)` pairs to the front, best first (ties
/// to the lower index; NaN scores last).
fn best_first(v: &mut [(usize, f32)], k: usize) {
    let cmp = |a: &(usize, f32), b: &(usize, f32)| {
        let key = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
        key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0))
    };
    if k == 0 || v.is_empty() {
        return;
    }
    let k = k.min(v.len());
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, cmp);
    }
    v[..k].sort_unstable_by(cmp);
}

/// A mixture-of-experts feed-forward's weights.
pub struct Moe {
    pub router: Router,
    /// The router's matrix `(n_expert, n_embd)` and optional bias (gpt-oss).
    pub gate_inp: QMatrix,
    pub gate_inp_b: Option<Vec<f32>>,
    /// A per-expert bias added to the scores for picking only
    /// (DeepSeek-V3's `e_score_correction_bias`, ERNIE's statics).
    pub selection_bias: Option<Vec<f32>>,
    pub experts: Vec<Mlp>,
    /// An expert every token goes through.
    pub shared: Option<Mlp>,
    /// The shared expert's output is scaled by `sigmoid(h · w)` (Qwen2-MoE).
    pub shared_gate: Option<QMatrix>,
    /// Per-expert biases of gate and up (`n_expert × ff`) and down
    /// (`n_expert × n_embd`) (gpt-oss).
    pub exp_bias: Option<[Vec<f32>; 3]>,
    /// Weight bytes the routed experts have streamed, over all passes: a
    /// decoded token's share of the roofline ([`crate::Model::expert_bytes_read`]).
    read: AtomicU64,
    /// Reproduce ggml's approximations (its sigmoid of the shared gate).
    ggml: bool,
}

impl Moe {
    pub fn load(ld: &Loader, c: &ModelConfig, mc: &MoeConfig, il: usize) -> Result<Moe> {
        let d = c.n_embd;
        let p = |s: &str| format!("blk.{il}.{s}");
        let path = || ld.src.path().to_path_buf();
        if mc.n_expert == 0 || mc.router.n_used == 0 || mc.router.n_used > mc.n_expert {
            return Err(ModelError::Config {
                path: path(),
                key: "expert_used_count".into(),
                why: format!(
                    "{} experts used of {}: must be between 1 and the expert count",
                    mc.router.n_used, mc.n_expert
                ),
            });
        }
        let r = &mc.router;
        if r.groups > 1
            && (!mc.n_expert.is_multiple_of(r.groups)
                || r.groups_used == 0
                || r.groups_used > r.groups)
        {
            return Err(ModelError::Config {
                path: path(),
                key: "expert_group_count".into(),
                why: format!(
                    "{} groups ({} used) do not divide {} experts",
                    r.groups, r.groups_used, mc.n_expert
                ),
            });
        }
        let gate_inp = ld.matrix(&p("ffn_gate_inp.weight"), mc.n_expert, d)?;
        let gate = ld.experts(il, "gate", mc.n_expert, mc.n_ff_exp, d)?;
        let up = ld.experts(il, "up", mc.n_expert, mc.n_ff_exp, d)?;
        let down = ld.experts(il, "down", mc.n_expert, d, mc.n_ff_exp)?;
        let experts = gate
            .into_iter()
            .zip(up)
            .zip(down)
            .map(|((gate, up), down)| Mlp { gate, up, down })
            .collect();
        let shared = if mc.n_ff_shexp > 0 {
            Some(Mlp::load(ld, il, "_shexp", d, mc.n_ff_shexp)?)
        } else {
            None
        };
        let shared_gate = match ld.vector_opt(&p("ffn_gate_inp_shexp.weight"), d)? {
            Some(w) => {
                let bytes = w.iter().flat_map(|v| v.to_le_bytes()).collect();
                let m = QMatrix::new(DType::F32, 1, d, Blob::from_vec(bytes)).map_err(|e| {
                    ModelError::BadTensor {
                        path: path(),
                        name: p("ffn_gate_inp_shexp.weight"),
                        why: e.to_string(),
                    }
                })?;
                Some(m)
            }
            None => None,
        };
        let ff = mc.n_ff_exp;
        let b =
            |w: &str, n: usize| ld.vector_opt(&p(&format!("ffn_{w}_exps.bias")), n * mc.n_expert);
        let exp_bias = match (b("gate", ff)?, b("up", ff)?, b("down", d)?) {
            (Some(g), Some(u), Some(dn)) => Some([g, u, dn]),
            (None, None, None) => None,
            _ => {
                return Err(ModelError::MissingTensor {
                    path: path(),
                    name: p("ffn_{gate,up,down}_exps.bias (all three or none)"),
                })
            }
        };
        Ok(Moe {
            exp_bias,
            router: mc.router,
            gate_inp,
            gate_inp_b: ld.vector_opt(&p("ffn_gate_inp.bias"), mc.n_expert)?,
            selection_bias: ld.vector_opt(&p("exp_probs_b.bias"), mc.n_expert)?,
            experts,
            shared,
            shared_gate,
            read: AtomicU64::new(0),
            ggml: c.ggml_numerics,
        })
    }

    /// The matrices every token reads: the router and the shared expert.
    pub fn shared_matrices(&self) -> Vec<&QMatrix> {
        let mut m = vec![&self.gate_inp];
        if let Some(s) = &self.shared {
            m.extend(s.matrices());
        }
        m.extend(self.shared_gate.as_ref());
        m
    }

    /// Bytes of the experts a token is routed to, on average over experts.
    pub fn active_expert_bytes(&self) -> u64 {
        let all: u64 = self.experts.iter().map(Mlp::bytes).sum();
        all * self.router.n_used as u64 / self.experts.len().max(1) as u64
    }

    /// Routed-expert weight bytes streamed so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The block over `n` rows of `h`.
    pub fn forward(
        &self,
        il: usize,
        h: Input,
        n: usize,
        act: ops::Glu,
        ctx: &mut Batch,
    ) -> Vec<f32> {
        let x = h.rows();
        ctx.trace("ffn_norm", il, &x);
        let ne = self.experts.len();
        let mut logits = linear(&self.gate_inp, self.gate_inp_b.as_deref(), &x, n);
        ctx.trace("ffn_moe_logits", il, &logits);
        let k = self.router.n_used;
        let mut chosen: Vec<(usize, f32)> = Vec::with_capacity(n * k);
        let mut one = Vec::with_capacity(k);
        for row in logits.chunks_exact_mut(ne) {
            self.router
                .route(row, self.selection_bias.as_deref(), &mut one);
            chosen.extend_from_slice(&one);
        }
        if ctx.tracing() {
            ctx.trace("ffn_moe_probs", il, &logits);
            let w: Vec<f32> = chosen.iter().map(|&(_, w)| w).collect();
            ctx.trace("ffn_moe_weights", il, &w);
        }
        let per = self.experts(&x, n, &chosen, act, il, ctx);
        let d = self.gate_inp.cols;
        let mut out = vec![0f32; n * d];
        for (t, o) in out.chunks_exact_mut(d).enumerate() {
            for j in 0..k {
                let (e, w) = chosen[t * k + j];
                let y = &per.rows[per.at[t * k + j] * d..][..d];
                if j == 0 {
                    o.iter_mut().zip(y).for_each(|(o, y)| *o = y * w);
                } else {
                    o.iter_mut().zip(y).for_each(|(o, y)| *o += y * w);
                }
                debug_assert!(e < self.experts.len());
            }
        }
        scratch::give(per.rows);
        ctx.trace("ffn_moe_out", il, &out);
        if let Some(s) = &self.shared {
            let mut y = gated_ffn(s, il, Input::Rows(&x), n, act, ctx);
            if let Some(g) = &self.shared_gate {
                let g = linear(g, None, &x, n);
                for (row, &g) in y.chunks_exact_mut(d).zip(&g) {
                    let s = if self.ggml {
                        ops::silu(g) / g
                    } else {
                        1.0 / (1.0 + (-g).exp())
                    };
                    row.iter_mut().for_each(|v| *v *= s);
                }
            }
            ctx.trace("ffn_shexp_out", il, &y);
            ops::add_inplace(&mut out, &y);
        }
        out
    }

    /// Every chosen expert over its tokens' rows: gate and up of all of
    /// them in one grouped pass, the activation, then the down products in
    /// another.
    fn experts(
        &self,
        x: &[f32],
        n: usize,
        chosen: &[(usize, f32)],
        act: ops::Glu,
        il: usize,
        ctx: &mut Batch,
    ) -> ExpertRows {
        let (ne, d) = (self.experts.len(), self.gate_inp.cols);
        let mut take: Vec<Vec<usize>> = vec![Vec::new(); ne];
        for (i, &(e, _)) in chosen.iter().enumerate() {
            take[e].push(i / self.router.n_used);
        }
        // Each expert's rows lie together, experts in order: `first[e]` is
        // where expert e's block starts, `at[i]` the row of choice i.
        let mut first = vec![0usize; ne + 1];
        for e in 0..ne {
            first[e + 1] = first[e] + take[e].len();
        }
        let mut filled = first.clone();
        let mut at = vec![0usize; chosen.len()];
        for (i, &(e, _)) in chosen.iter().enumerate() {
            at[i] = filled[e];
            filled[e] += 1;
        }
        let total = first[ne];
        let ff = self.experts.first().map_or(0, |m| m.gate.rows);
        // Written whole by the products below.
        let mut g = scratch::take(total * ff);
        let mut u = scratch::take(total * ff);
        let used: Vec<usize> = (0..ne).filter(|&e| !take[e].is_empty()).collect();
        self.read.fetch_add(
            used.iter().map(|&e| self.experts[e].bytes()).sum(),
            Ordering::Relaxed,
        );
        {
            let mut products = Vec::with_capacity(2 * used.len());
            let (mut gs, mut us) = (g.as_mut_slice(), u.as_mut_slice());
            for &e in &used {
                let len = take[e].len() * ff;
                let (go, rest) = std::mem::take(&mut gs).split_at_mut(len);
                gs = rest;
                let (uo, rest) = std::mem::take(&mut us).split_at_mut(len);
                us = rest;
                let m = &self.experts[e];
                products.push(Product {
                    w: &m.gate,
                    take: Some(&take[e]),
                    out: go,
                });
                products.push(Product {
                    w: &m.up,
                    take: Some(&take[e]),
                    out: uo,
                });
            }
            grouped(Acts::Rows(x), n, d, &mut products);
        }
        // Each expert's biases on its own rows.
        let add_bias = |x: &mut [f32], b: &[f32], w: usize| {
            for &e in &used {
                let bias = &b[e * w..(e + 1) * w];
                for row in x[first[e] * w..first[e + 1] * w].chunks_exact_mut(w) {
                    ops::add_inplace(row, bias);
                }
            }
        };
        if let Some([gb, ub, _]) = &self.exp_bias {
            add_bias(&mut g, gb, ff);
            add_bias(&mut u, ub, ff);
        }
        if ctx.tracing() {
            ctx.trace("ffn_moe_gate", il, &g);
            ctx.trace("ffn_moe_up", il, &u);
        }
        ops::glu(&mut g, &u, ff.max(1), act);
        scratch::give(u);
        ctx.trace("ffn_moe_glu", il, &g);
        let rows: Vec<usize> = (0..total).collect();
        let mut y = scratch::take(total * d);
        {
            let mut products = Vec::with_capacity(used.len());
            let mut ys = y.as_mut_slice();
            for &e in &used {
                let (yo, rest) = std::mem::take(&mut ys).split_at_mut(take[e].len() * d);
                ys = rest;
                products.push(Product {
                    w: &self.experts[e].down,
                    take: Some(&rows[first[e]..first[e + 1]]),
                    out: yo,
                });
            }
            grouped(Acts::Rows(&g), total, ff, &mut products);
        }
        scratch::give(g);
        if let Some([_, _, db]) = &self.exp_bias {
            add_bias(&mut y, db, d);
        }
        ExpertRows { rows: y, at }
    }
}

/// The down products' outputs, expert by expert, and where each choice's
/// row lies among them.
struct ExpertRows {
    rows: Vec<f32>,
    at: Vec<usize>,
}

/// [`matmul_grouped`] over shapes checked at load.
fn grouped(acts: Acts, n: usize, cols: usize, products: &mut [Product]) {
    if let Err(e) = matmul_grouped(acts, n, cols, products) {
        unreachable!("expert shapes are checked at load: {e}")
    }
}
