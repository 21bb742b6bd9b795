//! x86-64 fast paths (AVX2 + FMA + F16C), chosen at run time.
//!
//! Each kernel computes exactly what its reference twin in [`crate::quants`]
//! computes, in the same order: 8 lanes of exact integer sums of 4 adjacent
//! products (`maddubs` + `madd`), `acc = fma(d, lane, acc)` per block, the
//! same horizontal sum. So they are bit-identical to the reference, which
//! `tests/fast_paths.rs` checks.
//!
//! Every x86 kernel of the crate lives in this folder, behind the one
//! `cfg(target_arch = "x86_64")` on this module: register tiles ([`tile`],
//! [`tile_u8`]), K-quant tiles ([`kquant`]), repacked layouts ([`q4k_r16`],
//! [`q6k_r16`], [`q6k_planes`], [`r16`]), float kernels ([`float`]), the
//! 16-lane `expf` ([`expf`]) and the decode walks over row groups.

#![allow(unsafe_op_in_unsafe_fn)]

pub mod expf;
pub mod float;
pub mod fp4;
pub(crate) mod gemv_zmm;
pub mod kquant;
pub mod q4k_r16;
pub mod q6k_planes;
pub mod q6k_r16;
pub mod r16;
pub mod tile;
pub mod tile_u8;
pub(crate) mod walk;

use std::arch::x86_64::*;

use crate::quants::hsum8;

/// The f16 at byte `off` of `b`, converted by F16C (exact, like any f16→f32).
#[inline(always)]
pub(crate) unsafe fn f16_at(b: &[u8], off: usize) -> f32 {
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
pub(crate) unsafe fn nibbles(qs: *const u8) -> __m256i {
    let t = _mm_loadu_si128(qs as *const __m128i);
    let lo = _mm_and_si128(t, _mm_set1_epi8(0x0F));
    let hi = _mm_and_si128(_mm_srli_epi16(t, 4), _mm_set1_epi8(0x0F));
    _mm256_set_m128i(hi, lo)
}

/// The 5th bits of Q5 blocks, as 0x10 in each byte where set.
#[inline(always)]
pub(crate) unsafe fn high_bits(qh: u32) -> __m256i {
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

/// Prefetches with hint `H` every cache line that starts in `[lo, hi)`.
#[inline(always)]
fn prefetch_lines<const H: i32>(lo: usize, hi: usize) {
    let mut a = lo.next_multiple_of(64);
    while a < hi {
        // SAFETY: a prefetch reads nothing and never faults.
        unsafe { _mm_prefetch::<H>(a as *const i8) };
        a += 64;
    }
}

/// Software prefetch into L1 of every line of `[p, p + len)`.
#[inline(always)]
pub(crate) fn prefetch_l1(p: *const u8, len: usize) {
    let at = p as usize;
    prefetch_lines::<_MM_HINT_T0>(at & !63, at + len);
}

/// Software prefetch into L2 of the head of a run of weights a thread is
/// about to stream, its first [`crate::dispatch::prefetch_ahead`] bytes:
/// the part [`prefetch_ahead`] never covers. Nothing where that is 0.
#[inline(always)]
pub(crate) fn prefetch_head(run: &[u8]) {
    let at = run.as_ptr() as usize;
    let len = run.len().min(crate::dispatch::prefetch_ahead());
    prefetch_lines::<_MM_HINT_T1>(at & !63, at + len);
}

/// Software prefetch into L2 of a weight stream `ahead` bytes in front of
/// the span `[p, p + len)` a kernel is about to read, and into L1
/// [`crate::dispatch::L1_AHEAD`] bytes in front of it: the lines holding
/// every 64th byte of the span's shadow from its first, `⌈len / 64⌉` of
/// them — consecutive spans fetch every line, a line at most twice — and
/// a count fixed by `len` alone (a format's block or group, a constant
/// where the kernel inlines this), where asking for the lines that start
/// in the shadow took 3 or 4 a 210-byte Q6_K block, a loop whose count
/// hung on the address (Q6_K planes over 1536×8960 matrices, alternating
/// in one process: 25.6 → 26.2 GB/s). ([`crate::dispatch::prefetch_ahead`].)
/// `ahead == 0` fetches nothing.
#[inline(always)]
pub(crate) fn prefetch_ahead(p: *const u8, len: usize, ahead: usize) {
    if ahead != 0 {
        let (l2, l1) = (p as usize + ahead, p as usize + crate::dispatch::L1_AHEAD);
        for i in 0..len.div_ceil(64) {
            // SAFETY: a prefetch reads nothing and never faults.
            unsafe { _mm_prefetch::<_MM_HINT_T1>((l2 + 64 * i) as *const i8) };
        }
        for i in 0..len.div_ceil(64) {
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((l1 + 64 * i) as *const i8) };
        }
    }
}

/// The L2 prefetch of [`prefetch_ahead`] alone, in the lines that start in the span's shadow
/// (1 or 2 for a 4-row group of Q5_0, say): the fewest prefetches, for
/// the AVX2 decode tile ([`crate::x86::tile`]), whose arithmetic already
/// bounds it — Qwen2.5-Coder-0.5B tg32 under `SUANLI_ISA=avx2` on the
/// Intel guest: 45.8 t/s so, 42.1 with the fixed count, 39.9 with the L1
/// stage too.
#[inline(always)]
pub(crate) fn prefetch_shadow_l2(p: *const u8, len: usize, ahead: usize) {
    if ahead != 0 {
        let at = p as usize + ahead;
        prefetch_lines::<_MM_HINT_T1>(at, at + len);
    }
}

#[inline(always)]
pub(crate) unsafe fn finish(acc: __m256) -> f32 {
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

/// MXFP4's reference `vec_dot` ([`crate::quants::fp4`]) with AVX2: codes
/// looked up by `vpshufb`, even and odd blocks in two accumulators.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_mxfp4_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    use crate::quants::fp4::{add_last_block, e8m0_half, BLOCK_BYTES as WB, KVALUES};
    let nb = n / 32;
    assert!(w.len() >= nb * WB && x.len() >= nb * 34);
    let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES.as_ptr() as *const __m128i));
    let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 1 < nb {
        let (w0, x0) = (w.as_ptr().add(i * WB), x.as_ptr().add(i * 34));
        let (w1, x1) = (w0.add(WB), x0.add(34));
        let d0 = f16_at(x, i * 34) * e8m0_half(*w0);
        let d1 = f16_at(x, (i + 1) * 34) * e8m0_half(*w1);
        let q0 = _mm256_shuffle_epi8(table, nibbles(w0.add(1)));
        let q1 = _mm256_shuffle_epi8(table, nibbles(w1.add(1)));
        let l0 = lanes_i8_i8(q0, _mm256_loadu_si256(x0.add(2) as *const __m256i));
        let l1 = lanes_i8_i8(q1, _mm256_loadu_si256(x1.add(2) as *const __m256i));
        even = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(l0), even);
        odd = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(l1), odd);
        i += 2;
    }
    let sum = finish(_mm256_add_ps(even, odd));
    match i < nb {
        true => add_last_block(&w[i * WB..], &x[i * 34..], sum),
        false => sum,
    }
}

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

/// Horizontal sum of 8 exact integer lanes (order-free).
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let mut a = [0i32; 8];
    _mm256_storeu_si256(a.as_mut_ptr() as *mut __m256i, v);
    a.iter().sum()
}

/// The 6-bit scales and mins of a Q4_K block (as `scale_min_k4`), unpacked
/// with word-wide masks: bytes 0–3 hold the low scales and mins whole;
/// bytes 8–11 the low nibbles of the high ones, whose top bits ride in
/// bits 6–7 of bytes 0–7.
#[inline(always)]
pub(crate) fn q4k_scales(q: &[u8]) -> ([i16; 8], [i32; 8]) {
    let (s, m) = q4k_scale_bytes(q);
    let (s, m) = (s.to_le_bytes(), m.to_le_bytes());
    (
        std::array::from_fn(|j| s[j] as i16),
        std::array::from_fn(|j| m[j] as i32),
    )
}

/// [`q4k_scales`] as two words of eight bytes: (scales, mins).
#[inline(always)]
pub(crate) fn q4k_scale_bytes(q: &[u8]) -> (u64, u64) {
    const M6: u32 = 0x3f3f_3f3f;
    const M4: u32 = 0x0f0f_0f0f;
    const M2: u32 = 0x0303_0303;
    let u = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let sc_lo = u0 & M6;
    let sc_hi = (u2 & M4) | (((u0 >> 6) & M2) << 4);
    let mn_lo = u1 & M6;
    let mn_hi = ((u2 >> 4) & M4) | (((u1 >> 6) & M2) << 4);
    (
        sc_lo as u64 | (sc_hi as u64) << 32,
        mn_lo as u64 | (mn_hi as u64) << 32,
    )
}

/// Q4_K in the interleaved orders (see
/// `kquants::vec_dot_q4_k_q8_k_interleaved{,_gemm}`): `per_chunk` selects one
/// FMA per 64 elements (GEMM) instead of one per block (GEMV).
#[inline(always)]
unsafe fn q4k_interleaved(n: usize, w: &[u8], x: &[u8], per_chunk: bool) -> f32 {
    q4k_blocks(
        n,
        w,
        x,
        if per_chunk {
            Q4kOrder::Gemm
        } else {
            Q4kOrder::Gemv
        },
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Q4kOrder {
    Gemv,
    Gemm,
    Tiled,
}

/// One Q4_K row · one Q8_K row in `order`. The integer sums are exact, so
/// the per-block orders add all four chunks' lanes first and reduce once.
#[inline(always)]
unsafe fn q4k_blocks(n: usize, w: &[u8], x: &[u8], order: Q4kOrder) -> f32 {
    const XB: usize = 4 + 256 + 32;
    let nb = n / 256;
    assert!(w.len() >= nb * 144 && x.len() >= nb * XB);
    let (mut acc, mut acc_m, mut out) = (0f32, 0f32, 0f32);
    let m4 = _mm256_set1_epi8(0x0F);
    for i in 0..nb {
        let wk = &w[i * 144..(i + 1) * 144];
        let xk = &x[i * XB..(i + 1) * XB];
        let (d, dmin) = (f16_at(wk, 0), f16_at(wk, 2));
        let (sc, mn) = q4k_scales(&wk[4..16]);
        let yd = f32::from_le_bytes([xk[0], xk[1], xk[2], xk[3]]);
        // Σ_g mn[g]·(bsums[2g] + bsums[2g+1]) in lanes g.
        let bsums = _mm256_loadu_si256(xk.as_ptr().add(260) as *const __m256i);
        let mins = _mm256_set_epi16(
            mn[7] as i16,
            mn[7] as i16,
            mn[6] as i16,
            mn[6] as i16,
            mn[5] as i16,
            mn[5] as i16,
            mn[4] as i16,
            mn[4] as i16,
            mn[3] as i16,
            mn[3] as i16,
            mn[2] as i16,
            mn[2] as i16,
            mn[1] as i16,
            mn[1] as i16,
            mn[0] as i16,
            mn[0] as i16,
        );
        let mlanes = _mm256_madd_epi16(bsums, mins);
        let mut vsum = _mm256_setzero_si256();
        for j in 0..4 {
            let q = _mm256_loadu_si256(wk.as_ptr().add(16 + 32 * j) as *const __m256i);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            let ylo = _mm256_loadu_si256(xk.as_ptr().add(4 + 64 * j) as *const __m256i);
            let yhi = _mm256_loadu_si256(xk.as_ptr().add(4 + 64 * j + 32) as *const __m256i);
            let plo =
                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_set1_epi16(sc[2 * j]));
            let phi = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, yhi),
                _mm256_set1_epi16(sc[2 * j + 1]),
            );
            let v = _mm256_add_epi32(plo, phi);
            if order == Q4kOrder::Gemm {
                let mut ml = [0i32; 8];
                _mm256_storeu_si256(ml.as_mut_ptr() as *mut __m256i, mlanes);
                let (ij, mj) = (hsum_i32(v), ml[2 * j] + ml[2 * j + 1]);
                acc = (ij as f32).mul_add(d * yd, acc);
                acc_m = (mj as f32).mul_add(dmin * yd, acc_m);
            } else {
                vsum = _mm256_add_epi32(vsum, v);
            }
        }
        let (isum, msum) = (hsum_i32(vsum), hsum_i32(mlanes));
        match order {
            Q4kOrder::Gemv => {
                acc = (isum as f32).mul_add(d * yd, acc);
                acc_m = (msum as f32).mul_add(dmin * yd, acc_m);
            }
            Q4kOrder::Tiled => {
                let r = (-dmin).mul_add(msum as f32, isum as f32 * d);
                out = r.mul_add(yd, out);
            }
            Q4kOrder::Gemm => {}
        }
    }
    match order {
        Q4kOrder::Tiled => out,
        _ => acc - acc_m,
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q4k_blocks(n, w, x, Q4kOrder::Tiled)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_q8_k_interleaved(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q4k_interleaved(n, w, x, false)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q4_k_q8_k_interleaved_gemm(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q4k_interleaved(n, w, x, true)
}

/// Q6_K · Q8_K in the reference lane order (`kquants::vec_dot_q6_k_q8_k`):
/// unsigned 6-bit values in 8 lanes per 32-element chunk, the 32-offset
/// removed per lane through the block sums, one FMA per block.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q6k::<false>(n, w, x)
}

/// Q6_K in the tiled GEMM order (`kquants::vec_dot_q6_k_q8_k_tiled`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q6k::<true>(n, w, x)
}

#[inline(always)]
unsafe fn q6k<const TILED: bool>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q6k_multi::<TILED, 1>(n, w, [x], 0)[0]
}

/// [`vec_dot_q6_k_q8_k`] of every row of `w` (`out.len()` rows of `n`
/// elements, one after another) with `x`, into `out`, each block's lines
/// prefetched into L2 [`crate::dispatch::prefetch_ahead`] bytes ahead:
/// decode's runs of rows at the AVX2 level, where a call per row left the
/// stream to the hardware prefetchers — Qwen2.5-1.5B's 191 MB output took
/// 13.7 ms a token under `SUANLI_ISA=avx2` (14 GB/s on two threads).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q6k_rows_avx2(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
    let rb = n / 256 * 210;
    assert!(w.len() >= out.len() * rb);
    let pf = crate::dispatch::prefetch_ahead();
    for (o, row) in out.iter_mut().zip(w.chunks_exact(rb.max(1))) {
        *o = q6k_multi::<false, 1>(n, row, [x], pf)[0];
    }
}

/// `pf`: how far ahead to prefetch the weights into L2 (0: not at all).
#[inline(always)]
unsafe fn q6k_multi<const TILED: bool, const C: usize>(
    n: usize,
    w: &[u8],
    x: [&[u8]; C],
    pf: usize,
) -> [f32; C] {
    const XB: usize = 4 + 256 + 32;
    let mut out = [0f32; C];
    let nb = n / 256;
    assert!(w.len() >= nb * 210 && x.iter().all(|x| x.len() >= nb * XB));
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(0x03);
    let mut acc = [_mm256_setzero_ps(); C];
    for i in 0..nb {
        let wk = &w[i * 210..(i + 1) * 210];
        prefetch_shadow_l2(wk.as_ptr(), 210, pf);
        let wd = f16_at(wk, 208);
        // The 16 group scales, and for chunk k the pair (2k, 2k+1) spread
        // over the two 8-lane halves: one byte shuffle and one widening each.
        let sc8 = _mm_loadu_si128(wk.as_ptr().add(192) as *const __m128i);
        let mut q = [_mm256_setzero_si256(); 8];
        for half in 0..2 {
            let ql0 = _mm256_loadu_si256(wk.as_ptr().add(64 * half) as *const __m256i);
            let ql1 = _mm256_loadu_si256(wk.as_ptr().add(64 * half + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(wk.as_ptr().add(128 + 32 * half) as *const __m256i);
            q[4 * half] = _mm256_or_si256(
                _mm256_and_si256(ql0, m4),
                _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
            );
            q[4 * half + 1] = _mm256_or_si256(
                _mm256_and_si256(ql1, m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4),
            );
            q[4 * half + 2] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4),
            );
            q[4 * half + 3] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4),
            );
        }
        let s: [__m256i; 8] = std::array::from_fn(|k| {
            let (lo, hi) = (2 * k as i8, 2 * k as i8 + 1);
            let pick = _mm_set_epi8(
                hi, hi, hi, hi, hi, hi, hi, hi, lo, lo, lo, lo, lo, lo, lo, lo,
            );
            _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick))
        });
        let scales = _mm256_cvtepi8_epi16(sc8);
        for c in 0..C {
            let xk = &x[c][i * XB..(i + 1) * XB];
            let yd = f32::from_le_bytes([xk[0], xk[1], xk[2], xk[3]]);
            let mut sumi = _mm256_setzero_si256();
            for k in 0..8 {
                let y = _mm256_loadu_si256(xk.as_ptr().add(4 + 32 * k) as *const __m256i);
                sumi =
                    _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], y), s[k]));
            }
            let bsums = _mm256_loadu_si256(xk.as_ptr().add(260) as *const __m256i);
            let corr = _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales), 5);
            sumi = _mm256_sub_epi32(sumi, corr);
            if TILED {
                // Tiled order: the block's exact integer, scaled by the
                // weight's d then by the activation's, accumulated with an FMA.
                let r = hsum_i32(sumi) as f32 * wd;
                out[c] = r.mul_add(yd, out[c]);
            } else {
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(yd * wd), _mm256_cvtepi32_ps(sumi), acc[c]);
            }
        }
    }
    if !TILED {
        for c in 0..C {
            out[c] = finish(acc[c]);
        }
    }
    out
}

/// The byte shuffles that spread a Q6_K block's scales over its four
/// 64-value vectors (AVX-512): i16 position p of the k-th vector takes
/// scale 4k + p/8, so its 128-bit lane j holds scale 4k + j in every word.
/// Lane j takes it from a copy of the words 0–7 (k < 2) or 8–15 (k ≥ 2) by
/// a byte shuffle within the lane (word 4(k mod 2) + j): cheaper than a
/// word permute across the register (+10% on cache-resident rows).
#[inline(always)]
pub(crate) unsafe fn q6k_scale_pick() -> [__m512i; 2] {
    const PICK: [[i8; 64]; 2] = {
        let mut t = [[0i8; 64]; 2];
        let mut i = 0;
        while i < 128 {
            let (k, b) = (i / 64, i % 64);
            let word = 4 * k + b / 16;
            t[k][b] = (2 * word + b % 2) as i8;
            i += 1;
        }
        t
    };
    std::array::from_fn(|k| _mm512_loadu_si512(PICK[k].as_ptr() as *const __m512i))
}

/// [`vec_dot_q6_k_q8_k`] with AVX-512 (the reference lane order, the same
/// bits). A block's 256 weights unpack into four zmm of unsigned 6-bit
/// values, 64 elements each; `vpmaddubsw` pairs them with the activations
/// and `vpdpwssd` applies the 16-element scales while summing each
/// 4-element lane. Lane `L` of the k-th zmm holds what lane `L mod 8` of
/// the AVX2 kernel sums for its 32-element group `2k + L/8`, so adding the
/// two halves gives its eight integers exactly — in about half the
/// instructions (decode of Q6_K had been compute-bound under two threads'
/// memory bandwidth).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn vec_dot_q6_k_q8_k_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut out = [0f32];
    q6k_rows_avx512(n, w, x, &mut out);
    out[0]
}

/// [`vec_dot_q6_k_q8_k_avx512`] of every row of `w` (`out.len()` rows of
/// `n` elements, one after another) with `x`, into `out`: decode's runs of
/// rows in one call (the output matrix's rows are only six blocks long, so
/// a call per row spent a fifth of its time outside the blocks).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q6k_rows_avx512(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
    const XB: usize = 4 + 256 + 32;
    let nb = n / 256;
    assert!(w.len() >= out.len() * nb * 210 && x.len() >= nb * XB);
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    // Word shifts that bring each half's high-bit pair to bits 4–5: for the
    // low nibbles qh bits 0–1 (first 32 bytes) and 2–3 (last 32); for the
    // high nibbles bits 4–5 and 6–7.
    let shl = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(2));
    let shr = _mm512_inserti64x4::<1>(_mm512_set1_epi16(0), _mm256_set1_epi16(2));
    let pick = q6k_scale_pick();
    for (r, o) in out.iter_mut().enumerate() {
        let wr = w.as_ptr().add(r * nb * 210);
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let wk = wr.add(i * 210);
            let xk = x.as_ptr().add(i * XB);
            let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(wk.add(192) as *const __m128i));
            let sc = [
                _mm512_broadcast_i32x4(_mm256_castsi256_si128(scales)),
                _mm512_broadcast_i32x4(_mm256_extracti128_si256::<1>(scales)),
            ];
            let mut sumi = _mm512_setzero_si512();
            for half in 0..2 {
                let ql = _mm512_loadu_si512(wk.add(64 * half) as *const __m512i);
                let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    wk.add(128 + 32 * half) as *const __m256i
                ));
                let hl = _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m30);
                let hh = _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m30);
                // (a & b) | c
                let lo = _mm512_ternarylogic_epi32::<0xEA>(ql, m4, hl);
                let hi = _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi16::<4>(ql), m4, hh);
                for (j, q) in [lo, hi].into_iter().enumerate() {
                    let k = 2 * half + j;
                    let y = _mm512_loadu_si512(xk.add(4 + 64 * k) as *const __m512i);
                    let s = _mm512_shuffle_epi8(sc[k / 2], pick[k % 2]);
                    sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q, y), s);
                }
            }
            let sumi = _mm256_add_epi32(
                _mm512_castsi512_si256(sumi),
                _mm512_extracti64x4_epi64::<1>(sumi),
            );
            let bsums = _mm256_loadu_si256(xk.add(260) as *const __m256i);
            let corr = _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales), 5);
            let yd = std::ptr::read_unaligned(xk as *const f32);
            let wd = f16_at(std::slice::from_raw_parts(wk, 210), 208);
            acc = _mm256_fmadd_ps(
                _mm256_set1_ps(yd * wd),
                _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, corr)),
                acc,
            );
        }
        *o = finish(acc);
    }
}

/// Q5_K · Q8_K. `TILED`: the tiled GEMM order
/// (`kquants::vec_dot_q5_k_q8_k_tiled`: one exact integer per block, the
/// min term and `d_x` by FMAs); else the reference lane order
/// (`kquants::vec_dot_q5_k_q8_k`: eight lanes per block by FMA, the min
/// term a scalar running sum).
#[inline(always)]
unsafe fn q5k<const TILED: bool>(n: usize, w: &[u8], x: &[u8]) -> f32 {
    const WB: usize = 176;
    const XB: usize = 4 + 256 + 32;
    let nb = n / 256;
    assert!(w.len() >= nb * WB && x.len() >= nb * XB);
    let m4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    let (mut summs, mut out) = (0f32, 0f32);
    for i in 0..nb {
        let wk = &w[i * WB..(i + 1) * WB];
        let xk = &x[i * XB..(i + 1) * XB];
        let dw = half::f16::from_le_bytes([wk[0], wk[1]]).to_f32();
        let dmw = half::f16::from_le_bytes([wk[2], wk[3]]).to_f32();
        let yd = f32::from_le_bytes([xk[0], xk[1], xk[2], xk[3]]);
        let (sc, mn) = q4k_scales(&wk[4..16]);
        let bs = |k: usize| i16::from_le_bytes([xk[260 + 2 * k], xk[261 + 2 * k]]) as i32;
        let m: i32 = (0..8).map(|g| mn[g] * (bs(2 * g) + bs(2 * g + 1))).sum();
        let qh = _mm256_loadu_si256(wk.as_ptr().add(16) as *const __m256i);
        let mut vsum = _mm256_setzero_si256();
        for j in 0..4 {
            let q = _mm256_loadu_si256(wk.as_ptr().add(48 + 32 * j) as *const __m256i);
            let hbit = |c: i32| {
                let b = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(c)), one);
                _mm256_slli_epi16::<4>(b)
            };
            let lo = _mm256_or_si256(_mm256_and_si256(q, m4), hbit(2 * j as i32));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                hbit(2 * j as i32 + 1),
            );
            let ylo = _mm256_loadu_si256(xk.as_ptr().add(4 + 64 * j) as *const __m256i);
            let yhi = _mm256_loadu_si256(xk.as_ptr().add(4 + 64 * j + 32) as *const __m256i);
            let plo =
                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_set1_epi16(sc[2 * j]));
            let phi = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, yhi),
                _mm256_set1_epi16(sc[2 * j + 1]),
            );
            vsum = _mm256_add_epi32(vsum, _mm256_add_epi32(plo, phi));
        }
        if TILED {
            let mut r = hsum_i32(vsum) as f32 * dw;
            if dmw != 0.0 || mn.iter().any(|&v| v != 0) {
                r = (-dmw).mul_add(m as f32, r);
            }
            out = r.mul_add(yd, out);
        } else {
            let d = yd * dw;
            let dmin = -yd * dmw;
            summs += dmin * m as f32;
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(vsum), acc);
        }
    }
    if TILED {
        out
    } else {
        finish(acc) + summs
    }
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_k_q8_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q5k::<false>(n, w, x)
}

/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn vec_dot_q5_k_q8_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    q5k::<true>(n, w, x)
}
