//! Q4_K repacked at load into groups of sixteen rows whose zmm lanes are
//! rows. Each `vpdpbusd` multiplies one broadcast activation dword into
//! sixteen rows' weight dwords, so a token's product costs one weight load
//! and one broadcast per 64 weight bytes. (An eight-row ymm layout needs
//! twice the broadcasts per weight byte, and one token's product is then
//! bound by vector loads, two a cycle on Zen 4: 5.3 against 6.4 ticks a
//! block row L2-resident.) The float steps are those of llama.cpp's
//! interleaved Q4_K orders, lane by lane, so results are the reference's
//! bits. Row counts that 16 does not divide keep the file layout and run
//! the AVX2 interleaved kernels, in the same orders.
//!
//! Layout of one group's block (`R16_BYTES`, the sixteen blocks' 2304
//! bytes): `d[16]`, `dmin[16]` (f16), the 6-bit scales and mins in 192
//! bytes (below), then the quants: for chunk `j` (64 elements) and dword
//! `k`, the four bytes `qs[32j + 4k ..][..4]` of rows 0–15 — low nibbles
//! are elements `64j + 4k ..`, high nibbles `64j + 32 + 4k ..`.
//!
//! The 256 six-bit values as the kernel uses them (`O`): the scales
//! `sc[sub][row]` (`O[16·sub + row]`), then the mins by pairs of
//! sub-blocks `mn[j][row][2]` (`O[128 + 32j + 2·row + sub % 2]`). Stored
//! as 128 bytes of low nibbles (byte `i`: `O[i]` in bits 0–3, `O[128 + i]`
//! in bits 4–7) and 64 bytes of high pairs (byte `i`: bits 4–5 of `O[i]`,
//! `O[64 + i]`, `O[128 + i]`, `O[192 + i]` at bits 0, 2, 4, 6).

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// Rows of one group.
pub const ROWS: usize = 16;
/// Bytes of one 16-row block group.
pub const R16_BYTES: usize = 32 + 32 + 192 + 2048;
const SIX: usize = 64;
const QS: usize = 256;
const XB: usize = 4 + 256 + 32;

/// Repacks a Q4_K matrix of `rows` (a multiple of 16) × `nb` blocks.
pub fn repack(src: &[u8], rows: usize, nb: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows / ROWS * nb * R16_BYTES];
    for (g, og) in out.chunks_exact_mut(nb * R16_BYTES).enumerate() {
        for (i, o) in og.chunks_exact_mut(R16_BYTES).enumerate() {
            let mut six = [0u8; 256];
            for r in 0..ROWS {
                let b = &src[((ROWS * g + r) * nb + i) * 144..][..144];
                o[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
                o[32 + 2 * r..32 + 2 * r + 2].copy_from_slice(&b[2..4]);
                let (sc, mn) = crate::x86::q4k_scale_bytes(&b[4..16]);
                for (s, (c, m)) in sc
                    .to_le_bytes()
                    .into_iter()
                    .zip(mn.to_le_bytes())
                    .enumerate()
                {
                    six[16 * s + r] = c;
                    six[128 + 32 * (s / 2) + 2 * r + s % 2] = m;
                }
                for j in 0..4 {
                    for k in 0..8 {
                        let at = QS + (8 * j + k) * 64 + 4 * r;
                        o[at..at + 4].copy_from_slice(&b[16 + 32 * j + 4 * k..][..4]);
                    }
                }
            }
            for i in 0..128 {
                o[SIX + i] = (six[i] & 0xF) | (six[128 + i] & 0xF) << 4;
            }
            for i in 0..64 {
                o[SIX + 128 + i] = (0..4).fold(0, |h, q| h | (six[64 * q + i] >> 4) << (2 * q));
            }
        }
    }
    out
}

/// A block's 256 six-bit values (`O`) from their 192 stored bytes at `p`.
#[inline(always)]
unsafe fn six_bits(p: *const u8, o: &mut [__m512i; 4]) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let l0 = _mm512_loadu_si512(p as *const __m512i);
    let l1 = _mm512_loadu_si512(p.add(64) as *const __m512i);
    let h = _mm512_loadu_si512(p.add(128) as *const __m512i);
    // Each quarter's pair to bits 4–5 (word shifts move no bit that lands
    // there across a byte), then (a & b) | c.
    o[0] =
        _mm512_ternarylogic_epi32::<0xEA>(l0, m4, _mm512_and_si512(_mm512_slli_epi16::<4>(h), m30));
    o[1] =
        _mm512_ternarylogic_epi32::<0xEA>(l1, m4, _mm512_and_si512(_mm512_slli_epi16::<2>(h), m30));
    o[2] =
        _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi16::<4>(l0), m4, _mm512_and_si512(h, m30));
    o[3] = _mm512_ternarylogic_epi32::<0xEA>(
        _mm512_srli_epi16::<4>(l1),
        m4,
        _mm512_and_si512(_mm512_srli_epi16::<2>(h), m30),
    );
}

/// Accumulator chains per sum for one token (even and odd dwords: four
/// measured slower, 5.6 against 5.3 ticks a row-block).
const CH: usize = 2;

#[inline(always)]
unsafe fn sum(v: &[__m512i; CH]) -> __m512i {
    let mut s = v[0];
    for x in &v[1..] {
        s = _mm512_add_epi32(s, *x);
    }
    s
}

#[inline(always)]
unsafe fn bytes16(p: *const u8) -> __m512i {
    _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i))
}

/// Sixteen rows (one group, `nb` blocks at `w`) against `T` Q8_K
/// activation rows at `x + t·xrb`: `out[t][row]`. `GEMM`: one FMA per 64
/// elements (interleaved GEMM order), else one per block (GEMV order).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
pub unsafe fn q4_k_r16<const T: usize, const GEMM: bool>(
    nb: usize,
    w: &[u8],
    x: &[u8],
    xrb: usize,
    out: &mut [[f32; 16]; T],
) {
    assert!(w.len() >= nb * R16_BYTES && x.len() >= (T - 1) * xrb + nb * XB);
    let m4 = _mm512_set1_epi8(0x0F);
    let mf0 = _mm512_set1_epi8(0xF0u8 as i8);
    let mut acc = [_mm512_setzero_ps(); T];
    let mut acc_m = [_mm512_setzero_ps(); T];
    let mut six = [_mm512_setzero_si512(); 4];
    // The group's next lines, one a weight load (`prefetch_ahead`).
    let pf = crate::dispatch::prefetch_ahead();
    for i in 0..nb {
        let b = w.as_ptr().add(i * R16_BYTES);
        crate::x86::prefetch_ahead(b, QS, pf);
        six_bits(b.add(SIX), &mut six);
        let o = six.as_ptr() as *const u8;
        let d = _mm512_cvtph_ps(_mm256_loadu_si256(b as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(b.add(32) as *const __m256i));
        let xk: [*const u8; T] = std::array::from_fn(|t| x.as_ptr().add(t * xrb + i * XB));
        let yd: [__m512; T] =
            std::array::from_fn(|t| _mm512_set1_ps((xk[t] as *const f32).read_unaligned()));
        // The eight 32-element sums of each token's block as i16, dword j
        // holding the pair of chunk j.
        let bs: [__m512i; T] = std::array::from_fn(|t| {
            let p = xk[t].add(260);
            _mm512_castsi128_si512(_mm_hadd_epi16(
                _mm_loadu_si128(p as *const __m128i),
                _mm_loadu_si128(p.add(16) as *const __m128i),
            ))
        });
        let mut isum = [_mm512_setzero_si512(); T];
        let mut msum = [_mm512_setzero_si512(); T];
        for j in 0..4 {
            let mut slo = [[_mm512_setzero_si512(); CH]; T];
            let mut shi = [[_mm512_setzero_si512(); CH]; T];
            for k in 0..8 {
                crate::x86::prefetch_ahead(b.add(QS + (8 * j + k) * 64), 64, pf);
                let v = _mm512_loadu_si512(b.add(QS + (8 * j + k) * 64) as *const __m512i);
                // High nibbles in place (16 times their value): the chunk's
                // sum is shifted back once, exactly, below.
                let lo = _mm512_and_si512(v, m4);
                let hi = _mm512_and_si512(v, mf0);
                for t in 0..T {
                    let y = xk[t].add(4 + 64 * j + 4 * k);
                    let c = if T == 1 { k % CH } else { 0 };
                    let (ylo, yhi) = (
                        _mm512_set1_epi32((y as *const i32).read_unaligned()),
                        _mm512_set1_epi32((y.add(32) as *const i32).read_unaligned()),
                    );
                    slo[t][c] = _mm512_dpbusd_epi32(slo[t][c], lo, ylo);
                    shi[t][c] = _mm512_dpbusd_epi32(shi[t][c], hi, yhi);
                }
            }
            let (sc0, sc1) = (bytes16(o.add(32 * j)), bytes16(o.add(16 + 32 * j)));
            let mn =
                _mm512_cvtepu8_epi16(_mm256_loadu_si256(o.add(128 + 32 * j) as *const __m256i));
            let pick = _mm512_set1_epi32(j as i32);
            for t in 0..T {
                let ij = _mm512_add_epi32(
                    _mm512_mullo_epi32(sum(&slo[t]), sc0),
                    _mm512_mullo_epi32(_mm512_srai_epi32::<4>(sum(&shi[t])), sc1),
                );
                // mins · sums of the chunk's two 32-element groups.
                let mj = _mm512_madd_epi16(mn, _mm512_permutexvar_epi32(pick, bs[t]));
                if GEMM {
                    acc[t] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(ij), _mm512_mul_ps(d, yd[t]), acc[t]);
                    acc_m[t] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(mj),
                        _mm512_mul_ps(dmin, yd[t]),
                        acc_m[t],
                    );
                } else {
                    isum[t] = _mm512_add_epi32(isum[t], ij);
                    msum[t] = _mm512_add_epi32(msum[t], mj);
                }
            }
        }
        if !GEMM {
            for t in 0..T {
                acc[t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, yd[t]), acc[t]);
                acc_m[t] = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(msum[t]),
                    _mm512_mul_ps(dmin, yd[t]),
                    acc_m[t],
                );
            }
        }
    }
    for t in 0..T {
        _mm512_storeu_ps(out[t].as_mut_ptr(), _mm512_sub_ps(acc[t], acc_m[t]));
    }
}

/// Up to three tokens' GEMV order over `groups` consecutive groups at `w`
/// (a run of a matrix): `outs[t][16g + row]` for the activation rows at
/// `x + t·xrb`, the run entered once and each block unpacked once for all
/// of them (each token's bits are its one-token product's: its sums are
/// exact integers and its float steps the same).
///
/// # Safety
/// As [`q4_k_r16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q4_k_r16_run(
    nb: usize,
    w: &[u8],
    groups: usize,
    x: &[u8],
    xrb: usize,
    outs: &mut [&mut [f32]],
) {
    match outs.len() {
        0 => {}
        1 => run::<1>(nb, w, groups, x, xrb, outs),
        2 => run::<2>(nb, w, groups, x, xrb, outs),
        _ => run::<3>(nb, w, groups, x, xrb, outs),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn run<const T: usize>(
    nb: usize,
    w: &[u8],
    groups: usize,
    x: &[u8],
    xrb: usize,
    outs: &mut [&mut [f32]],
) {
    assert!(w.len() >= groups * nb * R16_BYTES && outs.len() >= T);
    assert!(outs[..T].iter().all(|o| o.len() >= groups * ROWS));
    for g in 0..groups {
        let mut acc = [[0f32; ROWS]; T];
        q4_k_r16::<T, false>(nb, &w[g * nb * R16_BYTES..], x, xrb, &mut acc);
        for (o, a) in outs.iter_mut().zip(&acc) {
            o[g * ROWS..(g + 1) * ROWS].copy_from_slice(a);
        }
    }
}
