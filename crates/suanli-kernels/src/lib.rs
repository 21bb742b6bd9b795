//! suanli-kernels: the numeric bottom of suanli.
//!
//! Layout of the crate:
//! - [`dtype`]: the GGML tensor types (ids as in the GGUF spec), their block
//!   geometry and a table of per-type kernels ([`dtype::TypeTraits`]), as ggml's
//!   `type_traits` does: `to_float` (dequantize), `from_float` (quantize a row
//!   of activations into this type) and `vec_dot` (dot product of a weight row
//!   with a row already quantized to the type's `vec_dot_type`).
//! - [`quants`]: the block formats themselves. Every function there is the
//!   plain reference ("generic") implementation: it is the specification the
//!   fast paths are held to.
//! - [`matmul`]: [`matmul::QMatrix`], a weight matrix in any format, and the
//!   matrix × activations product built on the table above; [`matmul_many`]
//!   (several matrices over the same rows in one pass over the pool) and
//!   [`matmul_grouped`] (many matrices each over its own subset of a batch's
//!   rows — a mixture-of-experts layer's shape — in one pass);
//!   [`glu_quantized`] (a gated FFN's gate and up products with the
//!   activation and the down projection's activation quantization fused
//!   into one pass) and [`matmul_many_quantized`] (products over rows
//!   already quantized).
//! - [`dispatch`] and the per-ISA folders `x86/` and `aarch64/` (one `cfg`
//!   each): SIMD twins of the reference kernels, chosen at run time by CPU
//!   features and bit-identical to them; on x86, `x86::tile` (register-tiled
//!   prefill and multi-row decode kernels of the 32-element formats),
//!   `x86::kquant` (K-quant kernels over eight tokens), `x86::q4k_r16` (Q4_K
//!   repacked into 16-row groups for AVX-512 VNNI) and `x86::r16` (32-element
//!   formats in 16-row groups, batch-invariant).
//! - [`ops`]: element-wise and row ops of the forward pass (RMSNorm, RoPE,
//!   softmax, activations).
//! - [`attention`]: causal GQA attention over the KV cache in llama.cpp's
//!   flash-attention orders, reference and SIMD twin.
//! - [`pool`]: the persistent thread pool every parallel kernel runs on.
//!
//! This crate knows nothing of tensors' meaning or of models.

// Block layouts are specified by index (element j, byte j + 16); kernels keep
// that form so they can be read against the spec.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod attention;
mod decode;
pub mod dispatch;
pub mod dtype;
mod glu;
mod grouped;
mod hugemem;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quants;
mod simd_attn;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use decode::{matmul_many, matmul_many_acts, matmul_many_quantized, Acts, Quantized};
pub use dtype::{DType, TypeTraits};
pub use glu::glu_quantized;
pub use grouped::{matmul_grouped, Product};
pub use matmul::{Blob, QMatrix};

/// Errors raised by kernels when given a shape or type they cannot handle.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tensor type {0:?} has no {1} kernel")]
    Unsupported(DType, &'static str),
    #[error("row length {len} is not a multiple of the {ty:?} block size {block}")]
    BadRowLength { ty: DType, len: usize, block: usize },
    #[error("{what}: expected {expected} bytes, got {got}")]
    BadSize {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("activation row {index} taken, but only {rows} rows were given")]
    BadRowIndex { index: usize, rows: usize },
}
