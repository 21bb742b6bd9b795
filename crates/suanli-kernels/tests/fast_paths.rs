//! Every SIMD fast path returns bit for bit what its reference twin returns.

use half::f16;
use rand::{Rng, SeedableRng};
use suanli_kernels::dispatch;
use suanli_kernels::dtype::VecDot;
use suanli_kernels::quants::kquants;
use suanli_kernels::DType;

/// Byte offsets of a block's f16 scales, set to finite values.
fn scales(t: DType) -> &'static [usize] {
    match t {
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        DType::MXFP4 => &[],
        _ => &[0],
    }
}

/// `rows` rows of `cols` random weights in `t`'s blocks, with finite f16
/// scales of at most 0.05 (for the x86 layouts' tests).
#[cfg(target_arch = "x86_64")]
fn random_weights(t: DType, rng: &mut impl Rng, rows: usize, cols: usize) -> Vec<u8> {
    let mut w: Vec<u8> = (0..rows * t.row_bytes(cols).expect("row"))
        .map(|_| rng.random())
        .collect();
    for blk in w.chunks_exact_mut(t.block_bytes()) {
        for &o in scales(t) {
            let v = f16::from_f32(rng.random_range(-0.05f32..0.05)).to_le_bytes();
            blk[o..o + 2].copy_from_slice(&v);
        }
    }
    w
}

/// Runs `m` over `n` tokens of `x` and checks every output against the
/// per-row reference dot `dot(tok)` of row `r` of the file bytes `w` with the
/// token quantized to `vt`; returns how many outputs it checked.
fn assert_matmul_bits(
    m: &suanli_kernels::QMatrix,
    w: &[u8],
    x: &[f32],
    n: usize,
    dot: impl Fn(usize) -> VecDot,
    what: &str,
) -> usize {
    let (rows, cols) = (m.rows, m.cols);
    let wrb = m.dtype.row_bytes(cols).expect("row");
    let vt = m.dtype.traits().vec_dot_type;
    let xrb = vt.row_bytes(cols).expect("row");
    let mut got = vec![0f32; n * rows];
    m.matmul(x, n, &mut got);
    for tok in 0..n {
        let mut xq = vec![0u8; xrb];
        (vt.traits().from_float.expect("quantize"))(&x[tok * cols..(tok + 1) * cols], &mut xq);
        let dot = dot(tok);
        for r in 0..rows {
            let want = dot(cols, &w[r * wrb..(r + 1) * wrb], &xq);
            let g = got[tok * rows + r];
            assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "{what}, {n} tokens: token {tok} row {r}: {g} vs {want}"
            );
        }
    }
    n * rows
}

#[test]
fn fast_dot_products_equal_the_reference() {
    eprintln!("kernels: {}", dispatch::isa());
    let reference = |t: DType| t.traits().vec_dot.expect("reference");
    let fast = |t: DType| dispatch::vec_dot(t).expect("fast");
    let pairs: Vec<(&str, DType, VecDot, VecDot)> = vec![
        (
            "Q8_0",
            DType::Q8_0,
            reference(DType::Q8_0),
            fast(DType::Q8_0),
        ),
        (
            "Q4_0",
            DType::Q4_0,
            reference(DType::Q4_0),
            fast(DType::Q4_0),
        ),
        (
            "Q5_0",
            DType::Q5_0,
            reference(DType::Q5_0),
            fast(DType::Q5_0),
        ),
        (
            "Q4_1",
            DType::Q4_1,
            reference(DType::Q4_1),
            fast(DType::Q4_1),
        ),
        (
            "Q5_1",
            DType::Q5_1,
            reference(DType::Q5_1),
            fast(DType::Q5_1),
        ),
        (
            "Q6_K",
            DType::Q6_K,
            reference(DType::Q6_K),
            fast(DType::Q6_K),
        ),
        (
            "Q4_K",
            DType::Q4_K,
            reference(DType::Q4_K),
            dispatch::vec_dot(DType::Q4_K).unwrap_or(reference(DType::Q4_K)),
        ),
        (
            "Q4_K interleaved",
            DType::Q4_K,
            kquants::vec_dot_q4_k_q8_k_interleaved,
            dispatch::q4_k_interleaved().0,
        ),
        (
            "Q4_K interleaved GEMM",
            DType::Q4_K,
            kquants::vec_dot_q4_k_q8_k_interleaved_gemm,
            dispatch::q4_k_interleaved().1,
        ),
        (
            "Q4_K tiled",
            DType::Q4_K,
            kquants::vec_dot_q4_k_q8_k_tiled,
            dispatch::tiled_vec_dot(DType::Q4_K).expect("tiled"),
        ),
        (
            "Q5_K",
            DType::Q5_K,
            reference(DType::Q5_K),
            fast(DType::Q5_K),
        ),
        (
            "Q5_K tiled",
            DType::Q5_K,
            kquants::vec_dot_q5_k_q8_k_tiled,
            dispatch::tiled_vec_dot(DType::Q5_K).expect("tiled"),
        ),
        (
            "Q6_K tiled",
            DType::Q6_K,
            kquants::vec_dot_q6_k_q8_k_tiled,
            dispatch::tiled_vec_dot(DType::Q6_K).expect("tiled"),
        ),
        (
            "MXFP4",
            DType::MXFP4,
            reference(DType::MXFP4),
            fast(DType::MXFP4),
        ),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (name, t, reference, fast) in pairs {
        let vt = t.traits().vec_dot_type;
        let sizes: &[usize] = if t.block_size() == 256 {
            &[256, 1024, 4864]
        } else {
            &[32, 160, 256, 896, 4864]
        };
        for &n in sizes {
            for _ in 0..20 {
                let mut w: Vec<u8> = (0..t.row_bytes(n).expect("row"))
                    .map(|_| rng.random())
                    .collect();
                for blk in w.chunks_exact_mut(t.block_bytes()) {
                    for &o in scales(t) {
                        blk[o..o + 2].copy_from_slice(
                            &f16::from_f32(rng.random_range(-0.05f32..0.05)).to_le_bytes(),
                        );
                    }
                    if t == DType::MXFP4 {
                        // A power-of-two scale between 2^-18 and 2^6.
                        blk[0] = rng.random_range(110..134);
                    }
                }
                let x: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                let mut xq = vec![0u8; vt.row_bytes(n).expect("row")];
                (vt.traits().from_float.expect("quantize"))(&x, &mut xq);
                let (a, b) = (reference(n, &w, &xq), fast(n, &w, &xq));
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{name} n={n}: fast {b} vs reference {a}"
                );
            }
        }
    }
}

/// Row ops and activation quantization compiled for the SIMD level in use
/// return the bits of the same code at the generic level.
#[test]
fn fast_row_ops_equal_the_reference() {
    use suanli_kernels::dispatch::Level;
    use suanli_kernels::ops::{self, RopeStyle};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let g = Level::Generic;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for len in [256usize, 576, 896, 1000] {
        // Wide range, so expf under- and overflows are exercised too.
        let x: Vec<f32> = (0..len).map(|_| rng.random_range(-120.0..120.0)).collect();
        let w: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
        let (mut a, mut b) = (vec![0f32; len], vec![0f32; len]);
        ops::rms_norm(&x, &w, 1e-6, &mut a);
        ops::rms_norm_at(g, &x, &w, 1e-6, &mut b);
        assert_eq!(bits(&a), bits(&b), "rms_norm {len}");
        let (mut a, mut b) = (x.clone(), x.clone());
        ops::softmax(&mut a);
        ops::softmax_at(g, &mut b);
        assert_eq!(bits(&a), bits(&b), "softmax {len}");
        let (mut a, mut b) = (x.clone(), x.clone());
        ops::swiglu_row(&mut a, &w);
        ops::swiglu_row_at(g, &mut b, &w);
        assert_eq!(bits(&a), bits(&b), "swiglu {len}");
        let hd = 64;
        let sin: Vec<f32> = (0..hd / 2).map(|_| rng.random_range(-1.0..1.0)).collect();
        let cos: Vec<f32> = (0..hd / 2).map(|_| rng.random_range(-1.0..1.0)).collect();
        for style in [RopeStyle::Normal, RopeStyle::Neox] {
            let n = len / hd * hd;
            let (mut a, mut b) = (x[..n].to_vec(), x[..n].to_vec());
            ops::rope(&mut a, hd, style, &sin, &cos);
            ops::rope_at(g, &mut b, hd, style, &sin, &cos);
            assert_eq!(bits(&a), bits(&b), "rope {style:?} {len}");
        }
        for ty in [DType::Q8_0, DType::Q8_1, DType::Q8_K] {
            let n = len / ty.block_size() * ty.block_size();
            if n == 0 {
                continue;
            }
            let rb = ty.row_bytes(n).expect("row");
            let (mut a, mut b) = (vec![0u8; rb], vec![0u8; rb]);
            dispatch::from_float(ty).expect("fast")(&x[..n], &mut a);
            ty.traits().from_float.expect("reference")(&x[..n], &mut b);
            assert_eq!(a, b, "{ty:?} quantization of {n}");
        }
    }
}

/// The register-tiled prefill kernels give every output the bits of the
/// reference dot product, at every SIMD level this CPU has.
#[cfg(target_arch = "x86_64")]
#[test]
fn tile_kernels_equal_the_reference() {
    use suanli_kernels::dispatch::Level;
    use suanli_kernels::x86::tile::{
        gemv_dot, lane_starts, tile_dot, vnni_offset, widen_scales, widen_scales_of, Acts, Strides,
        GR, TC, TR,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let n = 256;
    let mut checked = 0;
    for level in [Level::Avx2, Level::Avx512] {
        if level > dispatch::detected() {
            continue;
        }
        for ty in [
            DType::Q8_0,
            DType::Q4_0,
            DType::Q5_0,
            DType::Q4_1,
            DType::Q5_1,
        ] {
            let tile = tile_dot(ty, level).expect("tile kernel");
            let vt = ty.traits().vec_dot_type;
            let (wrb, xrb) = (ty.row_bytes(n).expect("row"), vt.row_bytes(n).expect("row"));
            let mut w: Vec<u8> = (0..TR * wrb).map(|_| rng.random()).collect();
            for r in 0..TR {
                for b in 0..wrb / ty.block_bytes() {
                    for &o in scales(ty) {
                        let at = r * wrb + b * ty.block_bytes() + o;
                        let v = f16::from_f32(rng.random_range(-0.1..0.1)).to_le_bytes();
                        w[at..at + 2].copy_from_slice(&v);
                    }
                }
            }
            let mut x = vec![0u8; TC * xrb];
            for c in 0..TC {
                let xf: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0..3.0)).collect();
                vt.traits().from_float.expect("quantize")(&xf, &mut x[c * xrb..(c + 1) * xrb]);
            }
            let mut out = [[0f32; TC]; TR];
            let mut xs = Vec::new();
            let (nb, xb) = (n / vt.block_size(), vt.block_bytes());
            widen_scales(&x, xrb, nb, xb, vt == DType::Q8_1, &mut xs);
            // Lane starts where the VNNI kernel of a zero-point format needs them.
            let starts = |rows: usize| {
                let mut v = Vec::new();
                if let (Level::Avx512, Some(off)) = (level, vnni_offset(ty)) {
                    lane_starts(off, &x, xrb, nb, rows, &mut v);
                }
                v
            };
            let init = starts(TC);
            let acts = Acts {
                x: &x,
                xrb,
                xs: &xs,
                init: &init,
            };
            tile(n, &w, Strides::rows(nb, ty.block_bytes()), acts, &mut out);
            let dot = ty.traits().vec_dot.expect("reference");
            // The decode kernel: GR rows (the TR rows twice) against token 0.
            let gemv = gemv_dot(ty, level).expect("gemv kernel");
            let w4: Vec<u8> = w[..GR * wrb].to_vec();
            const { assert!(GR <= TR) };
            let mut g = [[0f32; 1]; GR];
            widen_scales_of(1, &x, xrb, nb, xb, vt == DType::Q8_1, &mut xs);
            let init = starts(1);
            let acts = Acts {
                x: &x[..xrb],
                xrb,
                xs: &xs,
                init: &init,
            };
            gemv(n, &w4, Strides::rows(nb, ty.block_bytes()), acts, &mut g);
            for r in 0..GR {
                let want = dot(n, &w4[r * wrb..(r + 1) * wrb], &x[..xrb]);
                assert_eq!(
                    g[r][0].to_bits(),
                    want.to_bits(),
                    "{ty:?} decode at {level:?}, row {r}"
                );
            }
            for r in 0..TR {
                for c in 0..TC {
                    let want = dot(n, &w[r * wrb..(r + 1) * wrb], &x[c * xrb..(c + 1) * xrb]);
                    assert_eq!(
                        out[r][c].to_bits(),
                        want.to_bits(),
                        "{ty:?} at {level:?}, ({r}, {c})"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0);
}

/// The eight-token K-quant prefill kernels give each token the bits of the
/// one-token reference in the same order.
#[cfg(target_arch = "x86_64")]
#[test]
fn k_quant_x8_kernels_equal_the_reference() {
    use suanli_kernels::x86::kquant::{finish, KActs, KC};
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let cases: [(DType, bool, VecDot); 2] = [
        (
            DType::Q4_K,
            true,
            kquants::vec_dot_q4_k_q8_k_interleaved_gemm,
        ),
        (DType::Q6_K, false, kquants::vec_dot_q6_k_q8_k_tiled),
    ];
    use dispatch::Level;
    for (t, interleaved, reference) in cases {
        for level in [Level::Avx2, Level::Avx512] {
            if level > dispatch::detected() {
                continue;
            }
            let Some(x8) = dispatch::k_quant_x8_at(level, t, interleaved) else {
                panic!("{t:?} has no x8 kernel at {level:?}");
            };
            let vt = t.traits().vec_dot_type;
            for n in [256usize, 1536] {
                let w = random_weights(t, &mut rng, 1, n);
                let xrb = vt.row_bytes(n).expect("row");
                let mut xq = vec![0u8; KC * xrb];
                for q in xq.chunks_exact_mut(xrb) {
                    let x: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                    (vt.traits().from_float.expect("quantize"))(&x, q);
                }
                // In two pieces, carrying the state, as the matmul splits rows.
                let (nb, acts) = (n / 256, KActs::new(&xq, xrb, n / 256));
                let mut st = [[0f32; KC]; 2];
                x8(0..nb / 2, &w, &xq, xrb, &acts, &mut st);
                x8(nb / 2..nb, &w, &xq, xrb, &acts, &mut st);
                let got = finish(t, &st);
                for (c, g) in got.iter().enumerate() {
                    let want = reference(n, &w, &xq[c * xrb..(c + 1) * xrb]);
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{t:?} at {level:?} n={n} token {c}"
                    );
                }
            }
        }
    }
}

/// The four-row Q4_K decode kernel gives each row the bits of the one-row
/// interleaved GEMV reference.
#[cfg(target_arch = "x86_64")]
#[test]
fn q4_k_decode_kernel_equals_the_reference() {
    use suanli_kernels::x86::kquant::KR;
    let Some(gemv) = dispatch::q4_k_gemv_x4() else {
        assert!(dispatch::detected() == dispatch::Level::Generic);
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let t = DType::Q4_K;
    for n in [256usize, 1536, 8960] {
        let wrb = t.row_bytes(n).expect("row");
        let w = random_weights(t, &mut rng, KR, n);
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        let mut xq = vec![0u8; DType::Q8_K.row_bytes(n).expect("row")];
        (DType::Q8_K.traits().from_float.expect("quantize"))(&x, &mut xq);
        let got = gemv(n, &w, wrb, &xq);
        for (r, g) in got.iter().enumerate() {
            let want = kquants::vec_dot_q4_k_q8_k_interleaved(n, &w[r * wrb..(r + 1) * wrb], &xq);
            assert_eq!(g.to_bits(), want.to_bits(), "n={n} row {r}");
        }
    }
}

/// Repacked Q4_K (AVX-512 VNNI): every row of the 16-row groups, in both
/// interleaved orders and for tiles of 1 and 4 tokens, gets the bits of the
/// one-row reference on the original layout; a matrix whose rows 16 does
/// not divide (24) stays in the file's layout and its products keep the
/// interleaved orders.
#[cfg(target_arch = "x86_64")]
#[test]
fn repacked_q4_k_equals_the_reference() {
    use suanli_kernels::x86::q4k_r16::{q4_k_r16, repack, R16_BYTES, ROWS};
    use suanli_kernels::{Blob, QMatrix};
    if dispatch::detected() < dispatch::Level::Avx512 {
        eprintln!("no AVX-512 VNNI here: the repacked layout is not used on this CPU");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let t = DType::Q4_K;
    let mut weights = |rows: usize, n: usize| random_weights(t, &mut rng, rows, n);
    let mut rng2 = rand::rngs::StdRng::seed_from_u64(23);
    let mut acts = |tokens: usize, n: usize| -> Vec<f32> {
        (0..tokens * n)
            .map(|_| rng2.random_range(-3.0f32..3.0))
            .collect()
    };
    let rows = 32;
    for n in [256usize, 1536] {
        let (nb, wrb) = (n / 256, t.row_bytes(n).expect("row"));
        let w = weights(rows, n);
        let packed = repack(&w, rows, nb);
        assert_eq!(packed.len(), w.len(), "the layout holds the file's bytes");
        let gbytes = nb * R16_BYTES;
        let xrb = DType::Q8_K.row_bytes(n).expect("row");
        let mut xq = vec![0u8; 4 * xrb];
        let x = acts(4, n);
        for (q, x) in xq.chunks_exact_mut(xrb).zip(x.chunks_exact(n)) {
            (DType::Q8_K.traits().from_float.expect("quantize"))(x, q);
        }
        for g in 0..rows / ROWS {
            let wg = &packed[g * gbytes..(g + 1) * gbytes];
            let (mut o4, mut g1, mut v1) = ([[0f32; 16]; 4], [[0f32; 16]; 1], [[0f32; 16]; 1]);
            // SAFETY: AVX-512 VNNI was detected above.
            unsafe {
                q4_k_r16::<4, true>(nb, wg, &xq, xrb, &mut o4);
                q4_k_r16::<1, true>(nb, wg, &xq, xrb, &mut g1);
                q4_k_r16::<1, false>(nb, wg, &xq, xrb, &mut v1);
            }
            for r in 0..ROWS {
                let row = &w[(ROWS * g + r) * wrb..(ROWS * g + r + 1) * wrb];
                for c in 0..4 {
                    let want = kquants::vec_dot_q4_k_q8_k_interleaved_gemm(n, row, &xq[c * xrb..]);
                    assert_eq!(
                        o4[c][r].to_bits(),
                        want.to_bits(),
                        "GEMM n={n} row {r} token {c}"
                    );
                }
                let gemm = kquants::vec_dot_q4_k_q8_k_interleaved_gemm(n, row, &xq);
                let gemv = kquants::vec_dot_q4_k_q8_k_interleaved(n, row, &xq);
                let at = format!("n={n} group {g} row {r}");
                assert_eq!(g1[0][r].to_bits(), gemm.to_bits(), "GEMM x1 {at}");
                assert_eq!(v1[0][r].to_bits(), gemv.to_bits(), "GEMV {at}");
            }
        }
    }
    // Through the matrix: 32 rows repacked, 24 kept in the file's layout.
    let fixed = dispatch::batch_invariant();
    let mut checked = 0;
    for rows in [32usize, 24] {
        let n = 512;
        let w = weights(rows, n);
        let m = QMatrix::new(t, rows, n, Blob::from_vec(w.clone()))
            .expect("matrix")
            .interleave();
        assert!(m.interleaved, "{rows} rows interleaved");
        // (The layout follows the level in use: `SUANLI_ISA` may cap it.)
        let avx512 = dispatch::level() == dispatch::Level::Avx512;
        assert_eq!(
            m.repacked,
            avx512 && rows % ROWS == 0,
            "{rows} rows repacked"
        );
        for tokens in [1usize, 2, 4, 6, 9] {
            let x = acts(tokens, n);
            let dot = |tok: usize| match !fixed && tok < tokens - tokens % 4 {
                true => kquants::vec_dot_q4_k_q8_k_interleaved_gemm as VecDot,
                false => kquants::vec_dot_q4_k_q8_k_interleaved,
            };
            checked += assert_matmul_bits(&m, &w, &x, tokens, dot, &format!("{rows} rows"));
        }
    }
    assert!(checked > 0);
}

/// The reference twin of a float type's dot product at this CPU in a
/// product of `n` tokens with rows of `cols`: BF16 takes the orders of
/// AVX512_BF16's dot products where the CPU has them (llama.cpp's: its
/// GEMM's for 2+ tokens and rows of a multiple of 32, else its GEMV's).
fn float_reference(t: DType, n: usize, cols: usize) -> suanli_kernels::dtype::VecDot {
    use suanli_kernels::quants::float;
    let zmm = dispatch::level() == dispatch::Level::Avx512;
    match t {
        DType::BF16 if dispatch::bf16_dot_products() => match n >= 2 && cols.is_multiple_of(32) {
            true => float::vec_dot_bf16_dp,
            false => float::vec_dot_bf16_dp_gemv,
        },
        DType::F16 if zmm => match n >= 2 && cols.is_multiple_of(16) {
            true => float::vec_dot_f16_zmm_tile,
            false => float::vec_dot_f16_zmm_gemv,
        },
        _ => t.traits().vec_dot.expect("reference"),
    }
}

/// F32, F16 and BF16 weights: the SIMD dot products return the reference's
/// bits (tails included) and stay close to f64.
#[test]
fn float_dot_products_equal_the_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    eprintln!("BF16 dot products: {}", dispatch::bf16_dot_products());
    // BF16 with AVX512_BF16: the GEMV order (`vec_dot`) and the tiles'.
    let mut pairs: Vec<(DType, _, _)> = [DType::F32, DType::F16, DType::BF16]
        .into_iter()
        .map(|t| {
            (
                t,
                float_reference(t, 1, 0),
                dispatch::vec_dot(t).expect("fast"),
            )
        })
        .collect();
    if let Some(tile) = dispatch::bf16_tile_dot() {
        pairs.push((DType::BF16, float_reference(DType::BF16, 2, 32), tile));
    }
    if let Some(tile) = dispatch::f16_tile_dot() {
        pairs.push((DType::F16, float_reference(DType::F16, 2, 32), tile));
    }
    for (t, reference, fast) in pairs {
        let enc = |v: f32| -> Vec<u8> {
            match t {
                DType::F32 => v.to_le_bytes().to_vec(),
                DType::F16 => f16::from_f32(v).to_le_bytes().to_vec(),
                _ => half::bf16::from_f32(v).to_le_bytes().to_vec(),
            }
        };
        for n in [1usize, 7, 8, 9, 31, 32, 33, 64, 100, 896, 4867] {
            let wv: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let xv: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
            let w: Vec<u8> = wv.iter().flat_map(|&v| enc(v)).collect();
            let x: Vec<u8> = xv.iter().flat_map(|&v| enc(v)).collect();
            let (a, b) = (reference(n, &w, &x), fast(n, &w, &x));
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{t:?} n={n}: fast {b} vs reference {a}"
            );
            let exact: f64 = wv.iter().zip(&xv).map(|(a, b)| *a as f64 * *b as f64).sum();
            let tol = if t == DType::F32 { 1e-4 } else { 0.05 } * (n as f64).sqrt();
            assert!(
                (a as f64 - exact).abs() <= tol,
                "{t:?} n={n}: {a} vs f64 {exact}"
            );
        }
    }
}

/// F32, F16 and BF16 matrices times batches of tokens (the register tiles
/// of 4 rows × 4 tokens at the AVX-512 level, 4 × 6 for F16, their row and
/// token tails):
/// every output has the reference dot product's bits.
#[test]
fn float_matmul_equals_the_reference() {
    use suanli_kernels::{Blob, QMatrix};
    let mut rng = rand::rngs::StdRng::seed_from_u64(43);
    // 70 rows: a tail of 2 past the 4-row tiles; 203 columns: a tail of 3
    // past the 8-lane steps (and 11 past BF16's 32-element ones), 224: a
    // multiple of 32 (BF16's GEMM order with AVX512_BF16).
    let rows = 70;
    let mut checked = 0;
    for (t, cols) in [
        (DType::F32, 203),
        (DType::F16, 203),
        (DType::F16, 224),
        (DType::BF16, 203),
        (DType::BF16, 224),
    ] {
        let enc = |v: f32| -> Vec<u8> {
            match t {
                DType::F32 => v.to_le_bytes().to_vec(),
                DType::F16 => f16::from_f32(v).to_le_bytes().to_vec(),
                _ => half::bf16::from_f32(v).to_le_bytes().to_vec(),
            }
        };
        let w: Vec<u8> = (0..rows * cols)
            .flat_map(|_| enc(rng.random_range(-1.0f32..1.0)))
            .collect();
        let m = QMatrix::new(t, rows, cols, Blob::from_vec(w.clone())).expect("matrix");
        for n in [1usize, 3, 4, 5, 8, 11, 37] {
            let x: Vec<f32> = (0..n * cols)
                .map(|_| rng.random_range(-3.0f32..3.0))
                .collect();
            let dot = |_| float_reference(t, n, cols);
            checked += assert_matmul_bits(&m, &w, &x, n, dot, &format!("{t:?}"));
        }
    }
    eprintln!("float matmul: {checked} outputs equal the reference");
}

/// Q6_K with its 16-row prefill copy, in the planes layout (GFNI), and
/// both: batches of 8+ tokens return the tiled order's bits, smaller ones
/// the per-row order's, and rows read back unchanged.
#[test]
fn q6_k_prefill_layout_equals_the_reference() {
    use suanli_kernels::{Blob, QMatrix};
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    let t = DType::Q6_K;
    let (rows, cols) = (48, 768);
    let wrb = t.row_bytes(cols).expect("row");
    let mut w: Vec<u8> = (0..rows * wrb).map(|_| rng.random()).collect();
    for blk in w.chunks_exact_mut(t.block_bytes()) {
        let v = f16::from_f32(rng.random_range(-0.05f32..0.05)).to_le_bytes();
        blk[208..210].copy_from_slice(&v);
    }
    let plain = || QMatrix::new(t, rows, cols, Blob::from_vec(w.clone())).expect("matrix");
    let copy = plain().with_prefill_layout();
    if dispatch::level() == dispatch::Level::Avx512 {
        assert!(
            copy.prefill.is_some(),
            "no prefill copy at the AVX-512 level"
        );
    }
    let planes = plain().to_planes();
    let both = plain().with_prefill_layout().interleave();
    assert_eq!(planes.planes, dispatch::q6_k_planes());
    assert_eq!(both.planes, dispatch::q6_k_planes());
    assert_eq!(both.prefill.is_some(), copy.prefill.is_some());
    if !dispatch::q6_k_planes() {
        eprintln!("no AVX-512 VNNI with GFNI here: the planes layout is not used on this CPU");
    }
    let to_float = t.traits().to_float.expect("to_float");
    for m in [&copy, &planes, &both] {
        for r in 0..rows {
            let (mut got, mut want) = (vec![0f32; cols], vec![0f32; cols]);
            m.dequantize_row(r, &mut got);
            to_float(&w[r * wrb..(r + 1) * wrb], &mut want);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "row {r}"
            );
        }
    }
    for (m, n) in [&copy, &planes, &both]
        .into_iter()
        .flat_map(|m| [1usize, 2, 3, 7, 8, 9, 13, 40].map(|n| (m, n)))
    {
        let x: Vec<f32> = (0..n * cols)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        let dot = |_| match n >= 8 {
            true => kquants::vec_dot_q6_k_q8_k_tiled as VecDot,
            false => kquants::vec_dot_q6_k_q8_k,
        };
        assert_matmul_bits(m, &w, &x, n, dot, "Q6_K");
    }
}

/// The 32-element formats in the 4-row layout (where this CPU has tile
/// kernels): every batch size, tails of tokens included, returns the
/// per-row reference dot's bits, and rows read back unchanged.
#[test]
fn rows4_layout_equals_the_reference() {
    use suanli_kernels::{Blob, QMatrix};
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let (rows, cols) = (72, 320);
    let mut checked = 0;
    for t in [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q5_0,
        DType::Q4_1,
        DType::Q5_1,
    ] {
        let wrb = t.row_bytes(cols).expect("row");
        let mut w: Vec<u8> = (0..rows * wrb).map(|_| rng.random()).collect();
        for blk in w.chunks_exact_mut(t.block_bytes()) {
            for &o in scales(t) {
                let v = f16::from_f32(rng.random_range(-0.1f32..0.1)).to_le_bytes();
                blk[o..o + 2].copy_from_slice(&v);
            }
        }
        let m = QMatrix::new(t, rows, cols, Blob::from_vec(w.clone()))
            .expect("matrix")
            .interleave();
        #[cfg(target_arch = "x86_64")]
        if dispatch::tile_dot(t).is_some() && !dispatch::batch_invariant() {
            assert!(m.rows4, "{t:?} not in the 4-row layout");
        }
        let to_float = t.traits().to_float.expect("dequantize");
        let (mut got_row, mut want_row) = (vec![0f32; cols], vec![0f32; cols]);
        for r in [0, 1, 6, rows - 1] {
            m.dequantize_row(r, &mut got_row);
            to_float(&w[r * wrb..(r + 1) * wrb], &mut want_row);
            assert_eq!(got_row, want_row, "{t:?} row {r} read back");
        }
        let dot = t.traits().vec_dot.expect("reference");
        for n in [1usize, 2, 4, 5, 7, 8, 11, 37] {
            let x: Vec<f32> = (0..n * cols)
                .map(|_| rng.random_range(-3.0f32..3.0))
                .collect();
            checked += assert_matmul_bits(&m, &w, &x, n, |_| dot, &format!("{t:?}"));
        }
    }
    assert!(checked > 0);
}

/// Decode attention's 16-lane `expf` returns the C library's bits (every
/// 997th input of [-110, 88] and the special cases): glibc's, where it is
/// the C library, and the start-up check agrees wherever it runs.
#[cfg(target_arch = "x86_64")]
#[test]
fn vector_expf_equals_libm() {
    use suanli_kernels::dispatch::Level;
    if dispatch::level() < Level::Avx512 {
        assert!(!dispatch::vector_expf(), "16-lane expf below AVX-512");
        return;
    }
    let same = suanli_kernels::x86::expf::matches_libm(997);
    if cfg!(target_env = "gnu") {
        assert!(same, "16-lane expf differs from glibc's expf");
    }
    assert_eq!(dispatch::vector_expf(), same);
}

/// The AVX2 run-of-rows Q6_K kernel (decode at that level) gives every
/// row the reference dot's bits, whatever level the process runs at.
#[cfg(target_arch = "x86_64")]
#[test]
fn q6_k_rows_avx2_equal_the_reference() {
    if dispatch::detected() < dispatch::Level::Avx2 {
        eprintln!("no AVX2 here: the kernel is not used on this CPU");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(43);
    let t = DType::Q6_K;
    for (rows, cols) in [(1usize, 256usize), (7, 1536), (3, 8960)] {
        let w = random_weights(t, &mut rng, rows, cols);
        let xf: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        let mut xq = vec![0u8; DType::Q8_K.row_bytes(cols).expect("row")];
        (DType::Q8_K.traits().from_float.expect("quantize"))(&xf, &mut xq);
        let mut got = vec![0f32; rows];
        // SAFETY: AVX2 (with FMA and F16C, as `detected` requires) is here.
        unsafe { suanli_kernels::x86::q6k_rows_avx2(cols, &w, &xq, &mut got) };
        let wrb = t.row_bytes(cols).expect("row");
        for (r, g) in got.iter().enumerate() {
            let want = kquants::vec_dot_q6_k_q8_k(cols, &w[r * wrb..(r + 1) * wrb], &xq);
            assert_eq!(g.to_bits(), want.to_bits(), "{rows}x{cols} row {r}");
        }
    }
}

/// MXFP4 matrices (gpt-oss's experts): every batch size returns the
/// per-row reference dot's bits, through the matmul and the grouped
/// matmul a mixture of experts runs.
#[test]
fn mxfp4_matmul_equals_the_reference() {
    use suanli_kernels::{matmul_grouped, Acts, Blob, Product, QMatrix};
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let t = DType::MXFP4;
    // 11 blocks a row (five pairs and a tail), a row of one block, 33
    // (two 16-block chunks of scales and a tail) and gpt-oss's 90 (a
    // short last chunk); scale bytes from 0 (subnormals) to 140 (no
    // overflow to infinities, whose NaN sums have no one sign).
    for (rows, cols) in [(48, 352), (16, 32), (32, 1056), (16, 2880)] {
        let wrb = t.row_bytes(cols).expect("row");
        let mut w: Vec<u8> = (0..rows * wrb).map(|_| rng.random()).collect();
        for (i, blk) in w.chunks_exact_mut(t.block_bytes()).enumerate() {
            blk[0] = match i % 7 {
                0 => (i / 7 % 141) as u8,
                _ => rng.random_range(118..126),
            };
        }
        let m = QMatrix::new(t, rows, cols, Blob::from_vec(w.clone()))
            .expect("matrix")
            .with_prefill_layout()
            .interleave();
        // On AVX-512 VNNI the planes layout and its kernel.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            m.planes,
            suanli_kernels::dispatch::level() == suanli_kernels::dispatch::Level::Avx512
        );
        let mut row = vec![0f32; cols];
        m.dequantize_row(rows - 1, &mut row);
        let mut want = vec![0f32; cols];
        (t.traits().to_float.expect("dequantize"))(&w[(rows - 1) * wrb..], &mut want);
        assert_eq!(row, want, "MXFP4 row read back");
        let dot = t.traits().vec_dot.expect("reference");
        for n in [1usize, 2, 3, 5, 8, 12, 17] {
            let x: Vec<f32> = (0..n * cols)
                .map(|_| rng.random_range(-3.0f32..3.0))
                .collect();
            assert_matmul_bits(&m, &w, &x, n, |_| dot, "MXFP4");
            // Every other row through the grouped matmul.
            let take: Vec<usize> = (0..n).step_by(2).collect();
            let mut out = vec![0f32; take.len() * rows];
            let mut products = [Product {
                w: &m,
                take: Some(&take),
                out: &mut out,
            }];
            matmul_grouped(Acts::Rows(&x), n, cols, &mut products).expect("grouped");
            let mut full = vec![0f32; n * rows];
            m.matmul(&x, n, &mut full);
            for (i, &tok) in take.iter().enumerate() {
                assert_eq!(
                    out[i * rows..(i + 1) * rows],
                    full[tok * rows..(tok + 1) * rows],
                    "MXFP4 grouped, {n} tokens: token {tok}"
                );
            }
        }
    }
}
