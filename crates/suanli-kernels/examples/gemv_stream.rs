//! Decode (one-token) matmul bandwidth from memory: copies of one matrix
//! in its decode layout, together larger than the last-level cache (a
//! guest's L3 may hold hundreds of MB, which `examples/gemv_bw`'s 64 MiB
//! flush does not empty), each multiplied once a pass, against a parallel
//! plain read of the same bytes in the same pass. Rates on a VM swing between
//! runs; compare kernel variants inside one process, alternating them
//! pass by pass (a temporary switch in the kernel), not across runs.
//!
//!     cargo run --release -p suanli-kernels --example gemv_stream -- q6k 1536 8960 1200 2
//!
//! (format `q6k`, `q4k`, `q8_0`, `q5_0` or `q4_1`; rows; columns; MiB of
//! copies in all; threads.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use suanli_kernels::matmul::{Blob, QMatrix};
use suanli_kernels::DType;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: usize| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let ty = match a.get(1).map(String::as_str) {
        Some("q4k") => DType::Q4_K,
        Some("q8_0") => DType::Q8_0,
        Some("q5_0") => DType::Q5_0,
        Some("q4_1") => DType::Q4_1,
        _ => DType::Q6_K,
    };
    let (rows, cols, total) = (arg(2, 1536), arg(3, 8960), arg(4, 1200) << 20);
    suanli_kernels::pool::set_threads(arg(5, 2));
    let Some(rb) = ty.row_bytes(cols) else {
        eprintln!("{cols} columns are not whole {ty:?} blocks");
        return;
    };
    let copies = total / (rows * rb) + 1;
    let ms: Vec<QMatrix> = (0..copies)
        .map(|c| {
            // Small f16 scales (0x1000 ≈ 6e-5) in every byte pair keep
            // values finite.
            let bytes: Vec<u8> = (0..rows * rb)
                .map(|i| match i % 2 {
                    1 => 0x10,
                    _ => ((i + c) * 7 % 251) as u8,
                })
                .collect();
            match QMatrix::new(ty, rows, cols, Blob::from_vec(bytes)) {
                Ok(m) => m.interleave(),
                Err(e) => panic!("{e}"),
            }
        })
        .collect();
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let mut out = vec![0f32; rows];
    let bytes = (copies * rows * rb) as f64;
    println!(
        "{ty:?} {rows}x{cols}, {copies} copies ({:.0} MB), decode layout; kernels: {}",
        bytes / 1e6,
        suanli_kernels::dispatch::kernels()
    );
    for _ in 0..6 {
        let t = Instant::now();
        for m in &ms {
            m.matmul(&x, 1, &mut out);
        }
        let matmul = bytes / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        let sum = AtomicU64::new(0);
        for m in &ms {
            let pieces: Vec<&[u8]> = m.data.bytes().chunks(256 << 10).collect();
            suanli_kernels::pool::for_each(pieces.len(), |i| {
                // Eight independent lanes: the loop vectorizes and is load-bound.
                let mut acc = [0u64; 8];
                for line in pieces[i].chunks_exact(64) {
                    for (a, w) in acc.iter_mut().zip(line.chunks_exact(8)) {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(w);
                        *a = a.wrapping_add(u64::from_le_bytes(b));
                    }
                }
                sum.fetch_xor(acc.iter().fold(0, |x, y| x ^ y), Ordering::Relaxed);
            });
        }
        let read = bytes / t.elapsed().as_secs_f64() / 1e9;
        std::hint::black_box((sum.into_inner(), &out));
        println!(
            "matmul {matmul:.1} GB/s, plain read {read:.1} GB/s: {:.0}%",
            100.0 * matmul / read
        );
    }
}
