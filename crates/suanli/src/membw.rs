//! Memory read bandwidth as the decode roofline sees it: parallel read
//! passes over buffers, on all of the thread pool's threads (`suanli
//! bench` streams the model's own weights with it, `suanli plan` a buffer).

use std::time::Instant;

use rayon::prelude::*;

/// Best of `passes` parallel read passes over `parts`, in GB/s.
pub fn stream_gbps(parts: &[&[u8]], passes: usize) -> f64 {
    // Pieces of 256 KiB spread the read over all threads.
    let pieces: Vec<&[u8]> = parts.iter().flat_map(|p| p.chunks(256 << 10)).collect();
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut best = 0f64;
    for _ in 0..passes {
        let t = Instant::now();
        // Eight independent lanes so the sum vectorizes and is load-bound.
        let s: u64 = pieces
            .par_iter()
            .map(|c| {
                let mut acc = [0u64; 8];
                for x in c.chunks_exact(64) {
                    for (a, b) in acc.iter_mut().zip(x.chunks_exact(8)) {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(b);
                        *a = a.wrapping_add(u64::from_le_bytes(w));
                    }
                }
                acc.iter().fold(0, |a, &b| a ^ b)
            })
            .reduce(|| 0, |a, b| a ^ b);
        std::hint::black_box(s);
        best = best.max(total as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Best of five parallel read passes over a 512 MiB buffer.
pub fn measure_membw() -> f64 {
    let v: Vec<u8> = (0..512usize << 20).map(|i| (i & 7) as u8).collect();
    stream_gbps(&[&v], 5)
}
