//! `matmul_many` (several matrices over the same activations in one pass)
//! returns each matrix's `matmul` bits, in llama.cpp's orders and in the
//! batch-invariant ones. The batch-invariant switch is process-wide, so
//! this binary holds one test that runs both modes in turn.

use half::f16;
use rand::{Rng, SeedableRng};
use suanli_kernels::{dispatch, matmul_many_acts, Acts, Blob, DType, QMatrix};

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
    .map(|(t, rows)| {
        let w = weights(rng, t, rows, cols);
        QMatrix::new(t, rows, cols, Blob::from_vec(w))
            .expect("matrix")
            .with_prefill_layout()
            .interleave()
    })
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
}

#[test]
fn matmul_many_equals_each_matmul() {
    eprintln!("kernels: {}", dispatch::isa());
    let a = check_mode(false);
    let b = check_mode(true);
    assert!(a > 0 && b > 0);
}
