//! Throughput of the prefill kernels on cache-resident data (ns per
//! 256-element block and token), to tell kernel cost from memory cost.
//!
//!     cargo run --release -p suanli-kernels --example kernel_bench
//!
//! `AVX2=1` times the AVX2 Q5_0 tile instead of the best level's.

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::time::Instant;

    use suanli_kernels::{dispatch, DType};
    // Float weights (safetensors checkpoints) and Q5_K: reference vs SIMD dot.
    for ty in [DType::F32, DType::F16, DType::BF16, DType::Q5_K] {
        let n = 4096;
        let vt = ty.traits().vec_dot_type;
        let w: Vec<u8> = (0..ty.row_bytes(n).unwrap_or(0))
            .map(|i| (i * 7 % 61) as u8)
            .collect();
        let x: Vec<u8> = (0..vt.row_bytes(n).unwrap_or(0))
            .map(|i| (i * 13 % 59) as u8)
            .collect();
        let time = |f: suanli_kernels::dtype::VecDot| {
            let mut best = f64::MAX;
            for _ in 0..10 {
                let t = Instant::now();
                for _ in 0..2000 {
                    std::hint::black_box(f(n, &w, &x));
                }
                best = best.min(t.elapsed().as_nanos() as f64 / (2000 * n) as f64);
            }
            best
        };
        let (Some(r), Some(f)) = (ty.traits().vec_dot, dispatch::vec_dot(ty)) else {
            continue;
        };
        println!(
            "{ty:?} dot: reference {:.3} ns, fast {:.3} ns per element",
            time(r),
            time(f)
        );
    }
    {
        use suanli_kernels::x86::kquant::{KActs, KC};
        let n = 1536;
        let nb = n / 256;
        use dispatch::Level;
        for (ty, inter, level) in [
            (DType::Q4_K, true, Level::Avx2),
            (DType::Q4_K, true, Level::Avx512),
            (DType::Q6_K, false, Level::Avx2),
            (DType::Q6_K, false, Level::Avx512),
        ] {
            let Some(x8) = dispatch::k_quant_x8_at(level, ty, inter) else {
                continue;
            };
            let w: Vec<u8> = (0..ty.row_bytes(n).unwrap_or(0))
                .map(|i| (i * 7 % 251) as u8 & 0x3f)
                .collect();
            let xrb = DType::Q8_K.row_bytes(n).unwrap_or(0);
            let xq: Vec<u8> = (0..KC * xrb).map(|i| (i * 13 % 97) as u8).collect();
            let acts = KActs::new(&xq, xrb, nb);
            let reps = 20_000;
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = Instant::now();
                let mut st = [[0f32; KC]; 2];
                for _ in 0..reps {
                    x8(0..nb, &w, &xq, xrb, &acts, &mut st);
                }
                std::hint::black_box(&st);
                best = best.min(t.elapsed().as_nanos() as f64 / (reps * nb * KC) as f64);
            }
            println!("{ty:?} x8 at {level:?}: {best:.2} ns per block-token (best of 20)");
        }
        let vt = DType::Q8_0;
        if let Some(tile) = suanli_kernels::x86::tile::tile_dot(
            DType::Q5_0,
            if std::env::var_os("AVX2").is_some() {
                dispatch::Level::Avx2
            } else {
                dispatch::level()
            },
        ) {
            use suanli_kernels::x86::tile::{lane_starts, widen_scales, Acts, Strides, TC, TR};
            let n = 896;
            let wrb = DType::Q5_0.row_bytes(n).unwrap_or(0);
            let xrb = vt.row_bytes(n).unwrap_or(0);
            let w: Vec<u8> = (0..TR * wrb).map(|i| (i * 7 % 251) as u8 & 0x3f).collect();
            let x: Vec<u8> = (0..TC * xrb).map(|i| (i * 13 % 97) as u8 & 0x3f).collect();
            let mut xs = Vec::new();
            widen_scales(&x, xrb, n / 32, 34, false, &mut xs);
            let mut init = Vec::new();
            if dispatch::level() == dispatch::Level::Avx512 {
                lane_starts(16, &x, xrb, n / 32, TC, &mut init);
            }
            let acts = Acts {
                x: &x,
                xrb,
                xs: &xs,
                init: &init,
            };
            let mut o = [[0f32; TC]; TR];
            let reps = 20_000;
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = Instant::now();
                for _ in 0..reps {
                    tile(
                        n,
                        &w,
                        Strides::rows(n / 32, DType::Q5_0.block_bytes()),
                        acts,
                        &mut o,
                    );
                    std::hint::black_box(&o);
                }
                best = best.min(t.elapsed().as_nanos() as f64);
            }
            let ns = best / (reps * (n / 32) * TR * TC) as f64;
            if let Some((unpack, tile8, ub)) =
                suanli_kernels::x86::tile_u8::kernels(DType::Q5_0, dispatch::level())
            {
                let mut buf = vec![0u8; n / 32 * ub];
                unpack(
                    n,
                    &w,
                    Strides::rows(n / 32, DType::Q5_0.block_bytes()),
                    &mut buf,
                );
                let mut best = f64::MAX;
                for _ in 0..20 {
                    let t = Instant::now();
                    for _ in 0..reps {
                        tile8(n, &buf, acts, &mut o);
                        std::hint::black_box(&o);
                    }
                    best = best.min(t.elapsed().as_nanos() as f64);
                }
                println!(
                    "Q5_0 unpacked tile: {:.3} ns per 32-block-output",
                    best / (reps * (n / 32) * TR * TC) as f64
                );
            }
            println!(
                "Q5_0 tile: {ns:.3} ns per 32-block-output ({:.2} per 256 elements)",
                ns * 8.0
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("kernel_bench measures the x86-64 SIMD kernels; this is not an x86-64 build");
}
