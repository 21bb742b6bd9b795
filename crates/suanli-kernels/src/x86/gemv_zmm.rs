//! One-token (decode) kernels of the 32-element block formats (Q4_0, Q4_1,
//! Q5_0, Q5_1 and, below, Q8_0) over the 4-row layout
//! ([`crate::x86::tile::repack_rows4`]), in 512-bit registers.
//!
//! The reference (`x86.rs`, llama.cpp's AVX2 order) keeps, per output, an
//! 8-lane f32 accumulator: lane `j` gathers `d_w·d_x · Σ w_k·x_k` over the
//! four elements `4j..4j+3` of each block, block after block. Here the four
//! rows' lanes 0–3 (the low nibbles, elements 0–15) live in one register and
//! lanes 4–7 (the high nibbles) in another: lane `4r + j` of each is row
//! `r`'s lane `j` (or `4 + j`), so each lane sees exactly the reference's
//! operations in its order and the results keep its bits. What changes is
//! the count of instructions a block: one pair of word permutes takes the
//! four rows' scales and quants out of the group's bytes, where the 256-bit
//! tile kernel unpacked each row and each scale on its own (13.8 GB/s of
//! Q4_1 from L2 on one core, below the bandwidth two cores share). Each
//! kernel runs over a whole run of groups ([`gemv_groups`]): its index
//! vectors and constants are set up once a run, not once a group (SmolLM2's
//! rows are 18 blocks long).

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use crate::quants::hsum8;
use crate::x86::tile::{Acts, Strides, GR};

/// Where a format keeps its fields in a block of `bb` bytes.
struct Format {
    bb: usize,
    /// Byte offset of the min (`m`), for formats with one.
    min: Option<usize>,
    /// Byte offset of the 32 high bits of Q5 formats.
    qh: Option<usize>,
    /// Byte offset of the 16 bytes of nibbles.
    qs: usize,
}

const Q4_0: Format = Format {
    bb: 18,
    min: None,
    qh: None,
    qs: 2,
};
const Q4_1: Format = Format {
    bb: 20,
    min: Some(2),
    qh: None,
    qs: 4,
};
const Q5_0: Format = Format {
    bb: 22,
    min: None,
    qh: Some(2),
    qs: 6,
};
const Q5_1: Format = Format {
    bb: 24,
    min: Some(2),
    qh: Some(4),
    qs: 8,
};

/// The `vpermt2w` index of word `w` of a group read as two 64-byte
/// vectors loaded at words `lo` and `hi`.
const fn place(w: usize, lo: usize, hi: usize) -> u16 {
    if w >= lo && w < lo + 32 {
        (w - lo) as u16
    } else {
        assert!(w >= hi && w < hi + 32);
        (32 + w - hi) as u16
    }
}

/// The `vpermt2w` index of the 16-bit word at byte `at` of a 4-row group
/// (`4·bb` bytes) read as two 64-byte vectors: its first and its last 64
/// bytes.
const fn word(f: &Format, at: usize) -> u16 {
    assert!(at.is_multiple_of(2) && 4 * f.bb >= 64 && at + 2 <= 4 * f.bb);
    place(at / 2, 0, (4 * f.bb - 64) / 2)
}

/// The permute taking the group's four rows of nibbles, row `r` at bytes
/// `16r..16r+16`.
const fn quant_index(f: &Format) -> [u16; 32] {
    let mut idx = [0u16; 32];
    let mut k = 0;
    while k < 32 {
        idx[k] = word(f, (k / 8) * f.bb + f.qs + 2 * (k % 8));
        k += 1;
    }
    idx
}

/// [`quant_index`] in 32-bit lanes, for the formats whose rows of nibbles
/// start on 4-byte boundaries (`vpermt2d`: a little faster than `vpermt2w`
/// on the Intel cores measured).
const fn quant_index_dwords(f: &Format) -> Option<[u32; 16]> {
    if !(f.bb.is_multiple_of(4) && f.qs.is_multiple_of(4)) {
        return None;
    }
    let words = quant_index(f);
    let mut idx = [0u32; 16];
    let mut k = 0;
    while k < 16 {
        assert!(words[2 * k].is_multiple_of(2) && words[2 * k + 1] == words[2 * k] + 1);
        idx[k] = words[2 * k] as u32 / 2;
        k += 1;
    }
    Some(idx)
}

/// The permute taking the group's scales: words 0–3 the rows' `d`, 4–7
/// their `m`, 8–11 the low and 12–15 the high halves of their Q5 bits.
const fn scale_index(f: &Format) -> [u16; 32] {
    let mut idx = [0u16; 32];
    let mut r = 0;
    while r < 4 {
        idx[r] = word(f, r * f.bb);
        if let Some(m) = f.min {
            idx[4 + r] = word(f, r * f.bb + m);
        }
        if let Some(h) = f.qh {
            idx[8 + r] = word(f, r * f.bb + h);
            idx[12 + r] = word(f, r * f.bb + h + 2);
        }
        r += 1;
    }
    idx
}

#[inline(always)]
unsafe fn index(i: &[u16; 32]) -> __m512i {
    _mm512_loadu_si512(i.as_ptr() as *const __m512i)
}

macro_rules! gemv_zmm {
    ($name:ident, $f:expr, $xq:expr, $off:expr) => {
        /// `out[4g + r] = w_4g+r · x` for `groups` consecutive 4-row
        /// groups (`Strides::rows4`) and one activation row, with the
        /// reference's bits (the set-up once for all the groups).
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(n: usize, w: &[u8], groups: usize, a: Acts, out: &mut [f32]) {
            const F: Format = $f;
            const GB: usize = 4 * F.bb;
            const QI: [u16; 32] = quant_index(&F);
            const QD: Option<[u32; 16]> = quant_index_dwords(&F);
            const SI: [u16; 32] = scale_index(&F);
            const MIN: bool = F.min.is_some();
            const SIGNED: bool = $off != 0;
            let nb = n / 32;
            let xb = if MIN { 36 } else { 34 };
            assert!(nb > 0 && w.len() >= groups * nb * GB && a.x.len() >= nb * xb);
            assert!(out.len() >= GR * groups);
            assert!(a.xs.len() >= if MIN { 2 } else { 1 } * nb);
            assert!(!SIGNED || a.init.len() >= nb * 8);
            let pf = crate::dispatch::prefetch_ahead();
            let (qi, si) = (index(&QI), index(&SI));
            let qd = match &QD {
                Some(d) => _mm512_loadu_si512(d.as_ptr() as *const __m512i),
                None => qi,
            };
            // Lane 4r + j ← lane r of the 4 (or 8) scale products.
            let spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
            let m4 = _mm512_set1_epi8(0x0F);
            let (xp, xs, ip) = (a.x.as_ptr(), a.xs.as_ptr(), a.init.as_ptr());
            for (g, out) in out[..GR * groups].chunks_exact_mut(GR).enumerate() {
                let wp = w.as_ptr().add(g * nb * GB);
                let (mut lo_acc, mut hi_acc) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                let mut summs = _mm256_setzero_ps();
                for i in 0..nb {
                    let wk = wp.add(i * GB);
                    crate::x86::prefetch_ahead(wk, GB, pf);
                    let v1 = _mm512_loadu_si512(wk as *const __m512i);
                    let v2 = _mm512_loadu_si512(wk.add(GB - 64) as *const __m512i);
                    let s = _mm512_permutex2var_epi16(v1, si, v2);
                    let q = match QD {
                        Some(_) => _mm512_permutex2var_epi32(v1, qd, v2),
                        None => _mm512_permutex2var_epi16(v1, qi, v2),
                    };
                    // [d_w·d_x per row | m_w·s_x per row], rounded as the
                    // reference's scalar products.
                    let dm = _mm256_cvtph_ps(_mm512_castsi512_si128(s));
                    let dx = _mm256_broadcast_ss(&*xs.add(i));
                    let p = if MIN {
                        let sx = _mm256_broadcast_ss(&*xs.add(nb + i));
                        _mm256_mul_ps(dm, _mm256_blend_ps::<0xF0>(dx, sx))
                    } else {
                        _mm256_mul_ps(dm, dx)
                    };
                    if MIN {
                        summs = _mm256_add_ps(summs, p);
                    }
                    let d = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(p));
                    let mut lo = _mm512_and_si512(q, m4);
                    let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4);
                    if F.qh.is_some() {
                        let hh = _mm256_extracti128_si256::<1>(_mm512_castsi512_si256(s));
                        let klo = _mm_cvtsi128_si64(hh) as u64;
                        let khi = _mm_extract_epi64::<1>(hh) as u64;
                        lo = _mm512_mask_add_epi8(lo, klo, lo, _mm512_set1_epi8(0x10));
                        hi = _mm512_mask_add_epi8(hi, khi, hi, _mm512_set1_epi8(0x10));
                    }
                    let xk = xp.add(i * xb + $xq);
                    let ylo = _mm512_broadcast_i32x4(_mm_loadu_si128(xk as *const __m128i));
                    let yhi = _mm512_broadcast_i32x4(_mm_loadu_si128(xk.add(16) as *const __m128i));
                    let (ilo, ihi) = if SIGNED {
                        let init = ip.add(i * 8) as *const __m128i;
                        (
                            _mm512_broadcast_i32x4(_mm_loadu_si128(init)),
                            _mm512_broadcast_i32x4(_mm_loadu_si128(init.add(1))),
                        )
                    } else {
                        (_mm512_setzero_si512(), _mm512_setzero_si512())
                    };
                    let slo = _mm512_dpbusd_epi32(ilo, lo, ylo);
                    let shi = _mm512_dpbusd_epi32(ihi, hi, yhi);
                    lo_acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(slo), lo_acc);
                    hi_acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(shi), hi_acc);
                }
                let (mut l, mut h, mut m) = ([0f32; 16], [0f32; 16], [0f32; 8]);
                _mm512_storeu_ps(l.as_mut_ptr(), lo_acc);
                _mm512_storeu_ps(h.as_mut_ptr(), hi_acc);
                _mm256_storeu_ps(m.as_mut_ptr(), summs);
                for (r, o) in out.iter_mut().enumerate() {
                    let mut lanes = [0f32; 8];
                    lanes[..4].copy_from_slice(&l[4 * r..4 * r + 4]);
                    lanes[4..].copy_from_slice(&h[4 * r..4 * r + 4]);
                    // (No `+ 0.0` without a min: it would turn −0 into +0.)
                    *o = if MIN {
                        hsum8(&lanes) + m[4 + r]
                    } else {
                        hsum8(&lanes)
                    };
                }
            }
        }
    };
}

// The Q8_0 activations' quants start 2 bytes into a block, Q8_1's 4 bytes.
// The signed formats run on unsigned bytes offset by their zero point, the
// excess taken out by the lanes' starts (`Acts::init`), as in x86::tile.
gemv_zmm!(g4_0, Q4_0, 2, 8);
gemv_zmm!(g4_1, Q4_1, 4, 0);
gemv_zmm!(g5_0, Q5_0, 2, 16);
gemv_zmm!(g5_1, Q5_1, 4, 0);

/// The `vpermt2w` index taking words `words` (of a group's bytes) from
/// two 64-byte vectors loaded at words `lo` and `hi`.
const fn pick(words: [usize; 32], lo: usize, hi: usize) -> [u16; 32] {
    let mut idx = [0u16; 32];
    let mut k = 0;
    while k < 32 {
        idx[k] = place(words[k], lo, hi);
        k += 1;
    }
    idx
}

/// Words `at + k` for `k` in 0..16, then `at2 + k`.
const fn two_rows(at: usize, at2: usize) -> [usize; 32] {
    let mut w = [0usize; 32];
    let mut k = 0;
    while k < 16 {
        w[k] = at + k;
        w[16 + k] = at2 + k;
        k += 1;
    }
    w
}

/// Q8_0 (34-byte blocks, 136 a group) over `groups` groups: each row's 8
/// lanes in one half of a register (rows 0–1 in one, 2–3 in the other), its
/// 32 quants taken by a word permute of the group's three 64-byte windows;
/// the weights run as unsigned bytes (+128), the excess taken out by the
/// lanes' starts. A block costs what the 256-bit kernel's does; the gain is
/// the set-up once a run (0.5B: its output and V projections).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn g8_0(n: usize, w: &[u8], groups: usize, a: Acts, out: &mut [f32]) {
    const BB: usize = 34;
    const GB: usize = 4 * BB;
    // Windows at bytes 0, 64 and GB − 64: words 0, 32 and 36.
    const W2: usize = (GB - 64) / 2;
    // Row r's quants start at word 17r + 1, its scale at word 17r.
    const IA: [u16; 32] = pick(two_rows(1, 18), 0, 32);
    const IB: [u16; 32] = pick(two_rows(35, 52), 32, W2);
    const IS: [u16; 32] = {
        let mut w = [0usize; 32];
        let mut r = 0;
        while r < 4 {
            w[r] = 17 * r;
            r += 1;
        }
        pick(w, 0, 32)
    };
    let nb = n / 32;
    assert!(nb > 0 && w.len() >= groups * nb * GB && a.x.len() >= nb * BB);
    assert!(out.len() >= GR * groups);
    assert!(a.xs.len() >= nb && a.init.len() >= nb * 8);
    let pf = crate::dispatch::prefetch_ahead();
    let (ia, ib, is) = (index(&IA), index(&IB), index(&IS));
    let s01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let s23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    let bias = _mm512_set1_epi8(-128);
    let (xp, xs, ip) = (a.x.as_ptr(), a.xs.as_ptr(), a.init.as_ptr());
    for (g, out) in out[..GR * groups].chunks_exact_mut(GR).enumerate() {
        let wp = w.as_ptr().add(g * nb * GB);
        let (mut acc01, mut acc23) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for i in 0..nb {
            let wk = wp.add(i * GB);
            crate::x86::prefetch_ahead(wk, GB, pf);
            let v0 = _mm512_loadu_si512(wk as *const __m512i);
            let v1 = _mm512_loadu_si512(wk.add(64) as *const __m512i);
            let v2 = _mm512_loadu_si512(wk.add(GB - 64) as *const __m512i);
            let d = _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(
                v0, is, v1,
            )));
            let p = _mm512_castps128_ps512(_mm_mul_ps(d, _mm_broadcast_ss(&*xs.add(i))));
            let qa = _mm512_xor_si512(_mm512_permutex2var_epi16(v0, ia, v1), bias);
            let qb = _mm512_xor_si512(_mm512_permutex2var_epi16(v1, ib, v2), bias);
            let y =
                _mm512_broadcast_i64x4(_mm256_loadu_si256(xp.add(i * BB + 2) as *const __m256i));
            let init = _mm512_broadcast_i64x4(_mm256_loadu_si256(ip.add(i * 8) as *const __m256i));
            let sa = _mm512_dpbusd_epi32(init, qa, y);
            let sb = _mm512_dpbusd_epi32(init, qb, y);
            acc01 = _mm512_fmadd_ps(_mm512_permutexvar_ps(s01, p), _mm512_cvtepi32_ps(sa), acc01);
            acc23 = _mm512_fmadd_ps(_mm512_permutexvar_ps(s23, p), _mm512_cvtepi32_ps(sb), acc23);
        }
        let mut l = [0f32; 32];
        _mm512_storeu_ps(l.as_mut_ptr(), acc01);
        _mm512_storeu_ps(l.as_mut_ptr().add(16), acc23);
        for (r, o) in out.iter_mut().enumerate() {
            let mut lanes = [0f32; 8];
            lanes.copy_from_slice(&l[8 * r..8 * r + 8]);
            *o = hsum8(&lanes);
        }
    }
}

/// `out[4g + r] = w_4g+r · x` for `groups` consecutive groups of the
/// 4-row layout: the decode kernel over a whole run of a matrix.
pub(crate) type GemvGroups = fn(n: usize, w: &[u8], groups: usize, a: Acts, out: &mut [f32]);

macro_rules! entry {
    ($($safe:ident, $groups:ident => $zmm:ident, $tile:ident, $bb:expr);* $(;)?) => {
        $(
            /// The 4-row layout in 512-bit registers; other layouts through
            /// the 256-bit tile kernel.
            pub(crate) fn $safe(n: usize, w: &[u8], ws: Strides, a: Acts, out: &mut [[f32; 1]; GR]) {
                if ws.row == $bb && ws.block == 4 * $bb {
                    let mut o = [0f32; GR];
                    // SAFETY: handed out by `gemv_dot` only at Level::Avx512.
                    unsafe { $zmm(n, w, 1, a, &mut o) };
                    for (d, s) in out.iter_mut().zip(o) {
                        d[0] = s;
                    }
                } else {
                    crate::x86::tile::$tile(n, w, ws, a, out)
                }
            }

            fn $groups(n: usize, w: &[u8], groups: usize, a: Acts, out: &mut [f32]) {
                // SAFETY: handed out by `gemv_groups` only at Level::Avx512.
                unsafe { $zmm(n, w, groups, a, out) }
            }
        )*
    };
}

entry! {
    z_g4_0, r_g4_0 => g4_0, s_g4_0_vnni, 18;
    z_g4_1, r_g4_1 => g4_1, s_g4_1_vnni, 20;
    z_g5_0, r_g5_0 => g5_0, s_g5_0_vnni, 22;
    z_g5_1, r_g5_1 => g5_1, s_g5_1_vnni, 24;
}

fn r_g8_0(n: usize, w: &[u8], groups: usize, a: Acts, out: &mut [f32]) {
    // SAFETY: handed out by `gemv_groups` only at Level::Avx512.
    unsafe { g8_0(n, w, groups, a, out) }
}

/// The whole-run decode kernel of `ty` over the 4-row layout, where this
/// module has one (AVX-512 VNNI).
pub(crate) fn gemv_groups(ty: crate::DType) -> Option<GemvGroups> {
    use crate::DType::*;
    if crate::dispatch::level() != crate::dispatch::Level::Avx512 {
        return None;
    }
    let f: GemvGroups = match ty {
        Q8_0 => r_g8_0,
        Q4_0 => r_g4_0,
        Q4_1 => r_g4_1,
        Q5_0 => r_g5_0,
        Q5_1 => r_g5_1,
        _ => return None,
    };
    Some(f)
}
