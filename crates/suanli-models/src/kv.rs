//! The KV cache: per layer, K and V of every position so far.
//!
//! Layout per layer: `k[pos][kv_head * head_dim + d]` (and likewise V), in
//! f16 by default (as llama.cpp) or f32 (for exact comparison with f32
//! references).

use half::f16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    F32,
    F16,
}

enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Store {
    fn new(dtype: KvDtype, n: usize) -> Store {
        match dtype {
            KvDtype::F32 => Store::F32(vec![0.0; n]),
            KvDtype::F16 => Store::F16(vec![f16::ZERO; n]),
        }
    }

    fn write(&mut self, off: usize, x: &[f32]) {
        match self {
            Store::F32(v) => v[off..off + x.len()].copy_from_slice(x),
            Store::F16(v) => {
                for (o, &s) in v[off..off + x.len()].iter_mut().zip(x) {
                    *o = f16::from_f32(s);
                }
            }
        }
    }
}

pub struct LayerKv {
    k: Store,
    v: Store,
}

pub struct KvCache {
    pub layers: Vec<LayerKv>,
    /// Positions the cache can hold.
    pub capacity: usize,
    /// Positions filled.
    len: usize,
    pub k_width: usize,
    pub v_width: usize,
    pub dtype: KvDtype,
}

/// A read-only view of one layer's K or V rows.
pub use suanli_kernels::attention::Kv as Rows;

impl KvCache {
    pub fn new(
        n_layer: usize,
        capacity: usize,
        k_width: usize,
        v_width: usize,
        dtype: KvDtype,
    ) -> Self {
        KvCache {
            layers: (0..n_layer)
                .map(|_| LayerKv {
                    k: Store::new(dtype, capacity * k_width),
                    v: Store::new(dtype, capacity * v_width),
                })
                .collect(),
            capacity,
            len: 0,
            k_width,
            v_width,
            dtype,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forget positions from `n` on (e.g. to reuse a common prefix).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Mark `n` more positions as filled (after every layer wrote them).
    pub fn advance(&mut self, n: usize) {
        self.len = (self.len + n).min(self.capacity);
    }

    /// Write K and V rows of `layer` for positions `pos..pos + n`.
    pub fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.layers[layer];
        l.k.write(pos * self.k_width, k);
        l.v.write(pos * self.v_width, v);
    }

    pub fn keys(&self, layer: usize) -> Rows<'_> {
        match &self.layers[layer].k {
            Store::F32(v) => Rows::F32(v),
            Store::F16(v) => Rows::F16(v),
        }
    }

    pub fn values(&self, layer: usize) -> Rows<'_> {
        match &self.layers[layer].v {
            Store::F32(v) => Rows::F32(v),
            Store::F16(v) => Rows::F16(v),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let el = match self.dtype {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        };
        self.layers.len() * self.capacity * (self.k_width + self.v_width) * el
    }
}
