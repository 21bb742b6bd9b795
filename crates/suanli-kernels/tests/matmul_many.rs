//! `matmul_many` (several matrices over the same activations in one pass)
//! and `matmul_grouped` (products over subsets of the rows, as a
//! mixture-of-experts layer routes tokens) return each matrix's `matmul`
//! bits, in llama.cpp's orders and in the batch-invariant ones. The
//! batch-invariant switch is process-wide, so this binary holds one test
//! that runs both modes in turn.

use half::f16;
use rand::{Rng, SeedableRng};
use suanli_kernels::{
    dispatch, glu_quantized, matmul_grouped, matmul_many_acts, matmul_many_quantized, ops, Acts,
    Blob, DType, KernelError, Product, QMatrix,
};

/// Random weights of `t` with small finite f16 scales (the raw bytes).
fn weights(rng: &mut impl Rng, t: DType, rows: usize, cols: usize) -> Vec<u8> {
    let scales: &[usize] = match t {
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        DType::F16 | DType::F32 => &[],
        _ => &[0],
    };
    let rb = t.row_bytes(cols).expect("row length");
    let mut w: Vec<u8> = (0..rows * rb).map(|_| rng.random()).collect();
    if t == DType::F16 {
        for e in w.chunks_exact_mut(2) {
            e.copy_from_slice(&f16::from_f32(rng.random_range(-1f32..1.0)).to_le_bytes());
        }
    }
    for blk in w.chunks_exact_mut(t.block_bytes()) {
        for &o in scales {
            let v = f16::from_f32(rng.random_range(-0.05f32..0.05)).to_le_bytes();
            blk[o..o + 2].copy_from_slice(&v);
        }
    }
    w
}

/// Every format a layer's q/k/v or gate/up may mix, with row counts that
/// leave tails after the kernels' row groups.
fn matrices(rng: &mut impl Rng, cols: usize) -> Vec<QMatrix> {
    [
        (DType::Q4_K, 64),
        (DType::Q6_K, 48),
        (DType::Q8_0, 36),
        (DType::Q5_0, 40),
        (DType::Q4_0, 20),
        (DType::Q5_K, 24),
        (DType::F16, 10),
        (DType::Q4_K, 19),
    ]
    .into_iter()
    .map(|(t, rows)| matrix(rng, t, rows, cols))
    .collect()
}

fn check_mode(batch_invariant: bool) -> usize {
    dispatch::set_batch_invariant(batch_invariant);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7 + batch_invariant as u64);
    let cols = 512;
    let ms = matrices(&mut rng, cols);
    let mut checked = 0;
    for n in [1usize, 2, 3, 4, 5, 9] {
        let x: Vec<f32> = (0..n * cols)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        let want: Vec<Vec<f32>> = ms
            .iter()
            .map(|m| {
                let mut y = vec![0f32; n * m.rows];
                m.matmul(&x, n, &mut y);
                y
            })
            .collect();
        // All at once, and a q/k/v-like triple of mixed formats, from rows
        // and from rows made as they are quantized (a fused row op).
        let made = |t: usize, row: &mut [f32]| row.copy_from_slice(&x[t * cols..(t + 1) * cols]);
        let all: Vec<usize> = (0..ms.len()).collect();
        for (pick, acts) in [
            (all.clone(), Acts::Rows(&x)),
            (vec![3, 2, 1], Acts::Rows(&x)),
            (all, Acts::Each(&made)),
        ] {
            let mut got: Vec<Vec<f32>> = pick
                .iter()
                .map(|&i| vec![f32::NAN; n * ms[i].rows])
                .collect();
            let mut parts: Vec<(&QMatrix, &mut [f32])> = pick
                .iter()
                .zip(got.iter_mut())
                .map(|(&i, y)| (&ms[i], y.as_mut_slice()))
                .collect();
            matmul_many_acts(acts, n, &mut parts);
            for (&i, g) in pick.iter().zip(&got) {
                let (a, b): (Vec<u32>, Vec<u32>) = (
                    g.iter().map(|v| v.to_bits()).collect(),
                    want[i].iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(
                    a, b,
                    "{:?} ({} rows) n={n} batch_invariant={batch_invariant}",
                    ms[i].dtype, ms[i].rows
                );
                assert!(g.iter().all(|v| v.is_finite()), "{:?} n={n}", ms[i].dtype);
                checked += g.len();
            }
        }
    }
    checked
        + check_grouped(&ms, &mut rng, cols, batch_invariant)
        + check_glu(&mut rng, batch_invariant)
}

fn matrix(rng: &mut impl Rng, t: DType, rows: usize, cols: usize) -> QMatrix {
    let w = weights(rng, t, rows, cols);
    QMatrix::new(t, rows, cols, Blob::from_vec(w))
        .expect("matrix")
        .with_prefill_layout()
        .interleave()
}

/// `glu_quantized` then the next product against the two products, the
/// activation over each whole row, and the next matrix's `matmul`: the
/// fused decode path (gate and up in matching layouts, a width of whole
/// 256-chunks) and every fallback (mixed layouts, a width that is not, a
/// prefill batch), for each activation format the next matrix may take.
fn check_glu(rng: &mut impl Rng, bi: bool) -> usize {
    let cols = 256;
    let mut checked = 0;
    for (tg, tu, ff, tn) in [
        (DType::Q4_K, DType::Q4_K, 768, DType::Q6_K),
        (DType::Q4_K, DType::Q4_K, 512, DType::Q4_K),
        (DType::Q6_K, DType::Q6_K, 512, DType::Q8_0),
        (DType::Q8_0, DType::Q8_0, 256, DType::Q4_0),
        (DType::Q4_K, DType::Q6_K, 512, DType::Q6_K),
        (DType::Q5_0, DType::Q5_0, 288, DType::Q8_0),
        (DType::F16, DType::F16, 256, DType::F16),
    ] {
        let (gate, up) = (matrix(rng, tg, ff, cols), matrix(rng, tu, ff, cols));
        let next = matrix(rng, tn, 40, ff);
        for n in [1usize, 2, 3, 9] {
            let x: Vec<f32> = (0..n * cols)
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect();
            let (mut g, mut u) = (vec![0f32; n * ff], vec![0f32; n * ff]);
            gate.matmul(&x, n, &mut g);
            up.matmul(&x, n, &mut u);
            for (gr, ur) in g.chunks_exact_mut(ff).zip(u.chunks_exact(ff)) {
                ops::glu_row(gr, ur, ops::Glu::SwiGlu);
            }
            let mut want = vec![0f32; n * next.rows];
            next.matmul(&g, n, &mut want);
            let act = |g: &mut [f32], u: &[f32]| ops::glu_row(g, u, ops::Glu::SwiGlu);
            let q = glu_quantized(&gate, &up, Acts::Rows(&x), n, &act, &next);
            let mut got = vec![f32::NAN; n * next.rows];
            matmul_many_quantized(&q, n, &mut [(&next, &mut got)]);
            assert_eq!(
                bits(&got),
                bits(&want),
                "gate {tg:?} up {tu:?} ({ff} rows) next {tn:?} n={n} batch_invariant={bi}"
            );
            assert!(got.iter().all(|v| v.is_finite()));
            checked += got.len();
        }
    }
    checked
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Experts (the matrices above) over subsets of a batch's rows: every
/// product against `matmul` over its gathered rows. Subsets of 0 to 40
/// rows (decode row runs and tiled paths), repeats, every row, rows
/// given as they are and made as they are quantized.
fn check_grouped(ms: &[QMatrix], rng: &mut impl Rng, cols: usize, bi: bool) -> usize {
    let mut checked = 0;
    for n in [1usize, 6, 40] {
        let x: Vec<f32> = (0..n * cols)
            .map(|_| rng.random_range(-2.0f32..2.0))
            .collect();
        // Per product: its expert and the rows it takes (None: all).
        let mut routes: Vec<(usize, Option<Vec<usize>>)> = vec![(0, None), (5, Some(vec![]))];
        for (e, m) in [1usize, 2, 3, 4, 5, 9, 17, 40].into_iter().enumerate() {
            let take = (0..m).map(|_| rng.random_range(0..n)).collect();
            routes.push((e % ms.len(), Some(take)));
            routes.push((
                (e + 3) % ms.len(),
                Some((0..n).rev().step_by(e + 1).collect()),
            ));
        }
        // The same products on the even rows only: some rows no product
        // takes (every row is quantized only where one does).
        let even: Vec<(usize, Option<Vec<usize>>)> = routes
            .iter()
            .map(|(e, take)| {
                let all: Vec<usize> = (0..n).collect();
                let t = take.as_ref().unwrap_or(&all);
                (*e, Some(t.iter().copied().filter(|r| r % 2 == 0).collect()))
            })
            .collect();
        let gather = |take: &Option<Vec<usize>>| -> Vec<f32> {
            match take {
                None => x.clone(),
                Some(t) => t
                    .iter()
                    .flat_map(|&r| x[r * cols..(r + 1) * cols].iter().copied())
                    .collect(),
            }
        };
        for routes in [&routes, &even] {
            let want: Vec<Vec<f32>> = routes
                .iter()
                .map(|(e, take)| {
                    let xs = gather(take);
                    let m = xs.len() / cols;
                    let mut y = vec![0f32; m * ms[*e].rows];
                    if m > 0 {
                        ms[*e].matmul(&xs, m, &mut y);
                    }
                    y
                })
                .collect();
            let made =
                |t: usize, row: &mut [f32]| row.copy_from_slice(&x[t * cols..(t + 1) * cols]);
            for acts in [Acts::Rows(&x), Acts::Each(&made)] {
                let mut got: Vec<Vec<f32>> = want.iter().map(|w| vec![f32::NAN; w.len()]).collect();
                let mut products: Vec<Product> = routes
                    .iter()
                    .zip(got.iter_mut())
                    .map(|((e, take), out)| Product {
                        w: &ms[*e],
                        take: take.as_deref(),
                        out,
                    })
                    .collect();
                matmul_grouped(acts, n, cols, &mut products).expect("grouped matmul");
                for (((e, take), g), w) in routes.iter().zip(&got).zip(&want) {
                    let what = format!(
                        "{:?} n={n} take={take:?} batch_invariant={bi}",
                        ms[*e].dtype
                    );
                    assert_eq!(bits(g), bits(w), "{what}");
                    assert!(g.iter().all(|v| v.is_finite()), "{what}");
                    checked += g.len();
                }
            }
        }
        // A row past the batch, and a short output, are refused whole.
        let mut out = vec![0f32; 2 * ms[0].rows];
        let bad = [0usize, n];
        let mut products = [Product {
            w: &ms[0],
            take: Some(&bad),
            out: &mut out,
        }];
        let e = matmul_grouped(Acts::Rows(&x), n, cols, &mut products);
        assert!(
            matches!(e, Err(KernelError::BadRowIndex { index, rows }) if index == n && rows == n),
            "{e:?}"
        );
        let mut short = vec![0f32; ms[0].rows];
        let two = [0usize, 0];
        let mut products = [Product {
            w: &ms[0],
            take: Some(&two),
            out: &mut short,
        }];
        let e = matmul_grouped(Acts::Rows(&x), n, cols, &mut products);
        assert!(matches!(e, Err(KernelError::BadSize { .. })), "{e:?}");
        assert!(short.iter().all(|&v| v == 0.0), "nothing written on error");
    }
    checked
}

#[test]
fn matmul_many_equals_each_matmul() {
    eprintln!("kernels: {}", dispatch::isa());
    let a = check_mode(false);
    let b = check_mode(true);
    assert!(a > 0 && b > 0);
}
