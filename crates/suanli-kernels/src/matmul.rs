//! A weight matrix in any block format, and its product with f32 activations.

use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
use crate::x86::walk::{blocked, blocked_unpacked, group_tiles, ActTables};
use crate::{DType, KernelError};

/// Memory a [`Blob`] views: an owned buffer or a file mapping.
pub trait Storage: Send + Sync {
    fn bytes(&self) -> &[u8];
    /// Bytes `off..off + len` will not be read again (their weights were
    /// repacked into new memory): a file mapping may drop those pages.
    fn release(&self, _off: usize, _len: usize) {}
    /// Bytes `off..off + len` are read in scattered small pieces (an
    /// embedding table's rows): a file mapping may stop reading around
    /// each fault, so only what is used becomes resident.
    fn random_access(&self, _off: usize, _len: usize) {}
    /// Copies bytes `off..off + dst.len()` into `dst` without touching
    /// them in place (a file read for a mapping, so no page of it becomes
    /// resident); `false` where the storage cannot, or the read failed.
    fn read_at(&self, _off: usize, _dst: &mut [u8]) -> bool {
        false
    }
}

impl Storage for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Bytes that may live in a memory-mapped file or in an owned buffer.
///
/// Cloning is cheap (an `Arc`); the bytes are never copied.
#[derive(Clone)]
pub struct Blob {
    owner: Arc<dyn Storage>,
    off: usize,
    len: usize,
}

impl Blob {
    /// A view of `len` bytes at `off` in `owner`, or `None` when out of range.
    pub fn new(owner: Arc<dyn Storage>, off: usize, len: usize) -> Option<Self> {
        let end = off.checked_add(len)?;
        (owner.bytes().len() >= end).then_some(Blob { owner, off, len })
    }

    /// Bytes `off..off + len` of this view, as a view of their own (one
    /// expert of a 3-D tensor), or `None` when out of range.
    pub fn slice(&self, off: usize, len: usize) -> Option<Self> {
        let end = off.checked_add(len)?;
        (end <= self.len).then(|| Blob {
            owner: self.owner.clone(),
            off: self.off + off,
            len,
        })
    }

    /// Tells the storage these bytes will not be read again.
    pub fn release(&self) {
        self.owner.release(self.off, self.len);
    }

    /// [`Self::release`] for bytes `off..off + len` of this view.
    pub fn release_range(&self, off: usize, len: usize) {
        if off.checked_add(len).is_some_and(|end| end <= self.len) {
            self.owner.release(self.off + off, len);
        }
    }

    /// Copies bytes `off..off + dst.len()` of this view into `dst` through
    /// the storage's [`Storage::read_at`]; `false` where it cannot.
    pub fn read_at(&self, off: usize, dst: &mut [u8]) -> bool {
        off.checked_add(dst.len())
            .is_some_and(|end| end <= self.len)
            && self.owner.read_at(self.off + off, dst)
    }

    /// Tells the storage these bytes are read in scattered pieces.
    pub fn random_access(&self) {
        self.owner.random_access(self.off, self.len);
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        Self::whole(Arc::new(v))
    }

    pub(crate) fn whole(owner: Arc<dyn Storage>) -> Self {
        let len = owner.bytes().len();
        Blob { owner, off: 0, len }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.owner.bytes()[self.off..self.off + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.len)
    }
}

/// A row-major weight matrix `(rows, cols)` in one block format: row `r` is
/// the `cols` elements starting at byte `r * row_bytes`. In GGUF terms `cols`
/// is `ne[0]` and `rows` is `ne[1]`.
#[derive(Clone, Debug)]
pub struct QMatrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: Blob,
    /// Rows are processed 8 at a time by interleaved kernels (see
    /// [`QMatrix::interleave`]); this fixes the dot products' summation order.
    pub interleaved: bool,
    /// The data is in the 16-row repacked layout of [`crate::x86::q4k_r16`]
    /// (interleaved Q4_K on AVX-512 VNNI): rows cannot be sliced out.
    pub repacked: bool,
    /// The data is in the 16-row layout of [`crate::x86::r16`] (32-element
    /// formats, batch-invariant numerics on AVX-512 VNNI).
    pub r16: bool,
    /// The data is in the 4-row layout of [`crate::x86::tile::repack_rows4`]
    /// (32-element formats with tile kernels, llama.cpp's sums).
    pub rows4: bool,
    /// A second copy of a Q6_K matrix in the 16-row layout of
    /// [`crate::x86::q6k_r16`], for products in the tiled order (prefill).
    pub prefill: Option<Blob>,
    /// The data is in its format's planes layout, rows one after another
    /// and as long as in the file: Q6_K's of [`crate::x86::q6k_planes`]
    /// (each block re-laid in place), MXFP4's of
    /// [`crate::quants::fp4::to_planes`] (a row's scales, then its codes).
    pub planes: bool,
}

impl QMatrix {
    pub fn new(dtype: DType, rows: usize, cols: usize, data: Blob) -> Result<Self, KernelError> {
        let row_bytes = dtype.row_bytes(cols).ok_or(KernelError::BadRowLength {
            ty: dtype,
            len: cols,
            block: dtype.block_size(),
        })?;
        if dtype.traits().vec_dot.is_none() {
            return Err(KernelError::Unsupported(dtype, "vec_dot"));
        }
        if data.len() != row_bytes * rows {
            return Err(KernelError::BadSize {
                what: "matrix data",
                expected: row_bytes * rows,
                got: data.len(),
            });
        }
        Ok(QMatrix {
            dtype,
            rows,
            cols,
            data,
            interleaved: false,
            repacked: false,
            r16: false,
            rows4: false,
            prefill: None,
            planes: false,
        })
    }

    /// Whether a weight matrix of this type and shape is run by 8-row
    /// interleaved kernels: Q4_K with a multiple of 8 rows (the layout
    /// llama.cpp repacks on x86 too, so both engines sum in the same order).
    pub fn interleavable(dtype: DType, rows: usize) -> bool {
        dtype == DType::Q4_K && rows.is_multiple_of(8)
    }

    /// Use the interleaved kernels where [`Self::interleavable`] allows;
    /// with AVX-512 VNNI and a multiple of 16 rows the weights are repacked
    /// for them (the original bytes are let go; other row counts run the
    /// AVX2 kernels on the file's layout, in the same orders).
    pub fn interleave(mut self) -> Self {
        self = self.repack_rows16();
        self = self.repack_rows4();
        self = self.to_planes();
        if self.r16 || self.rows4 || self.planes {
            return self;
        }
        self.interleaved = Self::interleavable(self.dtype, self.rows);
        #[cfg(target_arch = "x86_64")]
        if self.interleaved
            && crate::dispatch::level() == crate::dispatch::Level::Avx512
            && self.rows.is_multiple_of(crate::x86::q4k_r16::ROWS)
        {
            use crate::x86::q4k_r16::{repack, ROWS};
            let nb = self.cols / 256;
            let packed =
                crate::hugemem::repack_streaming(&self.data, self.rows, ROWS, |src, rows| {
                    repack(src, rows, nb)
                });
            self.data = packed;
            self.repacked = true;
        }
        self
    }

    /// Where this CPU has tile kernels for a 32-element format, a matrix
    /// with a multiple of 4 rows (and not in another layout) moves into the
    /// 4-row layout of [`crate::x86::tile::repack_rows4`]: one stream per
    /// tile or decode call instead of four rows a row apart (decoding Q8_0
    /// from memory: 17 → 33 GB/s on this project's Zen 4), the same sums.
    /// Rows can still be read, so embeddings tied to the output take it.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    pub fn repack_rows4(mut self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if crate::dispatch::tile_dot(self.dtype).is_some()
            && self.rows.is_multiple_of(crate::x86::tile::G4)
            && !self.rows4
            && !self.r16
            && !self.repacked
        {
            let (nb, bb) = (self.cols / 32, self.dtype.block_bytes());
            let packed = crate::hugemem::repack_streaming(
                &self.data,
                self.rows,
                crate::x86::tile::G4,
                |src, rows| crate::x86::tile::repack_rows4(src, rows, nb, bb),
            );
            self.data = packed;
            self.rows4 = true;
        }
        self
    }

    /// Where [`crate::dispatch::q6_k_planes`] says so, a Q6_K matrix moves
    /// into the planes layout of [`crate::x86::q6k_planes`] (the same bytes
    /// a block, about half the instructions to unpack; the same sums).
    /// Rows can still be read ([`Self::dequantize_row`]). A prefill copy
    /// ([`Self::with_prefill_layout`]) is made from Q6_K's own layout, so
    /// before this. On AVX-512 VNNI an MXFP4 matrix moves into its planes
    /// layout ([`crate::quants::fp4::to_planes`]) for the kernel of
    /// [`crate::x86::fp4`]: the same sums.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    pub fn to_planes(mut self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if self.dtype == DType::MXFP4
            && crate::dispatch::level() == crate::dispatch::Level::Avx512
            && !self.planes
        {
            let rb = self.row_bytes();
            let packed = crate::hugemem::repack_streaming(&self.data, self.rows, 1, |src, _| {
                let mut out = vec![0u8; src.len()];
                for (s, d) in src.chunks_exact(rb).zip(out.chunks_exact_mut(rb)) {
                    crate::quants::fp4::to_planes(s, d);
                }
                out
            });
            self.data = packed;
            self.planes = true;
        }
        #[cfg(target_arch = "x86_64")]
        if self.dtype == DType::Q6_K && crate::dispatch::q6_k_planes() && !self.planes {
            use crate::x86::q6k_planes::{plane_block, BLOCK};
            let packed = crate::hugemem::repack_streaming(&self.data, self.rows, 1, |src, _| {
                let mut out = vec![0u8; src.len()];
                for (s, d) in src.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BLOCK)) {
                    plane_block(s, d);
                }
                out
            });
            self.data = packed;
            self.planes = true;
        }
        self
    }

    /// With batch-invariant numerics on AVX-512 VNNI, a 32-element format
    /// with a multiple of 16 rows moves into the 16-row layout of
    /// [`crate::x86::r16`] (block-sum order; the original bytes are let go).
    /// Rows can still be read ([`Self::dequantize_row`]), so embeddings
    /// tied to the output take it too.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    pub fn repack_rows16(mut self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if crate::dispatch::batch_invariant()
            && crate::dispatch::level() == crate::dispatch::Level::Avx512
            && crate::x86::r16::supports(self.dtype)
            && self.rows.is_multiple_of(crate::x86::r16::G)
            && !self.repacked
            && !self.r16
        {
            let (nb, ty) = (self.cols / 32, self.dtype);
            let packed = crate::hugemem::repack_streaming(
                &self.data,
                self.rows,
                crate::x86::r16::G,
                |src, rows| crate::x86::r16::repack(ty, src, rows, nb),
            );
            self.data = packed;
            self.r16 = true;
        }
        self
    }

    /// On AVX-512 VNNI, a Q6_K matrix with a multiple of 16 rows gets a
    /// second copy in the 16-row layout of [`crate::x86::q6k_r16`], which
    /// runs its tiled-order products (prefill) several times faster than
    /// the row layout; decoding keeps reading the original (with
    /// batch-invariant numerics through the tiled order's row kernel, the
    /// copy's bits from 1/1.3 of its bytes). Costs about 1.3x the matrix's
    /// bytes: for the layers' matrices, not the output.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    pub fn with_prefill_layout(mut self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if self.dtype == DType::Q6_K
            && crate::dispatch::level() == crate::dispatch::Level::Avx512
            && self.rows.is_multiple_of(crate::x86::q6k_r16::G)
            && !self.r16
            && !self.repacked
            && !self.planes
        {
            let nb = self.cols / 256;
            let copy = crate::x86::q6k_r16::repack(self.data.bytes(), self.rows, nb);
            self.prefill = Some(Blob::from_vec(copy));
        }
        self
    }

    /// The dot product this matrix uses for activation row `t` of a batch
    /// of `n`.
    ///
    /// All of them compute the same sum; they differ in summation order,
    /// which follows the kernel llama.cpp runs for the same case on x86 —
    /// interleaved 8-row kernels (a 4-column GEMM over the first `n − n mod 4`
    /// rows, a GEMV for the rest), the tiled K-quant GEMM from 8 rows up,
    /// per-row dot products otherwise — so both engines round alike.
    ///
    /// With [`crate::dispatch::batch_invariant`] on, one order per matrix
    /// whatever `n` and `t`: the GEMV order for interleaved Q4_K, the tiled
    /// order for the other K-quants.
    pub fn vec_dot(&self, n: usize, t: usize) -> Option<crate::dtype::VecDot> {
        if self.r16 {
            return crate::quants::legacy::blocksum_vec_dot(self.dtype);
        }
        let fixed = crate::dispatch::batch_invariant();
        #[cfg(target_arch = "x86_64")]
        if self.planes && self.dtype == DType::MXFP4 {
            return Some(crate::quants::fp4::vec_dot_mxfp4_planes_q8_0);
        }
        #[cfg(target_arch = "x86_64")]
        if self.planes {
            let k = crate::dispatch::q6_k_planes_kernels();
            return Some(if fixed || n >= TILED_MIN_ROWS {
                k.tiled
            } else {
                k.dot
            });
        }
        if self.interleaved && self.dtype == DType::Q4_K {
            let (gemv, gemm) = crate::dispatch::q4_k_interleaved();
            return Some(if !fixed && n > 3 && t < n - n % 4 {
                gemm
            } else {
                gemv
            });
        }
        if fixed || n >= TILED_MIN_ROWS {
            if let Some(f) = crate::dispatch::tiled_vec_dot(self.dtype) {
                return Some(f);
            }
        }
        if self.dtype == DType::BF16 && (fixed || n >= 2) && self.cols.is_multiple_of(32) {
            if let Some(f) = crate::dispatch::bf16_tile_dot() {
                return Some(f);
            }
        }
        if self.dtype == DType::F16 && (fixed || n >= 2) && self.cols.is_multiple_of(16) {
            if let Some(f) = crate::dispatch::f16_tile_dot() {
                return Some(f);
            }
        }
        crate::dispatch::vec_dot(self.dtype)
    }

    /// An eight-token kernel for K-quant prefill in this matrix's order for
    /// a batch of `n`, and the tokens it covers (`..limit`).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn k_quant_x8(&self, n: usize) -> Option<(crate::dispatch::KQuantX8, usize)> {
        use crate::dispatch::{batch_invariant, k_quant_x8};
        if self.interleaved && self.dtype == DType::Q4_K {
            (!batch_invariant()).then_some(())?;
            return Some((k_quant_x8(DType::Q4_K, true)?, n - n % 4));
        }
        (n >= TILED_MIN_ROWS || batch_invariant()).then_some(())?;
        if self.planes && self.dtype == DType::Q6_K {
            return Some((crate::dispatch::q6_k_planes_kernels().x8, n));
        }
        Some((k_quant_x8(self.dtype, false)?, n))
    }

    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// The bytes lie row after row, as in the file (no repacked layout).
    fn row_major(&self) -> bool {
        !(self.repacked || self.r16 || self.rows4 || self.planes)
    }

    /// Row `r`'s bytes (not for a repacked matrix).
    pub fn row(&self, r: usize) -> &[u8] {
        debug_assert!(
            self.row_major(),
            "rows of a repacked matrix are interleaved"
        );
        let rb = self.row_bytes();
        &self.data.bytes()[r * rb..(r + 1) * rb]
    }

    /// Dequantize row `r` into `out` (`cols` elements; zeros for a
    /// repacked matrix, which only matmuls read).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.r16 {
            let Some(f) = self.dtype.traits().to_float else {
                return;
            };
            let nb = self.cols / 32;
            for (i, o) in out[..self.cols].chunks_exact_mut(32).enumerate() {
                let b = crate::x86::r16::original_block(self.dtype, self.data.bytes(), nb, r, i);
                f(&b[..self.dtype.block_bytes()], o);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.rows4 {
            let Some(f) = self.dtype.traits().to_float else {
                return;
            };
            let (nb, bb) = (self.cols / 32, self.dtype.block_bytes());
            for (i, o) in out[..self.cols].chunks_exact_mut(32).enumerate() {
                f(
                    crate::x86::tile::block_of_rows4(self.data.bytes(), nb, bb, r, i),
                    o,
                );
            }
            return;
        }
        if self.planes && self.dtype == DType::MXFP4 {
            let rb = self.row_bytes();
            let mut b = vec![0u8; rb];
            crate::quants::fp4::from_planes(&self.data.bytes()[r * rb..(r + 1) * rb], &mut b);
            crate::quants::fp4::dequantize_mxfp4(&b, &mut out[..self.cols]);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.planes {
            use crate::x86::q6k_planes::{unplane_block, BLOCK};
            let Some(f) = self.dtype.traits().to_float else {
                return;
            };
            let row = &self.data.bytes()[r * self.row_bytes()..][..self.row_bytes()];
            let mut b = [0u8; BLOCK];
            for (blk, o) in row
                .chunks_exact(BLOCK)
                .zip(out[..self.cols].chunks_exact_mut(256))
            {
                unplane_block(blk, &mut b);
                f(&b, o);
            }
            return;
        }
        if self.repacked {
            out[..self.cols].fill(0.0);
            return;
        }
        if let Some(f) = self.dtype.traits().to_float {
            f(self.row(r), &mut out[..self.cols]);
        }
    }

    /// [`Self::dequantize_row`] from a copy of the row's bytes that the
    /// storage reads out ([`Blob::read_at`]: from a mapped file, a `pread`,
    /// so an embedding table that is only looked up never becomes
    /// resident and costs no page fault). `false`, with `out` untouched,
    /// where the layout is not row-major or the storage cannot copy.
    pub fn lookup_row(&self, r: usize, out: &mut [f32]) -> bool {
        let Some(f) = self
            .dtype
            .traits()
            .to_float
            .filter(|_| self.row_major() && r < self.rows)
        else {
            return false;
        };
        let rb = self.row_bytes();
        let mut buf = vec![0u8; rb];
        if !self.data.read_at(r * rb, &mut buf) {
            return false;
        }
        f(&buf, &mut out[..self.cols]);
        true
    }

    /// `out[t][r] = Σ_c self[r][c] · x[t][c]` for `n` rows of activations
    /// `x` (`n × cols`), `out` being `n × rows`.
    ///
    /// Activations are quantized once to the format's `vec_dot_type`, as ggml
    /// does, then rows are split across the thread pool; each worker walks its
    /// rows for every token so a block of weights is read once per matmul.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        debug_assert!(x.len() >= n * self.cols && out.len() >= n * self.rows);
        let (xq, xrb) = self.quantize_acts(x, n);
        self.matmul_quantized(&xq, xrb, n, out);
    }

    /// `n` rows of `x` in this matrix's activation format (`vec_dot_type`),
    /// and the bytes of one row.
    pub(crate) fn quantize_acts(&self, x: &[f32], n: usize) -> (Vec<u8>, usize) {
        let cols = self.cols;
        let vt = self.dtype.traits().vec_dot_type;
        let Some(quant) = crate::dispatch::from_float(vt) else {
            unreachable!("every vec_dot_type has from_float")
        };
        let xrb = vt.row_bytes(cols).unwrap_or(0);
        let mut xq = vec![0u8; xrb * n];
        let xq_ptr = SendPtr(xq.as_mut_ptr() as *mut f32);
        crate::pool::for_each(n, |t| {
            // SAFETY: each item writes its own row of `xq`.
            let q = unsafe {
                std::slice::from_raw_parts_mut((xq_ptr.get() as *mut u8).add(t * xrb), xrb)
            };
            quant(&x[t * cols..(t + 1) * cols], q);
        });
        (xq, xrb)
    }

    /// [`Self::matmul`] from activations already quantized by
    /// [`Self::quantize_acts`].
    pub(crate) fn matmul_quantized(&self, xq: &[u8], xrb: usize, n: usize, out: &mut [f32]) {
        debug_assert!(out.len() >= n * self.rows);
        let out_ptr = SendPtr(out.as_mut_ptr());
        match self.row_job(xq, xrb, n, out_ptr) {
            Some(job) => job.execute(),
            #[cfg(target_arch = "x86_64")]
            None => self.matmul_tiled(xq, xrb, n, out_ptr),
            #[cfg(not(target_arch = "x86_64"))]
            None => unreachable!("without tiled kernels every product takes row runs"),
        }
    }

    /// The tiled products (prefill): every path [`Self::row_job`] leaves.
    #[cfg(target_arch = "x86_64")]
    fn matmul_tiled(&self, xq: &[u8], xrb: usize, n: usize, out_ptr: SendPtr) {
        let (rows, cols) = (self.rows, self.cols);
        let dots: Vec<crate::dtype::VecDot> = (0..n).filter_map(|t| self.vec_dot(n, t)).collect();
        if dots.len() != n {
            unreachable!("QMatrix::new checked vec_dot")
        }
        let wrb = self.row_bytes();
        let w = self.data.bytes();
        if let (Some(copy), true) = (
            &self.prefill,
            n >= TILED_MIN_ROWS || crate::dispatch::batch_invariant(),
        ) {
            // SAFETY: every (token, row) pair is written by one item only.
            let put = |t: usize, r: usize, v: f32| unsafe { *out_ptr.get().add(t * rows + r) = v };
            return self.matmul_q6k_r16(copy.bytes(), xq, xrb, n, &put);
        }
        if self.r16 {
            // SAFETY: every (token, row) pair is written by one item only.
            let put = |t: usize, r: usize, v: f32| unsafe { *out_ptr.get().add(t * rows + r) = v };
            return self.matmul_r16(xq, xrb, n, &put);
        }
        if self.repacked {
            // SAFETY: every (token, row) pair is written by one item only;
            // a group's rows are in bounds (checked above).
            let put = |t: usize, r: usize, v: &[f32]| unsafe {
                std::ptr::copy_nonoverlapping(v.as_ptr(), out_ptr.get().add(t * rows + r), v.len())
            };
            return self.matmul_q4k_groups(xq, xrb, n, &put);
        }
        // SAFETY (both writers): every (token, row) pair is written by one
        // item only and is in bounds (checked above).
        let put = |t: usize, r: usize, v: f32| unsafe { *out_ptr.get().add(t * rows + r) = v };
        // Row and block strides of the tile and decode kernels.
        let ws = {
            let bb = self.dtype.block_bytes();
            match self.rows4 {
                true => crate::x86::tile::Strides::rows4(bb),
                false => crate::x86::tile::Strides::rows(wrb / bb, bb),
            }
        };
        if n >= crate::x86::tile::TC && self.float_tiled() {
            let single = |t: usize, r: usize| {
                dots[t](
                    cols,
                    &w[r * wrb..(r + 1) * wrb],
                    &xq[t * xrb..(t + 1) * xrb],
                )
            };
            use crate::x86::float as xf;
            if self.dtype == DType::F16 {
                // Tiles of 4 rows × 6 tokens (llama.cpp's shape for F16 on
                // AVX-512), reading the activations widened to f32 once here.
                let wide = widen_f16_rows(xq, xrb, n, cols);
                // SAFETY: `float_tiled` checked AVX-512 F/VL and F16C.
                unsafe {
                    float_blocked(
                        cols,
                        rows,
                        n,
                        w,
                        wrb,
                        &wide,
                        4 * cols,
                        &put,
                        &single,
                        xf::f16_zmm_tile_4x6,
                        xf::f16_zmm_tile_4x1,
                    )
                };
                return;
            }
            let (tile, tail): (FloatTile<4>, FloatTile<1>) = match self.dtype {
                DType::BF16 if crate::dispatch::bf16_dot_products() => {
                    (xf::bf16_dp_tile_4x4, xf::bf16_dp_tile_4x1)
                }
                DType::BF16 => (
                    xf::float_tile_4x4::<xf::Bf16s>,
                    xf::float_tile_4x1::<xf::Bf16s>,
                ),
                // F32 (F16 took its tiles above).
                _ => (
                    xf::float_tile_4x4::<xf::F32s>,
                    xf::float_tile_4x1::<xf::F32s>,
                ),
            };
            // SAFETY: `float_tiled` checked AVX-512 F/VL (and
            // `bf16_dot_products` AVX512_BF16 for its kernels).
            unsafe { float_blocked(cols, rows, n, w, wrb, xq, xrb, &put, &single, tile, tail) };
            return;
        }
        if n > 1 {
            if let (Some(tile), Some(gemv)) = (
                crate::dispatch::tile_dot(self.dtype),
                crate::dispatch::gemv_dot(self.dtype),
            ) {
                use crate::x86::tile::{TC, TR};
                // Whole tiles of TC tokens, then the rest one at a time.
                let whole = n - n % TC;
                let tiles = ActTables::new(self.dtype, xq, xrb, cols, 0..whole, TC);
                let ones = ActTables::new(self.dtype, xq, xrb, cols, whole..n, 1);
                let tail = |r: usize, t: usize, o: &mut [[f32; 1]; TR]| {
                    gemv(cols, &w[r * wrb..], ws, ones.acts(t), o);
                };
                // Unpacking a row group once pays from a few tiles of tokens.
                if let (Some((unpack, tile8, ub)), true) = (
                    crate::x86::tile_u8::kernels(self.dtype, crate::dispatch::level()),
                    rows.is_multiple_of(TR) && n >= UNPACKED_MIN_ROWS,
                ) {
                    let unpack = |r: usize, buf: &mut [u8]| unpack(cols, &w[r * wrb..], ws, buf);
                    let tile = |buf: &[u8], t: usize, o: &mut [[f32; TC]; TR]| {
                        tile8(cols, buf, tiles.acts(t), o)
                    };
                    // SAFETY: every (token, row) pair is written by one item
                    // only; rows r..r + 4 of token t are in bounds (checked above).
                    let put4 = |t: usize, r: usize, v: [f32; 4]| unsafe {
                        std::ptr::copy_nonoverlapping(
                            v.as_ptr(),
                            out_ptr.get().add(t * rows + r),
                            4,
                        )
                    };
                    blocked_unpacked(rows, n, cols / 32, &put4, &tail, (unpack, ub), tile);
                    return;
                }
                // Rows past the last whole tile (row layout only).
                let single = |t: usize, r: usize| {
                    dots[t](
                        cols,
                        &w[r * wrb..(r + 1) * wrb],
                        &xq[t * xrb..(t + 1) * xrb],
                    )
                };
                blocked::<TR, TC>(rows, n, &put, &single, &tail, |r, t, o| {
                    tile(cols, &w[r * wrb..], ws, tiles.acts(t), o);
                });
                return;
            }
            if let Some((x8, limit)) = self.k_quant_x8(n) {
                self.k_quant_blocked(x8, limit, xq, xrb, &put, &|t, r| {
                    dots[t](
                        cols,
                        &w[r * wrb..(r + 1) * wrb],
                        &xq[t * xrb..(t + 1) * xrb],
                    )
                });
                return;
            }
        }
        unreachable!("row_job takes every product without a tiled path")
    }
}

/// The first `T` rows of four.
#[cfg(target_arch = "x86_64")]
fn first<const T: usize>(o: &mut [[f32; 16]; 4]) -> &mut [[f32; 16]; T] {
    match (&mut o[..T]).try_into() {
        Ok(a) => a,
        Err(_) => unreachable!("T is at most 4"),
    }
}

/// `n` rows of `cols` f16 values (`xrb` bytes apart) as f32 bytes, row
/// after row.
#[cfg(target_arch = "x86_64")]
fn widen_f16_rows(xq: &[u8], xrb: usize, n: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0u8; 4 * cols * n];
    let ptr = SendPtr::new_bytes(&mut out);
    crate::pool::for_each(n, |t| {
        // SAFETY: each item writes its own row of `out`.
        let row = unsafe {
            std::slice::from_raw_parts_mut((ptr.get() as *mut u8).add(4 * cols * t), 4 * cols)
        };
        let src = &xq[t * xrb..t * xrb + 2 * cols];
        // SAFETY: any bytes are valid f16 and f32; `align_to` keeps alignment.
        let (h, f) = unsafe { (src.align_to::<half::f16>(), row.align_to_mut::<f32>()) };
        match (h, f) {
            (([], h, []), ([], f, [])) => {
                use half::slice::HalfFloatSliceExt;
                h.convert_to_f32_slice(f)
            }
            _ => {
                for (o, h) in row.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
                    o.copy_from_slice(
                        &half::f16::from_le_bytes([h[0], h[1]])
                            .to_f32()
                            .to_le_bytes(),
                    );
                }
            }
        }
    });
    out
}

/// A float tile kernel of 4 rows × `C` tokens: `(n, w, wrb, x, xrb, out)`.
#[cfg(target_arch = "x86_64")]
type FloatTile<const C: usize> = unsafe fn(usize, &[u8], usize, &[u8], usize, &mut [[f32; C]; 4]);

/// A float matrix's product over whole tiles of 4 rows × 4 tokens by
/// `tile`, single tokens of whole row groups by `tail`, the rest through
/// `single`: every output has `vec_dot`'s bits when the kernels keep its
/// order (the callers pick kernels of that order).
///
/// # Safety
/// The CPU has the kernels' features.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn float_blocked<const C: usize>(
    cols: usize,
    rows: usize,
    n: usize,
    w: &[u8],
    wrb: usize,
    xq: &[u8],
    xrb: usize,
    put: &(impl Fn(usize, usize, f32) + Sync),
    single: &(impl Fn(usize, usize) -> f32 + Sync),
    tile: FloatTile<C>,
    tail: FloatTile<1>,
) {
    // SAFETY (both): the caller's; `blocked` hands out only whole groups of
    // 4 rows (and 4 tokens for a tile) in bounds.
    let tail = |r: usize, t: usize, o: &mut [[f32; 1]; 4]| unsafe {
        tail(cols, &w[r * wrb..], wrb, &xq[t * xrb..], 0, o)
    };
    blocked::<4, C>(rows, n, put, single, &tail, |r, t, o| unsafe {
        tile(cols, &w[r * wrb..], wrb, &xq[t * xrb..], xrb, o)
    });
}

#[cfg(target_arch = "x86_64")]
impl QMatrix {
    /// Whether this float matrix (F32, F16, BF16) takes the register
    /// tiles of [`crate::x86::float::float_tile`] for batches of tokens.
    pub(crate) fn float_tiled(&self) -> bool {
        matches!(self.dtype, DType::F32 | DType::F16 | DType::BF16)
            && crate::dispatch::level() == crate::dispatch::Level::Avx512
            && !(self.dtype == DType::BF16
                && crate::dispatch::bf16_dot_products()
                && !self.cols.is_multiple_of(32))
            && (self.dtype != DType::F16 || self.cols.is_multiple_of(16))
    }

    /// The product for repacked Q4_K: groups of 16 rows × tiles of
    /// 4 tokens in the interleaved GEMM order below `n − n mod 4` tokens
    /// (from 4 tokens on), single tokens in the GEMV order otherwise — the
    /// orders of [`QMatrix::vec_dot`].
    fn matmul_q4k_groups(
        &self,
        xq: &[u8],
        xrb: usize,
        n: usize,
        put: &(impl Fn(usize, usize, &[f32]) + Sync),
    ) {
        use crate::x86::q4k_r16::{q4_k_r16, R16_BYTES, ROWS as GR};
        let nb = self.cols / 256;
        let gbytes = nb * R16_BYTES;
        let groups = self.rows / GR;
        let w = self.data.bytes();
        // Tiles of four tokens: in the GEMM order up to `limit`, in the GEMV
        // order when batch-invariant.
        let fixed = crate::dispatch::batch_invariant();
        let limit = if n > 3 && !fixed { n - n % 4 } else { 0 };
        group_tiles(groups, n, |g, t0, t1| {
            let wg = &w[g * gbytes..(g + 1) * gbytes];
            let mut t = t0;
            while t < t1 {
                let x = &xq[t * xrb..];
                // SAFETY (all calls): `repacked` is only set at Level::Avx512.
                if t + 4 <= t1.min(limit) {
                    let mut o = [[0f32; 16]; 4];
                    unsafe { q4_k_r16::<4, true>(nb, wg, x, xrb, &mut o) };
                    for (c, row) in o.iter().enumerate() {
                        put(t + c, GR * g, row);
                    }
                    t += 4;
                    continue;
                }
                if t < limit {
                    let mut o = [[0f32; 16]; 1];
                    unsafe { q4_k_r16::<1, true>(nb, wg, x, xrb, &mut o) };
                    put(t, GR * g, &o[0]);
                    t += 1;
                    continue;
                }
                // The GEMV order from here on: up to four tokens a call, each
                // with its one-token bits.
                let c = (t1 - t).min(4);
                let mut o = [[0f32; 16]; 4];
                match c {
                    1 => unsafe { q4_k_r16::<1, false>(nb, wg, x, xrb, first(&mut o)) },
                    2 => unsafe { q4_k_r16::<2, false>(nb, wg, x, xrb, first(&mut o)) },
                    3 => unsafe { q4_k_r16::<3, false>(nb, wg, x, xrb, first(&mut o)) },
                    _ => unsafe { q4_k_r16::<4, false>(nb, wg, x, xrb, &mut o) },
                }
                for (i, row) in o[..c].iter().enumerate() {
                    put(t + i, GR * g, row);
                }
                t += c;
            }
        });
    }

    /// The product for a 16-row repacked matrix ([`crate::x86::r16`]):
    /// groups × tiles of up to four tokens, contiguous runs of groups per
    /// thread when decoding.
    fn matmul_r16(
        &self,
        xq: &[u8],
        xrb: usize,
        n: usize,
        put: &(impl Fn(usize, usize, f32) + Sync),
    ) {
        use crate::x86::r16::{group_block_bytes, tokens, Acts, G};
        let nb = self.cols / 32;
        let gbytes = nb * group_block_bytes(self.dtype);
        let groups = self.rows / G;
        let acts = Acts::new(self.dtype, xq, xrb, n, nb);
        let w = self.data.bytes();
        group_tiles(groups, n, |g, t0, t1| {
            let wg = &w[g * gbytes..(g + 1) * gbytes];
            let mut t = t0;
            while t < t1 {
                let nt = (t1 - t).min(4);
                let p = |tt: usize, lane: usize, v: f32| put(tt, G * g + lane, v);
                // SAFETY: `r16` is only set at Level::Avx512 for supported
                // types.
                unsafe { tokens(self.dtype, wg, xq, xrb, &acts, t, nt, p) };
                t += nt;
            }
        });
    }

    /// Q6_K in the tiled order from the 16-row copy ([`crate::x86::q6k_r16`]).
    fn matmul_q6k_r16(
        &self,
        w: &[u8],
        xq: &[u8],
        xrb: usize,
        n: usize,
        put: &(impl Fn(usize, usize, f32) + Sync),
    ) {
        use crate::x86::q6k_r16::{tokens, Acts, G, GB};
        let nb = self.cols / 256;
        let gbytes = nb * GB;
        let acts = Acts::new(xq, xrb, n, nb);
        group_tiles(self.rows / G, n, |g, t0, t1| {
            let wg = &w[g * gbytes..(g + 1) * gbytes];
            let mut t = t0;
            while t < t1 {
                let nt = (t1 - t).min(4);
                let p = |tt: usize, lane: usize, v: f32| put(tt, G * g + lane, v);
                // SAFETY: the copy is only made at Level::Avx512.
                unsafe { tokens(wg, xq, xrb, &acts, t, nt, p) };
                t += nt;
            }
        });
    }

    /// K-quant prefill: groups of `KC` tokens below `limit` through `x8`,
    /// their rows split into pieces of `KB` blocks that stay in L1 while a
    /// block of rows streams past (the running sums carried between
    /// pieces); the rest one output at a time through `single`.
    fn k_quant_blocked(
        &self,
        x8: crate::dispatch::KQuantX8,
        limit: usize,
        xq: &[u8],
        xrb: usize,
        put: &(impl Fn(usize, usize, f32) + Sync),
        single: &(impl Fn(usize, usize) -> f32 + Sync),
    ) {
        use crate::x86::kquant::{finish, KActs, KState, KC};
        const RB: usize = 32;
        const KB: usize = 8;
        let (rows, nb, wrb) = (self.rows, self.cols / 256, self.row_bytes());
        let w = self.data.bytes();
        let n = xq.len() / xrb;
        let groups = limit / KC;
        let acts: Vec<KActs> = (0..groups)
            .map(|g| KActs::new(&xq[g * KC * xrb..], xrb, nb))
            .collect();
        let nrb = rows.div_ceil(RB);
        let tail = n - groups * KC;
        crate::pool::for_each(nrb * (groups + tail.min(1)), |item| {
            let (r0, g) = (item % nrb * RB, item / nrb);
            let r1 = (r0 + RB).min(rows);
            if g == groups {
                for t in groups * KC..n {
                    for r in r0..r1 {
                        put(t, r, single(t, r));
                    }
                }
                return;
            }
            let mut st = [[[0f32; KC]; 2]; RB];
            let x = &xq[g * KC * xrb..];
            for k0 in (0..nb).step_by(KB) {
                for (r, s) in (r0..r1).zip(st.iter_mut()) {
                    x8(
                        k0..(k0 + KB).min(nb),
                        &w[r * wrb..(r + 1) * wrb],
                        x,
                        xrb,
                        &acts[g],
                        s,
                    );
                }
            }
            for (r, s) in (r0..r1).zip(&st) {
                let s: &KState = s;
                for (c, v) in finish(self.dtype, s).into_iter().enumerate() {
                    put(g * KC + c, r, v);
                }
            }
        });
    }
}

/// Batches from this many activation rows on use the tiled K-quant order.
pub const TILED_MIN_ROWS: usize = 8;
/// Tokens from which the 32-element formats' prefill unpacks its weights
/// ([`crate::x86::tile_u8`]); the bits are the same either way.
#[cfg(target_arch = "x86_64")]
const UNPACKED_MIN_ROWS: usize = 16;

#[derive(Clone, Copy)]
pub(crate) struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes inside one parallel matmul.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn new(out: &mut [f32]) -> Self {
        SendPtr(out.as_mut_ptr())
    }

    pub(crate) fn new_bytes(out: &mut [u8]) -> Self {
        SendPtr(out.as_mut_ptr() as *mut f32)
    }

    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
