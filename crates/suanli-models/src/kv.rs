//! The KV cache: per layer, K and V of every position so far.
//!
//! Layout per layer: `k[pos][kv_head * head_dim + d]` (and likewise V), in
//! f16 by default (as llama.cpp) or f32 (for exact comparison with f32
//! references).

use half::f16;
use half::slice::HalfFloatSliceExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDtype {
    F32,
    F16,
    /// 8-bit blocks of 32 with an f16 scale (as llama.cpp's `-ctk q8_0
    /// -ctv q8_0`): about half the memory of f16. Needs K/V widths in
    /// multiples of 32.
    Q8_0,
}

impl KvDtype {
    /// Bytes `n` cached values take (Q8_0: whole blocks of 32).
    pub fn bytes(self, n: usize) -> usize {
        match self {
            KvDtype::F32 => n * 4,
            KvDtype::F16 => n * 2,
            KvDtype::Q8_0 => n.div_ceil(32) * 34,
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvDtype::F32),
            "f16" => Ok(KvDtype::F16),
            "q8_0" | "q8" => Ok(KvDtype::Q8_0),
            other => Err(format!("unknown KV cache type {other:?} (f32, f16, q8_0)")),
        }
    }
}

enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Q8_0(Vec<u8>),
}

impl Store {
    fn new(dtype: KvDtype, n: usize) -> Store {
        match dtype {
            KvDtype::F32 => Store::F32(vec![0.0; n]),
            KvDtype::F16 => Store::F16(vec![f16::ZERO; n]),
            KvDtype::Q8_0 => Store::Q8_0(vec![0; n.div_ceil(32) * 34]),
        }
    }

    /// Writes `x` at element `off` (for Q8_0 both are whole blocks: rows of
    /// a width that is a multiple of 32).
    fn write(&mut self, off: usize, x: &[f32]) {
        match self {
            Store::F32(v) => v[off..off + x.len()].copy_from_slice(x),
            Store::F16(v) => v[off..off + x.len()].convert_from_f32_slice(x),
            Store::Q8_0(v) => {
                let (b0, nb) = (off / 32, x.len() / 32);
                suanli_kernels::quants::legacy::quantize_q8_0(
                    &x[..nb * 32],
                    &mut v[b0 * 34..(b0 + nb) * 34],
                );
            }
        }
    }
}

pub struct LayerKv {
    k: Store,
    v: Store,
}

/// K/V storage for many sequences: per layer, `n_blocks` blocks of
/// `block_size` rows. A sequence's position `p` lives at row
/// `table[p / block_size] * block_size + p % block_size` of its block table
/// (see [`Pages`]); which blocks a sequence owns is the engine's business.
pub struct KvPool {
    pub layers: Vec<LayerKv>,
    pub block_size: usize,
    pub n_blocks: usize,
    pub k_width: usize,
    pub v_width: usize,
    pub dtype: KvDtype,
}

/// A read-only view of one layer's K or V rows.
pub use suanli_kernels::attention::Kv as Rows;
pub use suanli_kernels::attention::Pages;

impl KvPool {
    pub fn new(
        n_layer: usize,
        n_blocks: usize,
        block_size: usize,
        k_width: usize,
        v_width: usize,
        dtype: KvDtype,
    ) -> Self {
        let rows = n_blocks * block_size;
        KvPool {
            layers: (0..n_layer)
                .map(|_| LayerKv {
                    k: Store::new(dtype, rows * k_width),
                    v: Store::new(dtype, rows * v_width),
                })
                .collect(),
            block_size,
            n_blocks,
            k_width,
            v_width,
            dtype,
        }
    }

    /// Rows (positions) the pool holds.
    pub fn rows(&self) -> usize {
        self.n_blocks * self.block_size
    }

    /// Write K and V of `layer` for one token at cache row `row`.
    pub fn write(&mut self, layer: usize, row: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.layers[layer];
        l.k.write(row * self.k_width, k);
        l.v.write(row * self.v_width, v);
    }

    /// Write K and V rows of `layer` for tokens placed at `rows` (`k` is
    /// `rows.len() × k_width`, `v` likewise), coalescing runs of
    /// consecutive rows.
    pub fn write_rows(&mut self, layer: usize, rows: &[usize], k: &[f32], v: &[f32]) {
        self.write_coalesced(layer, rows, k, true);
        self.write_coalesced(layer, rows, v, false);
    }

    /// [`Self::write_rows`] with each K row passed through `f(t, row)` on
    /// its way in (RoPE): token `t`'s keys go from `k` through one
    /// row-sized buffer into the cache.
    pub fn write_rows_with(
        &mut self,
        layer: usize,
        rows: &[usize],
        k: &[f32],
        v: &[f32],
        f: impl Fn(usize, &mut [f32]),
    ) {
        let kw = self.k_width;
        let mut row = vec![0f32; kw];
        for (t, (&r, src)) in rows.iter().zip(k.chunks_exact(kw)).enumerate() {
            row.copy_from_slice(src);
            f(t, &mut row);
            self.layers[layer].k.write(r * kw, &row);
        }
        self.write_coalesced(layer, rows, v, false);
    }

    /// K (`keys`) or V rows of `layer` for tokens placed at `rows`, one
    /// write per run of consecutive rows.
    fn write_coalesced(&mut self, layer: usize, rows: &[usize], x: &[f32], keys: bool) {
        let l = &mut self.layers[layer];
        let (w, store) = match keys {
            true => (self.k_width, &mut l.k),
            false => (self.v_width, &mut l.v),
        };
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                j += 1;
            }
            store.write(rows[i] * w, &x[i * w..j * w]);
            i = j;
        }
    }

    pub fn keys(&self, layer: usize) -> Rows<'_> {
        match &self.layers[layer].k {
            Store::F32(v) => Rows::F32(v),
            Store::F16(v) => Rows::F16(v),
            Store::Q8_0(v) => Rows::Q8_0(v),
        }
    }

    /// A layer's values; with a value width of 0, the keys (latent
    /// attention caches only the key, whose first values are the value).
    pub fn values(&self, layer: usize) -> Rows<'_> {
        if self.v_width == 0 {
            return self.keys(layer);
        }
        match &self.layers[layer].v {
            Store::F32(v) => Rows::F32(v),
            Store::F16(v) => Rows::F16(v),
            Store::Q8_0(v) => Rows::Q8_0(v),
        }
    }

    /// Bytes one block takes over all layers.
    pub fn bytes_per_block(&self) -> usize {
        let n = self.block_size * (self.k_width + self.v_width);
        self.layers.len() * self.dtype.bytes(n)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.n_blocks * self.bytes_per_block()
    }
}

/// The K/V of one sequence in a contiguous cache (`run`, `chat`, `bench`,
/// tests): a pool of one block of `capacity` rows, position = row.
pub struct KvCache {
    pub pool: KvPool,
    /// Positions the cache can hold.
    pub capacity: usize,
    /// Positions filled.
    len: usize,
}

impl KvCache {
    pub fn new(
        n_layer: usize,
        capacity: usize,
        k_width: usize,
        v_width: usize,
        dtype: KvDtype,
    ) -> Self {
        KvCache {
            pool: KvPool::new(n_layer, 1, capacity, k_width, v_width, dtype),
            capacity,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dtype(&self) -> KvDtype {
        self.pool.dtype
    }

    /// Forget positions from `n` on (e.g. to reuse a common prefix).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Mark `n` more positions as filled (after every layer wrote them).
    pub fn advance(&mut self, n: usize) {
        self.len = (self.len + n).min(self.capacity);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.pool.bytes()
    }
}
