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

/// A float weight format as the dot products above read it: eight values
/// widened to f32 lanes, and one value for the tail.
pub trait FloatLanes {
    /// Bytes per value.
    const SIZE: usize;
    /// # Safety
    /// Eight values readable at `p`; the CPU has AVX2 and F16C.
    unsafe fn lanes(p: *const u8) -> __m256;
    /// # Safety
    /// One value readable at `p`.
    unsafe fn one(p: *const u8) -> f32;
}

pub struct F32s;
pub struct F16s;
pub struct Bf16s;

impl FloatLanes for F32s {
    const SIZE: usize = 4;
    #[inline(always)]
    unsafe fn lanes(p: *const u8) -> __m256 {
        _mm256_loadu_ps(p as *const f32)
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        (p as *const f32).read_unaligned()
    }
}

impl FloatLanes for F16s {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn lanes(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        half::f16::from_le_bytes([*p, *p.add(1)]).to_f32()
    }
}

impl FloatLanes for Bf16s {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn lanes(p: *const u8) -> __m256 {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
    }
    #[inline(always)]
    unsafe fn one(p: *const u8) -> f32 {
        half::bf16::from_le_bytes([*p, *p.add(1)]).to_f32()
    }
}

/// `R` weight rows (`wrb` bytes apart from `w`) × `C` activation rows
/// (`xrb` apart from `x`) of `n` values each: every output summed exactly
/// as [`vec_dot_f32`] and its twins sum it (eight lanes, a multiply then
/// an add per step, the lanes in order, then the tail) — the prefill tile,
/// each weight and activation vector widened once for `C` or `R` outputs.
///
/// # Safety
/// The rows are in bounds; the CPU has AVX2, FMA and F16C.
#[inline(always)]
pub unsafe fn float_tile<L: FloatLanes, const R: usize, const C: usize>(
    n: usize,
    w: &[u8],
    wrb: usize,
    x: &[u8],
    xrb: usize,
    o: &mut [[f32; C]; R],
) {
    assert!(
        w.len() >= (R - 1) * wrb + n * L::SIZE && x.len() >= (C - 1) * xrb + n * L::SIZE,
        "float tile out of bounds"
    );
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut i = 0;
    while i + 8 <= n {
        let ws: [__m256; R] = std::array::from_fn(|r| L::lanes(wp.add(r * wrb + i * L::SIZE)));
        for c in 0..C {
            let xv = L::lanes(xp.add(c * xrb + i * L::SIZE));
            for r in 0..R {
                acc[r][c] = _mm256_add_ps(acc[r][c], _mm256_mul_ps(ws[r], xv));
            }
        }
        i += 8;
    }
    for r in 0..R {
        for c in 0..C {
            o[r][c] = finish(
                acc[r][c],
                (i..n).map(|j| {
                    L::one(wp.add(r * wrb + j * L::SIZE)) * L::one(xp.add(c * xrb + j * L::SIZE))
                }),
            );
        }
    }
}

/// [`float_tile`] of 4 rows × 4 tokens with the 32 vector registers of
/// AVX-512 (16 accumulators stay in registers).
///
/// # Safety
/// As [`float_tile`]; the CPU has AVX-512 F/VL too.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
pub unsafe fn float_tile_4x4<L: FloatLanes>(
    n: usize,
    w: &[u8],
    wrb: usize,
    x: &[u8],
    xrb: usize,
    o: &mut [[f32; 4]; 4],
) {
    float_tile::<L, 4, 4>(n, w, wrb, x, xrb, o)
}

/// [`float_tile`] of 4 rows × 1 token (the tokens past the last tile).
///
/// # Safety
/// As [`float_tile`].
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn float_tile_4x1<L: FloatLanes>(
    n: usize,
    w: &[u8],
    wrb: usize,
    x: &[u8],
    _xrb: usize,
    o: &mut [[f32; 1]; 4],
) {
    float_tile::<L, 4, 1>(n, w, wrb, x, 0, o)
}

/// The 16 lanes' sum in [`crate::attention::reduce16`]'s order: upper half
/// onto lower, again, then (0 + 2) + (1 + 3).
#[inline(always)]
pub(crate) unsafe fn hsum16(v: __m512) -> f32 {
    let t3 = _mm256_add_ps(
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
        _mm512_castps512_ps256(v),
    );
    let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
    let u = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
    _mm_cvtss_f32(_mm_add_ss(u, _mm_movehdup_ps(u)))
}

/// How a zmm tile steps through 16-bit weights and activations: `STEP`
/// elements per step, the last step read under a mask (zeros past `n`).
pub trait ZmmStep {
    const STEP: usize;
    /// Bytes of one activation value.
    const XB: usize = 2;
    type V: Copy;
    /// # Safety
    /// `min(k, STEP)` values readable at `p`; the CPU has the features.
    unsafe fn load(p: *const u8, k: usize) -> Self::V;
    /// An activation step ([`Self::load`] unless the activations are
    /// stored otherwise).
    ///
    /// # Safety
    /// As [`Self::load`].
    #[inline(always)]
    unsafe fn load_x(p: *const u8, k: usize) -> Self::V {
        Self::load(p, k)
    }
    /// # Safety
    /// The CPU has the features.
    unsafe fn madd(acc: __m512, w: Self::V, x: Self::V) -> __m512;
}

/// AVX512_BF16: `vdpbf16ps`, two products per f32 lane and step (32
/// elements), the odd one added first — the order of
/// [`crate::quants::float::vec_dot_bf16_dp`].
pub struct Bf16Dp;

impl ZmmStep for Bf16Dp {
    const STEP: usize = 32;
    type V = __m512bh;
    #[inline(always)]
    unsafe fn load(p: *const u8, k: usize) -> __m512bh {
        let m: __mmask32 = if k >= 32 { !0 } else { (1u32 << k) - 1 };
        std::mem::transmute(_mm512_maskz_loadu_epi16(m, p as *const i16))
    }
    #[inline(always)]
    unsafe fn madd(acc: __m512, w: __m512bh, x: __m512bh) -> __m512 {
        _mm512_dpbf16_ps(acc, w, x)
    }
}

/// F16 widened to 16 f32 lanes and an FMA per step — the order of
/// [`crate::quants::float::vec_dot_f16_zmm_tile`].
pub struct F16Fma;

impl ZmmStep for F16Fma {
    const STEP: usize = 16;
    type V = __m512;
    #[inline(always)]
    unsafe fn load(p: *const u8, k: usize) -> __m512 {
        let m: __mmask16 = if k >= 16 { !0 } else { (1u16 << k) - 1 };
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p as *const i16))
    }
    #[inline(always)]
    unsafe fn madd(acc: __m512, w: __m512, x: __m512) -> __m512 {
        _mm512_fmadd_ps(w, x, acc)
    }
}

/// [`F16Fma`] with the activations already widened to f32 (once per
/// product, not once per tile): the same FMAs on the same values, half the
/// conversions in a tile's inner loop.
pub struct F16FmaWide;

impl ZmmStep for F16FmaWide {
    const STEP: usize = 16;
    const XB: usize = 4;
    type V = __m512;
    #[inline(always)]
    unsafe fn load(p: *const u8, k: usize) -> __m512 {
        F16Fma::load(p, k)
    }
    #[inline(always)]
    unsafe fn load_x(p: *const u8, k: usize) -> __m512 {
        let m: __mmask16 = if k >= 16 { !0 } else { (1u16 << k) - 1 };
        _mm512_maskz_loadu_ps(m, p as *const f32)
    }
    #[inline(always)]
    unsafe fn madd(acc: __m512, w: __m512, x: __m512) -> __m512 {
        F16Fma::madd(acc, w, x)
    }
}

/// `R` 16-bit weight rows (`wrb` bytes apart) × `C` activation rows (`xrb`
/// apart, `S::XB` bytes a value) of `n` values: one zmm accumulator per output stepped by `S`,
/// then the lanes summed as [`crate::attention::reduce16`] sums them.
///
/// # Safety
/// The rows are in bounds; the CPU has `S`'s features.
#[inline(always)]
unsafe fn zmm_tile<S: ZmmStep, const R: usize, const C: usize>(
    n: usize,
    w: &[u8],
    wrb: usize,
    x: &[u8],
    xrb: usize,
    o: &mut [[f32; C]; R],
) {
    assert!(
        w.len() >= (R - 1) * wrb + 2 * n && x.len() >= (C - 1) * xrb + S::XB * n,
        "zmm tile out of bounds"
    );
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    // Whole steps with a constant (all-ones) mask, then the last one.
    let whole = n / S::STEP * S::STEP;
    for i in (0..whole).step_by(S::STEP) {
        zmm_step::<S, R, C>(wp, wrb, xp, xrb, i, S::STEP, &mut acc);
    }
    if whole < n {
        zmm_step::<S, R, C>(wp, wrb, xp, xrb, whole, n - whole, &mut acc);
    }
    for r in 0..R {
        for c in 0..C {
            o[r][c] = hsum16(acc[r][c]);
        }
    }
}

/// One step of [`zmm_tile`] at element `i`, `k` values left.
#[inline(always)]
unsafe fn zmm_step<S: ZmmStep, const R: usize, const C: usize>(
    wp: *const u8,
    wrb: usize,
    xp: *const u8,
    xrb: usize,
    i: usize,
    k: usize,
    acc: &mut [[__m512; C]; R],
) {
    let ws: [S::V; R] = std::array::from_fn(|r| S::load(wp.add(r * wrb + 2 * i), k));
    for c in 0..C {
        let xv = S::load_x(xp.add(c * xrb + S::XB * i), k);
        for r in 0..R {
            acc[r][c] = S::madd(acc[r][c], ws[r], xv);
        }
    }
}

/// The target-feature entry points of a [`ZmmStep`]: `$dot`, one row · one
/// activation row in `$one`'s order (16-bit activations); `$tile`, 4 rows ×
/// `$c` tokens, and `$tail`, 4 rows × 1 token, over `$step`'s activations.
/// Each is [`zmm_tile`] with `$features` enabled.
macro_rules! zmm_entry_points {
    ($features:literal, $dot:ident: $one:ty, $tile:ident: $step:ty, $c:literal, $tail:ident) => {
        /// One row · one activation row (see `zmm_entry_points!`).
        ///
        /// # Safety
        /// The CPU has the features; `w` and `x` hold `n` values each.
        #[target_feature(enable = $features)]
        pub unsafe fn $dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let mut o = [[0f32; 1]; 1];
            zmm_tile::<$one, 1, 1>(n, w, 0, x, 0, &mut o);
            o[0][0]
        }

        /// A tile of 4 rows × several tokens (see `zmm_entry_points!`).
        ///
        /// # Safety
        /// As `zmm_tile`, and the CPU has the features.
        #[target_feature(enable = $features)]
        pub unsafe fn $tile(
            n: usize,
            w: &[u8],
            wrb: usize,
            x: &[u8],
            xrb: usize,
            o: &mut [[f32; $c]; 4],
        ) {
            zmm_tile::<$step, 4, $c>(n, w, wrb, x, xrb, o)
        }

        /// A tile's one-token tail (see `zmm_entry_points!`).
        ///
        /// # Safety
        /// As `zmm_tile`, and the CPU has the features.
        #[target_feature(enable = $features)]
        pub unsafe fn $tail(
            n: usize,
            w: &[u8],
            wrb: usize,
            x: &[u8],
            _xrb: usize,
            o: &mut [[f32; 1]; 4],
        ) {
            zmm_tile::<$step, 4, 1>(n, w, wrb, x, 0, o)
        }
    };
}

// BF16 by AVX512_BF16 dot products: 4 × 4 tiles (4 × 6 measured no faster).
zmm_entry_points!(
    "avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma",
    vec_dot_bf16_dp: Bf16Dp,
    bf16_dp_tile_4x4: Bf16Dp,
    4,
    bf16_dp_tile_4x1
);

// F16 widened and FMA'd: llama.cpp's 4 × 6 tiles over f32 activations.
zmm_entry_points!(
    "avx512f,avx512bw,avx512vl,avx2,fma,f16c",
    vec_dot_f16_zmm_tile: F16Fma,
    f16_zmm_tile_4x6: F16FmaWide,
    6,
    f16_zmm_tile_4x1
);

/// [`crate::quants::float::vec_dot_bf16_dp_gemv`]: ggml's BF16 dot product
/// with AVX512_BF16 (two accumulators over 64-element steps, f64 sums).
///
/// # Safety
/// AVX-512 F/BW/VL and BF16; `w` and `x` hold `n` bf16 each.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")]
pub unsafe fn vec_dot_bf16_dp_gemv(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && x.len() >= 2 * n);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let ld = |p: *const u8| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(p as *const _)) };
    let (mut c1, mut c2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let whole = n / 64 * 64;
    for i in (0..whole).step_by(64) {
        c1 = _mm512_dpbf16_ps(c1, ld(wp.add(2 * i)), ld(xp.add(2 * i)));
        c2 = _mm512_dpbf16_ps(c2, ld(wp.add(2 * i + 64)), ld(xp.add(2 * i + 64)));
    }
    let mut sum = hsum16(c1) as f64;
    sum += hsum16(c2) as f64;
    let h = |p: *const u8, j: usize| half::bf16::from_le_bytes([*p.add(2 * j), *p.add(2 * j + 1)]);
    for j in whole..n {
        sum += (h(wp, j).to_f32() * h(xp, j).to_f32()) as f64;
    }
    sum as f32
}

/// [`crate::quants::float::vec_dot_f16_zmm_gemv`]: ggml's F16 dot product
/// with AVX-512.
///
/// # Safety
/// AVX-512 F and F16C; `w` and `x` hold `n` f16 each.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub unsafe fn vec_dot_f16_zmm_gemv(n: usize, w: &[u8], x: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && x.len() >= 2 * n);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let ld = |p: *const u8| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
    let np = n & !63;
    let mut a = [_mm512_setzero_ps(); 4];
    for i in (0..np).step_by(64) {
        for (j, a) in a.iter_mut().enumerate() {
            let e = 2 * (i + 16 * j);
            *a = _mm512_fmadd_ps(ld(wp.add(e)), ld(xp.add(e)), *a);
        }
    }
    let v = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
    let mut s = hsum16(v) as f64;
    let h = |p: *const u8, j: usize| half::f16::from_le_bytes([*p.add(2 * j), *p.add(2 * j + 1)]);
    for e in np..n {
        s += (h(wp, e).to_f32() * h(xp, e).to_f32()) as f64;
    }
    s as f32
}
