//! Every dot product against the definition: dequantize the weight row and
//! the quantized activations, multiply in f64.

use half::f16;
use rand::{Rng, SeedableRng};
use suanli_kernels::DType;

const WEIGHT_TYPES: &[DType] = &[
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
    DType::MXFP4,
];

/// Byte offsets of the f16 scale fields of a block, so random blocks carry
/// finite, moderate scales.
fn scale_offsets(t: DType) -> &'static [usize] {
    match t {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

/// Random weights of `n` elements in type `t`.
pub fn random_row(t: DType, n: usize, rng: &mut impl Rng) -> Vec<u8> {
    match t {
        DType::F32 | DType::F16 | DType::BF16 => {
            let x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let mut out = vec![0u8; t.row_bytes(n).unwrap()];
            (t.traits().from_float.unwrap())(&x, &mut out);
            out
        }
        _ => {
            let mut out: Vec<u8> = (0..t.row_bytes(n).unwrap()).map(|_| rng.random()).collect();
            for blk in out.chunks_exact_mut(t.block_bytes()) {
                for &o in scale_offsets(t) {
                    let v = f16::from_f32(rng.random_range(0.001f32..0.02));
                    blk[o..o + 2].copy_from_slice(&v.to_le_bytes());
                }
                if t == DType::MXFP4 {
                    // A power-of-two scale between 2^-12 and 2^-6.
                    blk[0] = rng.random_range(116..122);
                }
            }
            out
        }
    }
}

/// Σ|w·x| of the dequantized operands, the scale of a dot product's rounding.
fn scale_of(w: &[u8], xq: &[u8], t: DType, n: usize) -> f64 {
    let vt = t.traits().vec_dot_type;
    let (wd, xd) = (dequant(t, w, n), dequant(vt, xq, n));
    wd.iter()
        .zip(&xd)
        .map(|(a, b)| (*a as f64 * *b as f64).abs())
        .sum::<f64>()
        .max(1e-12)
}

fn dequant(t: DType, b: &[u8], n: usize) -> Vec<f32> {
    let mut v = vec![0f32; n];
    (t.traits().to_float.unwrap())(b, &mut v);
    v
}

#[test]
fn vec_dot_matches_dequantized_dot() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n = 1024;
    for &t in WEIGHT_TYPES {
        for trial in 0..20 {
            let w = random_row(t, n, &mut rng);
            let x: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let vt = t.traits().vec_dot_type;
            let mut xq = vec![0u8; vt.row_bytes(n).unwrap()];
            (vt.traits().from_float.unwrap())(&x, &mut xq);
            let got = (t.traits().vec_dot.unwrap())(n, &w, &xq) as f64;
            // The other summation orders compute the same sum.
            let mut others: Vec<suanli_kernels::dtype::VecDot> = Vec::new();
            others.extend(suanli_kernels::quants::kquants::tiled_vec_dot(t));
            if t == DType::Q4_K {
                others.push(suanli_kernels::quants::kquants::vec_dot_q4_k_q8_k_interleaved);
                others.push(suanli_kernels::quants::kquants::vec_dot_q4_k_q8_k_interleaved_gemm);
            }
            for f in others {
                let alt = f(n, &w, &xq) as f64;
                let err = (alt - got).abs() / scale_of(&w, &xq, t, n);
                assert!(
                    err < 1e-5,
                    "{t:?}: alternative order {alt} vs {got} (rel err {err:e})"
                );
            }
            let wd = dequant(t, &w, n);
            let xd = dequant(vt, &xq, n);
            let want: f64 = wd.iter().zip(&xd).map(|(a, b)| *a as f64 * *b as f64).sum();
            let scale: f64 = wd
                .iter()
                .zip(&xd)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            let err = (got - want).abs() / scale.max(1e-12);
            // f32 accumulation over 1024 terms; Q8_1's sum term is stored in f16.
            let tol = if vt == DType::Q8_1 { 2e-3 } else { 1e-5 };
            assert!(
                err < tol,
                "{t:?} trial {trial}: got {got}, want {want} (rel err {err:e})"
            );
            // And against the unquantized activations, within the format's noise.
            let exact: f64 = wd.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let noise = (got - exact).abs() / scale.max(1e-12);
            assert!(
                noise < 0.02,
                "{t:?}: quantized-activation error {noise:e} too large"
            );
        }
    }
}
