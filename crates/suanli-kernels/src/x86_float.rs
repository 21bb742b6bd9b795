//! AVX2 twins of the float dot products (F32, F16, BF16 weights against
//! activations of the same type): the reference's eight lanes as one
//! vector, each step a multiply then an add (no FMA, as the reference), the
//! lanes summed in order at the end, the tail element by element — so the
//! bits are the reference's.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// The lanes of `acc` summed from lane 0 up, then `tail` added in order.
#[inline(always)]
unsafe fn finish(acc: __m256, tail: impl Iterator<Item = f32>) -> f32 {
    let mut a = [0f32; 8];
    _mm256_storeu_ps(a.as_mut_ptr(), acc);
    let mut s: f32 = a.iter().sum();
    for v in tail {
        s += v;
    }
    s
}

/// # Safety
/// AVX2, FMA and F16C; `w` and `x` hold `n` f32 each.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(w.len() >= 4 * n && x.len() >= 4 * n);
    let (wp, xp) = (w.as_ptr() as *const f32, x.as_ptr() as *const f32);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let p = _mm256_mul_ps(_mm256_loadu_ps(wp.add(i)), _mm256_loadu_ps(xp.add(i)));
        acc = _mm256_add_ps(acc, p);
        i += 8;
    }
    finish(
        acc,
        (i..n).map(|j| wp.add(j).read_unaligned() * xp.add(j).read_unaligned()),
    )
}

/// # Safety
/// AVX2, FMA and F16C; `w` and `x` hold `n` f16 each.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_f16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && x.len() >= 2 * n);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let ld = |p: *const u8| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_add_ps(acc, _mm256_mul_ps(ld(wp.add(2 * i)), ld(xp.add(2 * i))));
        i += 8;
    }
    let h = |p: *const u8, j: usize| half::f16::from_le_bytes([*p.add(2 * j), *p.add(2 * j + 1)]);
    finish(acc, (i..n).map(|j| h(wp, j).to_f32() * h(xp, j).to_f32()))
}

/// # Safety
/// AVX2, FMA and F16C; `w` and `x` hold `n` bf16 each.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_bf16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && x.len() >= 2 * n);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    // bf16 → f32 is exact: the 16 bits on top of a zero half.
    let ld = |p: *const u8| {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
    };
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_add_ps(acc, _mm256_mul_ps(ld(wp.add(2 * i)), ld(xp.add(2 * i))));
        i += 8;
    }
    let h = |p: *const u8, j: usize| half::bf16::from_le_bytes([*p.add(2 * j), *p.add(2 * j + 1)]);
    finish(acc, (i..n).map(|j| h(wp, j).to_f32() * h(xp, j).to_f32()))
}
