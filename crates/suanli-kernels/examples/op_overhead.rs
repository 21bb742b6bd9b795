//! Fixed cost of one decode matmul call (tiny matrices, one token): the
//! per-op overhead that bounds small models' decode.
//!
//!     cargo run --release -p suanli-kernels --example op_overhead [THREADS]

use std::time::Instant;

use suanli_kernels::matmul::{Blob, QMatrix};
use suanli_kernels::DType;

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    suanli_kernels::pool::set_threads(threads);
    for (ty, rows, cols) in [
        (DType::Q8_0, 64, 256),
        (DType::Q8_0, 576, 576),
        (DType::Q4_K, 64, 256),
        (DType::Q4_K, 1536, 1536),
        (DType::Q6_K, 64, 256),
    ] {
        let rb = ty.row_bytes(cols).unwrap_or(0);
        let bytes: Vec<u8> = (0..rows * rb)
            .map(|i| {
                if i % 2 == 1 {
                    0x10
                } else {
                    (i * 7 % 251) as u8
                }
            })
            .collect();
        let m = match QMatrix::new(ty, rows, cols, Blob::from_vec(bytes)) {
            Ok(m) => m.interleave(),
            Err(e) => panic!("{e}"),
        };
        let x: Vec<f32> = (0..cols).map(|i| (i % 13) as f32 - 6.0).collect();
        let mut out = vec![0f32; rows];
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            for _ in 0..1000 {
                m.matmul(&x, 1, &mut out);
            }
            best = best.min(t.elapsed().as_secs_f64() / 1000.0);
        }
        std::hint::black_box(&out);
        println!("{ty:?} {rows}x{cols}: {:.2} µs per call", best * 1e6);
    }
}
