//! K-quant prefill kernels over eight tokens at once (AVX2): each weight
//! block is unpacked once, each token's exact integer sums are reduced into
//! one lane of a vector (lane = token), and the float steps of the reference
//! order — one FMA per 64 elements (Q4_K, interleaved GEMM order) or one per
//! block (Q6_K, tiled order) — run on all eight tokens' lanes together. Each
//! lane sees the operations of the one-token kernel, in its order.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// Tokens per call.
pub const KC: usize = 8;
const XB: usize = 4 + 256 + 32;

/// Per-token data of `KC` Q8_K activation rows laid out by block: the f32
/// scales `d` and, for Q4_K's mins, the sums of 32-element groups.
pub struct KActs {
    /// `[block][token]`.
    pub d: Vec<f32>,
    /// `[block][group of 32][token]`: `bsums[2g] + bsums[2g + 1]`.
    pub pair: Vec<i32>,
    /// `[block][group of 16][token]`: `bsums[g]`.
    pub bsum: Vec<i32>,
    /// The quants interleaved for the VNNI kernels: `[block][4 elements
    /// p][token][4 bytes]`, so one `vpdpbusd` of a broadcast weight dword
    /// against 32 bytes adds element group `p` to all eight tokens' lanes.
    pub xi: Vec<u8>,
}

impl KActs {
    /// Reads the `KC` rows at `x + c·xrb` of `nb` blocks.
    pub fn new(x: &[u8], xrb: usize, nb: usize) -> KActs {
        let mut d = Vec::with_capacity(nb * KC);
        let mut pair = Vec::with_capacity(nb * 8 * KC);
        let mut bsum = Vec::with_capacity(nb * 16 * KC);
        let mut xi = Vec::with_capacity(nb * 256 * KC);
        for i in 0..nb {
            for p in 0..64 {
                for c in 0..KC {
                    let b = c * xrb + i * XB + 4 + 4 * p;
                    xi.extend_from_slice(&x[b..b + 4]);
                }
            }
            for g in 0..16 {
                for c in 0..KC {
                    let b = c * xrb + i * XB + 260 + 2 * g;
                    bsum.push(i16::from_le_bytes([x[b], x[b + 1]]) as i32);
                }
            }
            for c in 0..KC {
                let b = c * xrb + i * XB;
                d.push(f32::from_le_bytes([x[b], x[b + 1], x[b + 2], x[b + 3]]));
            }
            for g in 0..8 {
                for c in 0..KC {
                    let b = c * xrb + i * XB + 260 + 4 * g;
                    let s = |o: usize| i16::from_le_bytes([x[b + o], x[b + o + 1]]) as i32;
                    pair.push(s(0) + s(2));
                }
            }
        }
        KActs { d, pair, bsum, xi }
    }
}

/// Lane `c` = the sum of the 8 lanes of `v[c]` (exact integers).
#[inline(always)]
unsafe fn transpose_sum(v: &[__m256i; 8]) -> __m256i {
    let a01 = _mm256_hadd_epi32(v[0], v[1]);
    let a23 = _mm256_hadd_epi32(v[2], v[3]);
    let a45 = _mm256_hadd_epi32(v[4], v[5]);
    let a67 = _mm256_hadd_epi32(v[6], v[7]);
    let b0 = _mm256_hadd_epi32(a01, a23);
    let b1 = _mm256_hadd_epi32(a45, a67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(b0, b1),
        _mm256_permute2x128_si256::<0x31>(b0, b1),
    )
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    let h = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// The 256 unsigned 6-bit values of a Q6_K block (`wk`), in element order,
/// 32 per vector.
#[inline(always)]
unsafe fn q6k_values(wk: *const u8) -> [__m256i; 8] {
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(0x03);
    let mut q = [_mm256_setzero_si256(); 8];
    for half in 0..2 {
        let ql0 = _mm256_loadu_si256(wk.add(64 * half) as *const __m256i);
        let ql1 = _mm256_loadu_si256(wk.add(64 * half + 32) as *const __m256i);
        let qh = _mm256_loadu_si256(wk.add(128 + 32 * half) as *const __m256i);
        let hb = |v: __m256i| _mm256_slli_epi16::<4>(_mm256_and_si256(v, m3));
        q[4 * half] = _mm256_or_si256(_mm256_and_si256(ql0, m4), hb(qh));
        q[4 * half + 1] =
            _mm256_or_si256(_mm256_and_si256(ql1, m4), hb(_mm256_srli_epi16::<2>(qh)));
        q[4 * half + 2] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
            hb(_mm256_srli_epi16::<4>(qh)),
        );
        q[4 * half + 3] = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
            hb(_mm256_srli_epi16::<6>(qh)),
        );
    }
    q
}

/// The running sums of one weight row against `KC` tokens, carried from one
/// range of blocks to the next (so long rows can be split into cache-sized
/// pieces without changing any output's order): Q4_K keeps `[acc, acc_m]`,
/// Q6_K `[out, unused]`.
pub type KState = [[f32; KC]; 2];

/// The finished outputs of a state.
pub fn finish(ty: crate::DType, s: &KState) -> [f32; KC] {
    match ty {
        crate::DType::Q4_K => std::array::from_fn(|c| s[0][c] - s[1][c]),
        _ => s[0],
    }
}

/// Q4_K row `w` against the `KC` Q8_K rows at `x + c·xrb`, in the
/// interleaved GEMM order (`kquants::vec_dot_q4_k_q8_k_interleaved_gemm`),
/// over blocks `blocks` (`w`, `x` and `a` hold whole rows).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4_k_gemm_x8(
    blocks: std::ops::Range<usize>,
    w: &[u8],
    x: &[u8],
    xrb: usize,
    a: &KActs,
    st: &mut KState,
) {
    let nb = blocks.end;
    assert!(w.len() >= nb * 144 && x.len() >= (KC - 1) * xrb + nb * XB);
    assert!(a.d.len() >= nb * KC && a.pair.len() >= nb * 8 * KC);
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_loadu_ps(st[0].as_ptr());
    let mut acc_m = _mm256_loadu_ps(st[1].as_ptr());
    for i in blocks {
        let wk = w.as_ptr().add(i * 144);
        let (d, dmin) = (f16_at(wk), f16_at(wk.add(2)));
        let (sc, mn) = crate::x86::q4k_scales(std::slice::from_raw_parts(wk.add(4), 12));
        let yd = _mm256_loadu_ps(a.d.as_ptr().add(i * KC));
        let dv = _mm256_mul_ps(_mm256_set1_ps(d), yd);
        let dmv = _mm256_mul_ps(_mm256_set1_ps(dmin), yd);
        let pair = a.pair.as_ptr().add(i * 8 * KC);
        for j in 0..4 {
            let q = _mm256_loadu_si256(wk.add(16 + 32 * j) as *const __m256i);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            let (slo, shi) = (
                _mm256_set1_epi16(sc[2 * j]),
                _mm256_set1_epi16(sc[2 * j + 1]),
            );
            let v: [__m256i; 8] = std::array::from_fn(|c| {
                let xk = x.as_ptr().add(c * xrb + i * XB + 4 + 64 * j);
                let ylo = _mm256_loadu_si256(xk as *const __m256i);
                let yhi = _mm256_loadu_si256(xk.add(32) as *const __m256i);
                _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), slo),
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), shi),
                )
            });
            let ij = transpose_sum(&v);
            let p0 = _mm256_loadu_si256(pair.add(2 * j * KC) as *const __m256i);
            let p1 = _mm256_loadu_si256(pair.add((2 * j + 1) * KC) as *const __m256i);
            let mj = _mm256_add_epi32(
                _mm256_mullo_epi32(p0, _mm256_set1_epi32(mn[2 * j])),
                _mm256_mullo_epi32(p1, _mm256_set1_epi32(mn[2 * j + 1])),
            );
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ij), dv, acc);
            acc_m = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mj), dmv, acc_m);
        }
    }
    _mm256_storeu_ps(st[0].as_mut_ptr(), acc);
    _mm256_storeu_ps(st[1].as_mut_ptr(), acc_m);
}

/// Q6_K row `w` against the `KC` Q8_K rows at `x + c·xrb`, in the tiled
/// order (`kquants::vec_dot_q6_k_q8_k_tiled`), over blocks `blocks`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q6_k_tiled_x8(
    blocks: std::ops::Range<usize>,
    w: &[u8],
    x: &[u8],
    xrb: usize,
    a: &KActs,
    st: &mut KState,
) {
    let nb = blocks.end;
    assert!(w.len() >= nb * 210 && x.len() >= (KC - 1) * xrb + nb * XB);
    assert!(a.d.len() >= nb * KC);
    let mut out = _mm256_loadu_ps(st[0].as_ptr());
    for i in blocks {
        let wk = w.as_ptr().add(i * 210);
        let wd = f16_at(wk.add(208));
        let sc: [i16; 16] = std::array::from_fn(|g| *wk.add(192 + g) as i8 as i16);
        let q = q6k_values(wk);
        let s: [__m256i; 8] = std::array::from_fn(|k| {
            _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]))
        });
        let scales = _mm256_loadu_si256(sc.as_ptr() as *const __m256i);
        let v: [__m256i; 8] = std::array::from_fn(|c| {
            let xk = x.as_ptr().add(c * xrb + i * XB);
            let mut sumi = _mm256_setzero_si256();
            for k in 0..8 {
                let y = _mm256_loadu_si256(xk.add(4 + 32 * k) as *const __m256i);
                sumi =
                    _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], y), s[k]));
            }
            let bsums = _mm256_loadu_si256(xk.add(260) as *const __m256i);
            let corr = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, scales));
            _mm256_sub_epi32(sumi, corr)
        });
        let r = _mm256_mul_ps(_mm256_cvtepi32_ps(transpose_sum(&v)), _mm256_set1_ps(wd));
        out = _mm256_fmadd_ps(r, _mm256_loadu_ps(a.d.as_ptr().add(i * KC)), out);
    }
    _mm256_storeu_ps(st[0].as_mut_ptr(), out);
}

/// The unpacked weight quants of one block, in element order, for dword
/// broadcasts.
#[repr(align(64))]
pub(crate) struct Quants(pub [u8; 256]);

#[inline(always)]
unsafe fn bcast(q: &Quants, e: usize) -> __m256i {
    debug_assert!(e + 4 <= q.0.len());
    _mm256_set1_epi32((q.0.as_ptr().add(e) as *const i32).read_unaligned())
}

/// Sums over elements `e0..e0 + 4·groups` of weight × activation for the
/// eight tokens (lane = token), from the interleaved activations `xi` of
/// one block.
#[inline(always)]
unsafe fn lane_sums(q: &Quants, xi: *const u8, e0: usize, groups: usize) -> __m256i {
    let (mut a, mut b) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for k in (0..groups).step_by(2) {
        let e = e0 + 4 * k;
        a = _mm256_dpbusd_epi32(
            a,
            bcast(q, e),
            _mm256_loadu_si256(xi.add(8 * e) as *const __m256i),
        );
        let e = e + 4;
        b = _mm256_dpbusd_epi32(
            b,
            bcast(q, e),
            _mm256_loadu_si256(xi.add(8 * e) as *const __m256i),
        );
    }
    _mm256_add_epi32(a, b)
}

/// [`q6_k_tiled_x8`] with VNNI on token-interleaved activations.
///
/// # Safety
/// The CPU must support AVX-512 F/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn q6_k_tiled_x8_vnni(
    blocks: std::ops::Range<usize>,
    w: &[u8],
    _x: &[u8],
    _xrb: usize,
    a: &KActs,
    st: &mut KState,
) {
    q6_k_tiled_x8_vnni_in(blocks, w, a, st, |wk, q| {
        for (k, v) in q6k_values(wk).into_iter().enumerate() {
            _mm256_store_si256(q.0.as_mut_ptr().add(32 * k) as *mut __m256i, v);
        }
    })
}

/// [`q6_k_tiled_x8_vnni`] over blocks whose values `unpack` writes (in
/// element order) — Q6_K's layout or [`crate::x86::q6k_planes`]'s.
#[inline(always)]
pub(crate) unsafe fn q6_k_tiled_x8_vnni_in(
    blocks: std::ops::Range<usize>,
    w: &[u8],
    a: &KActs,
    st: &mut KState,
    unpack: impl Fn(*const u8, &mut Quants),
) {
    let nb = blocks.end;
    assert!(w.len() >= nb * 210);
    assert!(a.d.len() >= nb * KC && a.bsum.len() >= nb * 16 * KC && a.xi.len() >= nb * 256 * KC);
    let mut out = _mm256_loadu_ps(st[0].as_ptr());
    let mut q = Quants([0; 256]);
    for i in blocks {
        let wk = w.as_ptr().add(i * 210);
        let wd = f16_at(wk.add(208));
        unpack(wk, &mut q);
        let xi = a.xi.as_ptr().add(i * 256 * KC);
        let bs = a.bsum.as_ptr().add(i * 16 * KC);
        let mut isum = _mm256_setzero_si256();
        for g in 0..16 {
            let sc = *wk.add(192 + g) as i8 as i32;
            let s = lane_sums(&q, xi, 16 * g, 4);
            let b = _mm256_loadu_si256(bs.add(g * KC) as *const __m256i);
            let v = _mm256_sub_epi32(s, _mm256_slli_epi32::<5>(b));
            isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(v, _mm256_set1_epi32(sc)));
        }
        let r = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(wd));
        out = _mm256_fmadd_ps(r, _mm256_loadu_ps(a.d.as_ptr().add(i * KC)), out);
    }
    _mm256_storeu_ps(st[0].as_mut_ptr(), out);
}

/// Rows per call of the Q4_K decode kernel.
pub const KR: usize = 4;

/// Lane `r` = the sum of the 8 lanes of `v[r]` (exact integers).
#[inline(always)]
unsafe fn transpose_sum4(v: &[__m256i; KR]) -> __m128i {
    let c = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256::<1>(c))
}

/// `KR` Q4_K rows (`w + r·wrb`) · one Q8_K row in the interleaved GEMV
/// order (`kquants::vec_dot_q4_k_q8_k_interleaved`): the activation block is
/// loaded once for all rows, each row's exact block sums land in one lane,
/// and the per-block FMAs run on the rows' lanes together.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q4_k_gemv_x4(n: usize, w: &[u8], wrb: usize, x: &[u8]) -> [f32; KR] {
    let nb = n / 256;
    assert!(w.len() >= (KR - 1) * wrb + nb * 144 && x.len() >= nb * XB);
    let m4 = _mm256_set1_epi8(0x0F);
    let (mut acc, mut acc_m) = (_mm_setzero_ps(), _mm_setzero_ps());
    for i in 0..nb {
        let xk = x.as_ptr().add(i * XB);
        let yd = _mm_set1_ps(f32::from_le_bytes([
            *xk,
            *xk.add(1),
            *xk.add(2),
            *xk.add(3),
        ]));
        let bsums = _mm256_loadu_si256(xk.add(260) as *const __m256i);
        let y: [__m256i; 8] =
            std::array::from_fn(|k| _mm256_loadu_si256(xk.add(4 + 32 * k) as *const __m256i));
        let mut d = [0f32; KR];
        let mut dm = [0f32; KR];
        let mut vs = [_mm256_setzero_si256(); KR];
        let mut ms = [_mm256_setzero_si256(); KR];
        for r in 0..KR {
            let wk = w.as_ptr().add(r * wrb + i * 144);
            // The same block of the rows two calls ahead.
            _mm_prefetch::<_MM_HINT_T0>(wk.wrapping_add(2 * KR * wrb) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(wk.wrapping_add(2 * KR * wrb + 64) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(wk.wrapping_add(2 * KR * wrb + 128) as *const i8);
            d[r] = f16_at(wk);
            dm[r] = f16_at(wk.add(2));
            let (sc, mn) = crate::x86::q4k_scale_bytes(std::slice::from_raw_parts(wk.add(4), 12));
            // Each min twice as i16 (one per 16-element sum of its group).
            let m32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mn as i64));
            let mins = _mm256_or_si256(m32, _mm256_slli_epi32::<16>(m32));
            ms[r] = _mm256_madd_epi16(bsums, mins);
            // Scale g in both i16 halves of lane g.
            let s32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sc as i64));
            let sv = _mm256_or_si256(s32, _mm256_slli_epi32::<16>(s32));
            let sc_at = |g: usize| match g {
                0 => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(0)),
                1 => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(1)),
                2 => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(2)),
                3 => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(3)),
                4 => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(4)),
                5 => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(5)),
                6 => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(6)),
                _ => _mm256_permutevar8x32_epi32(sv, _mm256_set1_epi32(7)),
            };
            let mut v = _mm256_setzero_si256();
            for j in 0..4 {
                let q = _mm256_loadu_si256(wk.add(16 + 32 * j) as *const __m256i);
                let lo = _mm256_and_si256(q, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y[2 * j]), sc_at(2 * j));
                let phi =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y[2 * j + 1]), sc_at(2 * j + 1));
                v = _mm256_add_epi32(v, _mm256_add_epi32(plo, phi));
            }
            vs[r] = v;
        }
        let isum = _mm_cvtepi32_ps(transpose_sum4(&vs));
        let msum = _mm_cvtepi32_ps(transpose_sum4(&ms));
        acc = _mm_fmadd_ps(isum, _mm_mul_ps(_mm_loadu_ps(d.as_ptr()), yd), acc);
        acc_m = _mm_fmadd_ps(msum, _mm_mul_ps(_mm_loadu_ps(dm.as_ptr()), yd), acc_m);
    }
    let mut out = [0f32; KR];
    _mm_storeu_ps(out.as_mut_ptr(), _mm_sub_ps(acc, acc_m));
    out
}
