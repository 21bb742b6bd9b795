//! Block formats: reference ("generic") dequantize, quantize and dot product.
//!
//! Layouts follow ggml-common.h; the dequantizers are bit-identical to the
//! `gguf` Python package's numpy implementation (tested in `tests/`). The
//! activation quantizers (`quantize_q8_0`, `quantize_q8_1`) follow ggml's x86
//! path (`127/amax`, round half to even), which is what llama.cpp runs on the
//! machines we compare against; `quantize_q8_k` follows `quantize_row_q8_K_ref`.
//!
//! Dot products accumulate in the order of ggml's x86 kernels (the code
//! llama.cpp runs on the machines we compare against): per block, exact
//! integer sums in 8 lanes — lane `l` holding elements `4l..4l+4` of each
//! 32-element chunk — then `acc[l] = fma(d, lane, acc[l])`, and at the end the
//! fixed horizontal sum `hsum8`. Summation order is the only freedom a dot
//! product has; fixing it to llama.cpp's makes greedy decoding agree token for
//! token even where a model amplifies rounding (massive activations).
//!
//! All functions take whole blocks; callers check lengths (see
//! [`crate::DType::row_bytes`]).

pub mod float;
pub mod fp4;
pub mod kquants;
pub mod legacy;

use half::f16;

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

#[inline(always)]
pub(crate) fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

#[inline(always)]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Signed bytes of a block.
#[inline(always)]
pub(crate) fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size and alignment.
    unsafe { std::slice::from_raw_parts(b.as_ptr() as *const i8, b.len()) }
}

/// `x` rounded to the nearest integer, ties to even, for |x| ≤ 2²²: read
/// off the mantissa of `x + 1.5·2²³` (the addition rounds in the default
/// mode). The same value as `x.round_ties_even() as i32` there, without a
/// saturating float-to-int cast, which LLVM does not vectorize.
#[inline(always)]
pub(crate) fn round_small(x: f32) -> i32 {
    (x + 12_582_912.0).to_bits() as i32 - 0x4B40_0000
}

/// Horizontal sum of 8 lanes as `hsum_float_8` (x86) adds them:
/// `((a4+a0) + (a6+a2)) + ((a5+a1) + (a7+a3))`.
#[inline(always)]
pub(crate) fn hsum8(a: &[f32; 8]) -> f32 {
    let r = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// Integer sums of 4 consecutive products in 8 lanes over one 32-element
/// chunk (what `maddubs`/`dpbusd` + `madd` leave in a 256-bit register).
#[inline(always)]
pub(crate) fn lanes32(a: &[i32; 32], b: &[i8]) -> [i32; 8] {
    let mut l = [0i32; 8];
    for (i, lane) in l.iter_mut().enumerate() {
        for k in 4 * i..4 * i + 4 {
            *lane += a[k] * b[k] as i32;
        }
    }
    l
}

#[cfg(test)]
mod tests {
    /// `round_small` is `round_ties_even` over the quantizers' range,
    /// ties and the values next to them included.
    #[test]
    fn round_small_rounds_ties_to_even() {
        let mut checked = 0;
        for k in -300i32..=300 {
            let base = k as f32 * 0.5;
            for x in [
                base,
                f32::from_bits(base.to_bits() + 1),
                f32::from_bits(base.to_bits().max(1) - 1),
            ] {
                assert_eq!(super::round_small(x), x.round_ties_even() as i32, "{x}");
                checked += 1;
            }
        }
        assert!(checked > 1000);
    }
}
