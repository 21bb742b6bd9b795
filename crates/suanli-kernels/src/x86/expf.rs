//! `expf` in 16 lanes with the bits of glibc's scalar `expf` — the one
//! llama.cpp's CPU attention calls once per score, and so the one whose
//! results decode's attention must reproduce to keep llama.cpp's bits.
//!
//! glibc (2.28 on) computes `expf` in double precision: `x·32/ln 2 = k + r`
//! with `k` rounded by adding 1.5·2⁵², `2^(k/32)` from a 32-entry table
//! with `k`'s high bits added to its exponent, a cubic in `r`, one rounding
//! to f32 at the end. Its x86-64 build for CPUs with FMA (the variant its
//! ifunc picks wherever this module's AVX-512 runs) contracts five of the
//! products into FMAs; `expf16` performs that build's operations in that
//! order (read from its machine code) on 8 doubles at a time, so every
//! lane rounds as the scalar call does. Lanes with |x| ≥ 88, ±∞ or NaN,
//! which the scalar code routes elsewhere, call it.
//!
//! Another C library may compute `expf` differently: [`matches_libm`]
//! compares the two on a spread of inputs, and callers keep the scalar
//! call unless they agree.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// `2^(i/32)` as f64 bits, less `i << 47` (the table's index bits, which
/// the shifted `k` adds back along with the exponent).
const TAB: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];
/// 32/ln 2.
const INV_LN2_N: u64 = 0x40471547652b82fe;
/// 1.5·2⁵²: adding it rounds to an integer, kept in the low bits.
const SHIFT: u64 = 0x4338000000000000;
/// The cubic's coefficients of r³, r², r (scaled by 1/32 powers).
const C: [u64; 3] = [0x3ebc6af84b912394, 0x3f2ebfce50fac4f3, 0x3f962e42ff0c52d6];
/// Inputs whose top 12 bits (sign cleared) exceed this (|x| ≥ 88) take
/// the scalar call, as glibc's own special-case branch.
const LAST_TOP: u32 = 0x42a;

#[inline(always)]
unsafe fn set(bits: u64) -> __m512d {
    _mm512_set1_pd(f64::from_bits(bits))
}

/// `expf` of 8 inputs (as doubles), before the rounding to f32.
#[inline(always)]
unsafe fn eight(xd: __m512d, tab: &[__m512i; 4]) -> __m512d {
    let (inv, shift) = (set(INV_LN2_N), set(SHIFT));
    let kd = _mm512_fmadd_pd(inv, xd, shift);
    let ki = _mm512_castpd_si512(kd);
    let kd = _mm512_sub_pd(kd, shift);
    let r = _mm512_fmsub_pd(inv, xd, kd);
    // T[ki % 32] + (ki << 47).
    let low = _mm512_permutex2var_epi64(tab[0], ki, tab[1]);
    let high = _mm512_permutex2var_epi64(tab[2], ki, tab[3]);
    let upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
    let t = _mm512_mask_blend_epi64(upper, low, high);
    let s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64::<47>(ki)));
    let z = _mm512_fmadd_pd(set(C[0]), r, set(C[1]));
    let r2 = _mm512_mul_pd(r, r);
    let y = _mm512_fmadd_pd(set(C[2]), r, _mm512_set1_pd(1.0));
    let y = _mm512_fmadd_pd(z, r2, y);
    _mm512_mul_pd(y, s)
}

/// `expf` of each lane of `x`, bit for bit as glibc's FMA build.
///
/// # Safety
/// The CPU must support AVX-512 F and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn expf16(x: __m512) -> __m512 {
    let tab: [__m512i; 4] =
        std::array::from_fn(|k| _mm512_loadu_si512(TAB[8 * k..].as_ptr() as *const __m512i));
    let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
    let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
        _mm512_castps_pd(x),
    )));
    let (lo, hi) = (
        _mm512_cvtpd_ps(eight(lo, &tab)),
        _mm512_cvtpd_ps(eight(hi, &tab)),
    );
    let y = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
        _mm512_castps_pd(_mm512_castps256_ps512(lo)),
        _mm256_castps_pd(hi),
    ));
    let top = _mm512_and_si512(
        _mm512_srli_epi32::<20>(_mm512_castps_si512(x)),
        _mm512_set1_epi32(0x7ff),
    );
    let special = _mm512_cmpgt_epu32_mask(top, _mm512_set1_epi32(LAST_TOP as i32));
    if special == 0 {
        return y;
    }
    let (mut xs, mut ys) = ([0f32; 16], [0f32; 16]);
    _mm512_storeu_ps(xs.as_mut_ptr(), x);
    _mm512_storeu_ps(ys.as_mut_ptr(), y);
    for l in 0..16 {
        if special & (1 << l) != 0 {
            ys[l] = xs[l].exp();
        }
    }
    _mm512_loadu_ps(ys.as_ptr())
}

/// `expf16` over a slice, in place (tests and the start-up check).
///
/// # Safety
/// As `expf16`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn expf_slice(v: &mut [f32]) {
    for c in v.chunks_mut(16) {
        let mut b = [0f32; 16];
        b[..c.len()].copy_from_slice(c);
        let e = expf16(_mm512_loadu_ps(b.as_ptr()));
        _mm512_storeu_ps(b.as_mut_ptr(), e);
        let n = c.len();
        c.copy_from_slice(&b[..n]);
    }
}

/// Whether `expf16` returns this process's `f32::exp` bits on a spread
/// of inputs (every `stride`-th f32 bit pattern of [-110, 88], the edges of
/// glibc's special cases, ±∞ and NaN). Needs AVX-512 F and FMA (callers
/// check the level first).
pub fn matches_libm(stride: u32) -> bool {
    let stride = stride.max(1) as usize;
    let negative = (0..=0x42dc_0000u32)
        .step_by(stride)
        .map(|b| 0x8000_0000 | b);
    let positive = (0..0x42b0_0000u32).step_by(stride);
    let edges = [
        0.0f32,
        88.0,
        -88.0,
        88.72,
        -103.97,
        -103.28,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]
    .map(f32::to_bits);
    let same = |xs: &[f32]| {
        let mut got = xs.to_vec();
        // SAFETY: the caller checked the CPU (see above).
        unsafe { expf_slice(&mut got) };
        xs.iter()
            .zip(&got)
            .all(|(x, g)| x.exp().to_bits() == g.to_bits())
    };
    let mut buf = Vec::with_capacity(4096);
    for bits in negative.chain(positive).chain(edges) {
        buf.push(f32::from_bits(bits));
        if buf.len() == buf.capacity() {
            if !same(&buf) {
                return false;
            }
            buf.clear();
        }
    }
    same(&buf)
}
