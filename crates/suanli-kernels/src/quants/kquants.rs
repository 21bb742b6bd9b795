//! The 256-element super-block formats ("K-quants"): Q2_K … Q6_K, and Q8_K,
//! the activation format their dot products take.
//!
//! ```text
//! Q2_K (84 B):  scales[16] (lo nibble scale, hi nibble min), qs[64], d:f16, dmin:f16
//! Q3_K (110 B): hmask[32], qs[64], scales[12] (16 × 6 bit), d:f16
//! Q4_K (144 B): d:f16, dmin:f16, scales[12] (8 scales + 8 mins, 6 bit), qs[128]
//! Q5_K (176 B): d:f16, dmin:f16, scales[12], qh[32], qs[128]
//! Q6_K (210 B): ql[128], qh[64], scales:i8[16], d:f16
//! Q8_K (292 B): d:f32, qs:i8[256], bsums:i16[16] (sums of 16 quants)
//! ```
//!
//! Every weight format is unpacked to small integers `q[256]` plus a scale per
//! group (and a min per group where the format has one): element `e` is
//! `d * scale[g] * q[e] - dmin * min[g]`, `g = e / group`. The dot product with
//! Q8_K sums integers in lanes and accumulates floats as ggml's x86 kernels do
//! (see the module docs of [`super`]).

use super::{as_i8, f16_at, f32_at, hsum8};
use crate::dtype::QK_K;

/// One super-block unpacked to integers.
struct Unpacked {
    q: [i8; QK_K],
    /// Scale per group (16 groups of 16, or 8 groups of 32 — see `group`).
    scale: [i32; 16],
    /// Min per group; all zero for the symmetric formats.
    min: [i32; 16],
    group: usize,
    d: f32,
    dmin: f32,
}

impl Unpacked {
    fn new(group: usize, d: f32, dmin: f32) -> Self {
        Unpacked {
            q: [0; QK_K],
            scale: [0; 16],
            min: [0; 16],
            group,
            d,
            dmin,
        }
    }

    fn dequantize(&self, y: &mut [f32]) {
        for (g, yg) in y.chunks_exact_mut(self.group).enumerate() {
            let dl = self.d * self.scale[g] as f32;
            let ml = self.dmin * self.min[g] as f32;
            let qg = &self.q[g * self.group..(g + 1) * self.group];
            for (o, &q) in yg.iter_mut().zip(qg) {
                *o = dl * q as f32 - ml;
            }
        }
    }

    /// Exact integer lane sums (lane = (e mod 32) / 4) of `scale·(q + bias)·y`.
    fn lanes(&self, yq: &[i8], bias: i32) -> [i32; 8] {
        let mut l = [0i32; 8];
        for (e, (&q, &y)) in self.q.iter().zip(yq).enumerate() {
            l[(e % 32) / 4] += self.scale[e / self.group] * (q as i32 + bias) * y as i32;
        }
        l
    }
}

fn q8k_bsums(x: &[u8]) -> [i32; 16] {
    let mut b = [0i32; 16];
    for (j, v) in b.iter_mut().enumerate() {
        *v = i16::from_le_bytes([x[4 + QK_K + 2 * j], x[4 + QK_K + 2 * j + 1]]) as i32;
    }
    b
}

#[inline(always)]
fn fma_lanes(acc: &mut [f32; 8], d: f32, lanes: &[i32; 8]) {
    for (a, &l) in acc.iter_mut().zip(lanes) {
        *a = d.mul_add(l as f32, *a);
    }
}

/// How a format's min (or offset) term is accumulated by ggml's x86 kernel.
#[derive(Clone, Copy)]
enum Mins {
    /// Symmetric (Q3_K).
    None,
    /// Q2_K: `dmin·(m·bsum)` in the same 8 lanes, before the scales.
    Lanes8,
    /// Q4_K: a separate 4-lane accumulator.
    Lanes4,
    /// Q5_K: a scalar running sum.
    Scalar,
    /// Q6_K: values offset by 32, corrected by `32·scale·bsum` per lane.
    Offset32,
}

fn kdot(
    nb: usize,
    w: &[u8],
    wb: usize,
    x: &[u8],
    unpack: fn(&[u8]) -> Unpacked,
    mins: Mins,
) -> f32 {
    let mut acc = [0f32; 8];
    let mut acc_m = [0f32; 4];
    let mut summs = 0f32;
    for (wk, xk) in w.chunks_exact(wb).zip(x.chunks_exact(Q8K_BYTES)).take(nb) {
        let u = unpack(wk);
        let yd = f32_at(xk, 0);
        let yq = as_i8(&xk[4..4 + QK_K]);
        let bs = q8k_bsums(xk);
        let d = yd * u.d;
        let dmin = -yd * u.dmin;
        match mins {
            Mins::None => fma_lanes(&mut acc, d, &u.lanes(yq, 0)),
            Mins::Lanes8 => {
                let ml: [i32; 8] = std::array::from_fn(|l| {
                    u.min[2 * l] * bs[2 * l] + u.min[2 * l + 1] * bs[2 * l + 1]
                });
                fma_lanes(&mut acc, dmin, &ml);
                fma_lanes(&mut acc, d, &u.lanes(yq, 0));
            }
            Mins::Lanes4 => {
                let q8s: [i32; 8] = std::array::from_fn(|k| bs[2 * k] + bs[2 * k + 1]);
                for (i, a) in acc_m.iter_mut().enumerate() {
                    let m = u.min[2 * i] * q8s[2 * i] + u.min[2 * i + 1] * q8s[2 * i + 1];
                    *a = dmin.mul_add(m as f32, *a);
                }
                fma_lanes(&mut acc, d, &u.lanes(yq, 0));
            }
            Mins::Scalar => {
                let m: i32 = (0..8).map(|g| u.min[g] * (bs[2 * g] + bs[2 * g + 1])).sum();
                summs += dmin * m as f32;
                fma_lanes(&mut acc, d, &u.lanes(yq, 0));
            }
            Mins::Offset32 => {
                let mut l = u.lanes(yq, 32);
                for (i, v) in l.iter_mut().enumerate() {
                    *v -= 32 * (bs[2 * i] * u.scale[2 * i] + bs[2 * i + 1] * u.scale[2 * i + 1]);
                }
                fma_lanes(&mut acc, d, &l);
            }
        }
    }
    let m = (acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]);
    match mins {
        Mins::Lanes4 => hsum8(&acc) + m,
        Mins::Scalar => hsum8(&acc) + summs,
        _ => hsum8(&acc),
    }
}

fn unpack_q2_k(b: &[u8]) -> Unpacked {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let mut u = Unpacked::new(16, f16_at(b, 80), f16_at(b, 82));
    for g in 0..16 {
        u.scale[g] = (scales[g] & 0xF) as i32;
        u.min[g] = (scales[g] >> 4) as i32;
    }
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                u.q[n * 128 + j * 32 + l] = ((qs[n * 32 + l] >> (2 * j)) & 3) as i8;
            }
        }
    }
    u
}

fn q3_k_scales(s: &[u8]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for (g, o) in out.iter_mut().enumerate() {
        let lo = if g < 8 { s[g] & 0xF } else { s[g - 8] >> 4 };
        let hi = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
        *o = (lo | (hi << 4)) as i32 - 32;
    }
    out
}

fn unpack_q3_k(b: &[u8]) -> Unpacked {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let mut u = Unpacked::new(16, f16_at(b, 108), 0.0);
    u.scale = q3_k_scales(&b[96..108]);
    for n in 0..2 {
        for j in 0..4 {
            let m = 1u8 << (n * 4 + j);
            for l in 0..32 {
                let lo = ((qs[n * 32 + l] >> (2 * j)) & 3) as i8;
                let hi = if hmask[l] & m != 0 { 0 } else { 4 };
                u.q[n * 128 + j * 32 + l] = lo - hi;
            }
        }
    }
    u
}

/// The 6-bit scale and min of group `j` (0..8) of a Q4_K/Q5_K block.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (i32, i32) {
    if j < 4 {
        ((q[j] & 63) as i32, (q[j + 4] & 63) as i32)
    } else {
        (
            ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)) as i32,
            ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as i32,
        )
    }
}

/// The eight 6-bit scales and mins of a Q4_K/Q5_K block's `scales` bytes.
pub(crate) fn scales_mins_k4(q: &[u8]) -> ([i32; 8], [i32; 8]) {
    let mut s = ([0; 8], [0; 8]);
    for j in 0..8 {
        (s.0[j], s.1[j]) = scale_min_k4(j, q);
    }
    s
}

fn unpack_q4_k(b: &[u8]) -> Unpacked {
    let mut u = Unpacked::new(32, f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    let (sc, mn) = scales_mins_k4(scales);
    u.scale[..8].copy_from_slice(&sc);
    u.min[..8].copy_from_slice(&mn);
    for j in 0..4 {
        for l in 0..32 {
            u.q[j * 64 + l] = (qs[j * 32 + l] & 0xF) as i8;
            u.q[j * 64 + 32 + l] = (qs[j * 32 + l] >> 4) as i8;
        }
    }
    u
}

fn unpack_q5_k(b: &[u8]) -> Unpacked {
    let mut u = Unpacked::new(32, f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    let (sc, mn) = scales_mins_k4(scales);
    u.scale[..8].copy_from_slice(&sc);
    u.min[..8].copy_from_slice(&mn);
    for j in 0..4 {
        let (m1, m2) = (1u8 << (2 * j), 1u8 << (2 * j + 1));
        for l in 0..32 {
            let h1 = if qh[l] & m1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & m2 != 0 { 16 } else { 0 };
            u.q[j * 64 + l] = ((qs[j * 32 + l] & 0xF) + h1) as i8;
            u.q[j * 64 + 32 + l] = ((qs[j * 32 + l] >> 4) + h2) as i8;
        }
    }
    u
}

fn unpack_q6_k(b: &[u8]) -> Unpacked {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let sc = as_i8(&b[192..208]);
    let mut u = Unpacked::new(16, f16_at(b, 208), 0.0);
    for g in 0..16 {
        u.scale[g] = sc[g] as i32;
    }
    for n in 0..2 {
        let (ql, qh) = (&ql[n * 64..], &qh[n * 32..]);
        let q = &mut u.q[n * 128..];
        for l in 0..32 {
            q[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            q[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            q[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            q[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    u
}

macro_rules! kquant {
    ($deq:ident, $dot:ident, $unpack:ident, $bytes:expr, $mins:expr) => {
        pub fn $deq(src: &[u8], out: &mut [f32]) {
            for (b, y) in src.chunks_exact($bytes).zip(out.chunks_exact_mut(QK_K)) {
                $unpack(b).dequantize(y);
            }
        }

        pub fn $dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
            kdot(n / QK_K, w, $bytes, x, $unpack, $mins)
        }
    };
}

kquant!(
    dequantize_q2_k,
    vec_dot_q2_k_q8_k,
    unpack_q2_k,
    84,
    Mins::Lanes8
);
kquant!(
    dequantize_q3_k,
    vec_dot_q3_k_q8_k,
    unpack_q3_k,
    110,
    Mins::None
);
kquant!(
    dequantize_q4_k,
    vec_dot_q4_k_q8_k,
    unpack_q4_k,
    144,
    Mins::Lanes4
);
kquant!(
    dequantize_q5_k,
    vec_dot_q5_k_q8_k,
    unpack_q5_k,
    176,
    Mins::Scalar
);
kquant!(
    dequantize_q6_k,
    vec_dot_q6_k_q8_k,
    unpack_q6_k,
    210,
    Mins::Offset32
);

const Q8K_BYTES: usize = 4 + QK_K + 32;

/// A K-quant row · Q8_K in the order of a tiled GEMM (llama.cpp's tiled
/// K-quant kernels, taken for batches of 8 rows or more): per block an exact
/// integer `I` of the scaled quants and `M` of the mins; the block's value
/// `fma(-dmin, M, I·d)` is scaled by the activation's d and accumulated in
/// block order with an FMA.
fn kdot_tiled(n: usize, w: &[u8], wb: usize, x: &[u8], unpack: fn(&[u8]) -> Unpacked) -> f32 {
    let mut out = 0f32;
    for (wk, xk) in w
        .chunks_exact(wb)
        .zip(x.chunks_exact(Q8K_BYTES))
        .take(n / QK_K)
    {
        let u = unpack(wk);
        let yd = f32_at(xk, 0);
        let yq = as_i8(&xk[4..4 + QK_K]);
        let i: i32 =
            u.q.iter()
                .zip(yq)
                .enumerate()
                .map(|(e, (&q, &y))| u.scale[e / u.group] * q as i32 * y as i32)
                .sum();
        let mut r = i as f32 * u.d;
        if u.dmin != 0.0 || u.min.iter().any(|&m| m != 0) {
            let bs = q8k_bsums(xk);
            let per = u.group / 16;
            let m: i32 = (0..QK_K / u.group)
                .map(|g| u.min[g] * (0..per).map(|k| bs[g * per + k]).sum::<i32>())
                .sum();
            r = (-u.dmin).mul_add(m as f32, r);
        }
        // `acc + r·yd`, fused (GCC contracts ggml's add-of-multiply).
        out = r.mul_add(yd, out);
    }
    out
}

pub fn vec_dot_q2_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    kdot_tiled(n, w, 84, x, unpack_q2_k)
}
pub fn vec_dot_q3_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    kdot_tiled(n, w, 110, x, unpack_q3_k)
}
pub fn vec_dot_q4_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    kdot_tiled(n, w, 144, x, unpack_q4_k)
}
pub fn vec_dot_q5_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    kdot_tiled(n, w, 176, x, unpack_q5_k)
}
pub fn vec_dot_q6_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    kdot_tiled(n, w, 210, x, unpack_q6_k)
}

/// The tiled-order dot product of a K-quant, if `ty` is one.
pub fn tiled_vec_dot(ty: crate::DType) -> Option<crate::dtype::VecDot> {
    use crate::DType::*;
    Some(match ty {
        Q2_K => vec_dot_q2_k_q8_k_tiled,
        Q3_K => vec_dot_q3_k_q8_k_tiled,
        Q4_K => vec_dot_q4_k_q8_k_tiled,
        Q5_K => vec_dot_q5_k_q8_k_tiled,
        Q6_K => vec_dot_q6_k_q8_k_tiled,
        _ => return None,
    })
}

/// Q4_K · Q8_K in the order of the interleaved 8-row × 4-column GEMM
/// (llama.cpp's AVX-512 `gemm_q4_K_8x8_q8_K`): like
/// [`vec_dot_q4_k_q8_k_interleaved`] but with one FMA per 64 elements (a
/// pair of sub-blocks) rather than per block.
pub fn vec_dot_q4_k_q8_k_interleaved_gemm(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (mut acc, mut acc_m) = (0f32, 0f32);
    for (wk, xk) in w
        .chunks_exact(144)
        .zip(x.chunks_exact(Q8K_BYTES))
        .take(n / QK_K)
    {
        let u = unpack_q4_k(wk);
        let yd = f32_at(xk, 0);
        let yq = as_i8(&xk[4..4 + QK_K]);
        let bs = q8k_bsums(xk);
        for sb in 0..4 {
            let r = sb * 64..(sb + 1) * 64;
            let i: i32 = u.q[r.clone()]
                .iter()
                .zip(&yq[r])
                .enumerate()
                .map(|(e, (&q, &y))| u.scale[2 * sb + e / 32] * q as i32 * y as i32)
                .sum();
            let m: i32 = (2 * sb..2 * sb + 2)
                .map(|g| u.min[g] * (bs[2 * g] + bs[2 * g + 1]))
                .sum();
            acc = (i as f32).mul_add(u.d * yd, acc);
            acc_m = (m as f32).mul_add(u.dmin * yd, acc_m);
        }
    }
    acc - acc_m
}

/// Q4_K · Q8_K in the order of the 8-row interleaved kernels (llama.cpp's
/// repacked `q4_K_8x8` GEMV/GEMM): per block one exact integer for the
/// scaled quants and one for the mins, accumulated block by block with
/// `fma(int, xd·yd, acc)`, the mins subtracted at the end.
pub fn vec_dot_q4_k_q8_k_interleaved(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (mut acc, mut acc_m) = (0f32, 0f32);
    for (wk, xk) in w
        .chunks_exact(144)
        .zip(x.chunks_exact(Q8K_BYTES))
        .take(n / QK_K)
    {
        let u = unpack_q4_k(wk);
        let yd = f32_at(xk, 0);
        let bs = q8k_bsums(xk);
        let i: i32 = u.lanes(as_i8(&xk[4..4 + QK_K]), 0).iter().sum();
        let m: i32 = (0..8).map(|g| u.min[g] * (bs[2 * g] + bs[2 * g + 1])).sum();
        acc = (i as f32).mul_add(u.d * yd, acc);
        acc_m = (m as f32).mul_add(u.dmin * yd, acc_m);
    }
    acc - acc_m
}

pub fn dequantize_q8_k(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(Q8K_BYTES).zip(out.chunks_exact_mut(QK_K)) {
        let d = f32_at(b, 0);
        for (o, &q) in y.iter_mut().zip(as_i8(&b[4..4 + QK_K])) {
            *o = d * q as f32;
        }
    }
}

/// `quantize_row_q8_K_ref`: scale by -127/max where max is the signed value
/// of largest magnitude, round half to even, clamp to 127.
#[inline(always)]
pub fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q8K_BYTES)) {
        // The first value of the largest magnitude, found in two passes
        // that vectorize (the max of |v| is the same in any order).
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        if amax == 0.0 || amax.is_nan() {
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (o, &v) in b[4..4 + QK_K].iter_mut().zip(xb) {
            // |iscale·v| ≤ 127 (+ rounding): in `round_small`'s range.
            *o = super::round_small(iscale * v).min(127) as i8 as u8;
        }
        for j in 0..16 {
            let s: i32 = as_i8(&b[4 + j * 16..4 + (j + 1) * 16])
                .iter()
                .map(|&q| q as i32)
                .sum();
            let o = 4 + QK_K + 2 * j;
            b[o..o + 2].copy_from_slice(&(s as i16).to_le_bytes());
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// A Q6_K block's 256 values as unsigned 6-bit numbers (value + 32), its
/// 16 sub-block scales and its `d` (for layouts that repack it).
pub fn q6_k_parts(b: &[u8]) -> ([u8; QK_K], [i8; 16], f32) {
    let u = unpack_q6_k(b);
    let q = std::array::from_fn(|e| (u.q[e] as i32 + 32) as u8);
    let sc = std::array::from_fn(|g| u.scale[g] as i8);
    (q, sc, u.d)
}
