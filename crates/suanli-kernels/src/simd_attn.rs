//! SIMD instances of the attention kernels in [`crate::attention`], one per
//! [`Level`]; each returns the bits of the reference.

#![allow(unsafe_op_in_unsafe_fn)]

use half::f16;

use std::ops::Range;

use crate::attention::{
    per_row_partial_reference, qk_body, tile_rows_body, AttnShape, PlainV, TileRow, FA_TILE_KV, QR,
};
use crate::dispatch::Level;

/// Q·K of `QR` query rows against one transposed K tile.
pub(crate) fn qk(level: Level, q: [&[f32]; QR], kt: &[f32]) -> [[f32; FA_TILE_KV]; QR] {
    match level {
        // SAFETY: `level` is only above Generic where the CPU has the features.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::qk_avx512(q, kt) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::qk_avx2(q, kt) },
        _ => qk_body(q, kt),
    }
}

/// The tiled kernel's step for up to `QR` rows and one tile, from their Q·K.
pub(crate) fn tile_rows(
    level: Level,
    t: &[TileRow],
    kq: [[f32; FA_TILE_KV]; QR],
    m: &mut [f32],
    sum: &mut [f32],
    o: &mut [&mut [f32]],
) {
    match level {
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::tile_rows_avx512(t, kq, m, sum, o) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::tile_rows_avx2(t, kq, m, sum, o) },
        _ => tile_rows_body::<PlainV>(t, kq, m, sum, o),
    }
}

/// Query rows the grouped per-row kernel carries through one pass over
/// the keys.
pub(crate) const ROW_GROUP: usize = 8;

/// The per-row f16 kernel for up to [`ROW_GROUP`] query rows of one
/// position that share KV head `kvh`, over the positions `keys`: one pass
/// over the keys, each row's own chain of operations exactly as alone, so
/// the rows' independent chains overlap (decode at long context is bound
/// by the latency of one row's dot → exp → update chain per key). Row `i`'s
/// output accumulator (not yet divided by the sum) goes to `o[i]`, its
/// running maximum and sum to `ms[i]`
/// ([`crate::attention::per_row_partial_reference`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn per_rows(
    level: Level,
    s: &AttnShape,
    q: &[&[f32]],
    keys: Range<usize>,
    kvh: usize,
    ks: &[f16],
    vs: &[f16],
    o: &mut [&mut [f32]],
    ms: &mut [(f32, f32)],
) {
    assert!(q.len() == o.len() && q.len() == ms.len() && q.len() <= ROW_GROUP);
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 {
        // SAFETY (all four): as above.
        match (s.head_dim, s.head_dim_v) {
            (64, 64) => {
                return unsafe { x86::per_rows_zmm::<4, 4>(s, q, keys, kvh, ks, vs, o, ms) }
            }
            (128, 128) => {
                return unsafe { x86::per_rows_zmm::<8, 8>(s, q, keys, kvh, ks, vs, o, ms) }
            }
            (256, 256) => {
                return unsafe { x86::per_rows_zmm::<16, 16>(s, q, keys, kvh, ks, vs, o, ms) }
            }
            // Latent attention (DeepSeek): [latent 512 | rope 64] keys, the
            // latent the value.
            (576, 512) => {
                return unsafe { x86::per_rows_zmm::<36, 32>(s, q, keys, kvh, ks, vs, o, ms) }
            }
            _ => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if s.head_dim <= x86::MAX_DIM && s.head_dim_v <= x86::MAX_DIM {
        match level {
            // SAFETY: as above.
            Level::Avx512 => {
                return unsafe { x86::per_rows_avx512(s, q, keys, kvh, ks, vs, o, ms) }
            }
            Level::Avx2 => return unsafe { x86::per_rows_avx2(s, q, keys, kvh, ks, vs, o, ms) },
            _ => {}
        }
    }
    let _ = level;
    for ((qh, o), ms) in q.iter().zip(o.iter_mut()).zip(ms.iter_mut()) {
        *ms = per_row_partial_reference(s, qh, keys.clone(), kvh, ks, vs, o)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::*;
    use crate::attention::reduce16;

    /// Head dimensions the stack buffers of the per-row kernel hold (up to
    /// latent attention's 576).
    pub const MAX_DIM: usize = 576;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn qk_avx512(q: [&[f32]; QR], kt: &[f32]) -> [[f32; FA_TILE_KV]; QR] {
        qk_body(q, kt)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn qk_avx2(q: [&[f32]; QR], kt: &[f32]) -> [[f32; FA_TILE_KV]; QR] {
        qk_body(q, kt)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn tile_rows_avx512(
        t: &[TileRow],
        kq: [[f32; FA_TILE_KV]; QR],
        m: &mut [f32],
        sum: &mut [f32],
        o: &mut [&mut [f32]],
    ) {
        tile_rows_body::<ZmmV>(t, kq, m, sum, o)
    }

    /// [`crate::attention::VRows`] with the accumulators held in zmm
    /// registers (the plain loop, vectorized by the compiler, stored them
    /// to the stack at every key: 2.7× the time of the Q·K step on
    /// DeepSeek's 512-wide values).
    struct ZmmV;

    impl crate::attention::VRows for ZmmV {
        #[inline(always)]
        fn v_rows<const R: usize>(
            rows: [usize; R],
            seg: crate::attention::VSeg,
            o: &mut [&mut [f32]],
        ) {
            // SAFETY: only reached from `tile_rows_avx512`, whose CPU has AVX-512F.
            unsafe { v_rows_zmm::<R>(rows, seg, o) }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn v_rows_zmm<const R: usize>(
        rows: [usize; R],
        seg: crate::attention::VSeg,
        o: &mut [&mut [f32]],
    ) {
        let (keys, c, kq, vt, hdv) = seg;
        assert!(vt.len() >= keys.end * hdv && c + 64 <= hdv);
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for (acc, &r) in acc.iter_mut().zip(&rows) {
            let or = &o[r][c..c + 64];
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm512_loadu_ps(or.as_ptr().add(16 * i));
            }
        }
        for l in keys {
            let v = vt.as_ptr().add(l * hdv + c);
            let vv: [__m512; 4] = std::array::from_fn(|i| _mm512_loadu_ps(v.add(16 * i)));
            for (acc, &r) in acc.iter_mut().zip(&rows) {
                let e = _mm512_set1_ps(kq[r][l]);
                for (a, v) in acc.iter_mut().zip(&vv) {
                    *a = _mm512_fmadd_ps(e, *v, *a);
                }
            }
        }
        for (acc, &r) in acc.iter().zip(&rows) {
            let or = &mut o[r][c..c + 64];
            for (i, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(or.as_mut_ptr().add(16 * i), *a);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile_rows_avx2(
        t: &[TileRow],
        kq: [[f32; FA_TILE_KV]; QR],
        m: &mut [f32],
        sum: &mut [f32],
        o: &mut [&mut [f32]],
    ) {
        tile_rows_body::<PlainV>(t, kq, m, sum, o)
    }

    /// The online softmax of the per-row kernel for a group of rows,
    /// generic over the three vector helpers of a level: per key, every
    /// row's score, then every row's update.
    macro_rules! per_rows_body {
        ($s:expr, $q:expr, $p:expr, $kvh:expr, $ks:expr, $vs:expr, $o:expr, $ms:expr, $dot:ident, $scale:ident, $mad:ident) => {{
            let (s, qs, keys, kvh, ks, vs, outs, mss): (
                &AttnShape,
                &[&[f32]],
                Range<usize>,
                usize,
                &[f16],
                &[f16],
                &mut [&mut [f32]],
                &mut [(f32, f32)],
            ) = ($s, $q, $p, $kvh, $ks, $vs, $o, $ms);
            let (hd, hdv, g) = (s.head_dim, s.head_dim_v, qs.len());
            let mut q = [[0f32; MAX_DIM]; ROW_GROUP];
            for (d, qh) in q.iter_mut().zip(qs) {
                for (d, &x) in d.iter_mut().zip(qh.iter()) {
                    *d = f16::from_f32(x).to_f32();
                }
            }
            let mut acc = [[f16::ZERO; MAX_DIM]; ROW_GROUP];
            let mut m = [f32::NEG_INFINITY; ROW_GROUP];
            let mut sum = [0f32; ROW_GROUP];
            for j in keys {
                let k = &ks[s.pages.row(j) * s.k_stride + kvh * hd..][..hd];
                let v = &vs[s.pages.row(j) * s.v_stride + kvh * hdv..][..hdv];
                let mut x = [0f32; ROW_GROUP];
                for i in 0..g {
                    let d = $dot(&q[i][..hd], k) * s.scale;
                    x[i] = match s.softcap {
                        Some(cap) => cap * (d / cap).tanh(),
                        None => d,
                    };
                }
                for i in 0..g {
                    let acc = &mut acc[i][..hdv];
                    let (mut ms, mut vs_) = (1f32, 1f32);
                    if x[i] > m[i] {
                        ms = (m[i] - x[i]).exp();
                        m[i] = x[i];
                        $scale(acc, ms);
                    } else {
                        vs_ = (x[i] - m[i]).exp();
                    }
                    $mad(acc, v, vs_);
                    sum[i] = sum[i].mul_add(ms, vs_);
                }
            }
            for i in 0..g {
                mss[i] = (m[i], sum[i]);
                for (o, a) in outs[i].iter_mut().zip(acc[i][..hdv].iter()) {
                    *o = a.to_f32();
                }
            }
        }};
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn per_rows_avx512(
        s: &AttnShape,
        q: &[&[f32]],
        keys: Range<usize>,
        kvh: usize,
        ks: &[f16],
        vs: &[f16],
        o: &mut [&mut [f32]],
        ms: &mut [(f32, f32)],
    ) {
        per_rows_body!(s, q, keys, kvh, ks, vs, o, ms, dot512, scale512, mad512)
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn per_rows_avx2(
        s: &AttnShape,
        q: &[&[f32]],
        keys: Range<usize>,
        kvh: usize,
        ks: &[f16],
        vs: &[f16],
        o: &mut [&mut [f32]],
        ms: &mut [(f32, f32)],
    ) {
        per_rows_body!(s, q, keys, kvh, ks, vs, o, ms, dot256, scale256, mad256)
    }

    /// [`per_rows_avx512`] for head dimensions of `16·D` (a multiple of
    /// 64) in K and V: each key's K and V rows widened once for all the
    /// rows, every row's Q and running output held as `D` vectors of f32
    /// (the output's values rounded to f16 at every update, as the f16
    /// accumulator of the reference holds them), the dot product's lanes
    /// reduced by shuffles in [`crate::attention::reduce16`]'s order.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn per_rows_zmm<const D: usize, const DV: usize>(
        s: &AttnShape,
        qs: &[&[f32]],
        keys: Range<usize>,
        kvh: usize,
        ks: &[f16],
        vs: &[f16],
        outs: &mut [&mut [f32]],
        mss: &mut [(f32, f32)],
    ) {
        let (hd, hdv) = (16 * D, 16 * DV);
        let g = qs.len();
        assert!(D.is_multiple_of(4) && s.head_dim == hd && s.head_dim_v == hdv && g <= ROW_GROUP);
        assert!(qs.iter().all(|q| q.len() >= hd) && outs.iter().all(|o| o.len() >= hdv));
        let round = |x: __m512| _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
        let mut q = [[_mm512_setzero_ps(); D]; ROW_GROUP];
        for (q, qh) in q.iter_mut().zip(qs) {
            for (c, q) in q.iter_mut().enumerate() {
                *q = round(_mm512_loadu_ps(qh.as_ptr().add(16 * c)));
            }
        }
        let mut acc = [[_mm512_setzero_ps(); DV]; ROW_GROUP];
        let mut m = [f32::NEG_INFINITY; ROW_GROUP];
        let mut sum = [0f32; ROW_GROUP];
        // The key and value rows a few positions on, where the weights
        // are prefetched too (the rows are a page's stride apart and pages
        // anywhere: 1.5B tg at 4096 positions, Intel, 19.8 -> 21.2 t/s).
        let ahead = match crate::dispatch::prefetch_ahead() {
            0 => usize::MAX,
            _ => 8,
        };
        let fast_exp = crate::dispatch::vector_expf();
        let end = keys.end;
        // Keys in tiles of KT: every row's scores, then each row's running
        // maximum key by key (what the per-key softmax would have), the
        // tile's exponentials (16 at a time where `fast_exp`, else one
        // `expf` call each), then the updates key by key — every value
        // the per-key order computes, in its order.
        const KT: usize = 16;
        let mut j0 = keys.start;
        while j0 < end {
            let nk = (end - j0).min(KT);
            let mut x = [[0f32; KT]; ROW_GROUP];
            for t in 0..nk {
                let j = j0 + t;
                if j.saturating_add(ahead) < end {
                    let r = s.pages.row(j + ahead);
                    let k = ks.as_ptr().wrapping_add(r * s.k_stride + kvh * hd);
                    let v = vs.as_ptr().wrapping_add(r * s.v_stride + kvh * hdv);
                    crate::x86::prefetch_l1(k.cast(), 2 * hd);
                    crate::x86::prefetch_l1(v.cast(), 2 * hdv);
                }
                let k = &ks[s.pages.row(j) * s.k_stride + kvh * hd..][..hd];
                let kf: [__m512; D] = std::array::from_fn(|c| ld16(k.as_ptr().add(16 * c)));
                for (x, q) in x.iter_mut().zip(&q[..g]) {
                    let mut a = [_mm512_setzero_ps(); 4];
                    for c in 0..D {
                        a[c % 4] = _mm512_fmadd_ps(kf[c], q[c], a[c % 4]);
                    }
                    let v16 = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
                    let d = crate::x86::float::hsum16(v16) * s.scale;
                    x[t] = match s.softcap {
                        Some(cap) => cap * (d / cap).tanh(),
                        None => d,
                    };
                }
            }
            // Per row and key: the exponent's argument, and whether the
            // key raised the maximum (its exponential then scales what came
            // before, the key's own weight being 1).
            let mut raised = [0u32; ROW_GROUP];
            for i in 0..g {
                for t in 0..nk {
                    let xt = x[i][t];
                    if xt > m[i] {
                        x[i][t] = m[i] - xt;
                        m[i] = xt;
                        raised[i] |= 1 << t;
                    } else {
                        x[i][t] = xt - m[i];
                    }
                }
                if fast_exp {
                    let e = crate::x86::expf::expf16(_mm512_loadu_ps(x[i].as_ptr()));
                    _mm512_storeu_ps(x[i].as_mut_ptr(), e);
                } else {
                    x[i][..nk].iter_mut().for_each(|a| *a = a.exp());
                }
            }
            for t in 0..nk {
                let j = j0 + t;
                let v = &vs[s.pages.row(j) * s.v_stride + kvh * hdv..][..hdv];
                let vf: [__m512; DV] = std::array::from_fn(|c| ld16(v.as_ptr().add(16 * c)));
                for i in 0..g {
                    let (ms, ws) = match raised[i] >> t & 1 {
                        1 => (x[i][t], 1f32),
                        _ => (1f32, x[i][t]),
                    };
                    sum[i] = sum[i].mul_add(ms, ws);
                    let acc = &mut acc[i];
                    if ms != 1.0 {
                        for a in acc.iter_mut() {
                            *a = round(_mm512_mul_ps(*a, _mm512_set1_ps(ms)));
                        }
                    }
                    let w = _mm512_set1_ps(ws);
                    for (a, v) in acc.iter_mut().zip(&vf) {
                        *a = round(_mm512_fmadd_ps(*v, w, *a));
                    }
                }
            }
            j0 += nk;
        }
        for i in 0..g {
            mss[i] = (m[i], sum[i]);
            for (c, a) in acc[i].iter().enumerate() {
                _mm512_storeu_ps(outs[i].as_mut_ptr().add(16 * c), *a);
            }
        }
    }

    #[inline(always)]
    unsafe fn ld16(p: *const f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }

    #[inline(always)]
    unsafe fn ld8(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    #[inline(always)]
    unsafe fn st16(p: *mut f16, v: __m512) {
        _mm256_storeu_si256(
            p as *mut __m256i,
            _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
        )
    }

    #[inline(always)]
    unsafe fn st8(p: *mut f16, v: __m256) {
        _mm_storeu_si128(
            p as *mut __m128i,
            _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
        )
    }

    /// [`crate::attention::dot_f16_reference`] with 4 × 16 lanes in zmm.
    #[inline(always)]
    unsafe fn dot512(q: &[f32], k: &[f16]) -> f32 {
        let n = q.len();
        let np = n & !63;
        let mut a = [_mm512_setzero_ps(); 4];
        for i in (0..np).step_by(64) {
            for (j, a) in a.iter_mut().enumerate() {
                let e = i + 16 * j;
                *a = _mm512_fmadd_ps(
                    ld16(k.as_ptr().add(e)),
                    _mm512_loadu_ps(q.as_ptr().add(e)),
                    *a,
                );
            }
        }
        let v = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
        let mut l = [0f32; 16];
        _mm512_storeu_ps(l.as_mut_ptr(), v);
        tail(reduce16(&l), q, k, np)
    }

    /// The same lanes as [`dot512`], each 16-lane register as two ymm.
    #[inline(always)]
    unsafe fn dot256(q: &[f32], k: &[f16]) -> f32 {
        let n = q.len();
        let np = n & !63;
        let mut a = [_mm256_setzero_ps(); 8];
        for i in (0..np).step_by(64) {
            for (j, a) in a.iter_mut().enumerate() {
                let e = i + 8 * j;
                *a = _mm256_fmadd_ps(
                    ld8(k.as_ptr().add(e)),
                    _mm256_loadu_ps(q.as_ptr().add(e)),
                    *a,
                );
            }
        }
        let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
        let mut l = [0f32; 16];
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(l.as_mut_ptr().add(8), hi);
        tail(reduce16(&l), q, k, np)
    }

    #[inline(always)]
    fn tail(body: f32, q: &[f32], k: &[f16], np: usize) -> f32 {
        let mut s = body as f64;
        for e in np..q.len() {
            s += (k[e].to_f32() * q[e]) as f64;
        }
        s as f32
    }

    /// `acc = f16(acc · ms)`.
    #[inline(always)]
    unsafe fn scale512(acc: &mut [f16], ms: f32) {
        let n = acc.len() & !15;
        let p = acc.as_mut_ptr();
        for i in (0..n).step_by(16) {
            st16(p.add(i), _mm512_mul_ps(ld16(p.add(i)), _mm512_set1_ps(ms)));
        }
        acc[n..]
            .iter_mut()
            .for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
    }

    #[inline(always)]
    unsafe fn scale256(acc: &mut [f16], ms: f32) {
        let n = acc.len() & !7;
        let p = acc.as_mut_ptr();
        for i in (0..n).step_by(8) {
            st8(p.add(i), _mm256_mul_ps(ld8(p.add(i)), _mm256_set1_ps(ms)));
        }
        acc[n..]
            .iter_mut()
            .for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
    }

    /// `acc = f16(fma(v, vs, acc))`.
    #[inline(always)]
    unsafe fn mad512(acc: &mut [f16], v: &[f16], vs: f32) {
        let n = acc.len() & !15;
        let (p, vp) = (acc.as_mut_ptr(), v.as_ptr());
        for i in (0..n).step_by(16) {
            st16(
                p.add(i),
                _mm512_fmadd_ps(ld16(vp.add(i)), _mm512_set1_ps(vs), ld16(p.add(i))),
            );
        }
        for (a, x) in acc[n..].iter_mut().zip(&v[n..]) {
            *a = f16::from_f32(x.to_f32().mul_add(vs, a.to_f32()));
        }
    }

    #[inline(always)]
    unsafe fn mad256(acc: &mut [f16], v: &[f16], vs: f32) {
        let n = acc.len() & !7;
        let (p, vp) = (acc.as_mut_ptr(), v.as_ptr());
        for i in (0..n).step_by(8) {
            st8(
                p.add(i),
                _mm256_fmadd_ps(ld8(vp.add(i)), _mm256_set1_ps(vs), ld8(p.add(i))),
            );
        }
        for (a, x) in acc[n..].iter_mut().zip(&v[n..]) {
            *a = f16::from_f32(x.to_f32().mul_add(vs, a.to_f32()));
        }
    }
}
