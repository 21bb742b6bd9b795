//! aarch64 NEON twins of the reference dot products ([`crate::quants`]):
//! the same exact integer lanes — lane `l` of a 32-element chunk sums its
//! elements `4l..4l + 4`, which `vmull_s8` + two pairwise widening adds
//! give directly — and the same float steps, so each returns its
//! reference's bits. Base NEON only (every aarch64 CPU has it), so no
//! run-time check is needed.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::aarch64::*;

use crate::quants::{f16_at, f32_at};

/// The two 4-lane halves of an eight-lane float accumulator.
type Acc = (float32x4_t, float32x4_t);

/// Sums of 4 consecutive `a·b` products of 16 pairs, in 4 lanes.
#[inline(always)]
unsafe fn lanes4(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    let hi = vpaddlq_s16(vmull_high_s8(a, b));
    vpaddq_s32(lo, hi)
}

/// `hsum8` of the reference: `(a4+a0 + a6+a2) + (a5+a1 + a7+a3)`.
#[inline(always)]
unsafe fn hsum8(acc: Acc) -> f32 {
    let r = vaddq_f32(acc.1, acc.0);
    (vgetq_lane_f32::<0>(r) + vgetq_lane_f32::<2>(r))
        + (vgetq_lane_f32::<1>(r) + vgetq_lane_f32::<3>(r))
}

/// `acc[l] = fma(d, lane_l, acc[l])` for both halves.
#[inline(always)]
unsafe fn fma8(acc: Acc, d: f32, lo: int32x4_t, hi: int32x4_t) -> Acc {
    (
        vfmaq_n_f32(acc.0, vcvtq_f32_s32(lo), d),
        vfmaq_n_f32(acc.1, vcvtq_f32_s32(hi), d),
    )
}

/// A 32-element block's quants as two 16-byte halves (elements 0–15 and
/// 16–31), offsets applied.
trait Legacy {
    /// Bytes per weight block.
    const WB: usize;
    /// With a min (`Q4_1`/`Q5_1`: activations in Q8_1).
    const MIN: bool;
    unsafe fn quants(b: *const u8) -> (int8x16_t, int8x16_t);
}

struct Q8_0;
struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> (uint8x16_t, uint8x16_t) {
    let v = vld1q_u8(qs);
    (vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(v))
}

/// The fifth bits (`qh`, 32 bits little-endian) as 0x10 in each byte.
#[inline(always)]
unsafe fn fifth_bits(qh: *const u8) -> (uint8x16_t, uint8x16_t) {
    let h = u32::from_le_bytes([*qh, *qh.add(1), *qh.add(2), *qh.add(3)]);
    // Bit j of each byte's group: byte k of half h tests bit 16h + k.
    const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let bit = vld1q_u8(BIT.as_ptr());
    let half = |v: u32| {
        let bytes = vcombine_u8(vdup_n_u8(v as u8), vdup_n_u8((v >> 8) as u8));
        vandq_u8(vtstq_u8(bytes, bit), vdupq_n_u8(0x10))
    };
    (half(h & 0xFFFF), half(h >> 16))
}

impl Legacy for Q8_0 {
    const WB: usize = 34;
    const MIN: bool = false;
    unsafe fn quants(b: *const u8) -> (int8x16_t, int8x16_t) {
        (
            vld1q_s8(b.add(2) as *const i8),
            vld1q_s8(b.add(18) as *const i8),
        )
    }
}

impl Legacy for Q4_0 {
    const WB: usize = 18;
    const MIN: bool = false;
    unsafe fn quants(b: *const u8) -> (int8x16_t, int8x16_t) {
        let (lo, hi) = nibbles(b.add(2));
        let off = vdupq_n_s8(8);
        (
            vsubq_s8(vreinterpretq_s8_u8(lo), off),
            vsubq_s8(vreinterpretq_s8_u8(hi), off),
        )
    }
}

impl Legacy for Q4_1 {
    const WB: usize = 20;
    const MIN: bool = true;
    unsafe fn quants(b: *const u8) -> (int8x16_t, int8x16_t) {
        let (lo, hi) = nibbles(b.add(4));
        (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
    }
}

impl Legacy for Q5_0 {
    const WB: usize = 22;
    const MIN: bool = false;
    unsafe fn quants(b: *const u8) -> (int8x16_t, int8x16_t) {
        let (lo, hi) = nibbles(b.add(6));
        let (h0, h1) = fifth_bits(b.add(2));
        let off = vdupq_n_s8(16);
        (
            vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, h0)), off),
            vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, h1)), off),
        )
    }
}

impl Legacy for Q5_1 {
    const WB: usize = 24;
    const MIN: bool = true;
    unsafe fn quants(b: *const u8) -> (int8x16_t, int8x16_t) {
        let (lo, hi) = nibbles(b.add(8));
        let (h0, h1) = fifth_bits(b.add(4));
        (
            vreinterpretq_s8_u8(vorrq_u8(lo, h0)),
            vreinterpretq_s8_u8(vorrq_u8(hi, h1)),
        )
    }
}

/// The legacy formats' `dot_sym` / `dot_min`.
#[inline(always)]
unsafe fn legacy<F: Legacy>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (xb, xq) = if F::MIN { (36, 4) } else { (34, 2) };
    let nb = n / 32;
    assert!(w.len() >= nb * F::WB && x.len() >= nb * xb);
    let mut acc: Acc = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut summs = 0f32;
    for (wk, xk) in w.chunks_exact(F::WB).zip(x.chunks_exact(xb)).take(nb) {
        let d = f16_at(wk, 0) * f16_at(xk, 0);
        if F::MIN {
            summs += f16_at(wk, 2) * f16_at(xk, 2);
        }
        let (q0, q1) = F::quants(wk.as_ptr());
        let y = xk.as_ptr().add(xq) as *const i8;
        let (y0, y1) = (vld1q_s8(y), vld1q_s8(y.add(16)));
        acc = fma8(acc, d, lanes4(q0, y0), lanes4(q1, y1));
    }
    // (No `+ 0.0` for the symmetric formats: it would turn −0 into +0.)
    match F::MIN {
        true => hsum8(acc) + summs,
        false => hsum8(acc),
    }
}

/// Q8_0 · Q8_0 (`legacy::vec_dot_q8_0_q8_0`).
pub fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    // SAFETY: NEON is part of every aarch64 target; bounds are asserted.
    unsafe { legacy::<Q8_0>(n, w, x) }
}

/// Q4_0 · Q8_0 (`legacy::vec_dot_q4_0_q8_0`).
pub fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    // SAFETY: as above.
    unsafe { legacy::<Q4_0>(n, w, x) }
}

/// Q4_1 · Q8_1 (`legacy::vec_dot_q4_1_q8_1`).
pub fn vec_dot_q4_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    // SAFETY: as above.
    unsafe { legacy::<Q4_1>(n, w, x) }
}

/// Q5_0 · Q8_0 (`legacy::vec_dot_q5_0_q8_0`).
pub fn vec_dot_q5_0_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    // SAFETY: as above.
    unsafe { legacy::<Q5_0>(n, w, x) }
}

/// Q5_1 · Q8_1 (`legacy::vec_dot_q5_1_q8_1`).
pub fn vec_dot_q5_1_q8_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
    // SAFETY: as above.
    unsafe { legacy::<Q5_1>(n, w, x) }
}

const XB: usize = 4 + 256 + 32;

/// The Q8_K block's 16 group sums.
#[inline(always)]
fn bsums(xk: &[u8]) -> [i32; 16] {
    std::array::from_fn(|j| i16::from_le_bytes([xk[260 + 2 * j], xk[261 + 2 * j]]) as i32)
}

/// Q6_K · Q8_K in the reference lane order (`kquants::vec_dot_q6_k_q8_k`):
/// lanes of `scale·q·y` over the unsigned 6-bit values, less
/// `32·(scale·bsum)` of two 16-element groups per lane.
pub fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / 256;
    assert!(w.len() >= nb * 210 && x.len() >= nb * XB);
    // SAFETY: NEON is part of every aarch64 target; loads stay inside the
    // blocks asserted above.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        let m3 = vdupq_n_u8(0x03);
        let mut acc: Acc = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        for (wk, xk) in w.chunks_exact(210).zip(x.chunks_exact(XB)).take(nb) {
            let sc: [i32; 16] = std::array::from_fn(|g| wk[192 + g] as i8 as i32);
            let y = xk.as_ptr().add(4) as *const i8;
            let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
            for half in 0..2 {
                let ql = wk.as_ptr().add(64 * half);
                let qh = wk.as_ptr().add(128 + 32 * half);
                // Chunk c (32 elements at 128·half + 32c) from its 16-byte pieces.
                for part in 0..2 {
                    let l0 = vld1q_u8(ql.add(16 * part));
                    let l1 = vld1q_u8(ql.add(32 + 16 * part));
                    let h = vld1q_u8(qh.add(16 * part));
                    let q = [
                        vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8::<4>(vandq_u8(h, m3))),
                        vorrq_u8(
                            vandq_u8(l1, m4),
                            vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(h), m3)),
                        ),
                        vorrq_u8(
                            vshrq_n_u8::<4>(l0),
                            vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(h), m3)),
                        ),
                        vorrq_u8(vshrq_n_u8::<4>(l1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(h))),
                    ];
                    for (c, q) in q.into_iter().enumerate() {
                        // Elements 128·half + 32c + 16·part .. +16: group g.
                        let e = 128 * half + 32 * c + 16 * part;
                        let s = lanes4(vreinterpretq_s8_u8(q), vld1q_s8(y.add(e)));
                        if part == 0 {
                            lo = vmlaq_n_s32(lo, s, sc[e / 16]);
                        } else {
                            hi = vmlaq_n_s32(hi, s, sc[e / 16]);
                        }
                    }
                }
            }
            let bs = bsums(xk);
            let corr: [i32; 8] = std::array::from_fn(|i| {
                32 * (bs[2 * i] * sc[2 * i] + bs[2 * i + 1] * sc[2 * i + 1])
            });
            lo = vsubq_s32(lo, vld1q_s32(corr.as_ptr()));
            hi = vsubq_s32(hi, vld1q_s32(corr.as_ptr().add(4)));
            let d = f32_at(xk, 0) * f16_at(wk, 208);
            acc = fma8(acc, d, lo, hi);
        }
        hsum8(acc)
    }
}

/// A Q4_K block's eight 32-element groups: `(Σ scale·q·y` in the reference
/// lanes (low and high halves), the min integer `Σ min·bsum` per group).
#[inline(always)]
unsafe fn q4k_block(wk: &[u8], xk: &[u8]) -> (int32x4_t, int32x4_t, [i32; 8]) {
    let (sc, mn) = crate::quants::kquants::scales_mins_k4(&wk[4..16]);
    let qs = wk[16..144].as_ptr();
    let y = xk.as_ptr().add(4) as *const i8;
    let m4 = vdupq_n_u8(0x0F);
    let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
    for j in 0..4 {
        for part in 0..2 {
            let v = vld1q_u8(qs.add(32 * j + 16 * part));
            let q = [vandq_u8(v, m4), vshrq_n_u8::<4>(v)];
            for (k, q) in q.into_iter().enumerate() {
                // Group 2j + k; elements 16·part .. +16 of it.
                let g = 2 * j + k;
                let s = lanes4(vreinterpretq_s8_u8(q), vld1q_s8(y.add(32 * g + 16 * part)));
                if part == 0 {
                    lo = vmlaq_n_s32(lo, s, sc[g]);
                } else {
                    hi = vmlaq_n_s32(hi, s, sc[g]);
                }
            }
        }
    }
    let bs = bsums(xk);
    (
        lo,
        hi,
        std::array::from_fn(|g| mn[g] * (bs[2 * g] + bs[2 * g + 1])),
    )
}

/// Q4_K · Q8_K in the reference lane order (`kquants::vec_dot_q4_k_q8_k`).
pub fn vec_dot_q4_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / 256;
    assert!(w.len() >= nb * 144 && x.len() >= nb * XB);
    // SAFETY: NEON is part of every aarch64 target; loads stay inside the
    // blocks asserted above.
    unsafe {
        let mut acc: Acc = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        let mut acc_m = [0f32; 4];
        for (wk, xk) in w.chunks_exact(144).zip(x.chunks_exact(XB)).take(nb) {
            let (lo, hi, m) = q4k_block(wk, xk);
            let yd = f32_at(xk, 0);
            let dmin = -yd * f16_at(wk, 2);
            for (i, a) in acc_m.iter_mut().enumerate() {
                *a = dmin.mul_add((m[2 * i] + m[2 * i + 1]) as f32, *a);
            }
            acc = fma8(acc, yd * f16_at(wk, 0), lo, hi);
        }
        hsum8(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]))
    }
}

/// A Q4_K block's exact integers per 32-element group: `(scale·Σ q·y,
/// min·bsum)`.
#[inline(always)]
fn q4k_groups(wk: &[u8], xk: &[u8]) -> ([i32; 8], [i32; 8]) {
    let (sc, mn) = crate::quants::kquants::scales_mins_k4(&wk[4..16]);
    let bs = bsums(xk);
    let y = &xk[4..];
    let mut i = [0i32; 8];
    // SAFETY: NEON is part of every aarch64 target; the loads read
    // qs[32j..32j + 32] of the 144-byte block and y[32g..32g + 32] of
    // the Q8_K block, both checked by the slicing below.
    unsafe {
        let m4 = vdupq_n_u8(0x0F);
        for j in 0..4 {
            let qs = &wk[16 + 32 * j..16 + 32 * j + 32];
            let (v0, v1) = (vld1q_u8(qs.as_ptr()), vld1q_u8(qs.as_ptr().add(16)));
            for (k, (a, b)) in [
                (vandq_u8(v0, m4), vandq_u8(v1, m4)),
                (vshrq_n_u8::<4>(v0), vshrq_n_u8::<4>(v1)),
            ]
            .into_iter()
            .enumerate()
            {
                let g = 2 * j + k;
                let yg = &y[32 * g..32 * g + 32];
                let s = vaddq_s32(
                    lanes4(vreinterpretq_s8_u8(a), vld1q_s8(yg.as_ptr() as *const i8)),
                    lanes4(
                        vreinterpretq_s8_u8(b),
                        vld1q_s8(yg.as_ptr().add(16) as *const i8),
                    ),
                );
                i[g] = sc[g] * vaddvq_s32(s);
            }
        }
    }
    (
        i,
        std::array::from_fn(|g| mn[g] * (bs[2 * g] + bs[2 * g + 1])),
    )
}

/// Q4_K · Q8_K in the 8-row interleaved GEMV order
/// (`kquants::vec_dot_q4_k_q8_k_interleaved`): one exact integer per block.
pub fn vec_dot_q4_k_q8_k_interleaved(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (mut acc, mut acc_m) = (0f32, 0f32);
    for (wk, xk) in w.chunks_exact(144).zip(x.chunks_exact(XB)).take(n / 256) {
        let (i, m) = q4k_groups(wk, xk);
        let (i, m): (i32, i32) = (i.iter().sum(), m.iter().sum());
        let yd = f32_at(xk, 0);
        acc = (i as f32).mul_add(f16_at(wk, 0) * yd, acc);
        acc_m = (m as f32).mul_add(f16_at(wk, 2) * yd, acc_m);
    }
    acc - acc_m
}

/// Q4_K · Q8_K in the interleaved GEMM order
/// (`kquants::vec_dot_q4_k_q8_k_interleaved_gemm`): one FMA per 64
/// elements.
pub fn vec_dot_q4_k_q8_k_interleaved_gemm(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let (mut acc, mut acc_m) = (0f32, 0f32);
    for (wk, xk) in w.chunks_exact(144).zip(x.chunks_exact(XB)).take(n / 256) {
        let (i, m) = q4k_groups(wk, xk);
        let yd = f32_at(xk, 0);
        for sb in 0..4 {
            acc = ((i[2 * sb] + i[2 * sb + 1]) as f32).mul_add(f16_at(wk, 0) * yd, acc);
            acc_m = ((m[2 * sb] + m[2 * sb + 1]) as f32).mul_add(f16_at(wk, 2) * yd, acc_m);
        }
    }
    acc - acc_m
}
