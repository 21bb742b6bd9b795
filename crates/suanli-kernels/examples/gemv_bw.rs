//! Decode (one-token) matmul bandwidth on matrices far larger than the
//! caches: GB/s of weights streamed per format, to compare with
//! `../shared/tools/membw`. `HOT=1` keeps the matrices in cache: the
//! kernels' own rate, and on the tiny ones the fixed cost of a call
//! (2–3 µs on two threads here, timer included) — per-op overhead, not
//! kernel or memory time, in a small model's decode.
//!
//!     cargo run --release -p suanli-kernels --example gemv_bw [THREADS]

use std::time::Instant;

use suanli_kernels::matmul::{Blob, QMatrix};
use suanli_kernels::DType;

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    suanli_kernels::pool::set_threads(threads);
    let hot = std::env::var_os("HOT").is_some();
    let flush: Vec<u8> = (0..64usize << 20).map(|i| i as u8).collect();
    for (ty, rows, cols) in [
        (DType::Q8_0, 151936, 896),
        (DType::Q4_1, 131072, 576),
        (DType::Q4_1, 1536, 576),
        (DType::Q5_0, 65536, 896),
        (DType::Q6_K, 16384, 4864),
        (DType::Q4_K, 65536, 1536),
        (DType::Q6_K, 151936, 1536),
        (DType::Q4_K, 8960, 1536),
        (DType::Q4_K, 1536, 1536),
        (DType::Q6_K, 1536, 8960),
        (DType::Q6_K, 768, 1536),
        (DType::Q6_K, 128, 8960),
        (DType::Q8_0, 1024, 896),
        (DType::Q8_0, 64, 256),
        (DType::Q4_K, 64, 256),
        (DType::Q6_K, 64, 256),
    ] {
        let rb = ty.row_bytes(cols).unwrap_or(0);
        // Small f16 scales (0x1000 ≈ 6e-5) in every byte pair keep values finite.
        let bytes: Vec<u8> = (0..rows * rb)
            .map(|i| {
                if i % 2 == 1 {
                    0x10
                } else {
                    (i * 7 % 251) as u8
                }
            })
            .collect();
        let mut m = match QMatrix::new(ty, rows, cols, Blob::from_vec(bytes)) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        if std::env::var_os("ROWS").is_none() {
            m = m.interleave();
        }
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let mut out = vec![0f32; rows];
        let mut best = f64::MAX;
        for _ in 0..if hot { 200 } else { 15 } {
            // Out of the caches first, as in a model many times their size.
            if !hot {
                std::hint::black_box(flush.iter().step_by(64).fold(0u8, |a, &b| a ^ b));
            }
            let t = Instant::now();
            m.matmul(&x, 1, &mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        std::hint::black_box(&out);
        let mb = (rows * rb) as f64 / 1e6;
        println!(
            "{ty:?} {rows}x{cols} ({mb:.2} MB): {:.1} µs, {:.1} GB/s",
            best * 1e6,
            mb / 1e3 / best
        );
    }
}
