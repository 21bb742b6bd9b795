//! Prefill throughput of the float weight paths (F32, F16, BF16: the
//! dtypes of safetensors checkpoints) against Q8_0, on a synthetic
//! 1536 × 1536 matrix and 512 tokens — the register tiles' GFLOP/s.
//!
//!     cargo run --release -p suanli-kernels --example float_prefill
use std::time::Instant;
use suanli_kernels::matmul::{Blob, QMatrix};
use suanli_kernels::DType;
fn main() {
    suanli_kernels::pool::set_threads(2);
    let (rows, cols, n) = (1536usize, 1536usize, 512usize);
    for ty in [DType::F16, DType::BF16, DType::F32, DType::Q8_0] {
        let rb = ty.row_bytes(cols).unwrap();
        let bytes: Vec<u8> = (0..rows * rb)
            .map(|i| {
                if i % 2 == 1 {
                    0x30
                } else {
                    (i * 7 % 251) as u8
                }
            })
            .collect();
        let m = QMatrix::new(ty, rows, cols, Blob::from_vec(bytes))
            .unwrap()
            .interleave();
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let mut out = vec![0f32; n * rows];
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            m.matmul(&x, n, &mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (rows * cols * n) as f64 / best / 1e9;
        println!(
            "{ty:?} {rows}x{cols} x {n} tokens: {:.1} ms, {gflops:.1} GFLOP/s",
            best * 1e3
        );
    }
}
