//! Causal multi-head attention over a KV cache, with grouped K/V heads
//! (GQA) and an optional sliding window, in the orders of llama.cpp's CPU
//! flash attention:
//!
//! - f16 cache, fewer than [`FA_TILE_Q`] query rows (decoding): the per-row
//!   kernel — Q rounded to f16, one dot product per key in ggml's
//!   `ggml_vec_dot_f16` order, online softmax with the output accumulated in
//!   f16 and rounded at every update (Milakov & Gimelshein 2018).
//! - otherwise (prefill, and any f32 cache): the tiled kernel — 64-key tiles
//!   aligned at position 0, Q·K by FMAs in f32 over the head dimension, the
//!   tile maximum, a rescale of the running sums, exponentials by
//!   [`crate::ops::expf_poly`] with a sum per 16 lanes added in f64, V accumulated by
//!   FMAs, `1/S` at the end.
//!
//! [`attention_reference`] is the plain statement of both; [`attention`] is
//! the fast twin (SIMD, K/V tiles widened and transposed once per block of
//! query rows that share them, rows across the thread pool) and returns the
//! same bits, which `tests/attention.rs` checks.

use half::f16;

use crate::dispatch::{self, Level};
use crate::ops::expf_poly;

/// One layer's cached K or V rows: position `j`'s row starts at element
/// `j * stride`. Q8_0 rows are blocks of 32 (34 bytes each), so strides and
/// head dimensions must be multiples of 32.
#[derive(Clone, Copy)]
pub enum Kv<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q8_0(&'a [u8]),
}

impl Kv<'_> {
    /// Elements held.
    pub fn len(&self) -> usize {
        match self {
            Kv::F32(v) => v.len(),
            Kv::F16(v) => v.len(),
            Kv::Q8_0(v) => v.len() / 34 * 32,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where position `j`'s K/V row sits in a paged cache: blocks of
/// `1 << shift` positions, block `j >> shift` of the sequence stored at
/// block `table[j >> shift]` of the cache. An empty table is the identity
/// (a contiguous cache).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pages<'a> {
    pub table: &'a [u32],
    pub shift: u32,
}

impl<'a> Pages<'a> {
    /// A contiguous cache: position `j` is row `j`.
    pub const CONTIGUOUS: Pages<'static> = Pages {
        table: &[],
        shift: 0,
    };

    /// A block table over blocks of `block` positions (a power of two).
    pub fn new(table: &'a [u32], block: usize) -> Self {
        assert!(
            block.is_power_of_two(),
            "KV block size {block} is not a power of two"
        );
        Pages {
            table,
            shift: block.trailing_zeros(),
        }
    }

    /// The cache row of position `j`.
    #[inline(always)]
    pub fn row(&self, j: usize) -> usize {
        if self.table.is_empty() {
            j
        } else {
            let mask = (1usize << self.shift) - 1;
            ((self.table[j >> self.shift] as usize) << self.shift) | (j & mask)
        }
    }

    /// Rows needed to hold positions `..n` (the largest row + 1).
    fn rows_needed(&self, n: usize) -> usize {
        if self.table.is_empty() || n == 0 {
            return n;
        }
        let blocks = n.div_ceil(1 << self.shift);
        assert!(
            self.table.len() >= blocks,
            "block table of {} blocks for {n} positions",
            self.table.len()
        );
        let top = self.table[..blocks].iter().max().copied().unwrap_or(0) as usize;
        (top + 1) << self.shift
    }
}

/// The geometry and scaling of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape<'a> {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    /// Elements per position in the K and V caches.
    pub k_stride: usize,
    pub v_stride: usize,
    /// Applied to Q·K before the soft cap and softmax.
    pub scale: f32,
    /// `cap · tanh(x / cap)` on the scaled scores (Gemma 2).
    pub softcap: Option<f32>,
    /// Keys older than this many positions are masked (sliding window).
    pub window: Option<usize>,
    /// The cache's block table ([`Pages::CONTIGUOUS`] for a flat cache).
    pub pages: Pages<'a>,
    /// One learned logit per query head that joins every row's softmax
    /// with no value behind it (gpt-oss's attention sinks).
    pub sinks: Option<&'a [f32]>,
}

/// From this many query rows on, llama.cpp runs the tiled kernel
/// (`GGML_FA_TILE_Q`); below, the per-row f16 one.
pub const FA_TILE_Q: usize = 64;
/// Keys per tile of the tiled kernel (`GGML_FA_TILE_KV`).
pub const FA_TILE_KV: usize = 64;

impl AttnShape<'_> {
    fn first_key(&self, p: usize) -> usize {
        self.window.map_or(0, |w| (p + 1).saturating_sub(w))
    }

    fn score(&self, dot: f32) -> f32 {
        let x = dot * self.scale;
        match self.softcap {
            Some(cap) => cap * (x / cap).tanh(),
            None => x,
        }
    }

    fn check(&self, q: &[f32], n: usize, pos0: usize, keys: Kv, values: Kv, out: &[f32]) {
        let len = |kv: Kv| kv.len();
        if matches!(keys, Kv::Q8_0(_)) || matches!(values, Kv::Q8_0(_)) {
            assert!(
                self.head_dim.is_multiple_of(32) && self.head_dim_v.is_multiple_of(32),
                "a Q8_0 cache needs head dimensions in multiples of 32"
            );
            assert!(self.k_stride.is_multiple_of(32) && self.v_stride.is_multiple_of(32));
        }
        let (nh, nkv) = (self.n_head, self.n_head_kv);
        assert!(
            nkv > 0 && nh.is_multiple_of(nkv),
            "{nh} heads over {nkv} KV heads"
        );
        assert!(q.len() >= n * nh * self.head_dim && out.len() >= n * nh * self.head_dim_v);
        assert!(self.k_stride >= nkv * self.head_dim && self.v_stride >= nkv * self.head_dim_v);
        let rows = self.pages.rows_needed(pos0 + n);
        assert!(len(keys) >= rows * self.k_stride, "K cache too short");
        assert!(len(values) >= rows * self.v_stride, "V cache too short");
    }
}

fn per_row_f16(keys: Kv, values: Kv, n: usize) -> bool {
    matches!((keys, values), (Kv::F16(_), Kv::F16(_)))
        && n < FA_TILE_Q
        && !crate::dispatch::batch_invariant()
}

/// `out` (`n × n_head·head_dim_v`) = attention of `q` (`n × n_head·head_dim`,
/// rows at positions `pos0..pos0+n`) over cached keys and values `..=pos`.
/// The plain, single-threaded statement of the numerics.
pub fn attention_reference(
    s: &AttnShape,
    q: &[f32],
    n: usize,
    pos0: usize,
    keys: Kv,
    values: Kv,
    out: &mut [f32],
) {
    s.check(q, n, pos0, keys, values, out);
    let (nh, hd, hdv) = (s.n_head, s.head_dim, s.head_dim_v);
    let group = nh / s.n_head_kv;
    for (idx, o) in out[..n * nh * hdv].chunks_exact_mut(hdv).enumerate() {
        let (t, h) = (idx / nh, idx % nh);
        let p = pos0 + t;
        let kvh = h / group;
        let qh = &q[t * nh * hd + h * hd..][..hd];
        let start = s.first_key(p);
        match (keys, values) {
            (Kv::F16(ks), Kv::F16(vs)) if per_row_f16(keys, values, n) => {
                let ranges = per_row_ranges(s, n, p);
                let mut parts: Vec<(f32, f32, Vec<f32>)> = ranges
                    .into_iter()
                    .map(|r| {
                        let mut acc = vec![0f32; hdv];
                        let (m, sum) = per_row_partial_reference(s, qh, r, kvh, ks, vs, &mut acc);
                        (m, sum, acc)
                    })
                    .collect();
                if let (Some(sk), Some((m, sum, acc))) = (s.sinks, parts.first_mut()) {
                    add_sink(sk[h], m, sum, acc);
                }
                if let [(_, sum, acc)] = &parts[..] {
                    o.copy_from_slice(acc);
                    per_row_finish(o, *sum);
                } else {
                    per_row_combine(parts.iter().map(|(m, s, v)| (*m, *s, &v[..])), o);
                }
            }
            _ => {
                let widen = |kv: Kv, off: usize, len: usize| -> Vec<f32> {
                    let mut out = vec![0f32; len];
                    widen_into(kv, off, &mut out);
                    out
                };
                let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
                o.fill(0.0);
                let mut kq = [0f32; FA_TILE_KV];
                for t0 in (start / FA_TILE_KV * FA_TILE_KV..=p).step_by(FA_TILE_KV) {
                    for (i, x) in kq.iter_mut().enumerate() {
                        let j = t0 + i;
                        *x = if j < start || j > p {
                            f32::NEG_INFINITY
                        } else {
                            let k = widen(keys, s.pages.row(j) * s.k_stride + kvh * hd, hd);
                            let d = qh.iter().zip(&k).fold(0f32, |d, (a, b)| a.mul_add(*b, d));
                            s.score(d)
                        };
                    }
                    let Some((m2, tile_sum)) = tile_softmax(&mut kq, m) else {
                        continue;
                    };
                    if m2 > m {
                        let ms = (m - m2).exp();
                        o.iter_mut().for_each(|v| *v *= ms);
                        sum *= ms;
                    }
                    m = m2;
                    sum = (sum as f64 + tile_sum) as f32;
                    for (i, &e) in kq.iter().enumerate() {
                        let j = t0 + i;
                        if j < start || j > p {
                            continue; // e = 0: the FMA would leave o as is
                        }
                        let v = widen(values, s.pages.row(j) * s.v_stride + kvh * hdv, hdv);
                        for (a, v) in o.iter_mut().zip(&v) {
                            *a = e.mul_add(*v, *a);
                        }
                    }
                }
                if let Some(sk) = s.sinks {
                    add_sink(sk[h], &mut m, &mut sum, o);
                }
                let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
                o.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// Exponentials of one tile of scores against the new running maximum, in
/// place: returns `(max, Σ)`, or `None` when every score is masked.
#[inline(always)]
fn tile_softmax(kq: &mut [f32; FA_TILE_KV], m: f32) -> Option<(f32, f64)> {
    let tile_max = kq.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if tile_max == f32::NEG_INFINITY {
        return None;
    }
    let m2 = m.max(tile_max);
    let mut tile_sum = 0f64;
    for lanes in kq.chunks_exact_mut(16) {
        lanes.iter_mut().for_each(|v| *v = expf_poly(*v - m2));
        tile_sum += reduce16(lanes) as f64;
    }
    Some((m2, tile_sum))
}

/// `q · k` for f16 keys in the order of ggml's `ggml_vec_dot_f16` on AVX-512
/// without FP16 arithmetic: 64-element steps into 4 × 16 f32 FMA lanes, the
/// four folded pairwise, the 16 lanes reduced as GCC's `_mm512_reduce_add_ps`
/// does, the tail added in f64.
pub fn dot_f16_reference(q: &[f32], k: &[f16]) -> f32 {
    let n = q.len();
    let np = n & !63;
    let mut sum = [[0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, acc) in sum.iter_mut().enumerate() {
            for (l, a) in acc.iter_mut().enumerate() {
                let e = i + 16 * j + l;
                *a = k[e].to_f32().mul_add(q[e], *a);
            }
        }
    }
    let v: [f32; 16] = std::array::from_fn(|l| (sum[0][l] + sum[2][l]) + (sum[1][l] + sum[3][l]));
    let mut s = reduce16(&v) as f64;
    for e in np..n {
        s += (k[e].to_f32() * q[e]) as f64;
    }
    s as f32
}

/// Sum of 16 lanes as GCC's `_mm512_reduce_add_ps` adds them.
#[inline(always)]
pub fn reduce16(v: &[f32]) -> f32 {
    let t3: [f32; 8] = std::array::from_fn(|i| v[8 + i] + v[i]);
    let t6: [f32; 4] = std::array::from_fn(|i| t3[4 + i] + t3[i]);
    (t6[0] + t6[2]) + (t6[1] + t6[3])
}

/// Query rows per work item of the tiled kernel: the rows of one KV head
/// over this many consecutive positions (at least) share each widened K/V
/// tile.
const ROWS_PER_ITEM: usize = 16;

/// Query rows an item aims at (positions × the query heads of a KV head):
/// widening a K/V tile costs the same for 16 rows as for 256, so an item
/// of few heads (multi-head attention: one) takes more positions.
const ROWS_AIM: usize = 256;

/// Positions per item: [`ROWS_AIM`] rows' worth, in multiples of
/// [`ROWS_PER_ITEM`], fewer while that leaves under four items a thread.
/// A row's result does not depend on its item (each keeps its own sums,
/// over the same tiles in the same order).
fn positions_per_item(n: usize, group: usize, n_head_kv: usize) -> usize {
    let mut per = (ROWS_AIM / group.max(1)).max(ROWS_PER_ITEM) / ROWS_PER_ITEM * ROWS_PER_ITEM;
    while per > ROWS_PER_ITEM && n_head_kv * n.div_ceil(per) < 4 * crate::pool::threads() {
        per = (per / 2).max(ROWS_PER_ITEM) / ROWS_PER_ITEM * ROWS_PER_ITEM;
    }
    per
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: work items write disjoint rows of `out`.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// The fast twin of [`attention_reference`]: same arguments, same bits.
pub fn attention(
    s: &AttnShape,
    q: &[f32],
    n: usize,
    pos0: usize,
    keys: Kv,
    values: Kv,
    out: &mut [f32],
) {
    s.check(q, n, pos0, keys, values, out);
    let (nh, hdv) = (s.n_head, s.head_dim_v);
    let level = dispatch::level();
    let outp = OutPtr(out.as_mut_ptr());
    if let (Kv::F16(ks), Kv::F16(vs), true) = (keys, values, per_row_f16(keys, values, n)) {
        // Items: the query heads of one KV head at one position, in groups
        // of at most ROW_GROUP — split further while the items would not
        // give every thread two.
        use crate::simd_attn::ROW_GROUP;
        let group = nh / s.n_head_kv;
        let splits = crate::pool::threads()
            .div_ceil(n * s.n_head_kv)
            .max(group.div_ceil(ROW_GROUP))
            .min(group);
        let per = group.div_ceil(splits);
        let splits = group.div_ceil(per);
        // The key ranges of each query row (one, or one per thread for one
        // token past llama.cpp's split point); every (row, range, head)
        // leaves its partial sums, which are then combined.
        let ranges: Vec<Vec<std::ops::Range<usize>>> =
            (0..n).map(|t| per_row_ranges(s, n, pos0 + t)).collect();
        let nr = ranges.iter().map(Vec::len).max().unwrap_or(1);
        let mut parts = vec![0f32; n * nh * nr * hdv];
        let mut stats = vec![(0f32, 0f32); n * nh * nr];
        let (pp, sp) = (OutPtr(parts.as_mut_ptr()), stats.as_mut_ptr() as usize);
        let units = s.n_head_kv * splits;
        crate::pool::for_each(n * nr * units, |item| {
            let (tc, unit) = (item / units, item % units);
            let (t, c) = (tc / nr, tc % nr);
            let Some(keys) = ranges[t].get(c) else {
                return;
            };
            let (kvh, part) = (unit / splits, unit % splits);
            let heads =
                kvh * group + part * per..(kvh * group + (part + 1) * per).min((kvh + 1) * group);
            let g = heads.len();
            let slot = |h: usize| (t * nh + h) * nr + c;
            let mut qs: [&[f32]; ROW_GROUP] = [&[]; ROW_GROUP];
            let mut os: [&mut [f32]; ROW_GROUP] = std::array::from_fn(|_| &mut [][..]);
            for (i, h) in heads.clone().enumerate() {
                qs[i] = &q[(t * nh + h) * s.head_dim..][..s.head_dim];
                // SAFETY: slot (row t, head h, range c) is written by this
                // item only.
                os[i] = unsafe { std::slice::from_raw_parts_mut(pp.at(slot(h) * hdv), hdv) };
            }
            let mut ms = [(0f32, 0f32); ROW_GROUP];
            crate::simd_attn::per_rows(
                level,
                s,
                &qs[..g],
                keys.clone(),
                kvh,
                ks,
                vs,
                &mut os[..g],
                &mut ms[..g],
            );
            for (h, v) in heads.zip(ms) {
                // SAFETY: as above.
                unsafe { *(sp as *mut (f32, f32)).add(slot(h)) = v };
            }
        });
        for (row, o) in out[..n * nh * hdv].chunks_exact_mut(hdv).enumerate() {
            // The sink joins the first range's sums, as in ggml.
            if let Some(sk) = s.sinks {
                let (m, sum) = &mut stats[row * nr];
                add_sink(sk[row % nh], m, sum, &mut parts[row * nr * hdv..][..hdv]);
            }
            let part = |c: usize| {
                let (m, sum) = stats[row * nr + c];
                (m, sum, &parts[(row * nr + c) * hdv..][..hdv])
            };
            if ranges[row / nh].len() == 1 {
                o.copy_from_slice(part(0).2);
                per_row_finish(o, part(0).1);
            } else {
                per_row_combine((0..ranges[row / nh].len()).map(part), o);
            }
        }
        return;
    }
    let per = positions_per_item(n, s.n_head / s.n_head_kv.max(1), s.n_head_kv);
    let blocks = n.div_ceil(per);
    crate::pool::for_each(s.n_head_kv * blocks, |item| {
        let (kvh, b) = (item / blocks, item % blocks);
        let rows = b * per..((b + 1) * per).min(n);
        tiled_item(level, s, q, pos0, keys, values, kvh, rows, outp);
    });
}

/// Widens elements `off..` of `kv` into `dst` (f16 by F16C where present,
/// Q8_0 dequantized block by block).
fn widen_into(kv: Kv, off: usize, dst: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    match kv {
        Kv::F32(v) => dst.copy_from_slice(&v[off..off + dst.len()]),
        Kv::F16(v) => v[off..off + dst.len()].convert_to_f32_slice(dst),
        Kv::Q8_0(v) => {
            let (b0, nb) = (off / 32, dst.len() / 32);
            crate::quants::legacy::dequantize_q8_0(&v[b0 * 34..(b0 + nb) * 34], dst);
        }
    }
}

/// The tiled kernel for the query rows of KV head `kvh` at positions
/// `pos0 + rows`.
#[allow(clippy::too_many_arguments)]
fn tiled_item(
    level: Level,
    s: &AttnShape,
    q: &[f32],
    pos0: usize,
    keys: Kv,
    values: Kv,
    kvh: usize,
    rows: std::ops::Range<usize>,
    out: OutPtr,
) {
    let (nh, hd, hdv) = (s.n_head, s.head_dim, s.head_dim_v);
    let group = nh / s.n_head_kv;
    let p_last = pos0 + rows.end - 1;
    let first = s.first_key(pos0 + rows.start);
    let nr = rows.len() * group;
    let mut kt = vec![0f32; hd * FA_TILE_KV]; // K tile, transposed: kt[d][key]
    let mut vt = vec![0f32; FA_TILE_KV * hdv]; // V tile: vt[key][d]
    let mut krow = vec![0f32; hd];
    let mut m = vec![f32::NEG_INFINITY; nr];
    let mut sum = vec![0f32; nr];
    // SAFETY: the (row, head) pairs of this item are written by it only.
    let orow = |r: usize| {
        let (t, h) = (rows.start + r / group, kvh * group + r % group);
        unsafe { std::slice::from_raw_parts_mut(out.at((t * nh + h) * hdv), hdv) }
    };
    for r in 0..nr {
        orow(r).fill(0.0);
    }
    for t0 in (first / FA_TILE_KV * FA_TILE_KV..=p_last).step_by(FA_TILE_KV) {
        let nk = FA_TILE_KV.min(p_last + 1 - t0);
        for i in 0..nk {
            widen_into(keys, s.pages.row(t0 + i) * s.k_stride + kvh * hd, &mut krow);
            for (d, &k) in krow.iter().enumerate() {
                kt[d * FA_TILE_KV + i] = k;
            }
            widen_into(
                values,
                s.pages.row(t0 + i) * s.v_stride + kvh * hdv,
                &mut vt[i * hdv..][..hdv],
            );
        }
        // Rows that see this tile, QR at a time through Q·K (they share
        // the K tile; each keeps its own FMA chain per key).
        let live: Vec<usize> = (0..nr)
            .filter(|&r| {
                let p = pos0 + rows.start + r / group;
                t0 <= p && t0 + FA_TILE_KV > s.first_key(p)
            })
            .collect();
        for chunk in live.chunks(QR) {
            let qrow = |r: usize| {
                let (t, h) = (rows.start + r / group, kvh * group + r % group);
                &q[(t * nh + h) * hd..][..hd]
            };
            let qs: [&[f32]; QR] = std::array::from_fn(|i| qrow(chunk[i.min(chunk.len() - 1)]));
            let kq = crate::simd_attn::qk(level, qs, &kt);
            let nc = chunk.len();
            let tiles: [TileRow; QR] = std::array::from_fn(|i| {
                let p = pos0 + rows.start + chunk[i.min(nc - 1)] / group;
                TileRow {
                    s,
                    t0,
                    start: s.first_key(p),
                    p,
                    vt: &vt,
                }
            });
            let mut cm: [f32; QR] = std::array::from_fn(|i| m[chunk[i.min(nc - 1)]]);
            let mut cs: [f32; QR] = std::array::from_fn(|i| sum[chunk[i.min(nc - 1)]]);
            let mut outs: [&mut [f32]; QR] =
                std::array::from_fn(|i| if i < nc { orow(chunk[i]) } else { &mut [][..] });
            crate::simd_attn::tile_rows(
                level,
                &tiles[..nc],
                kq,
                &mut cm[..nc],
                &mut cs[..nc],
                &mut outs[..nc],
            );
            for (i, &r) in chunk.iter().enumerate() {
                (m[r], sum[r]) = (cm[i], cs[i]);
            }
        }
    }
    for r in 0..nr {
        if let Some(sk) = s.sinks {
            add_sink(sk[kvh * group + r % group], &mut m[r], &mut sum[r], orow(r));
        }
        let inv = if sum[r] == 0.0 { 0.0 } else { 1.0 / sum[r] };
        orow(r).iter_mut().for_each(|v| *v *= inv);
    }
}

/// One query row against one widened V tile (its Q·K already done).
pub(crate) struct TileRow<'a> {
    pub s: &'a AttnShape<'a>,
    pub t0: usize,
    pub start: usize,
    pub p: usize,
    pub vt: &'a [f32],
}

/// Query rows per Q·K pass over a transposed K tile.
pub(crate) const QR: usize = 4;

/// `kq[r][key] = Σ_d q_r[d]·k[d][key]` by FMAs in `d` order, for `QR` rows
/// at once (independent chains); compiled per SIMD level.
#[inline(always)]
pub(crate) fn qk_body(q: [&[f32]; QR], kt: &[f32]) -> [[f32; FA_TILE_KV]; QR] {
    let mut kq = [[0f32; FA_TILE_KV]; QR];
    for d in 0..q[0].len() {
        let k: &[f32; FA_TILE_KV] = kt[d * FA_TILE_KV..][..FA_TILE_KV].try_into().expect("tile");
        for (acc, qr) in kq.iter_mut().zip(&q) {
            let qd = qr[d];
            for l in 0..FA_TILE_KV {
                acc[l] = qd.mul_add(k[l], acc[l]);
            }
        }
    }
    kq
}

/// The tiled kernel's step for up to [`QR`] rows (`t.len()`) and one
/// tile, from their Q·K (`kq[j]` for row `j`); compiled once per SIMD level
/// (it is inlined into `#[target_feature]` wrappers). Each row takes the
/// steps it would alone, in the same order — scores, the tile's softmax,
/// the rescale, then V by FMAs in key order — but the rows' V chains run
/// side by side over each stretch of keys they share, so one V load feeds
/// every row and the FMA latency of one chain no longer sets the pace.
#[inline(always)]
pub(crate) fn tile_rows_body<V: VRows>(
    t: &[TileRow],
    mut kq: [[f32; FA_TILE_KV]; QR],
    m: &mut [f32],
    sum: &mut [f32],
    o: &mut [&mut [f32]],
) {
    let n = t.len().min(QR);
    // Each live row's keys in this tile.
    let mut keys: [Option<(usize, usize)>; QR] = [None; QR];
    for j in 0..n {
        let tj = &t[j];
        let lo = tj.start.max(tj.t0) - tj.t0;
        let hi = (tj.p + 1 - tj.t0).min(FA_TILE_KV);
        for (l, x) in kq[j].iter_mut().enumerate() {
            *x = if l < lo || l >= hi {
                f32::NEG_INFINITY
            } else {
                tj.s.score(*x)
            };
        }
        let Some((m2, tile_sum)) = tile_softmax(&mut kq[j], m[j]) else {
            continue;
        };
        if m2 > m[j] {
            let ms = (m[j] - m2).exp();
            o[j].iter_mut().for_each(|v| *v *= ms);
            sum[j] *= ms;
        }
        m[j] = m2;
        sum[j] = (sum[j] as f64 + tile_sum) as f32;
        keys[j] = Some((lo, hi));
    }
    let Some(first) = t.first() else {
        return;
    };
    let (vt, hdv) = (first.vt, o[0].len());
    // The stretches between the rows' key bounds, in key order.
    let mut cuts = [0usize; 2 * QR];
    let mut nc = 0;
    for &(lo, hi) in keys.iter().flatten() {
        cuts[nc] = lo;
        cuts[nc + 1] = hi;
        nc += 2;
    }
    cuts[..nc].sort_unstable();
    for c in (0..hdv).step_by(64) {
        if c + 64 > hdv {
            // A last part under 64 dimensions: row by row.
            for (j, &(lo, hi)) in keys
                .iter()
                .enumerate()
                .filter_map(|(j, k)| Some((j, k.as_ref()?)))
            {
                for l in lo..hi {
                    let e = kq[j][l];
                    for (a, &v) in o[j][c..].iter_mut().zip(&vt[l * hdv + c..(l + 1) * hdv]) {
                        *a = e.mul_add(v, *a);
                    }
                }
            }
            continue;
        }
        for w in cuts[..nc].windows(2) {
            let (a, b) = (w[0], w[1]);
            if a == b {
                continue;
            }
            let mut rows = [0usize; QR];
            let mut nr = 0;
            for (j, k) in keys.iter().enumerate() {
                if matches!(k, Some((lo, hi)) if *lo <= a && b <= *hi) {
                    rows[nr] = j;
                    nr += 1;
                }
            }
            let seg = (a..b, c, &kq, vt, hdv);
            match nr {
                1 => V::v_rows::<1>([rows[0]], seg, o),
                2 => V::v_rows::<2>([rows[0], rows[1]], seg, o),
                3 => V::v_rows::<3>([rows[0], rows[1], rows[2]], seg, o),
                4 => V::v_rows::<4>([rows[0], rows[1], rows[2], rows[3]], seg, o),
                _ => {}
            }
        }
    }
}

/// One stretch of keys of a V tile, dimensions `c..c + 64`.
pub(crate) type VSeg<'a> = (
    std::ops::Range<usize>,
    usize,
    &'a [[f32; FA_TILE_KV]; QR],
    &'a [f32],
    usize,
);

/// The V step of the tiled kernel over one stretch of keys: `R` rows'
/// `o[r][c..c + 64] += Σ_l kq[r][l]·V[l][c..c + 64]` by FMAs in key order
/// (each SIMD level may give its own instance; all return these bits).
pub(crate) trait VRows {
    fn v_rows<const R: usize>(rows: [usize; R], seg: VSeg, o: &mut [&mut [f32]]);
}

/// [`VRows`] in plain Rust, compiled per SIMD level.
pub(crate) struct PlainV;

impl VRows for PlainV {
    #[inline(always)]
    fn v_rows<const R: usize>(rows: [usize; R], seg: VSeg, o: &mut [&mut [f32]]) {
        v_rows::<R>(rows, seg, o)
    }
}

/// `o[r][c..c + 64] += Σ_l kq[r][l]·V[l][c..c + 64]` by FMAs in key order
/// for the `R` rows `rows`, their accumulators side by side.
#[inline(always)]
fn v_rows<const R: usize>(rows: [usize; R], seg: VSeg, o: &mut [&mut [f32]]) {
    let (keys, c, kq, vt, hdv) = seg;
    let mut acc: [[f32; 64]; R] =
        std::array::from_fn(|j| o[rows[j]][c..c + 64].try_into().expect("64"));
    for l in keys {
        let v: &[f32; 64] = vt[l * hdv + c..][..64].try_into().expect("64");
        for j in 0..R {
            let e = kq[rows[j]][l];
            for i in 0..64 {
                acc[j][i] = e.mul_add(v[i], acc[j][i]);
            }
        }
    }
    for j in 0..R {
        o[rows[j]][c..c + 64].copy_from_slice(&acc[j]);
    }
}

/// The per-row f16 kernel for query row `qh` of KV head `kvh` over the
/// positions `keys`, as ggml's `ggml_compute_forward_flash_attn_ext_f16_one_chunk`:
/// the output accumulator (f16, widened, not yet divided by the sum) into
/// `o`; returns the running maximum and sum.
pub(crate) fn per_row_partial_reference(
    s: &AttnShape,
    qh: &[f32],
    keys: std::ops::Range<usize>,
    kvh: usize,
    ks: &[f16],
    vs: &[f16],
    o: &mut [f32],
) -> (f32, f32) {
    let (hd, hdv) = (s.head_dim, s.head_dim_v);
    let qh: Vec<f32> = qh.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
    let mut acc = vec![f16::ZERO; hdv];
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
    for j in keys {
        let x = s.score(dot_f16_reference(
            &qh,
            &ks[s.pages.row(j) * s.k_stride + kvh * hd..][..hd],
        ));
        let (mut ms, mut vs_) = (1f32, 1f32);
        if x > m {
            ms = (m - x).exp();
            m = x;
            acc.iter_mut()
                .for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
        } else {
            vs_ = (x - m).exp();
        }
        let v = &vs[s.pages.row(j) * s.v_stride + kvh * hdv..][..hdv];
        for (a, x) in acc.iter_mut().zip(v) {
            *a = f16::from_f32(x.to_f32().mul_add(vs_, a.to_f32()));
        }
        // Contracted to an FMA by GCC in ggml.
        sum = sum.mul_add(ms, vs_);
    }
    for (o, a) in o.iter_mut().zip(&acc) {
        *o = a.to_f32();
    }
    (m, sum)
}

/// The key ranges of the per-row kernel for `n` query rows ending at
/// position `p`: all visible keys in one, or — for one query row once
/// llama.cpp's KV view (its cache's filled length padded to 256) reaches
/// 512 — the visible keys of one cut of that view per thread, as ggml's
/// split-KV decode cuts it (`use_split_kv_path`), empty ones left out.
/// (A sliding-window layer's cache in llama.cpp is a ring of about
/// window + 512 cells; past that its cuts no longer follow positions, and
/// these ranges stay an approximation of them.)
pub(crate) fn per_row_ranges(s: &AttnShape, n: usize, p: usize) -> Vec<std::ops::Range<usize>> {
    let (first, view) = (s.first_key(p), (p + 1).div_ceil(256).max(1) * 256);
    if n == 1 && view >= 512 {
        let nth = crate::pool::threads().max(1);
        let cut = view.div_ceil(nth);
        return (0..nth)
            .map(|c| (c * cut).max(first)..((c + 1) * cut).min(p + 1))
            .filter(|r| r.start < r.end)
            .collect();
    }
    std::iter::once(first..p + 1).collect()
}

/// Folds an attention sink — a logit with no value — into a row's running
/// maximum, sum and accumulator (not yet divided by the sum), as ggml's
/// flash attention does once the keys are done: `S = S·ms + vs` (one FMA,
/// as GCC contracts it).
pub(crate) fn add_sink(sink: f32, m: &mut f32, sum: &mut f32, o: &mut [f32]) {
    let (ms, vs) = if sink > *m {
        let ms = (*m - sink).exp();
        *m = sink;
        o.iter_mut().for_each(|v| *v *= ms);
        (ms, 1.0)
    } else {
        (1.0, (sink - *m).exp())
    };
    *sum = sum.mul_add(ms, vs);
}

/// `o /= sum` as the per-row kernel ends (0 for an empty sum).
pub(crate) fn per_row_finish(o: &mut [f32], sum: f32) {
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    o.iter_mut().for_each(|v| *v *= inv);
}

/// The per-row kernel's ranges combined in order, as ggml's
/// `ggml_flash_attn_ext_reduce_partials`: `parts` yields each range's
/// maximum, sum and accumulator; the result, divided by the total sum,
/// into `o`.
pub(crate) fn per_row_combine<'a>(
    parts: impl Iterator<Item = (f32, f32, &'a [f32])>,
    o: &mut [f32],
) {
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
    o.fill(0.0);
    for (mc, sc, v) in parts {
        if sc == 0.0 {
            continue;
        }
        let mn = m.max(mc);
        let (so, sn) = ((m - mn).exp(), (mc - mn).exp());
        // GCC contracts `a·so + b·sn` in ggml to fma(a, so, b·sn).
        for (o, &v) in o.iter_mut().zip(v) {
            *o = o.mul_add(so, v * sn);
        }
        sum = sum.mul_add(so, sc * sn);
        m = mn;
    }
    if sum != 0.0 {
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|v| *v *= inv);
    }
}
