//! MXFP4 (OCP Microscaling, as gpt-oss ships its experts): blocks of 32
//! values, one E8M0 power-of-two scale byte then 16 bytes of 4-bit E2M1
//! codes (element `j` in the low nibble of byte `j`, element `j + 16` in
//! its high nibble). As ggml stores it: the codes map to twice their E2M1
//! value (`KVALUES`, integers) and the scale to half its power of two, so
//! products stay integer until the block's one float multiply.
//!
//! The dot product with Q8_0 activations sums in llama.cpp's x86 order for
//! this format (`ggml_vec_dot_mxfp4_q8_0` with AVX2): blocks in pairs, the
//! even blocks into one set of 8 lanes and the odd ones into another —
//! lane `l` of a block the exact integer sum of its elements `4l..4l + 4`,
//! `acc = fma(d, lane, acc)` — the two sets added lane by lane and summed
//! by `hsum8`, a last odd block added as `fma(d, Σ, sum)`.

use super::{as_i8, f16_at, hsum8, lanes32};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 17;

/// Twice the E2M1 value of each 4-bit code.
pub const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half the power of two an E8M0 scale byte stands for (`2^(e − 128)`,
/// ggml's `ggml_e8m0_to_fp32_half`; 0 and 1 are the two subnormals).
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// The 32 codes of a block as their integer values, in element order.
#[inline(always)]
pub fn values(qs: &[u8]) -> [i32; 32] {
    let mut v = [0i32; 32];
    for j in 0..16 {
        v[j] = KVALUES[(qs[j] & 0xF) as usize] as i32;
        v[j + 16] = KVALUES[(qs[j] >> 4) as usize] as i32;
    }
    v
}

pub fn dequantize_mxfp4(src: &[u8], out: &mut [f32]) {
    for (b, o) in src.chunks_exact(BLOCK_BYTES).zip(out.chunks_exact_mut(32)) {
        let d = e8m0_half(b[0]);
        for (o, v) in o.iter_mut().zip(values(&b[1..17])) {
            *o = v as f32 * d;
        }
    }
}

pub fn vec_dot_mxfp4_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    dot_blocks(
        n / 32,
        |i| {
            (
                w[i * BLOCK_BYTES],
                &w[i * BLOCK_BYTES + 1..(i + 1) * BLOCK_BYTES],
            )
        },
        x,
    )
}

/// The dot product of a row in the planes layout ([`to_planes`]) with a
/// Q8_0 row: the same sums in the same order as [`vec_dot_mxfp4_q8_0`] of
/// the row it was made from.
pub fn vec_dot_mxfp4_planes_q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
    let nb = n / 32;
    dot_blocks(nb, |i| (w[i], planes_codes(&w[nb..], nb, i)), x)
}

/// Block `i`'s 16 code bytes out of a planes row's codes (`nb` blocks).
#[inline(always)]
fn planes_codes(codes: &[u8], nb: usize, i: usize) -> [u8; 16] {
    std::array::from_fn(|j| codes[plane_at(nb, i, j)])
}

/// The reference order over blocks given as (scale byte, 16 code bytes).
#[inline(always)]
fn dot_blocks<Q: AsRef<[u8]>>(nb: usize, block: impl Fn(usize) -> (u8, Q), x: &[u8]) -> f32 {
    let (mut even, mut odd) = ([0f32; 8], [0f32; 8]);
    let lanes = |i: usize| {
        let ((e, qs), xk) = (block(i), &x[i * 34..]);
        let d = f16_at(xk, 0) * e8m0_half(e);
        (d, lanes32(&values(qs.as_ref()), as_i8(&xk[2..34])))
    };
    let mut i = 0;
    while i + 1 < nb {
        for (acc, k) in [(&mut even, i), (&mut odd, i + 1)] {
            let (d, lanes) = lanes(k);
            for (a, &l) in acc.iter_mut().zip(&lanes) {
                *a = d.mul_add(l as f32, *a);
            }
        }
        i += 2;
    }
    let both: [f32; 8] = std::array::from_fn(|l| even[l] + odd[l]);
    let sum = hsum8(&both);
    match i < nb {
        true => {
            let (e, qs) = block(i);
            add_last(e, qs.as_ref(), &x[i * 34..], sum)
        }
        false => sum,
    }
}

/// `sum` plus a last, odd block's `d · Σ q·x` (one FMA), as every twin of
/// the dot product ends.
#[inline(always)]
pub fn add_last_block(w: &[u8], x: &[u8], sum: f32) -> f32 {
    add_last(w[0], &w[1..BLOCK_BYTES], x, sum)
}

/// [`add_last_block`] of a block given as its scale byte and codes.
#[inline(always)]
pub fn add_last(e: u8, qs: &[u8], x: &[u8], sum: f32) -> f32 {
    let d = f16_at(x, 0) * e8m0_half(e);
    let s: i32 = values(qs)
        .iter()
        .zip(as_i8(&x[2..34]))
        .map(|(&a, &b)| a * b as i32)
        .sum();
    d.mul_add(s as f32, sum)
}

/// A row of `nb` blocks in the planes layout: the blocks' scale bytes
/// first, then their codes, a pair of blocks at a time with their bytes
/// interleaved four by four (the first block's 0..4, the second's 0..4,
/// the first's 4..8, …; a last, odd block alone) — the same bytes, so rows
/// keep their length and can still be sliced out of a matrix; a kernel
/// reads sixteen blocks' scales in one load and a pair's codes as one
/// 32-byte run whose nibbles land, a 32-bit lane each, alternately in the
/// two blocks (one 64-bit broadcast then gives a pair's two scales).
pub fn to_planes(row: &[u8], out: &mut [u8]) {
    let nb = row.len() / BLOCK_BYTES;
    let (scales, codes) = out.split_at_mut(nb);
    for (i, b) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        scales[i] = b[0];
        for j in 0..16 {
            codes[plane_at(nb, i, j)] = b[1 + j];
        }
    }
}

/// Where code byte `j` of block `i` lies in a planes row's codes.
#[inline(always)]
fn plane_at(nb: usize, i: usize, j: usize) -> usize {
    match i + 1 == nb && nb % 2 == 1 {
        true => 16 * i + j,
        false => 16 * (i & !1) + 8 * (j / 4) + 4 * (i % 2) + j % 4,
    }
}

/// The file's layout of a row in the planes layout ([`to_planes`]).
pub fn from_planes(row: &[u8], out: &mut [u8]) {
    let nb = row.len() / BLOCK_BYTES;
    for (i, b) in out.chunks_exact_mut(BLOCK_BYTES).enumerate() {
        b[0] = row[i];
        for j in 0..16 {
            b[1 + j] = row[nb + plane_at(nb, i, j)];
        }
    }
}
