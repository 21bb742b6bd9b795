//! Multi-head latent attention (DeepSeek-V2/V3, Kimi K2), in the absorbed
//! form llama.cpp runs: the cache holds one `kv_lora_rank`-wide latent and
//! one `rope`-wide rotated key part per token — a single shared key head
//! `[latent | k_pe]` whose first `kv_lora_rank` values are also the value —
//! so attention is multi-query attention over it.
//!
//! Per token: the query through `wq_a` → RMSNorm → `wq_b` (or one `wq`),
//! each head split into `q_nope` and `q_pe` (RoPE on adjacent pairs);
//! `wkv_a_mqa` gives `[latent | k_pe]`, the latent RMS-normalized and
//! `k_pe` rotated. Each head's `q_nope` goes into latent space through its
//! `k_b` (`q_lat = k_b · q_nope`), the query `[q_lat | q_pe]` attends over
//! the cached keys, and each head's output (a latent) comes back through
//! its `v_b` before the output projection.
//!
//! Prefill of fresh sequences (nothing cached before them) may run in the
//! decompressed form instead ([`MlaPrefill`]): each head's keys
//! `[k_b_h^T · latent | k_pe]` and values `v_b_h · latent` made from the
//! batch's own latents, then ordinary multi-head attention with 192-wide
//! keys and 128-wide values (V2/V3) instead of 576/512-wide ones — a third
//! of the attention's arithmetic for the same projections' (making the
//! keys and values costs what absorbing the queries and outputs does).
//! A continued sequence's cached latents are decompressed too (from 128
//! rows a pass: below that, remaking its keys costs more than the
//! narrower attention saves). The cache holds the latent either way;
//! decode is always absorbed.

use std::sync::atomic::{AtomicU8, Ordering};

use suanli_kernels::attention::{attention, AttnShape, Kv, Pages};
use suanli_kernels::quants::legacy::{dequantize_q8_0, quantize_q8_0};
use suanli_kernels::{matmul_grouped, ops, Acts, Blob, DType, Product, QMatrix};

use super::{attend, linear, rms_norm_rows, rope_angles, scratch, Input, Transformer};
use crate::config::ModelConfig;
use crate::loader::Loader;
use crate::{Batch, Result};

/// The shapes of a latent attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlaConfig {
    /// Rank of the query's low-rank projection (0: one `wq`, V2-Lite).
    pub q_lora_rank: usize,
    pub kv_lora_rank: usize,
    /// Per-head query/key dimensions without and with RoPE.
    pub qk_nope: usize,
    pub qk_rope: usize,
    /// Per-head value dimension.
    pub v_head: usize,
}

/// One layer's latent-attention weights.
pub struct Mla {
    /// `(q_lora_rank, n_embd)`, its norm and `(n_head·(nope+rope), q_lora_rank)`.
    pub wq_a: Option<(QMatrix, Vec<f32>, QMatrix)>,
    /// `(n_head·(nope+rope), n_embd)` where there is no query LoRA.
    pub wq: Option<QMatrix>,
    /// `(kv_lora_rank + rope, n_embd)` and the latent's norm.
    pub wkv_a: QMatrix,
    pub kv_a_norm: Vec<f32>,
    /// Per head: `(kv_lora_rank, nope)` into latent space, and
    /// `(v_head, kv_lora_rank)` back out of it.
    pub k_b: Vec<QMatrix>,
    pub v_b: Vec<QMatrix>,
    /// Per head `k_b` transposed, `(nope, kv_lora_rank)` in Q8_0: a latent
    /// into the head's key (the decompressed prefill).
    pub k_b_t: Vec<QMatrix>,
}

/// Which form prefill of fresh sequences takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlaPrefill {
    /// Decompressed from [`DECOMPRESS_MIN_ROWS`] rows of fresh sequences
    /// ([`DECOMPRESS_MIN_ROWS_CONTINUED`] of continued ones) on, unless the numerics are batch-invariant (the server: a
    /// request's bits must not depend on how its prompt was batched).
    Auto,
    Absorbed,
    Decompressed,
}

/// Rows below which `Auto` keeps the absorbed form (short prompts: the
/// kernels' fixed costs; llama.cpp's bits on its test prompts).
pub const DECOMPRESS_MIN_ROWS: usize = 32;

static PREFILL: AtomicU8 = AtomicU8::new(u8::MAX);

/// Sets the prefill form (default: `SUANLI_MLA_PREFILL=auto|absorbed|decompressed`, else auto).
pub fn set_prefill(form: MlaPrefill) {
    PREFILL.store(form as u8, Ordering::Relaxed);
}

pub fn prefill() -> MlaPrefill {
    let v = PREFILL.load(Ordering::Relaxed);
    let form = match v {
        0 => MlaPrefill::Auto,
        1 => MlaPrefill::Absorbed,
        2 => MlaPrefill::Decompressed,
        _ => {
            let f = match std::env::var("SUANLI_MLA_PREFILL").as_deref() {
                Ok("absorbed") => MlaPrefill::Absorbed,
                Ok("decompressed") => MlaPrefill::Decompressed,
                _ => MlaPrefill::Auto,
            };
            PREFILL.store(f as u8, Ordering::Relaxed);
            f
        }
    };
    form
}

/// `k_b`'s heads transposed, each `(nope, lora)`: in Q8_0 from a quantized
/// `k_b` (what absorbing quantizes the query to), in F32 from a float one.
fn transposed(k_b: &[QMatrix], lora: usize, nope: usize) -> Vec<QMatrix> {
    let mut row = vec![0f32; nope];
    k_b.iter()
        .map(|w| {
            let mut t = vec![0f32; nope * lora];
            for j in 0..lora {
                w.dequantize_row(j, &mut row);
                for (i, &v) in row.iter().enumerate() {
                    t[i * lora + j] = v;
                }
            }
            let (dtype, bytes) = if w.dtype.is_quantized() {
                let mut b = vec![0u8; nope * lora / 32 * 34];
                for (r, out) in t.chunks_exact(lora).zip(b.chunks_exact_mut(lora / 32 * 34)) {
                    quantize_q8_0(r, out);
                }
                (DType::Q8_0, b)
            } else {
                (DType::F32, t.iter().flat_map(|v| v.to_le_bytes()).collect())
            };
            match QMatrix::new(dtype, nope, lora, Blob::from_vec(bytes)) {
                Ok(m) => m.with_prefill_layout(),
                Err(e) => unreachable!("{dtype:?} rows of {lora} values: {e}"),
            }
        })
        .collect()
}

impl Mla {
    pub fn load(ld: &Loader, c: &ModelConfig, m: &MlaConfig, il: usize) -> Result<Mla> {
        let d = c.n_embd;
        let p = |s: &str| format!("blk.{il}.{s}");
        let qw = c.n_head * (m.qk_nope + m.qk_rope);
        let wq_a = if m.q_lora_rank > 0 {
            Some((
                ld.matrix(&p("attn_q_a.weight"), m.q_lora_rank, d)?,
                ld.vector(&p("attn_q_a_norm.weight"), m.q_lora_rank)?,
                ld.matrix(&p("attn_q_b.weight"), qw, m.q_lora_rank)?,
            ))
        } else {
            None
        };
        let wq = match wq_a {
            Some(_) => None,
            None => Some(ld.matrix(&p("attn_q.weight"), qw, d)?),
        };
        // In the file's order (the first disagreeing tensor is named).
        let wkv_a = ld.matrix(&p("attn_kv_a_mqa.weight"), m.kv_lora_rank + m.qk_rope, d)?;
        let kv_a_norm = ld.vector(&p("attn_kv_a_norm.weight"), m.kv_lora_rank)?;
        let k_b = ld.stacked(&p("attn_k_b.weight"), c.n_head, m.kv_lora_rank, m.qk_nope)?;
        Ok(Mla {
            wq_a,
            wq,
            wkv_a,
            kv_a_norm,
            // Q8_0 rows need whole blocks of 32.
            k_b_t: match k_b.first() {
                Some(w) if !w.dtype.is_quantized() || m.kv_lora_rank.is_multiple_of(32) => {
                    transposed(&k_b, m.kv_lora_rank, m.qk_nope)
                }
                _ => Vec::new(),
            },
            k_b,
            v_b: ld.stacked(&p("attn_v_b.weight"), c.n_head, m.v_head, m.kv_lora_rank)?,
        })
    }

    /// The matrices every token reads.
    pub fn matrices(&self) -> Vec<&QMatrix> {
        let mut v: Vec<&QMatrix> = Vec::new();
        if let Some((a, _, b)) = &self.wq_a {
            v.extend([a, b]);
        }
        v.extend(self.wq.as_ref());
        v.push(&self.wkv_a);
        v.extend(self.k_b.iter().chain(&self.v_b));
        v
    }
}

/// Each of `n` rows of `x` (`heads` blocks of `cols`) through its head's
/// matrix: `out[t][h] = ms[h] · x[t][h]`, one grouped pass for all heads.
fn per_head(ms: &[QMatrix], x: &[f32], n: usize, cols: usize) -> Vec<f32> {
    let heads = ms.len();
    let rows = ms.first().map_or(0, |m| m.rows);
    // Head h takes rows t·heads + h of x viewed as (n·heads) × cols; its
    // outputs come out token by token and are put in place below.
    let take: Vec<Vec<usize>> = (0..heads)
        .map(|h| (0..n).map(|t| t * heads + h).collect())
        .collect();
    // Written whole by the products.
    let mut outs = scratch::take(heads * n * rows);
    {
        let mut products: Vec<Product> = ms
            .iter()
            .zip(&take)
            .zip(outs.chunks_exact_mut(n * rows))
            .map(|((w, t), out)| Product {
                w,
                take: Some(t),
                out,
            })
            .collect();
        if let Err(e) = matmul_grouped(Acts::Rows(x), n * heads, cols, &mut products) {
            unreachable!("latent-attention shapes are checked at load: {e}")
        }
    }
    let mut y = scratch::take(n * heads * rows);
    for (h, o) in outs.chunks_exact(n * rows).enumerate() {
        for t in 0..n {
            y[(t * heads + h) * rows..][..rows].copy_from_slice(&o[t * rows..(t + 1) * rows]);
        }
    }
    scratch::give(outs);
    y
}

/// The latent attention block of layer `il` over `n` rows of `h`.
pub fn latent_attention(
    m: &Transformer,
    mla: &Mla,
    il: usize,
    h: Input,
    n: usize,
    ctx: &mut Batch,
) -> Vec<f32> {
    let (c, l) = (&m.cfg, &m.layers[il]);
    let Some(mc) = c.mla else {
        unreachable!("a latent-attention layer has its shapes in the config")
    };
    let (nh, nope, rope, lora) = (c.n_head, mc.qk_nope, mc.qk_rope, mc.kv_lora_rank);
    let x = h.rows();
    ctx.trace("attn_norm", il, &x);
    let q = match (&mla.wq_a, &mla.wq) {
        (Some((a, norm, b)), _) => {
            let qa = linear(a, None, &x, n);
            let qa = rms_norm_rows(&qa, norm, c.rms_eps);
            linear(b, None, &qa, n)
        }
        (None, Some(wq)) => linear(wq, None, &x, n),
        (None, None) => unreachable!("Mla::load loads one query projection"),
    };
    let kv = linear(&mla.wkv_a, None, &x, n);
    // The cached key row: [normalized latent | rotated k_pe].
    let kw = lora + rope;
    let mut keys = vec![0f32; n * kw];
    let angles = rope_angles(ctx, c, c.rope_theta, c.rope_freq_scale, true);
    for t in 0..n {
        let (src, dst) = (&kv[t * kw..(t + 1) * kw], &mut keys[t * kw..(t + 1) * kw]);
        ops::rms_norm(&src[..lora], &mla.kv_a_norm, c.rms_eps, &mut dst[..lora]);
        dst[lora..].copy_from_slice(&src[lora..]);
        let (sin, cos) = angles.of(t);
        ops::rope(&mut dst[lora..], rope, c.rope_style, sin, cos);
    }
    // Queries: each head's nope part into latent space, its rope part rotated.
    let qh = nope + rope;
    let mut q_nope = vec![0f32; n * nh * nope];
    let mut q_pe = vec![0f32; n * nh * rope];
    for (i, head) in q.chunks_exact(qh).enumerate() {
        q_nope[i * nope..(i + 1) * nope].copy_from_slice(&head[..nope]);
        q_pe[i * rope..(i + 1) * rope].copy_from_slice(&head[nope..]);
    }
    for t in 0..n {
        let (sin, cos) = angles.of(t);
        for hq in q_pe[t * nh * rope..(t + 1) * nh * rope].chunks_exact_mut(rope) {
            ops::rope(hq, rope, c.rope_style, sin, cos);
        }
    }
    // The value is the key's latent: nothing more is cached.
    ctx.kv.write_rows(il, &ctx.rows, &keys, &[]);
    if decompress(mla, c, ctx) {
        let o = decompressed(m, mla, il, &q_nope, &q_pe, &keys, n, ctx);
        ctx.trace("kqv_out", il, &o);
        let out = linear(&l.wo, None, &o, n);
        scratch::give(o);
        return out;
    }
    let q_lat = per_head(&mla.k_b, &q_nope, n, nope);
    // Every element written below.
    let mut qfull = scratch::take(n * nh * kw);
    for i in 0..n * nh {
        qfull[i * kw..i * kw + lora].copy_from_slice(&q_lat[i * lora..(i + 1) * lora]);
        qfull[i * kw + lora..(i + 1) * kw].copy_from_slice(&q_pe[i * rope..(i + 1) * rope]);
    }
    scratch::give(q_lat);
    ctx.trace("Qcur", il, &qfull);
    ctx.trace("Kcur", il, &keys);
    let a = attend(&qfull, n, c, il, None, ctx);
    scratch::give(qfull);
    ctx.trace("kqv_latent", il, &a);
    let o = per_head(&mla.v_b, &a, n, lora);
    ctx.trace("kqv_out", il, &o);
    let out = linear(&l.wo, None, &o, n);
    scratch::give(o);
    out
}

/// Whether this pass's prefill takes the decompressed form: every
/// sequence a fresh one of [`DECOMPRESS_MIN_ROWS`] rows or a continued one
/// of [`DECOMPRESS_MIN_ROWS_CONTINUED`] (its cached latents decompressed
/// too), and the keys and values made within [`DECOMPRESS_MAX_BYTES`].
fn decompress(mla: &Mla, c: &ModelConfig, ctx: &Batch) -> bool {
    let Some(mc) = c.mla else { return false };
    if mla.k_b_t.is_empty() {
        return false;
    }
    let rows: usize = ctx.seqs.iter().map(|s| s.pos0 + s.n).sum();
    let bytes = rows * c.n_head * (mc.qk_nope + mc.qk_rope + mc.v_head) * 4;
    match prefill() {
        MlaPrefill::Absorbed => false,
        MlaPrefill::Decompressed => bytes <= DECOMPRESS_MAX_BYTES,
        MlaPrefill::Auto => {
            !suanli_kernels::dispatch::batch_invariant()
                && bytes <= DECOMPRESS_MAX_BYTES
                && ctx.seqs.iter().all(|s| match s.pos0 {
                    0 => s.n >= DECOMPRESS_MIN_ROWS,
                    _ => s.n >= DECOMPRESS_MIN_ROWS_CONTINUED,
                })
        }
    }
}

/// Rows of a continued sequence from which decompressing its cached
/// latents (their keys and values made anew each pass) costs less than
/// the absorbed form's wider attention saves.
pub const DECOMPRESS_MIN_ROWS_CONTINUED: usize = 128;

/// The most the decompressed keys and values of one pass may take.
pub const DECOMPRESS_MAX_BYTES: usize = 512 << 20;

/// Positions `..n` of a sequence's cached key rows (`[latent | k_pe]`, `kw`
/// wide) as f32, into `out`.
fn cached_rows(rows: Kv, pages: &Pages, n: usize, kw: usize, out: &mut [f32]) {
    for (p, o) in out[..n * kw].chunks_exact_mut(kw).enumerate() {
        let r = pages.row(p);
        match rows {
            Kv::F32(v) => o.copy_from_slice(&v[r * kw..(r + 1) * kw]),
            Kv::F16(v) => o
                .iter_mut()
                .zip(&v[r * kw..(r + 1) * kw])
                .for_each(|(o, h)| *o = h.to_f32()),
            Kv::Q8_0(v) => {
                let rb = kw / 32 * 34;
                dequantize_q8_0(&v[r * rb..(r + 1) * rb], o);
            }
        }
    }
}

/// Attention in the decompressed form: every head's keys and values made
/// from the latents — the cached ones of continued sequences and the
/// batch's own (`keys` rows: `[latent | k_pe]`) — multi-head attention
/// within each sequence, the heads' outputs (`n × n_head × v_head`) for
/// the output projection.
#[allow(clippy::too_many_arguments)]
fn decompressed(
    m: &Transformer,
    mla: &Mla,
    il: usize,
    q_nope: &[f32],
    q_pe: &[f32],
    keys: &[f32],
    n: usize,
    ctx: &Batch,
) -> Vec<f32> {
    let c = &m.cfg;
    let Some(mc) = c.mla else {
        unreachable!("a latent-attention layer has its shapes in the config")
    };
    let (nh, nope, rope, lora, dv) = (c.n_head, mc.qk_nope, mc.qk_rope, mc.kv_lora_rank, mc.v_head);
    let (kw, hd) = (lora + rope, nope + rope);
    // Every sequence's key rows, cached then new, one after another.
    let total: usize = ctx.seqs.iter().map(|s| s.pos0 + s.n).sum();
    let mut rows = scratch::take(total * kw);
    let (mut t0, mut r0) = (0, 0);
    for s in ctx.seqs {
        if s.pos0 > 0 {
            cached_rows(ctx.kv.keys(il), &s.pages, s.pos0, kw, &mut rows[r0 * kw..]);
        }
        rows[(r0 + s.pos0) * kw..(r0 + s.pos0 + s.n) * kw]
            .copy_from_slice(&keys[t0 * kw..(t0 + s.n) * kw]);
        t0 += s.n;
        r0 += s.pos0 + s.n;
    }
    let mut lat = scratch::take(total * lora);
    for (l, r) in lat.chunks_exact_mut(lora).zip(rows.chunks_exact(kw)) {
        l.copy_from_slice(&r[..lora]);
    }
    // Each head's key (nope part) and value over all rows, in one pass:
    // the latents quantized once.
    let mut kn = scratch::take(nh * total * nope);
    let mut vs = scratch::take(nh * total * dv);
    {
        let mut products: Vec<Product> = Vec::with_capacity(2 * nh);
        let (mut ks, mut vo) = (kn.as_mut_slice(), vs.as_mut_slice());
        for h in 0..nh {
            let (k, rest) = std::mem::take(&mut ks).split_at_mut(total * nope);
            ks = rest;
            let (v, rest) = std::mem::take(&mut vo).split_at_mut(total * dv);
            vo = rest;
            products.push(Product {
                w: &mla.k_b_t[h],
                take: None,
                out: k,
            });
            products.push(Product {
                w: &mla.v_b[h],
                take: None,
                out: v,
            });
        }
        if let Err(e) = matmul_grouped(Acts::Rows(&lat), total, lora, &mut products) {
            unreachable!("latent-attention shapes are checked at load: {e}")
        }
    }
    scratch::give(lat);
    // Row-major for attention: k `[nope | k_pe]` and v per head.
    let mut k = scratch::take(total * nh * hd);
    let mut v = scratch::take(total * nh * dv);
    for r in 0..total {
        for h in 0..nh {
            let i = r * nh + h;
            let kd = &mut k[i * hd..(i + 1) * hd];
            kd[..nope].copy_from_slice(&kn[(h * total + r) * nope..(h * total + r + 1) * nope]);
            kd[nope..].copy_from_slice(&rows[r * kw + lora..(r + 1) * kw]);
            v[i * dv..(i + 1) * dv]
                .copy_from_slice(&vs[(h * total + r) * dv..(h * total + r + 1) * dv]);
        }
    }
    scratch::give(rows);
    scratch::give(kn);
    scratch::give(vs);
    let mut q = scratch::take(n * nh * hd);
    for i in 0..n * nh {
        let qd = &mut q[i * hd..(i + 1) * hd];
        qd[..nope].copy_from_slice(&q_nope[i * nope..(i + 1) * nope]);
        qd[nope..].copy_from_slice(&q_pe[i * rope..(i + 1) * rope]);
    }
    let mut out = scratch::take(n * nh * dv);
    let (mut t0, mut r0) = (0, 0);
    for s in ctx.seqs {
        let shape = AttnShape {
            n_head: nh,
            n_head_kv: nh,
            head_dim: hd,
            head_dim_v: dv,
            k_stride: nh * hd,
            v_stride: nh * dv,
            scale: if c.scale_q { 1.0 } else { c.attn_scale },
            softcap: c.attn_softcap,
            window: None,
            pages: Pages::CONTIGUOUS,
            sinks: None,
        };
        let (a, b) = (t0 * nh, (t0 + s.n) * nh);
        let (ka, kb) = (r0 * nh, (r0 + s.pos0 + s.n) * nh);
        attention(
            &shape,
            &q[a * hd..b * hd],
            s.n,
            s.pos0,
            Kv::F32(&k[ka * hd..kb * hd]),
            Kv::F32(&v[ka * dv..kb * dv]),
            &mut out[a * dv..b * dv],
        );
        t0 += s.n;
        r0 += s.pos0 + s.n;
    }
    scratch::give(q);
    scratch::give(k);
    scratch::give(v);
    out
}
