//! Decode attention at long context: one query position against `P`
//! cached positions of an f16 KV cache, Qwen2.5-0.5B's shape (14 query
//! heads over 2 KV heads of 64) and Qwen2.5-1.5B's (12 over 2 of 128):
//! µs per call (one layer) and the rate in keys·rows per ns.
//!
//!     cargo run --release -p suanli-kernels --example attn_decode [THREADS] [P]

use std::time::Instant;

use half::f16;
use suanli_kernels::attention::{attention, AttnShape, Kv, Pages};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads = args.next().and_then(|s| s.parse().ok()).unwrap_or(2);
    let p: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4096);
    suanli_kernels::pool::set_threads(threads);
    for (nh, nkv, hd) in [(14, 2, 64), (12, 2, 128)] {
        let s = AttnShape {
            n_head: nh,
            n_head_kv: nkv,
            head_dim: hd,
            head_dim_v: hd,
            k_stride: nkv * hd,
            v_stride: nkv * hd,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: None,
            window: None,
            pages: Pages::CONTIGUOUS,
            sinks: None,
        };
        let kv: Vec<f16> = (0..(p + 1) * nkv * hd)
            .map(|i| f16::from_f32(((i * 7919 % 1013) as f32 - 506.0) / 300.0))
            .collect();
        let vv: Vec<f16> = (0..(p + 1) * nkv * hd)
            .map(|i| f16::from_f32(((i * 104_729 % 997) as f32 - 498.0) / 500.0))
            .collect();
        let q: Vec<f32> = (0..nh * hd)
            .map(|i| ((i * 31 % 211) as f32 - 105.0) / 60.0)
            .collect();
        let mut out = vec![0f32; nh * hd];
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            attention(&s, &q, 1, p, Kv::F16(&kv), Kv::F16(&vv), &mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let rate = ((p + 1) * nh) as f64 / (best * 1e9);
        println!(
            "{nh} heads / {nkv} KV heads × {hd}, {} keys: {:.1} µs, {rate:.2} key·rows/ns",
            p + 1,
            best * 1e6
        );
    }
}
