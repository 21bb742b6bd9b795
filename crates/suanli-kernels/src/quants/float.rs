//! F32, F16 and BF16 rows. Like ggml, F16 and BF16 weights are multiplied
//! with activations converted to the same type, products summed in f32.

use half::{bf16, f16};

pub fn f32_to_float(src: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

pub fn f32_from_float(x: &[f32], out: &mut [u8]) {
    for (v, c) in x.iter().zip(out.chunks_exact_mut(4)) {
        c.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn f16_to_float(src: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

pub fn f16_from_float(x: &[f32], out: &mut [u8]) {
    for (v, c) in x.iter().zip(out.chunks_exact_mut(2)) {
        c.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
    }
}

pub fn bf16_to_float(src: &[u8], out: &mut [f32]) {
    for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
        *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
    }
}

pub fn bf16_from_float(x: &[f32], out: &mut [u8]) {
    for (v, c) in x.iter().zip(out.chunks_exact_mut(2)) {
        c.copy_from_slice(&bf16::from_f32(*v).to_le_bytes());
    }
}

/// Sums in 8 interleaved lanes so the compiler can vectorize, as ggml's
/// `ggml_vec_dot_f32` does with its SIMD accumulators.
pub fn vec_dot_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let w = &w[..n * 4];
    let x = &x[..n * 4];
    let mut wc = w.chunks_exact(32);
    let mut xc = x.chunks_exact(32);
    for (a, b) in (&mut wc).zip(&mut xc) {
        for l in 0..8 {
            let o = l * 4;
            acc[l] += f32::from_le_bytes([a[o], a[o + 1], a[o + 2], a[o + 3]])
                * f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in wc
        .remainder()
        .chunks_exact(4)
        .zip(xc.remainder().chunks_exact(4))
    {
        s += f32::from_le_bytes([a[0], a[1], a[2], a[3]])
            * f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    s
}

pub fn vec_dot_f16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut i = 0;
    while i + 8 <= n {
        for l in 0..8 {
            let o = (i + l) * 2;
            acc[l] += f16::from_le_bytes([w[o], w[o + 1]]).to_f32()
                * f16::from_le_bytes([x[o], x[o + 1]]).to_f32();
        }
        i += 8;
    }
    let mut s: f32 = acc.iter().sum();
    while i < n {
        let o = i * 2;
        s += f16::from_le_bytes([w[o], w[o + 1]]).to_f32()
            * f16::from_le_bytes([x[o], x[o + 1]]).to_f32();
        i += 1;
    }
    s
}

pub fn vec_dot_bf16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut i = 0;
    while i + 8 <= n {
        for l in 0..8 {
            let o = (i + l) * 2;
            acc[l] += bf16::from_le_bytes([w[o], w[o + 1]]).to_f32()
                * bf16::from_le_bytes([x[o], x[o + 1]]).to_f32();
        }
        i += 8;
    }
    let mut s: f32 = acc.iter().sum();
    while i < n {
        let o = i * 2;
        s += bf16::from_le_bytes([w[o], w[o + 1]]).to_f32()
            * bf16::from_le_bytes([x[o], x[o + 1]]).to_f32();
        i += 1;
    }
    s
}

/// BF16 · BF16 in the order of AVX512_BF16's `vdpbf16ps`, the order of
/// [`crate::x86::float::vec_dot_bf16_dp`]: 16 lanes, lane `l` adding the
/// products of elements `2l + 1` then `2l` of every 32-element chunk (the
/// last chunk padded with zeros), each add rounded, subnormal inputs and
/// sums flushed to zero as the instruction does; the lanes summed as
/// [`crate::attention::reduce16`] sums them. Products of two bf16 are exact
/// in f32, so only the adds round.
pub fn vec_dot_bf16_dp(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let flush = |v: f32| {
        if v.is_subnormal() {
            0f32.copysign(v)
        } else {
            v
        }
    };
    let at = |b: &[u8], i: usize| match i < n {
        true => flush(bf16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32()),
        false => 0.0,
    };
    let mut acc = [0f32; 16];
    for c in (0..n).step_by(32) {
        for (l, a) in acc.iter_mut().enumerate() {
            for k in [1, 0] {
                let i = c + 2 * l + k;
                *a = flush(*a + at(w, i) * at(x, i));
            }
        }
    }
    crate::attention::reduce16(&acc)
}

/// BF16 · BF16 in the order of ggml's `ggml_vec_dot_bf16` on CPUs with
/// AVX512_BF16 (llama.cpp's decode, and every product whose length is not
/// a multiple of 32): two 16-lane `vdpbf16ps` accumulators over the
/// 64-element steps (elements `64s..64s+32` into the first), each summed
/// as [`crate::attention::reduce16`] sums it and added in f64, then the
/// tail's f32 products added in f64 one by one.
pub fn vec_dot_bf16_dp_gemv(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let flush = |v: f32| {
        if v.is_subnormal() {
            0f32.copysign(v)
        } else {
            v
        }
    };
    let at = |b: &[u8], i: usize| bf16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
    let whole = n / 64 * 64;
    let mut acc = [[0f32; 16]; 2];
    for s in (0..whole).step_by(64) {
        for (h, acc) in acc.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                for k in [1, 0] {
                    let i = s + 32 * h + 2 * l + k;
                    *a = flush(*a + flush(at(w, i)) * flush(at(x, i)));
                }
            }
        }
    }
    let mut sum = crate::attention::reduce16(&acc[0]) as f64;
    sum += crate::attention::reduce16(&acc[1]) as f64;
    for i in whole..n {
        sum += (at(w, i) * at(x, i)) as f64;
    }
    sum as f32
}

/// F16 · F16 in the order of ggml's `ggml_vec_dot_f16` with AVX-512
/// (llama.cpp's decode, and every product whose length is not a multiple
/// of 16): four 16-lane FMA accumulators over 64-element steps, added as
/// (0 + 2) + (1 + 3), the lanes summed as [`crate::attention::reduce16`]
/// sums them, then the tail's f32 products added in f64.
pub fn vec_dot_f16_zmm_gemv(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let at = |b: &[u8], i: usize| f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
    let np = n & !63;
    let mut acc = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let e = i + 16 * j + l;
                *a = at(w, e).mul_add(at(x, e), *a);
            }
        }
    }
    let v: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    let mut s = crate::attention::reduce16(&v) as f64;
    for e in np..n {
        s += (at(w, e) * at(x, e)) as f64;
    }
    s as f32
}

/// F16 · F16 in the order of llama.cpp's prefill GEMM with AVX-512
/// (tinyBLAS: one 16-lane FMA accumulator per output over 16-element
/// steps, then `reduce_add`; llama.cpp takes it for lengths that are a
/// multiple of 16 — a last partial step here is padded with zeros).
pub fn vec_dot_f16_zmm_tile(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let at = |b: &[u8], i: usize| match i < n {
        true => f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32(),
        false => 0.0,
    };
    let mut acc = [0f32; 16];
    for c in (0..n).step_by(16) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = at(w, c + l).mul_add(at(x, c + l), *a);
        }
    }
    crate::attention::reduce16(&acc)
}
