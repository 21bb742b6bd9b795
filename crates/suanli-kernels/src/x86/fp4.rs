//! MXFP4 over runs of rows with AVX-512 VNNI (gpt-oss's experts): two
//! blocks a zmm register — the even block in the low half, the odd one in
//! the high half, which is where the reference keeps its two sets of
//! lanes ([`crate::quants::fp4`]) — codes looked up by `vpshufb`, their
//! products with the Q8_0 activations summed four at a time by `vpdpbusd`
//! (exact), one FMA per pair of blocks; the halves added and summed as the
//! reference ends. The weights are prefetched ahead of the stream.

use std::arch::x86_64::*;

use super::{f16_at, finish, prefetch_ahead};
use crate::quants::fp4::{add_last_block, e8m0_half, BLOCK_BYTES as WB, KVALUES};

/// Tokens a call of [`mxfp4_rows_multi`] takes at most.
pub const MAX_TOKENS: usize = 8;

/// `outs[c][r]` = the reference dot of row `r` of `w` (rows of `n`
/// values, one after another) with the Q8_0 row `xs[c]`, for up to
/// [`MAX_TOKENS`] tokens: each pair of blocks is unpacked once for all of
/// them, and the tokens' activations are laid out first as one zmm a pair
/// of blocks and their scales as one zmm of two broadcasts — every token's
/// sums still in the reference's order.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; every
/// `outs[c]` as long as the rows.
pub unsafe fn mxfp4_rows_multi(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    if std::is_x86_feature_detected!("avx512vbmi") {
        multi_vbmi(n, w, xs, outs)
    } else {
        multi_plain(n, w, xs, outs)
    }
}

/// With AVX-512 VBMI: a pair of blocks' nibbles placed by one `vpermb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn multi_vbmi(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    multi::<true>(n, w, xs, outs)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn multi_plain(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    multi::<false>(n, w, xs, outs)
}

#[inline(always)]
unsafe fn multi<const VBMI: bool>(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    assert!(xs.len() == outs.len() && xs.len() <= MAX_TOKENS);
    let pairs = n / 64;
    // Per token: `pairs` zmm of quants, then `pairs` zmm of scales (and
    // never nothing: a row of one block is all tail).
    let per = (pairs * 128).max(64);
    // The buffer is taken out of the thread's slot and put back: a closure
    // here would not inherit the caller's target features.
    let mut buf = PACKED.with(|b| b.take());
    {
        buf.clear();
        buf.resize(xs.len() * per + 64, 0);
        // 64-byte alignment for the zmm loads.
        let off = buf.as_ptr().align_offset(64);
        let packed = &mut buf[off..off + xs.len() * per];
        for (x, p) in xs.iter().zip(packed.chunks_exact_mut(per)) {
            let (q, d) = p.split_at_mut(pairs * 64);
            for i in 0..2 * pairs {
                q[i * 32..(i + 1) * 32].copy_from_slice(&x[i * 34 + 2..i * 34 + 34]);
                let s = f16_at(x, i * 34).to_le_bytes();
                for l in 0..8 {
                    d[i * 32 + 4 * l..i * 32 + 4 * l + 4].copy_from_slice(&s);
                }
            }
        }
        let pk: Vec<&[u8]> = packed.chunks_exact(per).collect();
        match xs.len() {
            1 => packed_rows::<1, VBMI>(n, w, xs, &pk, outs),
            2 => packed_rows::<2, VBMI>(n, w, xs, &pk, outs),
            3 => packed_rows::<3, VBMI>(n, w, xs, &pk, outs),
            4 => packed_rows::<4, VBMI>(n, w, xs, &pk, outs),
            5 => packed_rows::<5, VBMI>(n, w, xs, &pk, outs),
            6 => packed_rows::<6, VBMI>(n, w, xs, &pk, outs),
            7 => packed_rows::<7, VBMI>(n, w, xs, &pk, outs),
            _ => packed_rows::<8, VBMI>(n, w, xs, &pk, outs),
        }
    }
    PACKED.with(|b| b.replace(buf));
}

thread_local! {
    /// The tokens' activations laid out for [`packed_rows`].
    static PACKED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The kernel over activations laid out by [`mxfp4_rows_multi`]
/// (`packed[c]`: token `c`'s quants a zmm per pair of blocks, then its
/// scales) for `C` tokens; `x` for an odd last block.
#[inline(always)]
unsafe fn packed_rows<const C: usize, const VBMI: bool>(
    n: usize,
    w: &[u8],
    x: &[&[u8]],
    packed: &[&[u8]],
    out: &mut [&mut [f32]],
) {
    assert!(x.len() == C && packed.len() == C && out.len() == C);
    let nb = n / 32;
    let (rb, pairs) = (nb * WB, nb / 2);
    let nrows = out[0].len();
    assert!(rb > 0 && w.len() >= nrows * rb);
    assert!(packed.iter().all(|p| p.len() >= pairs * 128) && out.iter().all(|o| o.len() == nrows));
    let pf = crate::dispatch::prefetch_ahead();
    let table = _mm512_broadcast_i32x4(_mm_loadu_si128(KVALUES.as_ptr() as *const __m128i));
    let m4 = _mm512_set1_epi8(0x0F);
    let zero = _mm512_setzero_si512();
    // Byte j of each 16-byte quarter: code byte j of block 0 (quarters 0
    // and 1) or block 1 (2 and 3); quarters 1 and 3 shift right by 4.
    let pick_bytes: [u8; 64] = std::array::from_fn(|i| {
        let (quarter, j) = (i / 16, i % 16);
        (1 + j + if quarter >= 2 { WB } else { 0 }) as u8
    });
    let pick = _mm512_loadu_si512(pick_bytes.as_ptr() as *const __m512i);
    let shift_words: [u16; 32] = std::array::from_fn(|i| if (i / 8) % 2 == 1 { 4 } else { 0 });
    let shifts = _mm512_loadu_si512(shift_words.as_ptr() as *const __m512i);
    let end = w.as_ptr().add(w.len());
    for (r, row) in w.chunks_exact(rb).take(nrows).enumerate() {
        let mut acc = [_mm512_setzero_ps(); C];
        for k in 0..pairs {
            let wk = row.as_ptr().add(2 * k * WB);
            prefetch_ahead(wk, 2 * WB, pf);
            let t = if VBMI {
                // The pair's 34 bytes (a masked load reads no further),
                // codes of block 0 twice then block 1's twice, the second
                // copy of each shifted to its high nibbles.
                let raw = if wk.add(64) <= end {
                    _mm512_loadu_si512(wk as *const __m512i)
                } else {
                    _mm512_maskz_loadu_epi8((1u64 << (2 * WB)) - 1, wk as *const i8)
                };
                _mm512_srlv_epi16(_mm512_permutexvar_epi8(pick, raw), shifts)
            } else {
                let q0 = _mm_loadu_si128(wk.add(1) as *const __m128i);
                let q1 = _mm_loadu_si128(wk.add(WB + 1) as *const __m128i);
                let t = _mm512_castsi128_si512(q0);
                let t = _mm512_inserti32x4::<1>(t, _mm_srli_epi16::<4>(q0));
                let t = _mm512_inserti32x4::<2>(t, q1);
                _mm512_inserti32x4::<3>(t, _mm_srli_epi16::<4>(q1))
            };
            let q = _mm512_shuffle_epi8(table, _mm512_and_si512(t, m4));
            let (aq, neg) = (_mm512_abs_epi8(q), _mm512_movepi8_mask(q));
            let e = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castps_pd(_mm512_set1_ps(e8m0_half(*wk))),
                _mm256_castps_pd(_mm256_set1_ps(e8m0_half(*wk.add(WB)))),
            ));
            for c in 0..C {
                let y = _mm512_load_si512(packed[c].as_ptr().add(k * 64) as *const __m512i);
                let xd = _mm512_load_ps(packed[c].as_ptr().add((pairs + k) * 64) as *const f32);
                let sy = _mm512_mask_sub_epi8(y, neg, zero, y);
                let lanes = _mm512_dpbusd_epi32(zero, aq, sy);
                // f16(x.d) · e8m0: one rounding, as the reference's d.
                acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(xd, e), _mm512_cvtepi32_ps(lanes), acc[c]);
            }
        }
        for c in 0..C {
            let even = _mm512_castps512_ps256(acc[c]);
            let odd = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc[c])));
            let sum = finish(_mm256_add_ps(even, odd));
            out[c][r] = match 2 * pairs < nb {
                true => last_block(&row[2 * pairs * WB..], &x[c][2 * pairs * 34..], sum),
                false => sum,
            };
        }
    }
}

/// [`add_last_block`] kept out of the kernel's body: inlined there, gpt-oss's
/// pp64 measured 8% below the kernel with its own copy of the tail, out of
/// line 4% (alternating runs; within this guest's noise).
#[inline(never)]
fn last_block(w: &[u8], x: &[u8], sum: f32) -> f32 {
    add_last_block(w, x, sum)
}
