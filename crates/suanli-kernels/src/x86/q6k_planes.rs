//! Q6_K re-laid at load for decoding (same 210 bytes a block, rows still
//! one after another): the 6-bit values in three 64-byte planes that need
//! about half the instructions to unpack. Byte `j` of plane `p` (`p` = 0,
//! 1, 2) holds value `64p + j` (0–63, the stored +32 form) in bits 0–5 and
//! bits `2p, 2p + 1` of value `192 + j` in bits 6–7; the 16 scales and `d`
//! stay where Q6_K has them (bytes 192–209).
//!
//! Unpacking a block is then three `and`s for the first 192 values and, for
//! the last 64, three GF(2) affine byte maps (`vgf2p8affineqb`, one per
//! plane, each moving bits 6–7 to their place and clearing the rest) and
//! one three-way `or` — 7 instructions where Q6_K's own layout takes 14.
//! Every kernel over this layout computes exactly the integers of the
//! Q6_K kernels it replaces, so results keep their bits.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// Bytes of one block (as Q6_K).
pub const BLOCK: usize = 210;

/// Value `e` (0–63) of a block in Q6_K's own layout: per half of 128
/// values, `ql[64]` holds the low nibbles of values `l` (bits 0–3) and
/// `l + 64` (bits 4–7) for `l < 64`, `qh[32]` the high pairs of `l`,
/// `l + 32`, `l + 64`, `l + 96` at bits 0, 2, 4, 6.
#[inline(always)]
fn q6_k_value(b: &[u8], e: usize) -> u8 {
    let (h, l) = (e / 128, e % 128);
    let lo = (b[64 * h + l % 64] >> (4 * (l / 64))) & 0xF;
    let hi = (b[128 + 32 * h + l % 32] >> (2 * (l / 32))) & 3;
    lo | hi << 4
}

/// The planes layout of one Q6_K block.
pub fn plane_block(src: &[u8], dst: &mut [u8]) {
    let (src, dst) = (&src[..BLOCK], &mut dst[..BLOCK]);
    for j in 0..64 {
        let top = q6_k_value(src, 192 + j);
        for p in 0..3 {
            dst[64 * p + j] = q6_k_value(src, 64 * p + j) | ((top >> (2 * p)) & 3) << 6;
        }
    }
    dst[192..].copy_from_slice(&src[192..]);
}

/// Q6_K's own layout of one block in the planes layout.
pub fn unplane_block(src: &[u8], dst: &mut [u8]) {
    let value = |e: usize| -> u8 {
        match e / 64 {
            3 => (0..3).fold(0, |v, p| v | (src[64 * p + e % 64] >> 6) << (2 * p)),
            p => src[64 * p + e % 64] & 0x3F,
        }
    };
    // Q6_K's layout, as `q6_k_value` reads it.
    for half in 0..2 {
        let (ql, qh) = (64 * half, 128 + 32 * half);
        for l in 0..64 {
            let e = 128 * half + l;
            dst[ql + l] = (value(e) & 0xF) | (value(e + 64) & 0xF) << 4;
        }
        for l in 0..32 {
            let e = 128 * half + l;
            dst[qh + l] = (0..4).fold(0, |v, i| v | (value(e + 32 * i) >> 4) << (2 * i));
        }
    }
    dst[192..BLOCK].copy_from_slice(&src[192..BLOCK]);
}

/// `vgf2p8affineqb` matrices taking bits 6–7 of each byte to bits `2p,
/// 2p + 1` (byte `7 − i` of the matrix selects the inputs of output bit i).
const TOP_TO: [i64; 3] = [
    0x4080_0000_0000_0000,
    0x0000_4080_0000_0000,
    0x0000_0000_4080_0000,
];

/// The four 64-value vectors of a block at `wk` (values `64k ..`).
#[inline(always)]
unsafe fn values(wk: *const u8) -> [__m512i; 4] {
    let m = _mm512_set1_epi8(0x3F);
    let p: [__m512i; 3] = std::array::from_fn(|i| _mm512_loadu_si512(wk.add(64 * i) as *const _));
    let top: [__m512i; 3] = std::array::from_fn(|i| {
        _mm512_gf2p8affine_epi64_epi8::<0>(p[i], _mm512_set1_epi64(TOP_TO[i]))
    });
    [
        _mm512_and_si512(p[0], m),
        _mm512_and_si512(p[1], m),
        _mm512_and_si512(p[2], m),
        // a | b | c
        _mm512_ternarylogic_epi32::<0xFE>(top[0], top[1], top[2]),
    ]
}

/// Row dot products over rows in the planes layout: every row of `w`
/// (`out.len()` rows of `n` elements) with `x`, into `out`. `TILED`: the
/// tiled order (`kquants::vec_dot_q6_k_q8_k_tiled`: one exact integer per
/// block, `r = i·d_w`, `out = r·d_x + out`), else the reference lane order
/// of [`crate::x86::q6k_rows_avx512`] (the integers of its eight lanes,
/// one FMA per block) — the same bits as those kernels on Q6_K's layout.
#[inline(always)]
unsafe fn rows_in<const TILED: bool>(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
    const XB: usize = 4 + 256 + 32;
    let nb = n / 256;
    assert!(w.len() >= out.len() * nb * BLOCK && x.len() >= nb * XB);
    let pick = scale_words();
    let pf = crate::dispatch::prefetch_ahead();
    for (r, o) in out.iter_mut().enumerate() {
        let wr = w.as_ptr().add(r * nb * BLOCK);
        let mut acc = _mm256_setzero_ps();
        let mut sum = 0f32;
        for i in 0..nb {
            let (wk, xk) = (wr.add(i * BLOCK), x.as_ptr().add(i * XB));
            crate::x86::prefetch_ahead(wk, BLOCK, pf);
            let v = block_ints(wk, xk, &pick);
            let yd = std::ptr::read_unaligned(xk as *const f32);
            let wd = f16_at(wk.add(208));
            if TILED {
                let i = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(v));
                sum = (i as f32 * wd).mul_add(yd, sum);
            } else {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * wd), _mm256_cvtepi32_ps(v), acc);
            }
        }
        *o = if TILED { sum } else { crate::x86::finish(acc) };
    }
}

/// A block unpacked: its 256 values in four vectors, its scales as words,
/// and those spread over the four vectors' words.
struct Unpacked {
    q: [__m512i; 4],
    scales: __m256i,
    s: [__m512i; 4],
}

#[inline(always)]
unsafe fn unpack(wk: *const u8, pick: &[__m512i; 4]) -> Unpacked {
    let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(wk.add(192) as *const __m128i));
    let sc = _mm512_castsi256_si512(scales);
    Unpacked {
        q: values(wk),
        scales,
        s: std::array::from_fn(|k| _mm512_permutexvar_epi16(pick[k], sc)),
    }
}

/// The exact integers of the eight reference lanes of the block at `wk`
/// against the Q8_K block at `xk` (`pick`: [`scale_words`]).
#[inline(always)]
unsafe fn block_ints(wk: *const u8, xk: *const u8, pick: &[__m512i; 4]) -> __m256i {
    unpacked_ints(&unpack(wk, pick), xk)
}

/// [`block_ints`] of a block already unpacked.
#[inline(always)]
unsafe fn unpacked_ints(u: &Unpacked, xk: *const u8) -> __m256i {
    let scales = u.scales;
    // Two chains: each vpdpwssd waits for the previous one's sum.
    let mut sums = [_mm512_setzero_si512(); 2];
    for (k, q) in u.q.iter().enumerate() {
        let y = _mm512_loadu_si512(xk.add(4 + 64 * k) as *const __m512i);
        sums[k % 2] = _mm512_dpwssd_epi32(sums[k % 2], _mm512_maddubs_epi16(*q, y), u.s[k]);
    }
    let sumi = _mm512_add_epi32(sums[0], sums[1]);
    let sumi = _mm256_add_epi32(
        _mm512_castsi512_si256(sumi),
        _mm512_extracti64x4_epi64::<1>(sumi),
    );
    let bsums = _mm256_loadu_si256(xk.add(260) as *const __m256i);
    let corr = _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales), 5);
    _mm256_sub_epi32(sumi, corr)
}

/// `vpermw` indices spreading a block's 16 scales (words, sign-extended)
/// over its four 64-value vectors as `q6k_rows_avx512`'s shuffles do: word
/// `w` of vector `k` takes scale `4k + w/8`. One permute a vector from the
/// scales as loaded — here, where the GF(2) unpacking already fills the
/// multiply pipes, cheaper than two broadcasts and a byte shuffle each
/// (13.5 → 13.1 ticks a block, `examples/decode_kernels`).
#[inline(always)]
unsafe fn scale_words() -> [__m512i; 4] {
    std::array::from_fn(|k| {
        let idx: [i16; 32] = std::array::from_fn(|w| (4 * k + w / 8) as i16);
        _mm512_loadu_si512(idx.as_ptr() as *const __m512i)
    })
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
        std::ptr::read_unaligned(p as *const u16) as i32,
    )))
}

/// Every row of `w` (planes layout) with `x`, in the reference lane order.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, GFNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
pub unsafe fn rows(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
    rows_in::<false>(n, w, x, out)
}

/// Every row of `w` (planes layout) with `x`, in the tiled order (as
/// [`dot_tiled`] row by row).
///
/// # Safety
/// As [`rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
pub unsafe fn rows_tiled(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
    rows_in::<true>(n, w, x, out)
}

/// [`rows`] (`tiled` false) or [`rows_tiled`] for up to four tokens at
/// once: `outs[t][r]` = row `r` · `xs[t]`, each block unpacked once for
/// all of them (each output the one-token kernel's bits).
///
/// # Safety
/// As [`rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
pub unsafe fn rows_multi(tiled: bool, n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    match (tiled, xs.len()) {
        (_, 0) => {}
        (true, 1) => multi::<true, 1>(n, w, xs, outs),
        (true, 2) => multi::<true, 2>(n, w, xs, outs),
        (true, 3) => multi::<true, 3>(n, w, xs, outs),
        (true, _) => multi::<true, 4>(n, w, xs, outs),
        (false, 1) => multi::<false, 1>(n, w, xs, outs),
        (false, 2) => multi::<false, 2>(n, w, xs, outs),
        (false, 3) => multi::<false, 3>(n, w, xs, outs),
        (false, _) => multi::<false, 4>(n, w, xs, outs),
    }
}

#[inline(always)]
unsafe fn multi<const TILED: bool, const T: usize>(
    n: usize,
    w: &[u8],
    xs: &[&[u8]],
    outs: &mut [&mut [f32]],
) {
    const XB: usize = 4 + 256 + 32;
    let nb = n / 256;
    assert!(xs.len() >= T && outs.len() >= T);
    let rows = outs[0].len();
    assert!(w.len() >= rows * nb * BLOCK);
    assert!((0..T).all(|t| xs[t].len() >= nb * XB && outs[t].len() == rows));
    let pick = scale_words();
    let pf = crate::dispatch::prefetch_ahead();
    for r in 0..rows {
        let wr = w.as_ptr().add(r * nb * BLOCK);
        let mut acc = [_mm256_setzero_ps(); T];
        let mut sum = [0f32; T];
        for i in 0..nb {
            let wk = wr.add(i * BLOCK);
            crate::x86::prefetch_ahead(wk, BLOCK, pf);
            let u = unpack(wk, &pick);
            let wd = f16_at(wk.add(208));
            for t in 0..T {
                let xk = xs[t].as_ptr().add(i * XB);
                let v = unpacked_ints(&u, xk);
                let yd = std::ptr::read_unaligned(xk as *const f32);
                if TILED {
                    let i = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(v));
                    sum[t] = (i as f32 * wd).mul_add(yd, sum[t]);
                } else {
                    acc[t] =
                        _mm256_fmadd_ps(_mm256_set1_ps(yd * wd), _mm256_cvtepi32_ps(v), acc[t]);
                }
            }
        }
        for t in 0..T {
            outs[t][r] = if TILED {
                sum[t]
            } else {
                crate::x86::finish(acc[t])
            };
        }
    }
}

/// One row (planes layout) · `x` in the reference lane order.
///
/// # Safety
/// As [`rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
pub unsafe fn dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut o = [0f32];
    rows_in::<false>(n, w, x, &mut o);
    o[0]
}

/// One row (planes layout) · `x` in the tiled order.
///
/// # Safety
/// As [`rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
pub unsafe fn dot_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut o = [0f32];
    rows_in::<true>(n, w, x, &mut o);
    o[0]
}

/// [`crate::x86::kquant::q6_k_tiled_x8_vnni`] over a row in the planes
/// layout (the same bits).
///
/// # Safety
/// As [`rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,gfni,avx2,fma,f16c")]
pub unsafe fn tiled_x8_vnni(
    blocks: std::ops::Range<usize>,
    w: &[u8],
    a: &crate::x86::kquant::KActs,
    st: &mut crate::x86::kquant::KState,
) {
    crate::x86::kquant::q6_k_tiled_x8_vnni_in(blocks, w, a, st, |wk, q| {
        for (k, v) in values(wk).into_iter().enumerate() {
            _mm512_store_si512(q.0.as_mut_ptr().add(64 * k) as *mut __m512i, v);
        }
    })
}
