//! The 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! ```text
//! Q4_0 (18 B): d:f16, qs[16]            x = d * (q - 8)
//! Q4_1 (20 B): d:f16, m:f16, qs[16]     x = d * q + m
//! Q5_0 (22 B): d:f16, qh:u32, qs[16]    x = d * (q - 16), q's 5th bit in qh
//! Q5_1 (24 B): d:f16, m:f16, qh:u32, qs[16]
//! Q8_0 (34 B): d:f16, qs:i8[32]         x = d * q
//! Q8_1 (36 B): d:f16, s:f16, qs:i8[32]  s = d * sum(q)
//! ```
//! In the 4/5-bit formats element j < 16 is in the low nibble of `qs[j]` and
//! element j + 16 in its high nibble.

use super::{as_i8, f16_at, hsum8, lanes32, put_f16};

const QK: usize = 32;

pub fn dequantize_q4_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let qs = &b[2..18];
        for j in 0..16 {
            y[j] = ((qs[j] & 0xF) as i32 - 8) as f32 * d;
            y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_q4_1(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(20).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qs = &b[4..20];
        for j in 0..16 {
            y[j] = (qs[j] & 0xF) as f32 * d + m;
            y[j + 16] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

#[inline(always)]
fn q5_values(qh: u32, qs: &[u8]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for j in 0..16 {
        let h0 = (((qh >> j) << 4) & 0x10) as u8;
        let h1 = ((qh >> (j + 12)) & 0x10) as u8;
        v[j] = (qs[j] & 0xF) | h0;
        v[j + 16] = (qs[j] >> 4) | h1;
    }
    v
}

pub fn dequantize_q5_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(22).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let v = q5_values(qh, &b[6..22]);
        for j in 0..QK {
            y[j] = (v[j] as i32 - 16) as f32 * d;
        }
    }
}

pub fn dequantize_q5_1(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(24).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let m = f16_at(b, 2);
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let v = q5_values(qh, &b[8..24]);
        for j in 0..QK {
            y[j] = v[j] as f32 * d + m;
        }
    }
}

pub fn dequantize_q8_0(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(34).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (o, q) in y.iter_mut().zip(as_i8(&b[2..34])) {
            *o = *q as f32 * d;
        }
    }
}

pub fn dequantize_q8_1(src: &[u8], out: &mut [f32]) {
    for (b, y) in src.chunks_exact(36).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (o, q) in y.iter_mut().zip(as_i8(&b[4..36])) {
            *o = *q as f32 * d;
        }
    }
}

/// Scale `x` so that its largest magnitude maps to 127; returns (d, quants).
#[inline(always)]
fn q8_block(x: &[f32]) -> (f32, [i8; 32]) {
    // Max |x| over 8 lanes, then across them: the same value in any order
    // (f32::max skips NaN either way), and it vectorizes.
    let mut lanes = [0f32; 8];
    for c in x.chunks_exact(8) {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    let amax = lanes.iter().fold(0f32, |m, v| m.max(*v));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut q = [0i8; 32];
    for (o, v) in q.iter_mut().zip(x) {
        // |v·id| ≤ 127: exact in `round_small`'s range.
        *o = super::round_small(v * id) as i8;
    }
    (d, q)
}

#[inline(always)]
pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
        let (d, q) = q8_block(xb);
        put_f16(b, 0, d);
        for (o, v) in b[2..].iter_mut().zip(q) {
            *o = v as u8;
        }
    }
}

#[inline(always)]
pub fn quantize_q8_1(x: &[f32], out: &mut [u8]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(36)) {
        let (d, q) = q8_block(xb);
        let sum: i32 = q.iter().map(|&v| v as i32).sum();
        put_f16(b, 0, d);
        put_f16(b, 2, d * sum as f32);
        for (o, v) in b[4..].iter_mut().zip(q) {
            *o = v as u8;
        }
    }
}

/// Shared body of the symmetric formats: `acc[l] += d·lane_l` per block.
#[inline(always)]
fn dot_sym(nb: usize, w: &[u8], wb: usize, x: &[u8], vals: impl Fn(&[u8]) -> [i32; 32]) -> f32 {
    let mut acc = [0f32; 8];
    for (wk, xk) in w.chunks_exact(wb).zip(x.chunks_exact(34)).take(nb) {
        let d = f16_at(wk, 0) * f16_at(xk, 0);
        let lanes = lanes32(&vals(wk), as_i8(&xk[2..34]));
        for (a, &li) in acc.iter_mut().zip(&lanes) {
            *a = d.mul_add(li as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Shared body of the formats with a min: lanes as [`dot_sym`], plus
/// `Σ m·s` summed separately in block order.
#[inline(always)]
fn dot_min(nb: usize, w: &[u8], wb: usize, x: &[u8], vals: impl Fn(&[u8]) -> [i32; 32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (wk, xk) in w.chunks_exact(wb).zip(x.chunks_exact(36)).take(nb) {
        let d = f16_at(wk, 0) * f16_at(xk, 0);
        summs += f16_at(wk, 2) * f16_at(xk, 2);
        let lanes = lanes32(&vals(wk), as_i8(&xk[4..36]));
        for (a, &li) in acc.iter_mut().zip(&lanes) {
            *a = d.mul_add(li as f32, *a);
        }
    }
    hsum8(&acc) + summs
}

fn nibbles(qs: &[u8], offset: i32) -> [i32; 32] {
    let mut v = [0i32; 32];
    for j in 0..16 {
        v[j] = (qs[j] & 0xF) as i32 - offset;
        v[j + 16] = (qs[j] >> 4) as i32 - offset;
    }
    v
}

fn fives(qh: &[u8], qs: &[u8], offset: i32) -> [i32; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut v = [0i32; 32];
    for (o, q) in v.iter_mut().zip(q5_values(qh, qs)) {
        *o = q as i32 - offset;
    }
    v
}

pub fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_sym(n / QK, w, 18, x, |b| nibbles(&b[2..18], 8))
}

pub fn vec_dot_q4_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_min(n / QK, w, 20, x, |b| nibbles(&b[4..20], 0))
}

pub fn vec_dot_q5_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_sym(n / QK, w, 22, x, |b| fives(&b[2..6], &b[6..22], 16))
}

pub fn vec_dot_q5_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_min(n / QK, w, 24, x, |b| fives(&b[4..8], &b[8..24], 0))
}

pub fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_sym(n / QK, w, 34, x, |b| {
        let mut v = [0i32; 32];
        for (o, &q) in v.iter_mut().zip(as_i8(&b[2..34])) {
            *o = q as i32;
        }
        v
    })
}

/// The block-sum order, for kernels whose vector lanes are weight rows
/// ([`crate::x86::r16`]): per block the exact integer `Σ q·x`, then one FMA
/// `acc = (d_w·d_x)·Σ + acc`; formats with a min add `m·s` into a second
/// sum by FMAs, `acc + Σm·s` at the end. Not llama.cpp's order (it keeps
/// eight float lanes per block); used where outputs need not match it
/// bit for bit — the batch-invariant server.
#[inline(always)]
fn dot_blocksum(
    nb: usize,
    w: &[u8],
    wb: usize,
    x: &[u8],
    min: bool,
    vals: impl Fn(&[u8]) -> [i32; 32],
) -> f32 {
    let (xb, xq) = if min { (36, 4) } else { (34, 2) };
    let mut acc = 0f32;
    let mut summs = 0f32;
    for (wk, xk) in w.chunks_exact(wb).zip(x.chunks_exact(xb)).take(nb) {
        let d = f16_at(wk, 0) * f16_at(xk, 0);
        let isum: i32 = vals(wk)
            .iter()
            .zip(as_i8(&xk[xq..xq + 32]))
            .map(|(&q, &y)| q * y as i32)
            .sum();
        acc = d.mul_add(isum as f32, acc);
        if min {
            summs = f16_at(wk, 2).mul_add(f16_at(xk, 2), summs);
        }
    }
    if min {
        acc + summs
    } else {
        acc
    }
}

pub fn vec_dot_q4_0_q8_0_blocksum(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_blocksum(n / QK, w, 18, x, false, |b| nibbles(&b[2..18], 8))
}

pub fn vec_dot_q4_1_q8_1_blocksum(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_blocksum(n / QK, w, 20, x, true, |b| nibbles(&b[4..20], 0))
}

pub fn vec_dot_q5_0_q8_0_blocksum(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_blocksum(n / QK, w, 22, x, false, |b| fives(&b[2..6], &b[6..22], 16))
}

pub fn vec_dot_q5_1_q8_1_blocksum(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_blocksum(n / QK, w, 24, x, true, |b| fives(&b[4..8], &b[8..24], 0))
}

pub fn vec_dot_q8_0_q8_0_blocksum(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_blocksum(n / QK, w, 34, x, false, |b| {
        let mut v = [0i32; 32];
        for (o, &q) in v.iter_mut().zip(as_i8(&b[2..34])) {
            *o = q as i32;
        }
        v
    })
}

/// The block-sum twin of a 32-element format's dot product.
pub fn blocksum_vec_dot(ty: crate::DType) -> Option<crate::dtype::VecDot> {
    use crate::DType::*;
    Some(match ty {
        Q4_0 => vec_dot_q4_0_q8_0_blocksum,
        Q4_1 => vec_dot_q4_1_q8_1_blocksum,
        Q5_0 => vec_dot_q5_0_q8_0_blocksum,
        Q5_1 => vec_dot_q5_1_q8_1_blocksum,
        Q8_0 => vec_dot_q8_0_q8_0_blocksum,
        _ => return None,
    })
}
