//! Model hyper-parameters, whatever file they came from.

use suanli_kernels::ops::RopeStyle;

/// Llama 3 style frequency-dependent RoPE scaling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position: f32,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Architecture name as in the registry (`llama`, `qwen2`, `qwen3`, `gemma3`).
    pub arch: String,
    pub name: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head size of Q and K.
    pub head_dim: usize,
    /// Per-head size of V.
    pub head_dim_v: usize,
    pub n_ff: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// RoPE base of sliding-window layers (Gemma 3: 10,000).
    pub rope_theta_swa: f32,
    /// Dimensions of a head that are rotated.
    pub rope_dim: usize,
    pub rope_style: RopeStyle,
    /// Per-frequency divisors (GGUF `rope_freqs.weight`, or computed from a
    /// Llama 3 `rope_scaling`); empty for none.
    pub rope_freq_factors: Vec<f32>,
    /// Linear position scaling (1.0 for none) of full-attention layers.
    pub rope_freq_scale: f32,
    /// YaRN's blend of interpolated and extrapolated frequencies on the
    /// layers with `rope_freq_scale` (gpt-oss, DeepSeek, Qwen long context).
    pub yarn: Option<Yarn>,
    /// Sliding-window layers use the full layers' scaling too (gpt-oss);
    /// otherwise none (Gemma 3).
    pub swa_scaled: bool,
    /// Sliding window width for SWA layers.
    pub sliding_window: Option<usize>,
    /// `swa_layers[i]`: layer i uses the sliding window.
    pub swa_layers: Vec<bool>,
    /// Multiplier of Q·K.
    pub attn_scale: f32,
    /// Apply `attn_scale` to Q before attention rather than to Q·K
    /// (Gemma's query_pre_attn_scalar); it decides what Q rounds to in f16.
    pub scale_q: bool,
    pub attn_softcap: Option<f32>,
    /// The per-head Q/K norms come after RoPE, not before (HunYuan).
    pub qk_norm_after_rope: bool,
    pub final_softcap: Option<f32>,
    /// Reproduce ggml's approximations (GELU through an f16 table) so GGUF
    /// models agree with llama.cpp bit for bit; off for Hugging Face
    /// checkpoints, which are compared with transformers' exact f32.
    pub ggml_numerics: bool,
    /// Multiplier of the token embeddings (Gemma: √n_embd).
    pub embed_scale: Option<f32>,
    /// The mixture of experts of the layers the plan gives one to.
    pub moe: Option<MoeConfig>,
    /// Multi-head latent attention's shapes (DeepSeek): the attention then
    /// runs over one shared key head of `head_dim = kv_lora_rank + rope`
    /// values whose first `head_dim_v = kv_lora_rank` are the value.
    pub mla: Option<crate::nn::MlaConfig>,
    /// Multi-token-prediction layers after the `n_layer` of the trunk
    /// (DeepSeek-V3's `nextn`): loaded where the file has them, never run.
    pub n_nextn: usize,
}

/// YaRN (Peng et al. 2023) as ggml's `rope_yarn` computes it: dimension
/// pair `i` rotates by `θ_interp·(1 − mix) + θ_extrap·mix`, with `mix` a
/// ramp over `corr_dims` times `ext_factor`, and sines and cosines scaled
/// by `mscale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    pub ext_factor: f32,
    /// The ramp's start and end (dimension pairs).
    pub corr_dims: [f32; 2],
    /// Multiplier of every sine and cosine.
    pub mscale: f32,
}

impl Yarn {
    /// llama.cpp's YaRN for scaling `factor` of a model trained on
    /// `n_ctx_orig` positions: the correction range from `beta_fast` and
    /// `beta_slow` (floored and ceiled unless `!truncate`, as transformers
    /// allows), `ext_factor` 1, and the magnitude `attn_factor · (1 + 0.1 ln
    /// factor)` — llama.cpp divides the attention factor by that last term
    /// and `rope_yarn` multiplies it back, in f32, which this repeats.
    /// `mscale` is the attention factor before that division (`0.1 ln
    /// factor + 1`, or DeepSeek's ratio of two such terms).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        factor: f32,
        n_ctx_orig: f32,
        beta_fast: f32,
        beta_slow: f32,
        base: f32,
        rope_dim: usize,
        mscale: f32,
        rope_attn_factor: f32,
        truncate: bool,
    ) -> Yarn {
        let dim = |rot: f32| {
            rope_dim as f32 * (n_ctx_orig / (rot * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let (mut lo, mut hi) = (dim(beta_fast), dim(beta_slow));
        if truncate {
            (lo, hi) = (lo.floor(), hi.ceil());
        }
        let corr_dims = [lo.max(0.0), hi.min(rope_dim as f32 - 1.0)];
        let freq_scale = 1.0 / factor;
        let attn = mscale * (1.0 / (1.0 + 0.1 * factor.ln())) * rope_attn_factor;
        Yarn {
            ext_factor: 1.0,
            corr_dims,
            mscale: attn * (1.0 + 0.1 * (1.0 / freq_scale).ln()),
        }
    }

    /// The rotation of dimension pair `i` for extrapolated angle `theta`.
    pub fn theta(&self, theta_extrap: f32, freq_scale: f32, i: usize) -> f32 {
        let theta_interp = freq_scale * theta_extrap;
        let [lo, hi] = self.corr_dims;
        let y = (i as f32 - lo) / (hi - lo).max(0.001);
        let mix = (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor;
        theta_interp * (1.0 - mix) + theta_extrap * mix
    }
}

/// A mixture-of-experts feed-forward's shape and router, and which layers
/// have one.
#[derive(Debug, Clone)]
pub struct MoeConfig {
    /// Experts of a layer (each token goes to `router.n_used` of them).
    pub n_expert: usize,
    /// Rows of each expert's gate and up.
    pub n_ff_exp: usize,
    /// Rows of the shared expert's gate and up (0: none).
    pub n_ff_shexp: usize,
    pub router: crate::nn::Router,
    /// Layers before the first mixture are dense (DeepSeek's leading dense
    /// layers).
    pub leading_dense: usize,
    /// From there on, layer `il` has a mixture when `(il + 1) % step == 0`.
    pub step: usize,
}

impl ModelConfig {
    /// Values per position in a layer's key and value caches (latent
    /// attention caches only the key: a value width of 0).
    pub fn kv_widths(&self) -> (usize, usize) {
        match self.mla {
            Some(_) => (self.head_dim, 0),
            None => (
                self.n_head_kv * self.head_dim,
                self.n_head_kv * self.head_dim_v,
            ),
        }
    }

    /// Per-head width of the attention's output as the output projection
    /// reads it (latent attention: the value head after `v_b`).
    pub fn head_dim_out(&self) -> usize {
        self.mla.map_or(self.head_dim_v, |m| m.v_head)
    }

    /// Whether layer `il`'s feed-forward is a mixture of experts.
    pub fn is_moe_layer(&self, il: usize) -> bool {
        self.moe
            .as_ref()
            .is_some_and(|m| il >= m.leading_dense && (il + 1).is_multiple_of(m.step.max(1)))
    }

    /// Llama 3 `rope_scaling` as per-frequency divisors, the form GGUF's
    /// `rope_freqs.weight` stores (see transformers' `_compute_llama3_parameters`).
    pub fn llama3_freq_factors(s: &Llama3Scaling, theta: f32, rope_dim: usize) -> Vec<f32> {
        let low_wavelen = s.original_max_position / s.low_freq_factor;
        let high_wavelen = s.original_max_position / s.high_freq_factor;
        (0..rope_dim / 2)
            .map(|i| {
                let freq = 1.0 / theta.powf(2.0 * i as f32 / rope_dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    s.factor
                } else {
                    let smooth = (s.original_max_position / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    1.0 / ((1.0 - smooth) / s.factor + smooth)
                }
            })
            .collect()
    }
}

/// YaRN's magnitude term for scaling `factor` (1 when not extending).
pub fn yarn_get_mscale(factor: f32, mscale: f32) -> f32 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * mscale * factor.ln() + 1.0
    }
}
