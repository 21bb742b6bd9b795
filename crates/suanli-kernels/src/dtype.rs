//! GGML tensor types and the per-type kernel table.
//!
//! Ids and block geometry follow the GGUF specification (`ggml_type` in
//! ggml.h); the table mirrors ggml's `type_traits` / `type_traits_cpu`.

use crate::quants::{float, fp4, kquants, legacy};

/// A tensor element type as numbered in GGUF files.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// OCP microscaling FP4 (gpt-oss's experts).
    MXFP4,
}

/// Elements per super-block of the K-quants.
pub const QK_K: usize = 256;

impl DType {
    /// The type for a GGUF `ggml_type` id, or `None` for ids suanli does not handle
    /// (the IQ and ternary formats, removed Q4_2/Q4_3…).
    pub fn from_ggml_id(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            9 => DType::Q8_1,
            10 => DType::Q2_K,
            11 => DType::Q3_K,
            12 => DType::Q4_K,
            13 => DType::Q5_K,
            14 => DType::Q6_K,
            15 => DType::Q8_K,
            24 => DType::I8,
            25 => DType::I16,
            26 => DType::I32,
            27 => DType::I64,
            28 => DType::F64,
            30 => DType::BF16,
            39 => DType::MXFP4,
            _ => return None,
        })
    }

    pub fn ggml_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q8_1 => 9,
            DType::Q2_K => 10,
            DType::Q3_K => 11,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
            DType::Q8_K => 15,
            DType::I8 => 24,
            DType::I16 => 25,
            DType::I32 => 26,
            DType::I64 => 27,
            DType::F64 => 28,
            DType::BF16 => 30,
            DType::MXFP4 => 39,
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        self.traits().block
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.traits().bytes
    }

    /// Bytes taken by `n` elements, or `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let t = self.traits();
        n.is_multiple_of(t.block).then(|| n / t.block * t.bytes)
    }

    pub fn is_quantized(self) -> bool {
        self.traits().block > 1
    }

    pub fn traits(self) -> &'static TypeTraits {
        &TRAITS[self as usize]
    }
}

/// Dequantize `out.len()` elements from whole blocks in `src`.
pub type ToFloat = fn(src: &[u8], out: &mut [f32]);
/// Quantize `x` (a whole number of blocks) into `out`.
pub type FromFloat = fn(x: &[f32], out: &mut [u8]);
/// Dot product of `n` elements: a weight row `w` in this type with an
/// activation row `x` already in this type's `vec_dot_type`.
pub type VecDot = fn(n: usize, w: &[u8], x: &[u8]) -> f32;

/// What suanli knows how to do with one type.
pub struct TypeTraits {
    pub name: &'static str,
    /// Elements per block.
    pub block: usize,
    /// Bytes per block.
    pub bytes: usize,
    pub to_float: Option<ToFloat>,
    pub from_float: Option<FromFloat>,
    /// The format activations are quantized to before `vec_dot`.
    pub vec_dot_type: DType,
    pub vec_dot: Option<VecDot>,
}

const fn plain(name: &'static str, bytes: usize, ty: DType) -> TypeTraits {
    TypeTraits {
        name,
        block: 1,
        bytes,
        to_float: None,
        from_float: None,
        vec_dot_type: ty,
        vec_dot: None,
    }
}

/// Indexed by `DType as usize`; order must follow the enum.
static TRAITS: [TypeTraits; 21] = [
    TypeTraits {
        name: "F32",
        block: 1,
        bytes: 4,
        to_float: Some(float::f32_to_float),
        from_float: Some(float::f32_from_float),
        vec_dot_type: DType::F32,
        vec_dot: Some(float::vec_dot_f32),
    },
    TypeTraits {
        name: "F16",
        block: 1,
        bytes: 2,
        to_float: Some(float::f16_to_float),
        from_float: Some(float::f16_from_float),
        vec_dot_type: DType::F16,
        vec_dot: Some(float::vec_dot_f16),
    },
    TypeTraits {
        name: "Q4_0",
        block: 32,
        bytes: 18,
        to_float: Some(legacy::dequantize_q4_0),
        from_float: None,
        vec_dot_type: DType::Q8_0,
        vec_dot: Some(legacy::vec_dot_q4_0_q8_0),
    },
    TypeTraits {
        name: "Q4_1",
        block: 32,
        bytes: 20,
        to_float: Some(legacy::dequantize_q4_1),
        from_float: None,
        vec_dot_type: DType::Q8_1,
        vec_dot: Some(legacy::vec_dot_q4_1_q8_1),
    },
    TypeTraits {
        name: "Q5_0",
        block: 32,
        bytes: 22,
        to_float: Some(legacy::dequantize_q5_0),
        from_float: None,
        vec_dot_type: DType::Q8_0,
        vec_dot: Some(legacy::vec_dot_q5_0_q8_0),
    },
    TypeTraits {
        name: "Q5_1",
        block: 32,
        bytes: 24,
        to_float: Some(legacy::dequantize_q5_1),
        from_float: None,
        vec_dot_type: DType::Q8_1,
        vec_dot: Some(legacy::vec_dot_q5_1_q8_1),
    },
    TypeTraits {
        name: "Q8_0",
        block: 32,
        bytes: 34,
        to_float: Some(legacy::dequantize_q8_0),
        from_float: Some(legacy::quantize_q8_0),
        vec_dot_type: DType::Q8_0,
        vec_dot: Some(legacy::vec_dot_q8_0_q8_0),
    },
    TypeTraits {
        name: "Q8_1",
        block: 32,
        bytes: 36,
        to_float: Some(legacy::dequantize_q8_1),
        from_float: Some(legacy::quantize_q8_1),
        vec_dot_type: DType::Q8_1,
        vec_dot: None,
    },
    TypeTraits {
        name: "Q2_K",
        block: QK_K,
        bytes: 84,
        to_float: Some(kquants::dequantize_q2_k),
        from_float: None,
        vec_dot_type: DType::Q8_K,
        vec_dot: Some(kquants::vec_dot_q2_k_q8_k),
    },
    TypeTraits {
        name: "Q3_K",
        block: QK_K,
        bytes: 110,
        to_float: Some(kquants::dequantize_q3_k),
        from_float: None,
        vec_dot_type: DType::Q8_K,
        vec_dot: Some(kquants::vec_dot_q3_k_q8_k),
    },
    TypeTraits {
        name: "Q4_K",
        block: QK_K,
        bytes: 144,
        to_float: Some(kquants::dequantize_q4_k),
        from_float: None,
        vec_dot_type: DType::Q8_K,
        vec_dot: Some(kquants::vec_dot_q4_k_q8_k),
    },
    TypeTraits {
        name: "Q5_K",
        block: QK_K,
        bytes: 176,
        to_float: Some(kquants::dequantize_q5_k),
        from_float: None,
        vec_dot_type: DType::Q8_K,
        vec_dot: Some(kquants::vec_dot_q5_k_q8_k),
    },
    TypeTraits {
        name: "Q6_K",
        block: QK_K,
        bytes: 210,
        to_float: Some(kquants::dequantize_q6_k),
        from_float: None,
        vec_dot_type: DType::Q8_K,
        vec_dot: Some(kquants::vec_dot_q6_k_q8_k),
    },
    TypeTraits {
        name: "Q8_K",
        block: QK_K,
        bytes: 292,
        to_float: Some(kquants::dequantize_q8_k),
        from_float: Some(kquants::quantize_q8_k),
        vec_dot_type: DType::Q8_K,
        vec_dot: None,
    },
    plain("I8", 1, DType::I8),
    plain("I16", 2, DType::I16),
    plain("I32", 4, DType::I32),
    plain("I64", 8, DType::I64),
    plain("F64", 8, DType::F64),
    TypeTraits {
        name: "BF16",
        block: 1,
        bytes: 2,
        to_float: Some(float::bf16_to_float),
        from_float: Some(float::bf16_from_float),
        vec_dot_type: DType::BF16,
        vec_dot: Some(float::vec_dot_bf16),
    },
    TypeTraits {
        name: "MXFP4",
        block: 32,
        bytes: fp4::BLOCK_BYTES,
        to_float: Some(fp4::dequantize_mxfp4),
        from_float: None,
        vec_dot_type: DType::Q8_0,
        vec_dot: Some(fp4::vec_dot_mxfp4_q8_0),
    },
];
