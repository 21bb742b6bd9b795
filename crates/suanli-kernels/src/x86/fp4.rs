//! MXFP4 over runs of rows with AVX-512 VNNI (gpt-oss's experts), rows in
//! the planes layout ([`crate::quants::fp4::to_planes`]: a row's scale
//! bytes, then its codes, a pair's interleaved four bytes by four). Two
//! blocks a zmm register: a pair's 32 code bytes broadcast to both halves,
//! low nibbles in the first half and high ones in the second, looked up as
//! twice their E2M1 value (signed) — even 32-bit lanes the first block's,
//! odd ones the second's. The activations are laid out once per call in
//! the same order, plus 128 (unsigned, for `vpdpbusd`), and −128 times each
//! lane's four weights (made once per pair, for every token) is the
//! accumulator's start, so every lane holds the reference's exact integer
//! sum — one load of activations a pair and token, which with eight tokens
//! keeps a row's sweep in L1. The scales of sixteen blocks are made in one
//! vector and multiplied by each token's activation scales (one rounding,
//! as the reference's `d`); a pair's two then come by one 64-bit broadcast
//! from memory (a load, no shuffle): per pair and token a load, `vpdpbusd`,
//! a conversion and an FMA. The lanes end as the reference's even and odd
//! sets, added and summed in its order.

use std::arch::x86_64::*;

use super::{f16_at, finish, prefetch_ahead};
use crate::quants::fp4::{add_last, KVALUES};

/// Tokens a call of [`mxfp4_planes_rows_multi`] takes at most.
pub const MAX_TOKENS: usize = 8;

/// Blocks whose scales one vector holds.
const CHUNK: usize = 16;

/// `outs[c][r]` = the reference dot of row `r` of `w` (rows of `n` values
/// in the planes layout, one after another) with the Q8_0 row `xs[c]`,
/// for up to [`MAX_TOKENS`] tokens: each pair of blocks is unpacked once
/// for all of them.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; every
/// `outs[c]` as long as the rows.
pub unsafe fn mxfp4_planes_rows_multi(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    if std::is_x86_feature_detected!("avx512vbmi") {
        multi_vbmi(n, w, xs, outs)
    } else {
        multi_plain(n, w, xs, outs)
    }
}

/// With AVX-512 VBMI: nibbles picked by `vpmultishiftqb` and looked up by
/// `vpermb` (which reads only an index's low six bits).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn multi_vbmi(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    multi::<true>(n, w, xs, outs)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn multi_plain(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    multi::<false>(n, w, xs, outs)
}

/// Bytes of `c` tokens' activations as [`packed_rows`] reads them, for
/// rows of `nb` blocks: a zmm of quants (plus 128) a pair and token (a
/// pair's tokens side by side), then the blocks' scales as floats, a zmm a
/// chunk and token — every token's data at a constant offset from one
/// pointer.
fn packed_len(nb: usize, c: usize) -> usize {
    c * ((nb / 2) * 64 + nb.div_ceil(CHUNK) * 64)
}

#[inline(always)]
unsafe fn multi<const VBMI: bool>(n: usize, w: &[u8], xs: &[&[u8]], outs: &mut [&mut [f32]]) {
    assert!(xs.len() == outs.len() && xs.len() <= MAX_TOKENS);
    let nb = n / 32;
    let pairs = nb / 2;
    let c = xs.len();
    let len = packed_len(nb, c);
    // The buffer is taken out of the thread's slot and put back: a closure
    // here would not inherit the caller's target features.
    let mut buf = PACKED.with(|b| b.take());
    {
        buf.clear();
        buf.resize(len + 64, 0);
        // 64-byte alignment for the zmm loads.
        let off = buf.as_ptr().align_offset(64);
        let packed = &mut buf[off..off + len];
        let (q, d) = packed.split_at_mut(pairs * c * 64);
        for (tok, x) in xs.iter().enumerate() {
            assert!(x.len() >= nb * 34);
            // A pair's quants in the kernel's lane order (32-bit lanes
            // alternately block 0's and block 1's), plus 128 (the sign bit
            // flipped).
            let flip = _mm512_set1_epi8(-128);
            let weave = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
            for k in 0..pairs {
                let xe = x.as_ptr().add(2 * k * 34 + 2);
                let e = _mm256_loadu_si256(xe as *const __m256i);
                let o = _mm256_loadu_si256(xe.add(34) as *const __m256i);
                let t = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(e), o);
                let y = _mm512_permutexvar_epi32(weave, t);
                let at = (k * c + tok) * 64;
                let y = _mm512_xor_si512(y, flip);
                _mm512_store_si512(q.as_mut_ptr().add(at) as *mut __m512i, y);
            }
            for b in 0..nb {
                let at = ((b / CHUNK) * c + tok) * 64 + 4 * (b % CHUNK);
                d[at..at + 4].copy_from_slice(&f16_at(x, b * 34).to_le_bytes());
            }
        }
        match c {
            1 => packed_rows::<1, VBMI>(n, w, xs, packed, outs),
            2 => packed_rows::<2, VBMI>(n, w, xs, packed, outs),
            3 => packed_rows::<3, VBMI>(n, w, xs, packed, outs),
            4 => packed_rows::<4, VBMI>(n, w, xs, packed, outs),
            5 => packed_rows::<5, VBMI>(n, w, xs, packed, outs),
            6 => packed_rows::<6, VBMI>(n, w, xs, packed, outs),
            7 => packed_rows::<7, VBMI>(n, w, xs, packed, outs),
            _ => packed_rows::<8, VBMI>(n, w, xs, packed, outs),
        }
    }
    PACKED.with(|b| b.replace(buf));
}

thread_local! {
    /// The tokens' activations laid out for [`packed_rows`].
    static PACKED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Sixteen E8M0 scale bytes (`m` of them, the rest zero) as the floats
/// `e8m0_half` gives: `(e − 1) << 23`, or `0x0020_0000 << e` for the two
/// subnormals.
#[inline(always)]
unsafe fn scales16(p: *const u8, m: usize) -> __m512 {
    let raw = _mm_maskz_loadu_epi8(((1u32 << m) - 1) as u16, p as *const i8);
    let e = _mm512_cvtepu8_epi32(raw);
    let normal = _mm512_slli_epi32::<23>(_mm512_sub_epi32(e, _mm512_set1_epi32(1)));
    let sub = _mm512_sllv_epi32(_mm512_set1_epi32(0x0020_0000), e);
    let small = _mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2));
    _mm512_castsi512_ps(_mm512_mask_blend_epi32(small, normal, sub))
}

/// A pair's 32 code bytes, broadcast to both halves, as the signed
/// lookups of its 64 values (quarters: block 0's low nibbles, block 1's,
/// block 0's high nibbles, block 1's).
#[inline(always)]
unsafe fn unpack<const VBMI: bool>(codes: *const u8, table: __m512i, ctrl: __m512i) -> __m512i {
    let raw = _mm512_broadcast_i64x4(_mm256_loadu_si256(codes as *const __m256i));
    if VBMI {
        _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(ctrl, raw), table)
    } else {
        let t = _mm512_and_si512(_mm512_srlv_epi16(raw, ctrl), _mm512_set1_epi8(0x0F));
        _mm512_shuffle_epi8(table, t)
    }
}

/// The kernel over activations laid out by [`mxfp4_planes_rows_multi`]
/// for `C` tokens; `x` for an odd last block.
#[inline(always)]
unsafe fn packed_rows<const C: usize, const VBMI: bool>(
    n: usize,
    w: &[u8],
    x: &[&[u8]],
    packed: &[u8],
    out: &mut [&mut [f32]],
) {
    assert!(x.len() == C && out.len() == C);
    let nb = n / 32;
    let (rb, pairs) = (nb * 17, nb / 2);
    let nrows = out[0].len();
    assert!(rb > 0 && w.len() >= nrows * rb);
    assert!(packed.len() >= packed_len(nb, C) && out.iter().all(|o| o.len() == nrows));
    let ys = packed.as_ptr();
    let ds = ys.add(pairs * C * 64);
    // Twice the dense formats' distance: MXFP4's rows (17-byte blocks,
    // eight tokens' work per line at most) streamed 3–5% more of the
    // roofline at 6 KiB than at 3 (gpt-oss shapes, tg32 alternating).
    let pf = 2 * crate::dispatch::prefetch_ahead();
    let table_bytes: [i8; 64] = std::array::from_fn(|i| KVALUES[i % 16]);
    let c128 = _mm512_set1_epi8(-128);
    let magic = _mm512_set1_ps(12_582_912.0);
    let magic_i = _mm512_castps_si512(magic);
    let table = _mm512_loadu_si512(table_bytes.as_ptr() as *const __m512i);
    let ctrl = if VBMI {
        // Byte i of each qword: bits 8i.. (low nibble) in the first half,
        // 8i + 4.. (high nibble) in the second.
        let c: [u8; 64] =
            std::array::from_fn(|i| (8 * (i % 8) + if i >= 32 { 4 } else { 0 }) as u8);
        _mm512_loadu_si512(c.as_ptr() as *const __m512i)
    } else {
        let s: [u16; 32] = std::array::from_fn(|i| if i >= 16 { 4 } else { 0 });
        _mm512_loadu_si512(s.as_ptr() as *const __m512i)
    };
    // The reference's even lanes 0..8, then its odd ones.
    let even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    let odd_idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    // A chunk's scales, a token's sixteen after another's.
    #[repr(align(64))]
    struct Scales<const C: usize>([[f32; CHUNK]; C]);
    let mut sc = Scales::<C>([[0.0; CHUNK]; C]);
    for (r, row) in w.chunks_exact(rb).take(nrows).enumerate() {
        let (scales, codes) = (row.as_ptr(), row.as_ptr().add(nb));
        prefetch_ahead(scales, nb, pf);
        let mut acc = [_mm512_setzero_ps(); C];
        for (ch, b0) in (0..2 * pairs).step_by(CHUNK).enumerate() {
            let m = (2 * pairs - b0).min(CHUNK);
            let e = scales16(scales.add(b0), m);
            for c in 0..C {
                let d = _mm512_mul_ps(_mm512_load_ps(ds.add((ch * C + c) * 64) as *const f32), e);
                _mm512_store_ps(sc.0[c].as_mut_ptr(), d);
            }
            for j in 0..m / 2 {
                let k = b0 / 2 + j;
                let ck = codes.add(32 * k);
                if k % 2 == 0 {
                    prefetch_ahead(ck, 64, pf);
                }
                let q = unpack::<VBMI>(ck, table, ctrl);
                // −128 times each lane's four weights (what the
                // activations' +128 adds, taken away), on the bits of
                // 1.5·2²³: a lane's sum x (|x| < 2²²) ends as the bits of
                // the float 1.5·2²³ + x, exact, and one subtraction (either
                // FMA port) instead of a conversion (port 0 only, with
                // `vpdpbusd`) makes it x.
                let zero = _mm512_setzero_si512();
                let start = _mm512_sub_epi32(magic_i, _mm512_dpbusd_epi32(zero, c128, q));
                for c in 0..C {
                    let at = (k * C + c) * 64;
                    let y = _mm512_load_si512(ys.add(at) as *const __m512i);
                    let lanes = _mm512_dpbusd_epi32(start, y, q);
                    let lanes = _mm512_sub_ps(_mm512_castsi512_ps(lanes), magic);
                    let pair = sc.0[c].as_ptr().add(2 * j) as *const f64;
                    let dk = _mm512_castpd_ps(_mm512_set1_pd(pair.read()));
                    acc[c] = _mm512_fmadd_ps(dk, lanes, acc[c]);
                }
            }
        }
        for c in 0..C {
            let even = _mm512_castps512_ps256(_mm512_permutexvar_ps(even_idx, acc[c]));
            let odd = _mm512_castps512_ps256(_mm512_permutexvar_ps(odd_idx, acc[c]));
            let sum = finish(_mm256_add_ps(even, odd));
            out[c][r] = match 2 * pairs < nb {
                true => last_block(row, nb, &x[c][2 * pairs * 34..], sum),
                false => sum,
            };
        }
    }
}

/// A last, odd block's product kept out of the kernel's body (inlined
/// there, gpt-oss's pp64 measured 4–8% slower).
#[inline(never)]
fn last_block(row: &[u8], nb: usize, x: &[u8], sum: f32) -> f32 {
    let i = nb - 1;
    add_last(row[i], &row[nb + 16 * i..nb + 16 * (i + 1)], x, sum)
}
