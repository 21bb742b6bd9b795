//! x86-64 fast paths (AVX2 + FMA + F16C), chosen at run time.
//!
//! Each kernel computes exactly what its reference twin in [`crate::quants`]
//! computes, in the same order: 8 lanes of exact integer sums of 4 adjacent
//! products (`maddubs` + `madd`), `acc = fma(d, lane, acc)` per block, the
//! same horizontal sum. So they are bit-identical to the reference, which
//! `tests/fast_paths.rs` checks.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use crate::quants::hsum8;

/// The f16 at byte `off` of `b`, converted by F16C (exact, like any f16→f32).
#[inline(always)]
unsafe fn f16_at(b: &[u8], off: usize) -> f32 {
    let h = u16::from_le_bytes([*b.get_unchecked(off), *b.get_unchecked(off + 1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// Sums of 4 adjacent `u8 × i8` products in 8 i32 lanes.
#[inline(always)]
unsafe fn lanes_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// Sums of 4 adjacent `i8 × i8` products in 8 i32 lanes (|x| ≤ 128 is safe
/// from `maddubs` saturation: 2·128·127 < 2¹⁵).
#[inline(always)]
unsafe fn lanes_i8_i8(x: __m256i, y: __m256i) -> __m256i {
    lanes_u8_i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// 32 nibbles of 16 bytes, low nibbles first (elements 0..16, then 16..32).
#[inline(always)]
unsafe fn nibbles(qs: *const u8) -> __m256i {
    let t = _mm_loadu_si128(qs as *const __m128i);
    let lo = _mm_and_si128(t, _mm_set1_epi8(0x0F));
    let hi = _mm_and_si128(_mm_srli_epi16(t, 4), _mm_set1_epi8(0x0F));
    _mm256_set_m128i(hi, lo)
}

/// The 5th bits of Q5 blocks, as 0x10 in each byte where set.
#[inline(always)]
unsafe fn high_bits(qh: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), shuf);
    let bit = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit), _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

#[inline(always)]
unsafe fn finish(acc: __m256) -> f32 {
    let mut a = [0f32; 8];
    _mm256_storeu_ps(a.as_mut_ptr(), acc);
    hsum8(&a)
}

macro_rules! sym_dot {
    ($name:ident, $wb:expr, $vals:expr) => {
        /// The reference `vec_dot` of this format, with AVX2.
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $name(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = n / 32;
            assert!(w.len() >= nb * $wb && x.len() >= nb * 34);
            let mut acc = _mm256_setzero_ps();
            for i in 0..nb {
                let wk = w.as_ptr().add(i * $wb);
                let xk = x.as_ptr().add(i * 34);
                let d = f16_at(w, i * $wb) * f16_at(x, i * 34);
                let q: __m256i = $vals(wk);
                let y = _mm256_loadu_si256(xk.add(2) as *const __m256i);
                let lanes = lanes_i8_i8(q, y);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc);
            }
            finish(acc)
        }
    };
}

sym_dot!(vec_dot_q8_0_q8_0, 34, |wk: *const u8| _mm256_loadu_si256(
    wk.add(2) as *const __m256i
));
sym_dot!(vec_dot_q4_0_q8_0, 18, |wk: *const u8| _mm256_sub_epi8(
    nibbles(wk.add(2)),
    _mm256_set1_epi8(8)
));
sym_dot!(vec_dot_q5_0_q8_0, 22, |wk: *const u8| {
    let qh = u32::from_le_bytes([*wk.add(2), *wk.add(3), *wk.add(4), *wk.add(5)]);
    _mm256_sub_epi8(
        _mm256_or_si256(nibbles(wk.add(6)), high_bits(qh)),
        _mm256_set1_epi8(16),
    )
});

macro_rules! min_dot {
    ($name:ident, $wb:expr, $vals:expr) => {
        /// The reference `vec_dot` of this format, with AVX2.
        ///
        /// # Safety
        /// The CPU must support AVX2, FMA and F16C.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn $name(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let nb = n / 32;
            assert!(w.len() >= nb * $wb && x.len() >= nb * 36);
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0f32;
            for i in 0..nb {
                let wk = w.as_ptr().add(i * $wb);
                let xk = x.as_ptr().add(i * 36);
                let d = f16_at(w, i * $wb) * f16_at(x, i * 36);
                summs += f16_at(w, i * $wb + 2) * f16_at(x, i * 36 + 2);
                let q: __m256i = $vals(wk);
                let y = _mm256_loadu_si256(xk.add(4) as *const __m256i);
                let lanes = lanes_u8_i8(q, y);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc);
            }
            finish(acc) + summs
        }
    };
}

min_dot!(vec_dot_q4_1_q8_1, 20, |wk: *const u8| nibbles(wk.add(4)));
min_dot!(vec_dot_q5_1_q8_1, 24, |wk: *const u8| {
    let qh = u32::from_le_bytes([*wk.add(4), *wk.add(5), *wk.add(6), *wk.add(7)]);
    _mm256_or_si256(nibbles(wk.add(8)), high_bits(qh))
});
