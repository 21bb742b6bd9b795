//! Batch-invariant numerics (process-wide, so in a test binary of its own):
//! every token's outputs are the same bits whatever the batch it is in, for
//! every weight format the server meets and for attention; the 16-row
//! repacked kernels return their block-sum twin's bits and stay close to
//! f32.

use half::f16;
use rand::{Rng, SeedableRng};
use suanli_kernels::attention::{attention, AttnShape, Kv, Pages};
use suanli_kernels::dtype::VecDot;
use suanli_kernels::{dispatch, Blob, DType, QMatrix};

/// Byte offsets of a block's f16 scales, set to finite values.
fn scales(t: DType) -> &'static [usize] {
    match t {
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[0],
    }
}

/// Random weights of `t` with finite scales (the raw bytes, row-major).
fn weights(rng: &mut impl Rng, t: DType, rows: usize, cols: usize) -> Vec<u8> {
    let rb = t.row_bytes(cols).expect("row length");
    let mut w: Vec<u8> = (0..rows * rb).map(|_| rng.random()).collect();
    for blk in w.chunks_exact_mut(t.block_bytes()) {
        for &o in scales(t) {
            let v = f16::from_f32(rng.random_range(-0.05f32..0.05)).to_le_bytes();
            blk[o..o + 2].copy_from_slice(&v);
        }
    }
    w
}

fn matrix(t: DType, rows: usize, cols: usize, w: &[u8]) -> QMatrix {
    QMatrix::new(t, rows, cols, Blob::from_vec(w.to_vec()))
        .expect("matrix")
        .interleave()
}

#[test]
fn every_format_gives_each_token_the_same_bits_in_any_batch() {
    dispatch::set_batch_invariant(true);
    eprintln!("kernels: {}", dispatch::isa());
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (rows, cols) = (48, 512);
    let n = 37;
    let x: Vec<f32> = (0..n * cols)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    // Q6_K twice: alone, and with the prefill copy the loader gives the
    // layers' matrices (decode then reads the original, prefill the copy).
    for (t, copy) in [
        (DType::Q4_0, false),
        (DType::Q4_1, false),
        (DType::Q5_0, false),
        (DType::Q5_1, false),
        (DType::Q8_0, false),
        (DType::Q4_K, false),
        (DType::Q6_K, false),
        (DType::Q6_K, true),
    ] {
        let w = weights(&mut rng, t, rows, cols);
        let m = match copy {
            false => matrix(t, rows, cols, &w),
            true => QMatrix::new(t, rows, cols, Blob::from_vec(w.clone()))
                .expect("matrix")
                .with_prefill_layout()
                .interleave(),
        };
        // Each token alone.
        let mut alone = vec![0f32; n * rows];
        for tok in 0..n {
            m.matmul(
                &x[tok * cols..(tok + 1) * cols],
                1,
                &mut alone[tok * rows..(tok + 1) * rows],
            );
        }
        for batch in [2usize, 3, 4, 5, 8, 9, 16, 37] {
            for start in (0..n).step_by(batch) {
                let k = batch.min(n - start);
                let mut got = vec![0f32; k * rows];
                m.matmul(&x[start * cols..(start + k) * cols], k, &mut got);
                for (i, (a, b)) in got
                    .iter()
                    .zip(&alone[start * rows..(start + k) * rows])
                    .enumerate()
                {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{t:?}: batch of {k}, token {}, row {}: {a} vs alone {b}",
                        start + i / rows,
                        i % rows
                    );
                }
            }
        }
        // And close to the f32 product of the dequantized weights.
        let mut wf = vec![0f32; rows * cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut wf[r * cols..(r + 1) * cols]);
        }
        let mut plain = vec![0f32; rows * cols];
        let f = t.traits().to_float.expect("dequantize");
        f(&w, &mut plain);
        if !m.repacked {
            assert_eq!(wf, plain, "{t:?}: rows read back from the layout");
        }
        for tok in 0..n {
            for r in 0..rows {
                let xr = &x[tok * cols..(tok + 1) * cols];
                let exact: f64 = plain[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(xr)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                let scale: f64 = plain[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(xr)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let got = alone[tok * rows + r] as f64;
                assert!(
                    (got - exact).abs() <= 0.02 * scale + 1e-4,
                    "{t:?} token {tok} row {r}: {got} vs f32 {exact} (scale {scale})"
                );
            }
        }
    }
}

#[test]
fn repacked_rows16_kernels_equal_their_block_sum_twin() {
    dispatch::set_batch_invariant(true);
    if dispatch::level() < dispatch::Level::Avx512 {
        eprintln!("no AVX-512 VNNI here: the 16-row layout is not used on this CPU");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let (rows, cols) = (32, 256);
    for t in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ] {
        let w = weights(&mut rng, t, rows, cols);
        let m = matrix(t, rows, cols, &w);
        assert!(m.r16, "{t:?} was not repacked");
        let twin = suanli_kernels::quants::legacy::blocksum_vec_dot(t).expect("twin");
        each_output_is(twin, &m, &w, &[1, 2, 3, 4, 5, 7, 11], &mut rng);
    }
}

/// Every output of `m` (over `w`'s bytes) in batches of each size in
/// `ns` has the bits of `twin` on that row and token alone.
fn each_output_is(twin: VecDot, m: &QMatrix, w: &[u8], ns: &[usize], rng: &mut impl Rng) {
    let (t, rows, cols) = (m.dtype, m.rows, m.cols);
    let vt = t.traits().vec_dot_type;
    let quant = vt.traits().from_float.expect("quantize");
    let xrb = vt.row_bytes(cols).expect("row");
    let wrb = t.row_bytes(cols).expect("row");
    for &n in ns {
        let x: Vec<f32> = (0..n * cols)
            .map(|_| rng.random_range(-3.0f32..3.0))
            .collect();
        let mut got = vec![0f32; n * rows];
        m.matmul(&x, n, &mut got);
        for tok in 0..n {
            let mut xq = vec![0u8; xrb];
            quant(&x[tok * cols..(tok + 1) * cols], &mut xq);
            for r in 0..rows {
                let want = twin(cols, &w[r * wrb..(r + 1) * wrb], &xq);
                let g = got[tok * rows + r];
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "{t:?} n={n} token {tok} row {r}"
                );
            }
        }
    }
}

#[test]
fn attention_rows_are_the_same_decoded_or_prefilled() {
    dispatch::set_batch_invariant(true);
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let (nh, nkv, hd) = (14, 2, 64);
    let s = AttnShape {
        n_head: nh,
        n_head_kv: nkv,
        head_dim: hd,
        head_dim_v: hd,
        k_stride: nkv * hd,
        v_stride: nkv * hd,
        scale: 0.125,
        softcap: None,
        window: None,
        pages: Pages::CONTIGUOUS,
        sinks: None,
    };
    let len = 150;
    let k: Vec<f16> = (0..len * nkv * hd)
        .map(|_| f16::from_f32(rng.random_range(-2.0..2.0)))
        .collect();
    let v: Vec<f16> = (0..len * nkv * hd)
        .map(|_| f16::from_f32(rng.random_range(-1.0..1.0)))
        .collect();
    let q: Vec<f32> = (0..len * nh * hd)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let w = nh * hd;
    // The whole sequence as one prefill...
    let mut all = vec![0f32; len * w];
    attention(&s, &q, len, 0, Kv::F16(&k), Kv::F16(&v), &mut all);
    // ...equals chunks of any size and single decode rows.
    for chunk in [1usize, 3, 17, 64] {
        for p0 in (0..len).step_by(chunk) {
            let n = chunk.min(len - p0);
            let mut got = vec![0f32; n * w];
            attention(
                &s,
                &q[p0 * w..(p0 + n) * w],
                n,
                p0,
                Kv::F16(&k),
                Kv::F16(&v),
                &mut got,
            );
            for (i, (a, b)) in got.iter().zip(&all[p0 * w..(p0 + n) * w]).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "chunks of {chunk}: position {} element {}",
                    p0 + i / w,
                    i % w
                );
            }
        }
    }
}

/// The block-sum order and llama.cpp's order sum the same exact integers
/// per block: they may differ only by float rounding.
#[test]
fn block_sum_twins_agree_with_the_llama_order_to_rounding() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(37);
    let cols = 4864;
    let mut worst = 0f64;
    for t in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ] {
        let twin = suanli_kernels::quants::legacy::blocksum_vec_dot(t).expect("twin");
        let llama = t.traits().vec_dot.expect("reference");
        let vt = t.traits().vec_dot_type;
        let (wdeq, xdeq) = (
            t.traits().to_float.expect("deq"),
            vt.traits().to_float.expect("deq"),
        );
        for _ in 0..50 {
            let w = weights(&mut rng, t, 1, cols);
            let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
            let mut xq = vec![0u8; vt.row_bytes(cols).expect("row")];
            (vt.traits().from_float.expect("quantize"))(&x, &mut xq);
            let (mut wf, mut xf) = (vec![0f32; cols], vec![0f32; cols]);
            wdeq(&w, &mut wf);
            xdeq(&xq, &mut xf);
            let scale: f64 = wf
                .iter()
                .zip(&xf)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let (a, b) = (twin(cols, &w, &xq) as f64, llama(cols, &w, &xq) as f64);
            let rel = (a - b).abs() / scale.max(1e-30);
            worst = worst.max(rel);
            assert!(
                rel <= 1e-6,
                "{t:?}: block-sum {a} vs llama order {b} (scale {scale})"
            );
        }
    }
    eprintln!("largest difference relative to Σ|w·x|: {worst:e}");
}

/// A Q6_K matrix without a 16-row copy (the output projection, tied
/// embeddings) moves into the planes layout where this CPU has it, and
/// every batch size returns the tiled order's bits, row by row.
#[test]
fn q6_k_without_a_copy_takes_the_tiled_order() {
    dispatch::set_batch_invariant(true);
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let t = DType::Q6_K;
    let (rows, cols) = (80, 1024);
    let w = weights(&mut rng, t, rows, cols);
    let m = matrix(t, rows, cols, &w);
    assert_eq!(m.planes, dispatch::q6_k_planes());
    assert!(m.prefill.is_none());
    let tiled = suanli_kernels::quants::kquants::vec_dot_q6_k_q8_k_tiled;
    each_output_is(tiled, &m, &w, &[1, 2, 3, 4, 8, 9], &mut rng);
}
