//! The 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) repacked at
//! load into groups of 16 rows whose vector lanes are rows, for the
//! batch-invariant server (see [`crate::dispatch::set_batch_invariant`]).
//!
//! With AVX-512 VNNI one `vpdpbusd` multiplies four quants of each of the
//! 16 rows by the same four activation bytes (broadcast), so a block's
//! exact integer sums arrive one per lane with no horizontal reduction, and
//! the float work is one convert and one FMA per block for 16 rows — where
//! llama.cpp's order needs both per row. Results follow the block-sum
//! order of [`crate::quants::legacy::blocksum_vec_dot`] bit for bit.
//!
//! Layout of one group's block (16 × the format's block bytes):
//! `d[16]` (f16), for Q4_1/Q5_1 `m[16]` (f16), for Q5 eight 64-bit masks
//! (mask `s`, bit `4r + b`: the fifth bit of the element that byte `b` of
//! row `r` holds in slot `s`), then the quants by slot: for Q8_0 slots
//! `s = 0..8` hold bytes `4s..4s + 4` of each row (plus 128, as u8); for the
//! 4/5-bit formats slots `j = 0..4` hold `qs[4j..4j + 4]` of each row, whose
//! low nibbles are elements `4j..` (slot `j`) and high nibbles elements
//! `16 + 4j..` (slot `4 + j`).

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use crate::DType;

/// Rows per group.
pub const G: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Q8_0,
    Q4_0,
    Q5_0,
    Q4_1,
    Q5_1,
}

impl Kind {
    fn of(ty: DType) -> Option<Kind> {
        Some(match ty {
            DType::Q8_0 => Kind::Q8_0,
            DType::Q4_0 => Kind::Q4_0,
            DType::Q5_0 => Kind::Q5_0,
            DType::Q4_1 => Kind::Q4_1,
            DType::Q5_1 => Kind::Q5_1,
            _ => return None,
        })
    }
    /// Bytes of one block of one row in the original format.
    fn wb(self) -> usize {
        match self {
            Kind::Q8_0 => 34,
            Kind::Q4_0 => 18,
            Kind::Q5_0 => 22,
            Kind::Q4_1 => 20,
            Kind::Q5_1 => 24,
        }
    }
    fn min(self) -> bool {
        matches!(self, Kind::Q4_1 | Kind::Q5_1)
    }
    fn five(self) -> bool {
        matches!(self, Kind::Q5_0 | Kind::Q5_1)
    }
    /// Offset of the masks and of the quants in a group block.
    fn masks_at(self) -> usize {
        if self.min() {
            64
        } else {
            32
        }
    }
    fn qs_at(self) -> usize {
        self.masks_at() + if self.five() { 64 } else { 0 }
    }
    /// Subtracted from every quant (as u8) to get its signed value.
    fn zero_point(self) -> i32 {
        match self {
            Kind::Q8_0 => 128,
            Kind::Q4_0 => 8,
            Kind::Q5_0 => 16,
            Kind::Q4_1 | Kind::Q5_1 => 0,
        }
    }
    /// Offsets in the original block: (d, m, qh, qs).
    fn src_parts(self) -> (usize, usize, usize, usize) {
        match self {
            Kind::Q8_0 => (0, 0, 0, 2),
            Kind::Q4_0 => (0, 0, 0, 2),
            Kind::Q5_0 => (0, 0, 2, 6),
            Kind::Q4_1 => (0, 2, 0, 4),
            Kind::Q5_1 => (0, 2, 4, 8),
        }
    }
}

/// Whether `ty` has a 16-row repacked kernel.
pub fn supports(ty: DType) -> bool {
    Kind::of(ty).is_some()
}

/// Bytes of one block of a 16-row group.
pub fn group_block_bytes(ty: DType) -> usize {
    Kind::of(ty).map_or(0, |k| G * k.wb())
}

/// Element `e` (0..32) of slot `s` byte `b`: the element it holds.
fn element(k: Kind, s: usize, b: usize) -> usize {
    if k == Kind::Q8_0 || s < 4 {
        4 * s + b
    } else {
        16 + 4 * (s - 4) + b
    }
}

/// Repacks `rows` (a multiple of 16) × `nb` blocks of `ty`.
pub fn repack(ty: DType, src: &[u8], rows: usize, nb: usize) -> Vec<u8> {
    let Some(k) = Kind::of(ty) else {
        return Vec::new();
    };
    let (wb, gbb) = (k.wb(), group_block_bytes(ty));
    let (d_at, m_at, qh_at, qs_at) = k.src_parts();
    let mut out = vec![0u8; rows / G * nb * gbb];
    for (g, og) in out.chunks_exact_mut(nb * gbb).enumerate() {
        for (i, o) in og.chunks_exact_mut(gbb).enumerate() {
            for r in 0..G {
                let b = &src[((G * g + r) * nb + i) * wb..][..wb];
                o[2 * r..2 * r + 2].copy_from_slice(&b[d_at..d_at + 2]);
                if k.min() {
                    o[32 + 2 * r..32 + 2 * r + 2].copy_from_slice(&b[m_at..m_at + 2]);
                }
                let qs = &b[qs_at..];
                if k == Kind::Q8_0 {
                    for s in 0..8 {
                        for bb in 0..4 {
                            o[k.qs_at() + 64 * s + 4 * r + bb] = qs[4 * s + bb] ^ 0x80;
                        }
                    }
                } else {
                    for j in 0..4 {
                        o[k.qs_at() + 64 * j + 4 * r..][..4].copy_from_slice(&qs[4 * j..4 * j + 4]);
                    }
                }
                if k.five() {
                    let qh =
                        u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
                    for s in 0..8 {
                        let mut m = 0u64;
                        for bb in 0..4 {
                            if qh >> element(k, s, bb) & 1 == 1 {
                                m |= 1 << (4 * r + bb);
                            }
                        }
                        let at = k.masks_at() + 8 * s;
                        let old = u64::from_le_bytes(o[at..at + 8].try_into().unwrap_or([0; 8]));
                        o[at..at + 8].copy_from_slice(&(old | m).to_le_bytes());
                    }
                }
            }
        }
    }
    out
}

/// The original bytes of block `i` of row `r` from a repacked matrix
/// (`data`: all groups, `nb` blocks per row).
pub fn original_block(ty: DType, data: &[u8], nb: usize, r: usize, i: usize) -> [u8; 34] {
    let mut out = [0u8; 34];
    let Some(k) = Kind::of(ty) else {
        return out;
    };
    let gbb = group_block_bytes(ty);
    let gb = &data[((r / G) * nb + i) * gbb..][..gbb];
    let lane = r % G;
    let (d_at, m_at, qh_at, qs_at) = k.src_parts();
    out[d_at..d_at + 2].copy_from_slice(&gb[2 * lane..2 * lane + 2]);
    if k.min() {
        out[m_at..m_at + 2].copy_from_slice(&gb[32 + 2 * lane..32 + 2 * lane + 2]);
    }
    if k == Kind::Q8_0 {
        for s in 0..8 {
            for b in 0..4 {
                out[qs_at + 4 * s + b] = gb[k.qs_at() + 64 * s + 4 * lane + b] ^ 0x80;
            }
        }
    } else {
        for j in 0..4 {
            out[qs_at + 4 * j..][..4].copy_from_slice(&gb[k.qs_at() + 64 * j + 4 * lane..][..4]);
        }
    }
    if k.five() {
        let mut qh = 0u32;
        for s in 0..8 {
            let at = k.masks_at() + 8 * s;
            let m = u64::from_le_bytes(gb[at..at + 8].try_into().unwrap_or([0; 8]));
            for b in 0..4 {
                if m >> (4 * lane + b) & 1 == 1 {
                    qh |= 1 << element(k, s, b);
                }
            }
        }
        out[qh_at..qh_at + 4].copy_from_slice(&qh.to_le_bytes());
    }
    out
}

/// Per token and block of the activations: `d_x`, the zero-point term
/// `−zp·Σx` and (Q8_1) `s`.
pub struct Acts {
    nb: usize,
    d: Vec<f32>,
    corr: Vec<i32>,
    s: Vec<f32>,
    /// Where a block's 32 quants start, from the block's first byte.
    q_at: usize,
    xb: usize,
}

impl Acts {
    /// For `n` rows of activations `xq` (`xrb` bytes each) quantized to the
    /// `vec_dot_type` of `ty`.
    pub fn new(ty: DType, xq: &[u8], xrb: usize, n: usize, nb: usize) -> Acts {
        let k = Kind::of(ty).unwrap_or(Kind::Q8_0);
        let (xb, q_at) = if k.min() { (36, 4) } else { (34, 2) };
        let zp = k.zero_point();
        let f16 = |b: &[u8], at: usize| half::f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
        let mut a = Acts {
            nb,
            d: Vec::with_capacity(n * nb),
            corr: Vec::with_capacity(n * nb),
            s: Vec::with_capacity(if k.min() { n * nb } else { 0 }),
            q_at,
            xb,
        };
        for t in 0..n {
            for i in 0..nb {
                let blk = &xq[t * xrb + i * xb..][..xb];
                a.d.push(f16(blk, 0));
                let sum: i32 = blk[q_at..q_at + 32].iter().map(|&v| v as i8 as i32).sum();
                a.corr.push(-zp * sum);
                if k.min() {
                    a.s.push(f16(blk, 2));
                }
            }
        }
        a
    }
}

/// `T` tokens (activation rows `t0..t0 + T` of `xq`) against one 16-row
/// group (`w`, `nb` blocks): `out[t][row]`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn group<const T: usize, const K: u8>(
    w: &[u8],
    xq: &[u8],
    xrb: usize,
    acts: &Acts,
    t0: usize,
    out: &mut [[f32; G]; T],
) {
    let k = match K {
        0 => Kind::Q8_0,
        1 => Kind::Q4_0,
        2 => Kind::Q5_0,
        3 => Kind::Q4_1,
        _ => Kind::Q5_1,
    };
    let nb = acts.nb;
    let gbb = G * k.wb();
    assert!(w.len() >= nb * gbb && xq.len() >= (t0 + T) * xrb && acts.d.len() >= (t0 + T) * nb);
    let m4 = _mm512_set1_epi8(0x0F);
    let b16 = _mm512_set1_epi8(0x10);
    let mut acc = [_mm512_setzero_ps(); T];
    let mut summ = [_mm512_setzero_ps(); T];
    let xk: [*const u8; T] = std::array::from_fn(|t| xq.as_ptr().add((t0 + t) * xrb + acts.q_at));
    let pf = crate::dispatch::prefetch_ahead();
    for i in 0..nb {
        let b = w.as_ptr().add(i * gbb);
        crate::x86::prefetch_ahead(b, gbb, pf);
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(b as *const __m256i));
        let qs = b.add(k.qs_at());
        let mut v = [_mm512_setzero_si512(); 8];
        if k == Kind::Q8_0 {
            for (s, vs) in v.iter_mut().enumerate() {
                *vs = _mm512_loadu_si512(qs.add(64 * s) as *const _);
            }
        } else {
            for j in 0..4 {
                let raw = _mm512_loadu_si512(qs.add(64 * j) as *const _);
                v[j] = _mm512_and_si512(raw, m4);
                v[4 + j] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
            }
            if k.five() {
                let masks = b.add(k.masks_at()) as *const u64;
                for (s, vs) in v.iter_mut().enumerate() {
                    let m = _cvtu64_mask64(masks.add(s).read_unaligned());
                    *vs = _mm512_mask_add_epi8(*vs, m, *vs, b16);
                }
            }
        }
        let mw = if k.min() {
            _mm512_cvtph_ps(_mm256_loadu_si256(b.add(32) as *const __m256i))
        } else {
            _mm512_setzero_ps()
        };
        for t in 0..T {
            let at = (t0 + t) * nb + i;
            let x = xk[t].add(i * acts.xb) as *const i32;
            let mut isum = _mm512_set1_epi32(acts.corr[at]);
            for (s, vs) in v.iter().enumerate() {
                isum = _mm512_dpbusd_epi32(isum, *vs, _mm512_set1_epi32(x.add(s).read_unaligned()));
            }
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(acts.d[at]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc[t]);
            if k.min() {
                summ[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(acts.s[at]), summ[t]);
            }
        }
    }
    for t in 0..T {
        let r = if k.min() {
            _mm512_add_ps(acc[t], summ[t])
        } else {
            acc[t]
        };
        _mm512_storeu_ps(out[t].as_mut_ptr(), r);
    }
}

/// Up to four tokens (`t0..t0 + nt`) against one group; calls `put(t, lane, v)`.
///
/// # Safety
/// As `group`; `ty` must be supported ([`supports`]).
#[allow(clippy::too_many_arguments)]
pub unsafe fn tokens(
    ty: DType,
    w: &[u8],
    xq: &[u8],
    xrb: usize,
    acts: &Acts,
    t0: usize,
    nt: usize,
    mut put: impl FnMut(usize, usize, f32),
) {
    let Some(k) = Kind::of(ty) else { return };
    up_to_four_tokens!(nt, t0, put, |o| match k {
        Kind::Q8_0 => group::<_, 0>(w, xq, xrb, acts, t0, o),
        Kind::Q4_0 => group::<_, 1>(w, xq, xrb, acts, t0, o),
        Kind::Q5_0 => group::<_, 2>(w, xq, xrb, acts, t0, o),
        Kind::Q4_1 => group::<_, 3>(w, xq, xrb, acts, t0, o),
        Kind::Q5_1 => group::<_, 4>(w, xq, xrb, acts, t0, o),
    });
}

/// Runs `$kernel(&mut out)` — a 16-row group against `$nt` (1 to 4)
/// tokens, the token count a const generic inferred from `out` — and hands
/// each output to `$put(token, lane, value)`.
macro_rules! up_to_four_tokens {
    ($nt:expr, $t0:expr, $put:expr, |$o:ident| $kernel:expr) => {{
        macro_rules! run {
            ($T:expr) => {{
                let mut out = [[0f32; G]; $T];
                {
                    let $o = &mut out;
                    $kernel;
                }
                for (t, row) in out.iter().enumerate() {
                    for (lane, &v) in row.iter().enumerate() {
                        $put($t0 + t, lane, v);
                    }
                }
            }};
        }
        match $nt {
            0 => {}
            1 => run!(1),
            2 => run!(2),
            3 => run!(3),
            _ => run!(4),
        }
    }};
}
pub(crate) use up_to_four_tokens;
