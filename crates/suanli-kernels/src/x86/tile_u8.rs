//! Prefill of the 32-element formats at the AVX-512 VNNI level from
//! weights unpacked once per group of four rows and many tokens.
//!
//! The register tile of [`crate::x86::tile`] unpacks each weight block
//! (nibbles, fifth bits) again for every four tokens: seven vector
//! operations per row and block against one `vpdpbusd` per (row, token),
//! whose single pipe on Zen 4 is the floor. Here [`Unpack`] writes four
//! rows' blocks as plain unsigned bytes with their f16 scales into a small
//! buffer that stays in L1 while a whole block of tokens streams past
//! ([`TileU8`]), so the inner loop is a load, a `vpdpbusd`, a convert and
//! an FMA per (row, token) and block. The integer lanes and the FMA order
//! are the one-row kernel's, so are the bits.

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use crate::x86::nibbles;
use crate::x86::tile::{finish_tile, scale_table, with_high_bits, Acts, Strides, G4};

/// Bytes of one unpacked block of four rows: `d` (4 × f16), `m` (4 × f16,
/// zero where the format has none), then each row's 32 values as u8 — with
/// `dup`, each row's 64: every dword twice, as [`tile_pairs`] pairs tokens
/// by 32-bit lane (one load a row and block instead of a load and a
/// cross-lane permute on the shuffle port the `vpdpbusd`s need).
pub const fn unpacked_bytes(dup: bool) -> usize {
    16 + G4 * if dup { 64 } else { 32 }
}

/// Writes the `n / 32` blocks of the four rows at `w` (laid out as `ws`
/// says) into `buf` (`n / 32 × UB` bytes).
pub type Unpack = fn(n: usize, w: &[u8], ws: Strides, buf: &mut [u8]);

/// `out[r][c] = w_r · x_c` for the four rows unpacked in `buf` and the
/// four activation rows of `a`, `n` elements each.
pub type TileU8 = fn(n: usize, buf: &[u8], a: Acts, out: &mut [[f32; 4]; 4]);

macro_rules! unpack {
    ($name:ident, $safe:ident, $wb:expr, $min:expr, $vals:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name<const DUP: bool>(n: usize, w: &[u8], ws: Strides, buf: &mut [u8]) {
            let ub = unpacked_bytes(DUP);
            let nb = n / 32;
            assert!(nb > 0 && ws.block >= $wb);
            assert!(w.len() >= (G4 - 1) * ws.row + (nb - 1) * ws.block + $wb);
            assert!(buf.len() >= nb * ub);
            let (wp, bp) = (w.as_ptr(), buf.as_mut_ptr());
            let twice = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
            for i in 0..nb {
                let (wk, o) = (wp.add(i * ws.block), bp.add(i * ub));
                for r in 0..G4 {
                    let b = wk.add(r * ws.row);
                    std::ptr::copy_nonoverlapping(b, o.add(2 * r), 2);
                    if $min {
                        std::ptr::copy_nonoverlapping(b.add(2), o.add(8 + 2 * r), 2);
                    } else {
                        std::ptr::write_bytes(o.add(8 + 2 * r), 0, 2);
                    }
                    let q: __m256i = $vals(b);
                    if DUP {
                        let q = _mm512_permutexvar_epi32(twice, _mm512_castsi256_si512(q));
                        _mm512_storeu_si512(o.add(16 + 64 * r) as *mut __m512i, q);
                    } else {
                        _mm256_storeu_si256(o.add(16 + 32 * r) as *mut __m256i, q);
                    }
                }
            }
        }

        // SAFETY: handed out by `kernels` only where the CPU has the features.
        fn $safe<const DUP: bool>(n: usize, w: &[u8], ws: Strides, buf: &mut [u8]) {
            unsafe { $name::<DUP>(n, w, ws, buf) }
        }
    };
}

// The values as the VNNI tile kernels see them: unsigned, the format's
// zero point added (Q8_0: the byte + 128).
unpack!(u_q8_0, s_u_q8_0, 34, false, |b: *const u8| {
    _mm256_xor_si256(
        _mm256_loadu_si256(b.add(2) as *const __m256i),
        _mm256_set1_epi8(-128),
    )
});
unpack!(u_q4_0, s_u_q4_0, 18, false, |b: *const u8| nibbles(
    b.add(2)
));
unpack!(u_q5_0, s_u_q5_0, 22, false, |b: *const u8| {
    let qh = u32::from_le_bytes([*b.add(2), *b.add(3), *b.add(4), *b.add(5)]);
    with_high_bits::<true>(nibbles(b.add(6)), qh)
});
unpack!(u_q4_1, s_u_q4_1, 20, true, |b: *const u8| nibbles(b.add(4)));
unpack!(u_q5_1, s_u_q5_1, 24, true, |b: *const u8| {
    let qh = u32::from_le_bytes([*b.add(4), *b.add(5), *b.add(6), *b.add(7)]);
    with_high_bits::<true>(nibbles(b.add(8)), qh)
});

/// The blocks of a tile call over `n` elements, once its buffers are
/// checked to hold them (four activation rows of `XB`-byte blocks).
fn checked<const MIN: bool, const SIGNED: bool, const XB: usize, const UB: usize>(
    n: usize,
    buf: &[u8],
    a: &Acts,
) -> usize {
    let nb = n / 32;
    assert!(nb > 0 && buf.len() >= nb * UB);
    assert!(a.x.len() >= 3 * a.xrb + nb * XB);
    assert!(a.xs.len() >= if MIN { 2 } else { 1 } * nb * 4);
    assert!(!SIGNED || a.init.len() >= nb * 4 * 8);
    nb
}

/// The block loop both tile kernels share: the buffers checked, then for
/// every block `i` of four unpacked rows, `block(i, its unpacked bytes,
/// the four activation rows' block, its (row, token) scale products)`,
/// the scale table made a chunk of [`crate::x86::tile::CH`] blocks at a
/// time. Returns the `MIN` formats' sums for [`finish_tile`].
#[inline(always)]
unsafe fn each_block<const MIN: bool, const SIGNED: bool, const XB: usize, const UB: usize>(
    n: usize,
    buf: &[u8],
    a: &Acts,
    mut block: impl FnMut(usize, *const u8, *const u8, *const f32),
) -> [__m256; 2] {
    const TR: usize = 4;
    const TC: usize = 4;
    use crate::x86::tile::CH;
    let nb = checked::<MIN, SIGNED, XB, UB>(n, buf, a);
    let (bp, xp) = (buf.as_ptr(), a.x.as_ptr());
    let mut summs = [_mm256_setzero_ps(); 2];
    // Written before read, block by block: no zeroing.
    let mut d = std::mem::MaybeUninit::<[f32; CH * TR * TC]>::uninit();
    let d = d.as_mut_ptr() as *mut f32;
    for i0 in (0..nb).step_by(CH) {
        let i1 = (i0 + CH).min(nb);
        scale_table::<TR, TC, MIN>(i0..i1, |i| (bp.add(i * UB), 2, 8), a.xs, nb, d, &mut summs);
        for i in i0..i1 {
            let dk = d.add((i - i0) * TR * TC) as *const f32;
            block(i, bp.add(i * UB), xp.add(i * XB), dk);
        }
    }
    summs
}

/// The tile over unpacked rows: `MIN` formats add `m · s` per block,
/// `SIGNED` ones start their lanes at [`Acts::init`]; activation blocks of
/// `XB` bytes, values at `XQ`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile<const MIN: bool, const SIGNED: bool, const XB: usize, const XQ: usize>(
    n: usize,
    buf: &[u8],
    a: Acts,
    out: &mut [[f32; 4]; 4],
) {
    const TR: usize = 4;
    const TC: usize = 4;
    let (xrb, ip) = (a.xrb, a.init.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); TC]; TR];
    const UB: usize = unpacked_bytes(false);
    let summs = each_block::<MIN, SIGNED, XB, UB>(n, buf, &a, |i, bk, xk, dk| {
        let y: [__m256i; TC] =
            std::array::from_fn(|c| _mm256_loadu_si256(xk.add(c * xrb + XQ) as *const __m256i));
        let init: [__m256i; TC] = std::array::from_fn(|c| {
            if SIGNED {
                _mm256_loadu_si256(ip.add((i * TC + c) * 8) as *const __m256i)
            } else {
                _mm256_setzero_si256()
            }
        });
        for (r, acc) in acc.iter_mut().enumerate() {
            let q = _mm256_loadu_si256(bk.add(16 + 32 * r) as *const __m256i);
            for (c, acc) in acc.iter_mut().enumerate() {
                let lanes = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(init[c], q, y[c]));
                *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*dk.add(r * TC + c)), lanes, *acc);
            }
        }
    });
    finish_tile::<TR, TC, MIN>(&acc, summs, out);
}

/// [`tile`] with two tokens in each 512-bit register, interleaved by
/// 32-bit lane: lane `2j` holds token `2p`'s lane `j`, lane `2j + 1` token
/// `2p + 1`'s, so the pair's scales are one 8-byte broadcast from the
/// scale table and every lane sees the 256-bit kernel's operations. Half
/// the `vpdpbusd`s, converts and FMAs: on the Intel cores measured
/// 512-bit `vpdpbusd` issues two a cycle, as the 256-bit one does (Zen 4
/// splits it in two, so it keeps [`tile`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_pairs<const MIN: bool, const SIGNED: bool, const XB: usize, const XQ: usize>(
    n: usize,
    buf: &[u8],
    a: Acts,
    out: &mut [[f32; 4]; 4],
) {
    const TR: usize = 4;
    const TC: usize = 4;
    let (xrb, ip) = (a.xrb, a.init.as_ptr());
    // Dword j of the first source to lane 2j, of the second to 2j + 1 (the
    // rows come so, `unpacked_bytes(true)`).
    let pair = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    let both = |p: *const u8, stride: usize| {
        _mm512_permutex2var_epi32(
            _mm512_castsi256_si512(_mm256_loadu_si256(p as *const __m256i)),
            pair,
            _mm512_castsi256_si512(_mm256_loadu_si256(p.add(stride) as *const __m256i)),
        )
    };
    let mut acc = [[_mm512_setzero_ps(); 2]; TR];
    const UB: usize = unpacked_bytes(true);
    let summs = each_block::<MIN, SIGNED, XB, UB>(n, buf, &a, |i, bk, xk, dk| {
        let y: [__m512i; 2] = std::array::from_fn(|p| both(xk.add(2 * p * xrb + XQ), xrb));
        let init: [__m512i; 2] = std::array::from_fn(|p| {
            if SIGNED {
                both(ip.add((i * TC + 2 * p) * 8) as *const u8, 32)
            } else {
                _mm512_setzero_si512()
            }
        });
        for (r, acc) in acc.iter_mut().enumerate() {
            let q = _mm512_loadu_si512(bk.add(16 + 64 * r) as *const __m512i);
            for (p, acc) in acc.iter_mut().enumerate() {
                let lanes = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init[p], q, y[p]));
                // The pair's two scales, side by side in the table.
                let s = (dk.add(r * TC + 2 * p) as *const f64).read_unaligned();
                *acc = _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(s)), lanes, *acc);
            }
        }
    });
    // Back to one 8-lane accumulator per (row, token) for the reference's
    // horizontal sums.
    let mut whole = [[_mm256_setzero_ps(); TC]; TR];
    for r in 0..TR {
        for p in 0..2 {
            let mut v = [0f32; 16];
            _mm512_storeu_ps(v.as_mut_ptr(), acc[r][p]);
            for t in 0..2 {
                let lanes: [f32; 8] = std::array::from_fn(|j| v[2 * j + t]);
                whole[r][2 * p + t] = _mm256_loadu_ps(lanes.as_ptr());
            }
        }
    }
    finish_tile::<TR, TC, MIN>(&whole, summs, out);
}

macro_rules! safe_tile {
    ($($safe:ident, $kernel:ident => $min:expr, $signed:expr, $xb:expr, $xq:expr;)*) => {
        $(
            // SAFETY: handed out by `kernels` only where the CPU has the features.
            fn $safe(n: usize, buf: &[u8], a: Acts, out: &mut [[f32; 4]; 4]) {
                unsafe { $kernel::<$min, $signed, $xb, $xq>(n, buf, a, out) }
            }
        )*
    };
}

safe_tile! {
    t_q8_1, tile => true, false, 36, 4;
    t_q8_0, tile => false, true, 34, 2;
    p_q8_1, tile_pairs => true, false, 36, 4;
    p_q8_0, tile_pairs => false, true, 34, 2;
}

/// The unpacking and tile kernels of `ty` at `level`, where there are, and
/// the bytes of an unpacked block of four rows between them.
pub fn kernels(ty: crate::DType, level: crate::dispatch::Level) -> Option<(Unpack, TileU8, usize)> {
    use crate::DType::*;
    if level != crate::dispatch::Level::Avx512 {
        return None;
    }
    let pairs = crate::dispatch::intel();
    let (q8_0, q8_1): (TileU8, TileU8) = match pairs {
        true => (p_q8_0, p_q8_1),
        false => (t_q8_0, t_q8_1),
    };
    let unpack: [Unpack; 2] = match ty {
        Q8_0 => [s_u_q8_0::<false>, s_u_q8_0::<true>],
        Q4_0 => [s_u_q4_0::<false>, s_u_q4_0::<true>],
        Q5_0 => [s_u_q5_0::<false>, s_u_q5_0::<true>],
        Q4_1 => [s_u_q4_1::<false>, s_u_q4_1::<true>],
        Q5_1 => [s_u_q5_1::<false>, s_u_q5_1::<true>],
        _ => return None,
    };
    let tile = match ty {
        Q4_1 | Q5_1 => q8_1,
        _ => q8_0,
    };
    Some((unpack[pairs as usize], tile, unpacked_bytes(pairs)))
}
