//! A mixture-of-experts layer's gate/up products (Qwen3-30B-A3B's shape:
//! 2048 wide, experts of 768, each token to 8 of them; 64 experts here to
//! keep the example's weights at ~170 MB of Q4_K), one batch of `T` tokens
//! routed at random: `matmul_grouped` (rows quantized once, every expert in
//! one pass over the pool) against one `matmul_many` per expert over its
//! gathered rows. Milliseconds per layer, best of several runs.
//!
//!     cargo run --release -p suanli-kernels --example moe_shape [THREADS]

use std::time::Instant;

use suanli_kernels::{matmul_grouped, matmul_many, Acts, Blob, DType, Product, QMatrix};

const D: usize = 2048;
const FF: usize = 768;
const EXPERTS: usize = 64;
const TOP: usize = 8;

/// A Q4_K matrix of random quants with small scales.
fn q4k(rows: usize, seed: usize) -> QMatrix {
    let rb = DType::Q4_K.row_bytes(D).unwrap_or(0);
    let mut w: Vec<u8> = (0..rows * rb)
        .map(|i| ((i ^ seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for b in w.chunks_exact_mut(144) {
        b[..2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        b[2..4].copy_from_slice(&half::f16::from_f32(0.002).to_le_bytes());
    }
    match QMatrix::new(DType::Q4_K, rows, D, Blob::from_vec(w)) {
        Ok(m) => m.interleave(),
        Err(e) => panic!("{e}"),
    }
}

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    suanli_kernels::pool::set_threads(threads);
    let experts: Vec<(QMatrix, QMatrix)> = (0..EXPERTS)
        .map(|e| (q4k(FF, 2 * e), q4k(FF, 2 * e + 1)))
        .collect();
    println!("{EXPERTS} experts of {FF}x{D} gate + up (Q4_K), top-{TOP}, {threads} threads");
    for t in [1usize, 4, 32, 128] {
        let x: Vec<f32> = (0..t * D)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0)
            .collect();
        // One routing per run (so the experts' weights come from memory, as
        // in a model's layers), each token to TOP distinct experts.
        let routes: Vec<Vec<Vec<usize>>> = (0..RUNS).map(|run| route(t, run)).collect();
        let mut last: Vec<Vec<Vec<f32>>> = Vec::new();
        let mut per_expert = f64::MAX;
        let mut grouped = f64::MAX;
        for (run, rows) in routes.iter().enumerate() {
            let active: Vec<usize> = (0..EXPERTS).filter(|&e| !rows[e].is_empty()).collect();
            let fresh = || -> Vec<Vec<f32>> {
                active
                    .iter()
                    .flat_map(|&e| {
                        [
                            vec![0f32; rows[e].len() * FF],
                            vec![0f32; rows[e].len() * FF],
                        ]
                    })
                    .collect()
            };
            // Alternate which goes first, so neither always finds the other's bytes cached.
            let mut a = fresh();
            let mut b = fresh();
            for first in [run % 2 == 0, run % 2 == 1] {
                let t0 = Instant::now();
                if first {
                    for (&e, gu) in active.iter().zip(a.chunks_exact_mut(2)) {
                        let xs: Vec<f32> = rows[e]
                            .iter()
                            .flat_map(|&r| x[r * D..(r + 1) * D].iter().copied())
                            .collect();
                        let (gate, up) = &experts[e];
                        let (g, u) = gu.split_at_mut(1);
                        matmul_many(
                            &xs,
                            rows[e].len(),
                            &mut [(gate, &mut g[0]), (up, &mut u[0])],
                        );
                    }
                    per_expert = per_expert.min(t0.elapsed().as_secs_f64() * 1e3);
                } else {
                    let mut products: Vec<Product> = Vec::new();
                    for (&e, gu) in active.iter().zip(b.chunks_exact_mut(2)) {
                        let (gate, up) = &experts[e];
                        let (g, u) = gu.split_at_mut(1);
                        for (w, out) in [(gate, &mut g[0]), (up, &mut u[0])] {
                            products.push(Product {
                                w,
                                take: Some(&rows[e]),
                                out,
                            });
                        }
                    }
                    if let Err(e) = matmul_grouped(Acts::Rows(&x), t, D, &mut products) {
                        panic!("{e}");
                    }
                    grouped = grouped.min(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            assert!(a == b, "grouped and per-expert products differ");
            last = vec![a];
        }
        std::hint::black_box(last);
        println!(
            "{t:4} tokens: per expert {per_expert:7.3} ms, grouped {grouped:7.3} ms ({:.2}x)",
            per_expert / grouped
        );
    }
}

const RUNS: usize = 16;

/// The rows each expert takes when `t` tokens each go to TOP distinct
/// experts (a deterministic spread that changes with `run`).
fn route(t: usize, run: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); EXPERTS];
    for tok in 0..t {
        let base = ((tok * 37 + run * 11) * 2_654_435_761) >> 7;
        let mut picked = 0;
        let mut k = 0;
        while picked < TOP {
            let e = (base + k * 29) % EXPERTS;
            k += 1;
            if rows[e].last() != Some(&tok) {
                rows[e].push(tok);
                picked += 1;
            }
        }
    }
    rows
}
