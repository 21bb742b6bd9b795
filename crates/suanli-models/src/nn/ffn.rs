//! The gated feed-forward — `down(act(gate(h)) ⊙ up(h))` — and a layer's
//! feed-forward block, dense or a mixture of experts.

use suanli_kernels::{ops, QMatrix};

use super::{linear, linear_many, Input, Moe};
use crate::config::ModelConfig;
use crate::loader::Loader;
use crate::{Batch, Result};

/// A gated MLP's three matrices: gate and up `(n_ff, n_embd)`, down
/// `(n_embd, n_ff)`.
pub struct Mlp {
    pub gate: QMatrix,
    pub up: QMatrix,
    pub down: QMatrix,
}

impl Mlp {
    /// `blk.{il}.ffn_{gate,up,down}{suffix}.weight` with `n_ff` rows.
    pub fn load(ld: &Loader, il: usize, suffix: &str, d: usize, n_ff: usize) -> Result<Mlp> {
        let p = |s: &str| format!("blk.{il}.ffn_{s}{suffix}.weight");
        Ok(Mlp {
            gate: ld.matrix(&p("gate"), n_ff, d)?,
            up: ld.matrix(&p("up"), n_ff, d)?,
            down: ld.matrix(&p("down"), d, n_ff)?,
        })
    }

    pub fn matrices(&self) -> [&QMatrix; 3] {
        [&self.gate, &self.up, &self.down]
    }

    /// Bytes of the three matrices.
    pub fn bytes(&self) -> u64 {
        self.matrices().iter().map(|m| m.data.len() as u64).sum()
    }
}

/// A layer's feed-forward block.
#[allow(clippy::large_enum_variant)] // one a layer; the dense one is the common case
pub enum Ffn {
    Dense(Mlp),
    Moe(Box<Moe>),
}

impl Ffn {
    /// The dense MLP, or a mixture of experts where the config's layer plan
    /// puts one ([`ModelConfig::is_moe_layer`]).
    pub fn load(ld: &Loader, c: &ModelConfig, il: usize) -> Result<Ffn> {
        match &c.moe {
            Some(mc) if c.is_moe_layer(il) => Ok(Ffn::Moe(Box::new(Moe::load(ld, c, mc, il)?))),
            _ => Ok(Ffn::Dense(Mlp::load(ld, il, "", c.n_embd, c.n_ff)?)),
        }
    }

    /// The matrices every token reads (a mixture's router and shared expert;
    /// its routed experts are counted as they are used).
    pub fn shared_matrices(&self) -> Vec<&QMatrix> {
        match self {
            Ffn::Dense(m) => m.matrices().to_vec(),
            Ffn::Moe(m) => m.shared_matrices(),
        }
    }
}

/// A layer's feed-forward block over `h`: dense or mixture of experts.
pub fn feed_forward(
    f: &Ffn,
    il: usize,
    h: Input,
    n: usize,
    act: ops::Glu,
    ctx: &mut Batch,
) -> Vec<f32> {
    match f {
        Ffn::Dense(m) => gated_ffn(m, il, h, n, act, ctx),
        Ffn::Moe(m) => m.forward(il, h, n, act, ctx),
    }
}

/// Gated feed-forward: `down(act(gate(h)) · up(h))`.
pub fn gated_ffn(
    l: &Mlp,
    il: usize,
    h: Input,
    n: usize,
    act: ops::Glu,
    ctx: &mut Batch,
) -> Vec<f32> {
    if ctx.tracing() {
        ctx.trace("ffn_norm", il, &h.rows());
        let [mut g, u] = linear_many([(&l.gate, None), (&l.up, None)], h, n);
        ctx.trace("ffn_gate", il, &g);
        ctx.trace("ffn_up", il, &u);
        ops::glu(&mut g, &u, l.gate.rows, act);
        ctx.trace("ffn_glu", il, &g);
        return linear(&l.down, None, &g, n);
    }
    // The activation and the down projection's quantization fused into
    // the gate/up products.
    let glu = |g: &mut [f32], u: &[f32]| ops::glu_row(g, u, act);
    let q =
        h.with_acts(|acts| suanli_kernels::glu_quantized(&l.gate, &l.up, acts, n, &glu, &l.down));
    let mut y = vec![0f32; n * l.down.rows];
    suanli_kernels::matmul_many_quantized(&q, n, &mut [(&l.down, &mut y)]);
    y
}
