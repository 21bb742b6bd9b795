//! Rotary position embeddings: a batch's angles, made once per pass and
//! shared by every layer, and the rotation of Q and K rows.

use suanli_kernels::{ops, pool};

use crate::config::ModelConfig;
use crate::Batch;

/// RoPE's angles for every token of a batch: `rope_dim / 2` sines and
/// cosines per token, computed as ggml does (`theta *= base^(-2/d)`, then
/// divided by the frequency factor and scaled).
pub struct RopeAngles {
    pub(super) key: (u32, u32, bool),
    half: usize,
    sin: Vec<f32>,
    cos: Vec<f32>,
}

impl RopeAngles {
    /// Token `t`'s sines and cosines.
    pub fn of(&self, t: usize) -> (&[f32], &[f32]) {
        let r = t * self.half..(t + 1) * self.half;
        (&self.sin[r.clone()], &self.cos[r])
    }
}

/// The batch's angles for `base`, `freq_scale` and (optionally) the
/// model's frequency factors and YaRN: made on first use in a forward pass, then
/// shared by every layer and by Q and K.
pub fn rope_angles<'b>(
    ctx: &'b mut Batch,
    c: &ModelConfig,
    base: f32,
    freq_scale: f32,
    use_factors: bool,
) -> &'b RopeAngles {
    let key = (base.to_bits(), freq_scale.to_bits(), use_factors);
    let i = match ctx.rope.iter().position(|a| a.key == key) {
        Some(i) => i,
        None => {
            let half = c.rope_dim / 2;
            // YaRN applies where the model's scaling does.
            let yarn = if use_factors { c.yarn } else { None };
            let theta_scale = base.powf(-2.0 / c.rope_dim as f32);
            let n = ctx.pos.len();
            let (mut sin, mut cos) = (vec![0f32; n * half], vec![0f32; n * half]);
            for (t, &p) in ctx.pos.iter().enumerate() {
                let mut theta = p as f32;
                let r = t * half..(t + 1) * half;
                for (i, (s, co)) in sin[r.clone()].iter_mut().zip(&mut cos[r]).enumerate() {
                    let ff = if use_factors {
                        c.rope_freq_factors.get(i).copied().unwrap_or(1.0)
                    } else {
                        1.0
                    };
                    (*s, *co) = match yarn {
                        Some(y) => {
                            let (s, co) = y.theta(theta / ff, freq_scale, i).sin_cos();
                            (s * y.mscale, co * y.mscale)
                        }
                        None => (freq_scale * (theta / ff)).sin_cos(),
                    };
                    theta *= theta_scale;
                }
            }
            ctx.rope.push(RopeAngles {
                key,
                half,
                sin,
                cos,
            });
            ctx.rope.len() - 1
        }
    };
    &ctx.rope[i]
}

/// Rotate every head of `x` (rows of `n_heads · head_dim`, row `t` by
/// token `t`'s angles).
pub fn rope_rows(x: &mut [f32], n_heads: usize, c: &ModelConfig, angles: &RopeAngles) {
    pool::for_each_row(x, n_heads * c.head_dim, |t, row| {
        let (sin, cos) = angles.of(t);
        ops::rope(row, c.head_dim, c.rope_style, sin, cos);
    });
}
