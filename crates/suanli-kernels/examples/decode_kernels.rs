//! One thread's rate of the decode (one-token) kernels on weights that
//! stay in L2: TSC ticks per 256-weight block of one row — the kernel's own
//! cost, which must stay well under the memory time of its bytes for
//! decode to run at the bandwidth roofline.
//!
//!     cargo run --release -p suanli-kernels --example decode_kernels

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::arch::x86_64::_rdtsc;

    use suanli_kernels::{dispatch, quants::kquants, x86, DType};
    if dispatch::detected() < dispatch::Level::Avx512 {
        eprintln!("decode_kernels times the AVX-512 VNNI kernels; this CPU has none");
        return;
    }
    let (rows, cols) = (128usize, 1536usize);
    let nb = cols / 256;
    let xrb = DType::Q8_K.row_bytes(cols).unwrap_or(0);
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 13 % 59) as f32 - 29.0) / 7.0)
        .collect();
    let mut xq = vec![0u8; xrb];
    if let Some(q) = DType::Q8_K.traits().from_float {
        q(&x, &mut xq);
    }
    let weights = |ty: DType| -> Vec<u8> {
        let rb = ty.row_bytes(cols).unwrap_or(0);
        let mut w: Vec<u8> = (0..rows * rb).map(|i| (i * 7 % 251) as u8).collect();
        // Small f16 scales keep values finite.
        for blk in w.chunks_exact_mut(ty.block_bytes()) {
            let at = if ty == DType::Q6_K { 208 } else { 0 };
            blk[at..at + 2].copy_from_slice(&[0, 0x10]);
            if ty == DType::Q4_K {
                blk[2..4].copy_from_slice(&[0, 0x10]);
            }
        }
        w
    };
    let time = |f: &mut dyn FnMut()| {
        let mut best = u64::MAX;
        for _ in 0..20 {
            // SAFETY: reading the time-stamp counter has no preconditions.
            let t = unsafe { _rdtsc() };
            for _ in 0..50 {
                f();
            }
            best = best.min((unsafe { _rdtsc() } - t) / 50);
        }
        best as f64 / (rows * nb) as f64
    };
    // Repacked Q4_K in groups of 16 rows (zmm lanes = rows), one token
    // (GEMV order) and four (GEMM order); one token's bits are those of the
    // scalar reference.
    let mut xq4 = vec![0u8; 4 * xrb];
    for c in xq4.chunks_exact_mut(xrb) {
        c.copy_from_slice(&xq);
    }
    let raw = weights(DType::Q4_K);
    let packed = x86::q4k_r16::repack(&raw, rows, nb);
    let gb = nb * x86::q4k_r16::R16_BYTES;
    // `out`: keep one token's results (else only time them).
    let run = |x: &[u8], out: Option<&mut Vec<u32>>, four: bool| {
        let mut out = out;
        for g in packed.chunks_exact(gb) {
            // SAFETY: AVX-512 VNNI was detected above.
            if four {
                let mut o = [[0f32; 16]; 4];
                unsafe { x86::q4k_r16::q4_k_r16::<4, true>(nb, g, x, xrb, &mut o) };
                std::hint::black_box(o);
            } else {
                let mut o = [[0f32; 16]; 1];
                unsafe { x86::q4k_r16::q4_k_r16::<1, false>(nb, g, x, xrb, &mut o) };
                match out.as_deref_mut() {
                    Some(v) => v.extend(o[0].iter().map(|v| v.to_bits())),
                    None => {
                        std::hint::black_box(o);
                    }
                }
            }
        }
    };
    let mut bits = Vec::new();
    run(&xq, Some(&mut bits), false);
    let rb = DType::Q4_K.row_bytes(cols).unwrap_or(0);
    let want: Vec<u32> = raw
        .chunks_exact(rb)
        .map(|w| kquants::vec_dot_q4_k_q8_k_interleaved(cols, w, &xq).to_bits())
        .collect();
    let gemv = time(&mut || run(&xq, None, false));
    let gemm = time(&mut || run(&xq4, None, true));
    println!(
        "Q4_K repacked, 16-row groups: {gemv:.1} ticks per row-block (144 bytes) one token, {gemm:.1} four; reference bits: {}",
        bits == want
    );
    let q6 = weights(DType::Q6_K);
    let mut out = vec![0f32; rows];
    let t = time(&mut || {
        // SAFETY: AVX-512 VNNI was detected above.
        unsafe { x86::q6k_rows_avx512(cols, &q6, &xq, &mut out) };
        std::hint::black_box(&out);
    });
    println!("Q6_K rows: {t:.1} ticks per row-block (210 bytes)");
    let mut planes = q6.clone();
    for (s, d) in q6.chunks_exact(210).zip(planes.chunks_exact_mut(210)) {
        x86::q6k_planes::plane_block(s, d);
    }
    let mut out2 = vec![0f32; rows];
    let t = time(&mut || {
        // SAFETY: AVX-512 VNNI was detected above.
        unsafe { x86::q6k_planes::rows(cols, &planes, &xq, &mut out2) };
        std::hint::black_box(&out2);
    });
    let same = out
        .iter()
        .zip(&out2)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    println!("Q6_K planes: {t:.1} ticks per row-block (210 bytes), same bits: {same}");
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("decode_kernels measures the x86-64 SIMD kernels; this is not an x86-64 build");
}
