//! Q6_K prefill in the tiled order with rows in vector lanes: a copy of a
//! Q6_K matrix repacked at load into groups of 16 rows (the original stays
//! for decoding, whose order is per row). One `vpdpbusd` multiplies four
//! values of 16 rows by four broadcast activation bytes; a sub-block's sums
//! are scaled per row by one multiply, the superblock's exact integer then
//! meets `d_w` and `d_x` exactly as `kquants::vec_dot_q6_k_q8_k_tiled` does:
//! `r = i·d_w`, `out = r·d_x + out` — so the bits are that twin's.
//!
//! Layout of one group's superblock (`GB` bytes): `d[16]` as f32, the
//! scales `sc[sub][row]` as i8, then the values (+32, as u8) by dword:
//! `q[k][row][0..4]` holds elements `4k..4k + 4` of each row.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

/// Rows per group.
pub const G: usize = 16;
const D_AT: usize = 0;
const SC_AT: usize = 64;
const Q_AT: usize = SC_AT + 16 * G;
/// Bytes of one group's superblock.
pub const GB: usize = Q_AT + 64 * G * 4;
/// Bytes of one Q6_K block, and of one Q8_K block.
const WB: usize = 210;
const XB: usize = 4 + 256 + 32;

/// Repacks `rows` (a multiple of 16) × `nb` Q6_K superblocks.
pub fn repack(src: &[u8], rows: usize, nb: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows / G * nb * GB];
    for (g, og) in out.chunks_exact_mut(nb * GB).enumerate() {
        for (i, o) in og.chunks_exact_mut(GB).enumerate() {
            for r in 0..G {
                let b = &src[((G * g + r) * nb + i) * WB..][..WB];
                let (q, sc, d) = crate::quants::kquants::q6_k_parts(b);
                o[D_AT + 4 * r..][..4].copy_from_slice(&d.to_le_bytes());
                for (s, &v) in sc.iter().enumerate() {
                    o[SC_AT + s * G + r] = v as u8;
                }
                for k in 0..64 {
                    o[Q_AT + 4 * (k * G + r)..][..4].copy_from_slice(&q[4 * k..4 * k + 4]);
                }
            }
        }
    }
    out
}

/// Per token and sub-block of the Q8_K activations: `−32·Σx` (the offset
/// of the unsigned values), and per token and superblock `d_x`.
pub struct Acts {
    nb: usize,
    init: Vec<i32>,
    d: Vec<f32>,
}

impl Acts {
    pub fn new(xq: &[u8], xrb: usize, n: usize, nb: usize) -> Acts {
        let mut a = Acts {
            nb,
            init: Vec::with_capacity(n * nb * 16),
            d: Vec::with_capacity(n * nb),
        };
        for t in 0..n {
            for i in 0..nb {
                let blk = &xq[t * xrb + i * XB..][..XB];
                a.d.push(f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]));
                for s in 0..16 {
                    let bs = i16::from_le_bytes([blk[260 + 2 * s], blk[261 + 2 * s]]) as i32;
                    a.init.push(-32 * bs);
                }
            }
        }
        a
    }
}

/// `T` tokens (activation rows `t0..` of `xq`) against one group `w`:
/// `out[t][row]` in the tiled order.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group<const T: usize>(
    w: &[u8],
    xq: &[u8],
    xrb: usize,
    acts: &Acts,
    t0: usize,
    out: &mut [[f32; G]; T],
) {
    let nb = acts.nb;
    assert!(w.len() >= nb * GB && xq.len() >= (t0 + T) * xrb && acts.d.len() >= (t0 + T) * nb);
    let mut acc = [_mm512_setzero_ps(); T];
    let pf = crate::dispatch::prefetch_ahead();
    for i in 0..nb {
        let b = w.as_ptr().add(i * GB);
        crate::x86::prefetch_ahead(b, Q_AT, pf);
        let mut isum = [_mm512_setzero_si512(); T];
        for s in 0..16 {
            crate::x86::prefetch_ahead(b.add(Q_AT + 256 * s), 256, pf);
            let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.add(SC_AT + G * s) as *const __m128i));
            let q: [__m512i; 4] = std::array::from_fn(|k| {
                _mm512_loadu_si512(b.add(Q_AT + 64 * (4 * s + k)) as *const _)
            });
            for t in 0..T {
                let at = (t0 + t) * nb + i;
                let x = xq.as_ptr().add((t0 + t) * xrb + i * XB + 4 + 16 * s) as *const i32;
                let mut v = _mm512_set1_epi32(acts.init[at * 16 + s]);
                for (k, qk) in q.iter().enumerate() {
                    v = _mm512_dpbusd_epi32(v, *qk, _mm512_set1_epi32(x.add(k).read_unaligned()));
                }
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(v, sc));
            }
        }
        let dw = _mm512_loadu_ps(b.add(D_AT) as *const f32);
        for t in 0..T {
            let r = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), dw);
            let yd = _mm512_set1_ps(acts.d[(t0 + t) * nb + i]);
            acc[t] = _mm512_fmadd_ps(r, yd, acc[t]);
        }
    }
    for t in 0..T {
        _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
    }
}

/// Up to four tokens (`t0..t0 + nt`) against one group; `put(t, lane, v)`.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI.
pub unsafe fn tokens(
    w: &[u8],
    xq: &[u8],
    xrb: usize,
    acts: &Acts,
    t0: usize,
    nt: usize,
    mut put: impl FnMut(usize, usize, f32),
) {
    crate::x86::r16::up_to_four_tokens!(nt, t0, put, |o| group::<_>(w, xq, xrb, acts, t0, o));
}
