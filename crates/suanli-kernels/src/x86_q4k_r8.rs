//! Q4_K repacked at load into groups of eight rows whose lanes are rows:
//! with AVX-512 VNNI one `vpdpbusd` multiplies four quants of each of the
//! eight rows by the same four activation bytes (broadcast), so block sums
//! need no horizontal reductions and one weight load serves every token of
//! a tile. The float steps are those of llama.cpp's interleaved Q4_K orders
//! (`kquants::vec_dot_q4_k_q8_k_interleaved{,_gemm}`), lane by lane, so
//! results are the reference's bits. Matrices whose rows sixteen divides
//! take the wider groups of [`crate::x86_q4k_r16`] instead.
//!
//! Layout of one group's block (`R8_BYTES`, the eight blocks' 1152 bytes:
//! decode streams no more than the file holds): `d[8]`, `dmin[8]` (f16),
//! the 6-bit scales and mins in 96 bytes (below), then the quants: for
//! chunk `j` (64 elements) and dword `k`, the four bytes
//! `qs[32j + 4k ..][..4]` of rows 0–7 — low nibbles are elements
//! `64j + 4k ..`, high nibbles `64j + 32 + 4k ..`.
//!
//! The 128 six-bit values, as the kernel uses them (`O`): the scales
//! `sc[sub][row]` (`O[8·sub + row]`), then the mins by pairs of sub-blocks
//! `mn[j][row][2]` (`O[64 + 16j + 2·row + sub % 2]`, for one `vpmaddwd`
//! against the pair of activation sums). They are stored as 64 bytes of
//! low nibbles (byte `i`: `O[i]` in bits 0–3, `O[64 + i]` in bits 4–7)
//! and 32 bytes of high pairs (byte `i`: bits 4–5 of `O[i]`, `O[32 + i]`,
//! `O[64 + i]`, `O[96 + i]` at bits 0, 2, 4, 6), which a handful of
//! vector operations a block turn back into `O` (with the unpacked bytes
//! in the layout, decode read 1184 bytes for these 1152: 2.8% more).

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// Rows of one group.
pub const ROWS: usize = 8;
/// Bytes of one 8-row block group.
pub const R8_BYTES: usize = 16 + 16 + 96 + 1024;
const QS: usize = 128;
const XB: usize = 4 + 256 + 32;

/// Repacks a Q4_K matrix of `rows` (a multiple of 8) × `nb` blocks.
pub fn repack(src: &[u8], rows: usize, nb: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows / 8 * nb * R8_BYTES];
    for (g, og) in out.chunks_exact_mut(nb * R8_BYTES).enumerate() {
        for (i, o) in og.chunks_exact_mut(R8_BYTES).enumerate() {
            let mut six = [0u8; 128];
            for r in 0..8 {
                let b = &src[((8 * g + r) * nb + i) * 144..][..144];
                o[2 * r..2 * r + 2].copy_from_slice(&b[0..2]);
                o[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&b[2..4]);
                let (sc, mn) = crate::x86::q4k_scale_bytes(&b[4..16]);
                for (s, (c, m)) in sc
                    .to_le_bytes()
                    .into_iter()
                    .zip(mn.to_le_bytes())
                    .enumerate()
                {
                    six[8 * s + r] = c;
                    six[64 + 16 * (s / 2) + 2 * r + s % 2] = m;
                }
                for j in 0..4 {
                    for k in 0..8 {
                        let at = QS + (8 * j + k) * 32 + 4 * r;
                        o[at..at + 4].copy_from_slice(&b[16 + 32 * j + 4 * k..][..4]);
                    }
                }
            }
            for i in 0..64 {
                o[32 + i] = (six[i] & 0xF) | (six[64 + i] & 0xF) << 4;
            }
            for i in 0..32 {
                o[96 + i] = (0..4).fold(0, |h, q| h | (six[32 * q + i] >> 4) << (2 * q));
            }
        }
    }
    out
}

/// A block's 128 six-bit values (`O` of the module's layout) from their 96
/// stored bytes at `p`, into `o`.
#[inline(always)]
unsafe fn six_bits(p: *const u8, o: &mut [__m512i; 2]) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let lo = _mm512_loadu_si512(p as *const __m512i);
    let hi = _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(64) as *const __m256i));
    // Each 256-bit half brings its pair to bits 4–5: for O[0..64] bits 0–1
    // (first half) and 2–3 (second), for O[64..128] bits 4–5 and 6–7. Word
    // shifts move no bit that lands in 4–5 across a byte.
    let shl = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(2));
    let shr = _mm512_inserti64x4::<1>(_mm512_set1_epi16(0), _mm256_set1_epi16(2));
    let h0 = _mm512_and_si512(_mm512_sllv_epi16(hi, shl), m30);
    let h1 = _mm512_and_si512(_mm512_srlv_epi16(hi, shr), m30);
    // (a & b) | c
    o[0] = _mm512_ternarylogic_epi32::<0xEA>(lo, m4, h0);
    o[1] = _mm512_ternarylogic_epi32::<0xEA>(_mm512_srli_epi16::<4>(lo), m4, h1);
}

#[inline(always)]
unsafe fn bcast(p: *const u8) -> __m256i {
    _mm256_set1_epi32((p as *const i32).read_unaligned())
}

#[inline(always)]
unsafe fn bytes8(p: *const u8) -> __m256i {
    _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i))
}

/// Eight rows (one group, `nb` blocks at `w`) against `T` Q8_K activation
/// rows at `x + t·xrb`: `out[t][row]`. `GEMM`: one FMA per 64 elements
/// (interleaved GEMM order), else one per block (GEMV order).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q4_k_r8<const T: usize, const GEMM: bool>(
    nb: usize,
    w: &[u8],
    x: &[u8],
    xrb: usize,
    out: &mut [[f32; 8]; T],
) {
    assert!(w.len() >= nb * R8_BYTES && x.len() >= (T - 1) * xrb + nb * XB);
    let m4 = _mm256_set1_epi8(0x0F);
    let mf0 = _mm256_set1_epi8(0xF0u8 as i8);
    let mut acc = [_mm256_setzero_ps(); T];
    let mut acc_m = [_mm256_setzero_ps(); T];
    let mut six = [_mm512_setzero_si512(); 2];
    for i in 0..nb {
        let b = w.as_ptr().add(i * R8_BYTES);
        six_bits(b.add(32), &mut six);
        let o = six.as_ptr() as *const u8;
        let d = _mm256_cvtph_ps(_mm_loadu_si128(b as *const __m128i));
        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(b.add(16) as *const __m128i));
        let xk: [*const u8; T] = std::array::from_fn(|t| x.as_ptr().add(t * xrb + i * XB));
        let yd: [__m256; T] =
            std::array::from_fn(|t| _mm256_set1_ps((xk[t] as *const f32).read_unaligned()));
        // The eight 32-element sums of each token's block as i16 (|Σ| ≤
        // 32·128), dword j holding the pair of chunk j.
        let bs: [__m256i; T] = std::array::from_fn(|t| {
            let p = xk[t].add(260);
            _mm256_castsi128_si256(_mm_hadd_epi16(
                _mm_loadu_si128(p as *const __m128i),
                _mm_loadu_si128(p.add(16) as *const __m128i),
            ))
        });
        let mut isum = [_mm256_setzero_si256(); T];
        let mut msum = [_mm256_setzero_si256(); T];
        for j in 0..4 {
            // One token: two chains per sum (even and odd dwords) halve the
            // latency; more tokens are chains enough.
            let mut slo = [[_mm256_setzero_si256(); 2]; T];
            let mut shi = [[_mm256_setzero_si256(); 2]; T];
            for k in 0..8 {
                let v = _mm256_loadu_si256(b.add(QS + (8 * j + k) * 32) as *const __m256i);
                // High nibbles in place (16 times their value): the chunk's
                // sum is shifted back once, exactly, below.
                let lo = _mm256_and_si256(v, m4);
                let hi = _mm256_and_si256(v, mf0);
                for t in 0..T {
                    let y = xk[t].add(4 + 64 * j + 4 * k);
                    let c = if T == 1 { k % 2 } else { 0 };
                    slo[t][c] = _mm256_dpbusd_epi32(slo[t][c], lo, bcast(y));
                    shi[t][c] = _mm256_dpbusd_epi32(shi[t][c], hi, bcast(y.add(32)));
                }
            }
            let (sc0, sc1) = (bytes8(o.add(16 * j)), bytes8(o.add(8 + 16 * j)));
            let mn = _mm256_cvtepu8_epi16(_mm_loadu_si128(o.add(64 + 16 * j) as *const __m128i));
            let pick = _mm256_set1_epi32(j as i32);
            for t in 0..T {
                let ij = _mm256_add_epi32(
                    _mm256_mullo_epi32(_mm256_add_epi32(slo[t][0], slo[t][1]), sc0),
                    _mm256_mullo_epi32(
                        _mm256_srai_epi32::<4>(_mm256_add_epi32(shi[t][0], shi[t][1])),
                        sc1,
                    ),
                );
                // mins · sums of the chunk's two 32-element groups.
                let mj = _mm256_madd_epi16(mn, _mm256_permutevar8x32_epi32(bs[t], pick));
                if GEMM {
                    acc[t] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(ij), _mm256_mul_ps(d, yd[t]), acc[t]);
                    acc_m[t] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(mj),
                        _mm256_mul_ps(dmin, yd[t]),
                        acc_m[t],
                    );
                } else {
                    isum[t] = _mm256_add_epi32(isum[t], ij);
                    msum[t] = _mm256_add_epi32(msum[t], mj);
                }
            }
        }
        if !GEMM {
            for t in 0..T {
                acc[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(d, yd[t]), acc[t]);
                acc_m[t] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(msum[t]),
                    _mm256_mul_ps(dmin, yd[t]),
                    acc_m[t],
                );
            }
        }
    }
    for t in 0..T {
        _mm256_storeu_ps(out[t].as_mut_ptr(), _mm256_sub_ps(acc[t], acc_m[t]));
    }
}
