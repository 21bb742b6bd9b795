//! Every SIMD fast path returns bit for bit what its reference twin returns.

use half::f16;
use rand::{Rng, SeedableRng};
use suanli_kernels::DType;

#[test]
fn fast_dot_products_equal_the_reference() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    eprintln!("kernels: {}", suanli_kernels::dispatch::isa());
    let mut q4k_seen = false;
    for (t, scales) in [
        (DType::Q8_0, &[0usize][..]),
        (DType::Q4_0, &[0]),
        (DType::Q5_0, &[0]),
        (DType::Q4_1, &[0, 2]),
        (DType::Q5_1, &[0, 2]),
        (DType::Q6_K, &[208]),
        (DType::Q4_K, &[0, 2]),
        (DType::Q4_K, &[0, 2]),
    ] {
        use suanli_kernels::quants::kquants;
        // Q4_K twice: the interleaved GEMV order, then the GEMM order.
        let (reference, fast): (suanli_kernels::dtype::VecDot, _) = match t {
            DType::Q4_K if !std::mem::replace(&mut q4k_seen, true) => (
                kquants::vec_dot_q4_k_q8_k_interleaved,
                suanli_kernels::dispatch::q4_k_interleaved().0,
            ),
            DType::Q4_K => (
                kquants::vec_dot_q4_k_q8_k_interleaved_gemm,
                suanli_kernels::dispatch::q4_k_interleaved().1,
            ),
            _ => (
                t.traits().vec_dot.expect("reference"),
                suanli_kernels::dispatch::vec_dot(t).expect("fast"),
            ),
        };
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
                    for &o in scales {
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
                    "{t:?} n={n}: fast {b} vs reference {a}"
                );
            }
        }
    }
}
