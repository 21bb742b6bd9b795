//! Run-time choice of kernels by CPU features: one binary from a plain
//! `cargo build`, the best path picked at start.

use crate::dtype::VecDot;
use crate::DType;

/// The instruction-set path in use, for `inspect` and `bench`.
pub fn isa() -> &'static str {
    if has_avx2_fma() {
        "x86-64 AVX2+FMA+F16C (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q6_K and interleaved Q4_K dot products), reference elsewhere"
    } else {
        "reference (portable)"
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2_fma() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::x86;
    // SAFETY (all): handed out by `vec_dot` only after AVX2, FMA and F16C were detected.
    pub fn q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q8_0_q8_0(n, w, x) }
    }
    pub fn q4_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_0_q8_0(n, w, x) }
    }
    pub fn q5_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q5_0_q8_0(n, w, x) }
    }
    pub fn q4_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_1_q8_1(n, w, x) }
    }
    pub fn q5_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q5_1_q8_1(n, w, x) }
    }
    pub fn q6_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q6_k_q8_k(n, w, x) }
    }
    pub fn q6_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q6_k_q8_k_tiled(n, w, x) }
    }
    pub fn q4_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_k_q8_k_tiled(n, w, x) }
    }
    pub fn q4_k_interleaved(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_k_q8_k_interleaved(n, w, x) }
    }
    pub fn q4_k_interleaved_gemm(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_k_q8_k_interleaved_gemm(n, w, x) }
    }
}

/// The fastest available dot product of `ty` with its `vec_dot_type`; it
/// returns bit for bit what the reference (`ty.traits().vec_dot`) returns.
pub fn vec_dot(ty: DType) -> Option<VecDot> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        let f: Option<VecDot> = match ty {
            DType::Q8_0 => Some(avx2::q8_0),
            DType::Q4_0 => Some(avx2::q4_0),
            DType::Q5_0 => Some(avx2::q5_0),
            DType::Q4_1 => Some(avx2::q4_1),
            DType::Q5_1 => Some(avx2::q5_1),
            DType::Q6_K => Some(avx2::q6_k),
            _ => None,
        };
        if f.is_some() {
            return f;
        }
    }
    ty.traits().vec_dot
}

/// Fast twins of the interleaved Q4_K orders: (GEMV order, GEMM order).
pub fn q4_k_interleaved() -> (VecDot, VecDot) {
    use crate::quants::kquants;
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return (avx2::q4_k_interleaved, avx2::q4_k_interleaved_gemm);
    }
    (
        kquants::vec_dot_q4_k_q8_k_interleaved,
        kquants::vec_dot_q4_k_q8_k_interleaved_gemm,
    )
}

/// The fastest twin of the tiled K-quant order of `ty` (batches of 8+ rows).
pub fn tiled_vec_dot(ty: DType) -> Option<VecDot> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        match ty {
            DType::Q4_K => return Some(avx2::q4_k_tiled),
            DType::Q6_K => return Some(avx2::q6_k_tiled),
            _ => {}
        }
    }
    crate::quants::kquants::tiled_vec_dot(ty)
}
