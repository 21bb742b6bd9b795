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
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[0],
    }
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
            "Q6_K tiled",
            DType::Q6_K,
            kquants::vec_dot_q6_k_q8_k_tiled,
            dispatch::tiled_vec_dot(DType::Q6_K).expect("tiled"),
        ),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (name, t, reference, fast) in pairs {
        let vt = t.traits().vec_dot_type;
        let sizes: &[usize] = if t.block_size() == 256 {
            &[256, 1024, 4864]
        } else {
            &[32, 256, 896, 4864]
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
