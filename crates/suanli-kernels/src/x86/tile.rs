//! Register-tiled matmul kernels for the 32-element block formats: one call
//! computes [`TR`] weight rows × [`TC`] activation rows, unpacking each
//! weight block once for all tokens and each activation block once for all
//! rows (prefill). Every output keeps its own 8-lane accumulator and sees
//! exactly the operations of the one-row kernel in `x86.rs`, so tiles return
//! the reference's bits. With AVX-512 VNNI the integer lanes come from one
//! `vpdpbusd` instead of `maddubs` + `madd` (the same exact sums).

#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use crate::x86::{finish, high_bits, nibbles};

/// Weight rows per tile.
pub const TR: usize = 4;
/// Activation rows (tokens) per tile.
pub const TC: usize = 4;

/// Where block `i` of weight row `r` is: at `w + r·row + i·block`.
#[derive(Clone, Copy, Debug)]
pub struct Strides {
    pub row: usize,
    pub block: usize,
}

impl Strides {
    /// The row layout: rows of `nb` blocks of `bb` bytes, one after another.
    pub fn rows(nb: usize, bb: usize) -> Self {
        Strides {
            row: nb * bb,
            block: bb,
        }
    }

    /// The 4-row layout of [`repack_rows4`], from the start of a group.
    pub fn rows4(bb: usize) -> Self {
        Strides {
            row: bb,
            block: G4 * bb,
        }
    }
}

/// The activation rows of a tile or decode call.
#[derive(Clone, Copy, Debug)]
pub struct Acts<'a> {
    /// Row `c` at `x + c·xrb`, in the format's `vec_dot_type`.
    pub x: &'a [u8],
    pub xrb: usize,
    /// The blocks' scales widened to f32 by [`widen_scales`].
    pub xs: &'a [f32],
    /// For the formats with a zero point at the VNNI level, the starts of
    /// the integer lanes by [`lane_starts`]; empty otherwise.
    pub init: &'a [i32],
}

/// `out[r][c] = w_r · x_c` for the `TR` weight rows at `w` (laid out as
/// `ws` says) and the `TC` activation rows of `a`, `n` elements each.
pub type TileDot = fn(n: usize, w: &[u8], ws: Strides, a: Acts, out: &mut [[f32; TC]; TR]);

/// The zero point a format's VNNI kernels add to its weights (they run
/// on unsigned bytes), where it has one.
pub fn vnni_offset(ty: crate::DType) -> Option<i32> {
    use crate::DType::*;
    match ty {
        Q8_0 => Some(128),
        Q4_0 => Some(8),
        Q5_0 => Some(16),
        _ => None,
    }
}

/// The integer lanes' starts for `rows` Q8_0 activation rows at
/// `x + c·xrb` (`nb` blocks each) against weights offset by `off`:
/// `−off · Σ` of each lane's four activations, as `[nb][rows][8]`.
pub fn lane_starts(off: i32, x: &[u8], xrb: usize, nb: usize, rows: usize, out: &mut Vec<i32>) {
    out.clear();
    for i in 0..nb {
        for c in 0..rows {
            let q = &x[c * xrb + i * 34 + 2..][..32];
            out.extend(
                q.chunks_exact(4)
                    .map(|l| -off * l.iter().map(|&b| b as i8 as i32).sum::<i32>()),
            );
        }
    }
}

/// The f16 scales (`d`, and `s` for Q8_1) of the `TC` activation rows at
/// `x + c·xrb`, `nb` blocks of `xb` bytes each, widened into `xs` as
/// `[d: nb × TC][s: nb × TC]`.
pub fn widen_scales(
    x: &[u8],
    xrb: usize,
    nb: usize,
    xb: usize,
    with_sums: bool,
    xs: &mut Vec<f32>,
) {
    widen_scales_of(TC, x, xrb, nb, xb, with_sums, xs)
}

/// [`widen_scales`] for `rows` activation rows.
pub fn widen_scales_of(
    rows: usize,
    x: &[u8],
    xrb: usize,
    nb: usize,
    xb: usize,
    with_sums: bool,
    xs: &mut Vec<f32>,
) {
    use half::slice::HalfFloatSliceExt;
    let offsets: &[usize] = if with_sums { &[0, 2] } else { &[0] };
    let mut h = Vec::with_capacity(offsets.len() * nb * rows);
    for &o in offsets {
        for i in 0..nb {
            h.extend((0..rows).map(|c| {
                let p = c * xrb + i * xb + o;
                half::f16::from_le_bytes([x[p], x[p + 1]])
            }));
        }
    }
    // One conversion of the whole slice (F16C where the CPU has it): a
    // call per value cost ~0.9 µs a decode matmul, 4% of SmolLM2's token.
    xs.clear();
    xs.resize(h.len(), 0.0);
    h.convert_to_f32_slice(xs);
}

/// `w_r · x_c` in lane `r·C + c` (of two vectors), for the f16 at
/// `w + r·wrb` of `R` weight rows and the f32 `x[c]` of `C` activation rows
/// (shapes 4×4 and 4×1).
#[inline(always)]
pub(crate) unsafe fn products<const R: usize, const C: usize>(
    w: *const u8,
    wrb: usize,
    x: *const f32,
) -> [__m256; 2] {
    const { assert!(R == 4 && (C == 4 || C == 1)) };
    let h = |r: usize| i16::from_le_bytes([*w.add(r * wrb), *w.add(r * wrb + 1)]);
    let dw = _mm_cvtph_ps(_mm_set_epi16(0, 0, 0, 0, h(3), h(2), h(1), h(0)));
    if C == 1 {
        return [
            _mm256_zextps128_ps256(_mm_mul_ps(dw, _mm_set1_ps(*x))),
            _mm256_setzero_ps(),
        ];
    }
    let x = _mm_loadu_ps(x);
    let row = |r: usize| {
        let b = match r {
            0 => _mm_shuffle_ps::<0x00>(dw, dw),
            1 => _mm_shuffle_ps::<0x55>(dw, dw),
            2 => _mm_shuffle_ps::<0xAA>(dw, dw),
            _ => _mm_shuffle_ps::<0xFF>(dw, dw),
        };
        _mm_mul_ps(b, x)
    };
    [
        _mm256_set_m128(row(1), row(0)),
        _mm256_set_m128(row(3), row(2)),
    ]
}

/// Q5 values: the nibbles plus 16 where bit `k` of `qh` is set. With
/// AVX-512 BW the bits are a mask register (2 instructions instead of 6).
#[inline(always)]
pub(crate) unsafe fn with_high_bits<const BW: bool>(nib: __m256i, qh: u32) -> __m256i {
    if BW {
        _mm256_mask_add_epi8(nib, qh, nib, _mm256_set1_epi8(0x10))
    } else {
        _mm256_or_si256(nib, high_bits(qh))
    }
}

/// Integer lanes of one weight block against the TC activation blocks.
/// Signed weights: with VNNI, `w + off` as u8 against `x`, the excess
/// `off·Σx` taken out by starting the accumulator at `−off·Σx` (exact
/// integers, so the same sums; the starts come precomputed per activation
/// block in [`Acts::init`]); without, the `sign` trick (|w| as u8, the
/// sign moved onto x).
///
/// The blocks go in chunks of [`CH`]: first every block's `TR × TC` scale
/// products into a table, then the integer work, each FMA reading its
/// scale from the table (a broadcast operand, no shuffles).
macro_rules! tile_kernel {
    ($name:ident, $TR:expr, $TC:expr, $feat:literal, $vnni:expr, $wb:expr, $xb:expr, $xq:expr, $min:expr, $off:expr, $vals:expr) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: usize, w: &[u8], ws: Strides, a: Acts, out: &mut [[f32; $TC]; $TR]) {
            const TR: usize = $TR;
            const TC: usize = $TC;
            let (wrb, wbs) = (ws.row, ws.block);
            let (x, xrb, xs) = (a.x, a.xrb, a.xs);
            let nb = n / 32;
            let signed = $off != 0;
            assert!(wbs >= $wb && nb > 0);
            assert!(
                w.len() >= (TR - 1) * wrb + (nb - 1) * wbs + $wb
                    && x.len() >= (TC - 1) * xrb + nb * $xb
            );
            assert!(xs.len() >= if $min { 2 } else { 1 } * nb * TC);
            assert!(!($vnni && signed) || a.init.len() >= nb * TC * 8);
            // Decode streams the weights once. In the row layout, fetch
            // the rows three calls ahead (the prefetchers lose track of
            // four interleaved rows); the 4-row layout is one stream,
            // fetched into L2 ahead where `prefetch_ahead` says so.
            let ahead = if wbs == $wb { 3 * TR * wrb } else { 0 };
            let pf = match TC == 1 && ahead == 0 {
                true => crate::dispatch::prefetch_ahead(),
                false => 0,
            };
            let (wp, xp, ip) = (w.as_ptr(), x.as_ptr(), a.init.as_ptr());
            let mut acc = [[_mm256_setzero_ps(); TC]; TR];
            let mut summs = [_mm256_setzero_ps(); 2];
            // Written before read, block by block: no zeroing (2 KB a call).
            let mut d = std::mem::MaybeUninit::<[f32; CH * 16 + 8]>::uninit();
            let d = d.as_mut_ptr() as *mut f32;
            for i0 in (0..nb).step_by(CH) {
                let i1 = (i0 + CH).min(nb);
                scale_table::<TR, TC, $min>(
                    i0..i1,
                    |i| (wp.add(i * wbs), wrb, 2),
                    xs,
                    nb,
                    d,
                    &mut summs,
                );
                for i in i0..i1 {
                    let (wk, xk) = (wp.add(i * wbs), xp.add(i * $xb));
                    crate::x86::prefetch_shadow_l2(wk, wbs, pf);
                    let y: [__m256i; TC] = std::array::from_fn(|c| {
                        _mm256_loadu_si256(xk.add(c * xrb + $xq) as *const __m256i)
                    });
                    let dk = d.add((i - i0) * TR * TC) as *const f32;
                    for r in 0..TR {
                        if TC == 1 && ahead != 0 {
                            _mm_prefetch::<_MM_HINT_T0>(
                                wk.wrapping_add(r * wrb + ahead) as *const i8
                            );
                        }
                        // Raw unsigned values; `off` is the format's zero point.
                        let q: __m256i = $vals(wk.add(r * wrb));
                        let qs = if signed && !$vnni {
                            _mm256_sub_epi8(q, _mm256_set1_epi8($off as u8 as i8))
                        } else {
                            q
                        };
                        let uq = if signed && !$vnni {
                            _mm256_sign_epi8(qs, qs)
                        } else {
                            q
                        };
                        for c in 0..TC {
                            let ints = if $vnni {
                                let init = if signed {
                                    _mm256_loadu_si256(ip.add((i * TC + c) * 8) as *const __m256i)
                                } else {
                                    _mm256_setzero_si256()
                                };
                                _mm256_dpbusd_epi32(init, uq, y[c])
                            } else {
                                let yc = if signed {
                                    _mm256_sign_epi8(y[c], qs)
                                } else {
                                    y[c]
                                };
                                _mm256_madd_epi16(
                                    _mm256_maddubs_epi16(uq, yc),
                                    _mm256_set1_epi16(1),
                                )
                            };
                            let lanes = _mm256_cvtepi32_ps(ints);
                            acc[r][c] = _mm256_fmadd_ps(
                                _mm256_broadcast_ss(&*dk.add(r * TC + c)),
                                lanes,
                                acc[r][c],
                            );
                        }
                    }
                }
            }
            finish_tile::<TR, TC, $min>(&acc, summs, out);
        }
    };
}

/// Blocks per chunk of a tile call's scale table.
pub(crate) const CH: usize = 32;

/// Fills `d` with the `TR × TC` scale products (`d_w · d_x`, as the
/// one-row kernel rounds them) of blocks `range` (relative to its start)
/// and, for formats with a min, adds `m_w · s_x` to `summs`. `at(i)` is
/// block `i`'s first row's scales, the row stride of the scales, and the
/// offset of `m` from `d`.
#[inline(always)]
pub(crate) unsafe fn scale_table<const TR: usize, const TC: usize, const MIN: bool>(
    range: std::ops::Range<usize>,
    at: impl Fn(usize) -> (*const u8, usize, usize),
    xs: &[f32],
    nb: usize,
    d: *mut f32,
    summs: &mut [__m256; 2],
) {
    let i0 = range.start;
    for i in range {
        let (wk, stride, m_off) = at(i);
        let dd = products::<TR, TC>(wk, stride, xs.as_ptr().add(i * TC));
        let o = d.add((i - i0) * TR * TC);
        if TC == 1 {
            _mm_storeu_ps(o, _mm256_castps256_ps128(dd[0]));
        } else {
            _mm256_storeu_ps(o, dd[0]);
            _mm256_storeu_ps(o.add(8), dd[1]);
        }
        if MIN {
            let ms = products::<TR, TC>(wk.add(m_off), stride, xs.as_ptr().add((nb + i) * TC));
            *summs = [
                _mm256_add_ps(summs[0], ms[0]),
                _mm256_add_ps(summs[1], ms[1]),
            ];
        }
    }
}

/// `out[r][c]`: the horizontal sum of each accumulator (as the one-row
/// kernel's), plus the min term for formats with one.
#[inline(always)]
pub(crate) unsafe fn finish_tile<const TR: usize, const TC: usize, const MIN: bool>(
    acc: &[[__m256; TC]; TR],
    summs: [__m256; 2],
    out: &mut [[f32; TC]; TR],
) {
    let mut s = [0f32; 16];
    _mm256_storeu_ps(s.as_mut_ptr(), summs[0]);
    _mm256_storeu_ps(s.as_mut_ptr().add(8), summs[1]);
    for r in 0..TR {
        for c in 0..TC {
            // (No `+ 0.0` without a min: it would turn −0 into +0.)
            out[r][c] = if MIN {
                finish(acc[r][c]) + s[r * TC + c]
            } else {
                finish(acc[r][c])
            };
        }
    }
}

macro_rules! formats {
    ($R:expr, $C:expr, $feat:literal, $vnni:expr, $q8_0:ident, $q4_0:ident, $q5_0:ident, $q4_1:ident, $q5_1:ident) => {
        // Q8_0 as unsigned: the byte + 128.
        tile_kernel!(
            $q8_0,
            $R,
            $C,
            $feat,
            $vnni,
            34,
            34,
            2,
            false,
            128,
            |wk: *const u8| {
                let q = _mm256_loadu_si256(wk.add(2) as *const __m256i);
                _mm256_xor_si256(q, _mm256_set1_epi8(-128))
            }
        );
        tile_kernel!(
            $q4_0,
            $R,
            $C,
            $feat,
            $vnni,
            18,
            34,
            2,
            false,
            8,
            |wk: *const u8| { nibbles(wk.add(2)) }
        );
        tile_kernel!(
            $q5_0,
            $R,
            $C,
            $feat,
            $vnni,
            22,
            34,
            2,
            false,
            16,
            |wk: *const u8| {
                let qh = u32::from_le_bytes([*wk.add(2), *wk.add(3), *wk.add(4), *wk.add(5)]);
                with_high_bits::<$vnni>(nibbles(wk.add(6)), qh)
            }
        );
        tile_kernel!(
            $q4_1,
            $R,
            $C,
            $feat,
            $vnni,
            20,
            36,
            4,
            true,
            0,
            |wk: *const u8| { nibbles(wk.add(4)) }
        );
        tile_kernel!(
            $q5_1,
            $R,
            $C,
            $feat,
            $vnni,
            24,
            36,
            4,
            true,
            0,
            |wk: *const u8| {
                let qh = u32::from_le_bytes([*wk.add(4), *wk.add(5), *wk.add(6), *wk.add(7)]);
                with_high_bits::<$vnni>(nibbles(wk.add(8)), qh)
            }
        );
    };
}

formats!(
    4,
    4,
    "avx2,fma,f16c",
    false,
    q8_0_avx2,
    q4_0_avx2,
    q5_0_avx2,
    q4_1_avx2,
    q5_1_avx2
);
formats!(
    4,
    4,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    true,
    q8_0_vnni,
    q4_0_vnni,
    q5_0_vnni,
    q4_1_vnni,
    q5_1_vnni
);
formats!(
    4,
    1,
    "avx2,fma,f16c",
    false,
    g8_0_avx2,
    g4_0_avx2,
    g5_0_avx2,
    g4_1_avx2,
    g5_1_avx2
);
formats!(
    4,
    1,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    true,
    g8_0_vnni,
    g4_0_vnni,
    g5_0_vnni,
    g4_1_vnni,
    g5_1_vnni
);

/// Rows per call of the decode (one-token) kernels.
pub const GR: usize = 4;

/// `out[r][0] = w_r · x` for the `GR` weight rows at `w + r·wrb` and one
/// activation row; `xs` as [`widen_scales`] with one row.
pub type GemvDot = fn(n: usize, w: &[u8], ws: Strides, a: Acts, out: &mut [[f32; 1]; GR]);

macro_rules! safe {
    ($C:expr, $R:expr; $($safe:ident => $f:ident),* $(,)?) => {
        $(
            // SAFETY: handed out by `tile_dot`/`gemv_dot` only where the CPU has the features.
            pub(crate) fn $safe(
                n: usize,
                w: &[u8],
                ws: Strides,
                a: Acts,
                out: &mut [[f32; $C]; $R],
            ) {
                unsafe { $f(n, w, ws, a, out) }
            }
        )*
    };
}

safe!(TC, TR;
    s_q8_0_avx2 => q8_0_avx2, s_q4_0_avx2 => q4_0_avx2, s_q5_0_avx2 => q5_0_avx2,
    s_q4_1_avx2 => q4_1_avx2, s_q5_1_avx2 => q5_1_avx2,
    s_q8_0_vnni => q8_0_vnni, s_q4_0_vnni => q4_0_vnni, s_q5_0_vnni => q5_0_vnni,
    s_q4_1_vnni => q4_1_vnni, s_q5_1_vnni => q5_1_vnni,
);
safe!(1, GR;
    s_g8_0_avx2 => g8_0_avx2, s_g4_0_avx2 => g4_0_avx2, s_g5_0_avx2 => g5_0_avx2,
    s_g4_1_avx2 => g4_1_avx2, s_g5_1_avx2 => g5_1_avx2,
    s_g8_0_vnni => g8_0_vnni, s_g4_0_vnni => g4_0_vnni, s_g5_0_vnni => g5_0_vnni,
    s_g4_1_vnni => g4_1_vnni, s_g5_1_vnni => g5_1_vnni,
);

/// The decode kernel of `ty` at `level`, where there is one.
pub fn gemv_dot(ty: crate::DType, level: crate::dispatch::Level) -> Option<GemvDot> {
    use crate::dispatch::Level;
    use crate::DType::*;
    let f: GemvDot = match (level, ty) {
        (Level::Avx512, Q8_0) => s_g8_0_vnni,
        (Level::Avx512, Q4_0) => crate::x86::gemv_zmm::z_g4_0,
        (Level::Avx512, Q5_0) => crate::x86::gemv_zmm::z_g5_0,
        (Level::Avx512, Q4_1) => crate::x86::gemv_zmm::z_g4_1,
        (Level::Avx512, Q5_1) => crate::x86::gemv_zmm::z_g5_1,
        (Level::Avx2, Q8_0) => s_g8_0_avx2,
        (Level::Avx2, Q4_0) => s_g4_0_avx2,
        (Level::Avx2, Q5_0) => s_g5_0_avx2,
        (Level::Avx2, Q4_1) => s_g4_1_avx2,
        (Level::Avx2, Q5_1) => s_g5_1_avx2,
        _ => return None,
    };
    Some(f)
}

/// The tile kernel of `ty` at `level`, where there is one.
pub fn tile_dot(ty: crate::DType, level: crate::dispatch::Level) -> Option<TileDot> {
    use crate::dispatch::Level;
    use crate::DType::*;
    let f: TileDot = match (level, ty) {
        (Level::Avx512, Q8_0) => s_q8_0_vnni,
        (Level::Avx512, Q4_0) => s_q4_0_vnni,
        (Level::Avx512, Q5_0) => s_q5_0_vnni,
        (Level::Avx512, Q4_1) => s_q4_1_vnni,
        (Level::Avx512, Q5_1) => s_q5_1_vnni,
        (Level::Avx2, Q8_0) => s_q8_0_avx2,
        (Level::Avx2, Q4_0) => s_q4_0_avx2,
        (Level::Avx2, Q5_0) => s_q5_0_avx2,
        (Level::Avx2, Q4_1) => s_q4_1_avx2,
        (Level::Avx2, Q5_1) => s_q5_1_avx2,
        _ => return None,
    };
    Some(f)
}

/// Rows per group of the 4-row layout (one tile's or decode call's rows).
pub const G4: usize = 4;
const _: () = assert!(G4 == TR && G4 == GR);

/// The 4-row layout of a `rows × nb`-block matrix of `bb`-byte blocks
/// (`rows` a multiple of [`G4`]): each group of four rows keeps its place,
/// its blocks interleaved — block `i` of row `4g + j` at byte
/// `(4g·nb + 4i + j)·bb` — so a tile or decode call reads one stream
/// instead of four rows a row apart. The blocks are unchanged, and so are
/// the kernels' sums.
pub fn repack_rows4(src: &[u8], rows: usize, nb: usize, bb: usize) -> Vec<u8> {
    let rb = nb * bb;
    let mut out = vec![0u8; rows * rb];
    for (g, (dst, grp)) in out
        .chunks_exact_mut(G4 * rb)
        .zip(src.chunks_exact(G4 * rb))
        .enumerate()
    {
        debug_assert!(g * G4 < rows);
        for (k, d) in dst.chunks_exact_mut(bb).enumerate() {
            let (i, j) = (k / G4, k % G4);
            d.copy_from_slice(&grp[j * rb + i * bb..][..bb]);
        }
    }
    out
}

/// Block `i` of row `r` of a matrix in the 4-row layout of [`repack_rows4`].
pub fn block_of_rows4(data: &[u8], nb: usize, bb: usize, r: usize, i: usize) -> &[u8] {
    let (g, j) = (r / G4, r % G4);
    &data[(g * G4 * nb + i * G4 + j) * bb..][..bb]
}
