//! How the x86-64 matmuls split their work over the pool and feed their
//! kernels: the walkers over (rows × tokens) blocks and row groups, and
//! the per-call activation tables of the 32-element formats' kernels.

use crate::DType;

/// The per-call activation data of the 32-element formats' tile and
/// decode kernels, for tokens `range` in groups of `g`: scales widened to
/// f32 and, for VNNI kernels of formats with a zero point, the lanes'
/// starts ([`crate::x86::tile::lane_starts`]) — once per matmul instead of
/// once per tile.
pub(crate) struct ActTables<'a> {
    xq: &'a [u8],
    xrb: usize,
    t0: usize,
    g: usize,
    xs: Vec<f32>,
    init: Vec<i32>,
    per_xs: usize,
    per_init: usize,
}

impl<'a> ActTables<'a> {
    pub(crate) fn new(
        ty: DType,
        xq: &'a [u8],
        xrb: usize,
        cols: usize,
        range: std::ops::Range<usize>,
        g: usize,
    ) -> Self {
        use crate::x86::tile::{lane_starts, vnni_offset, widen_scales_of};
        let vt = ty.traits().vec_dot_type;
        let (nb, xb, sums) = (cols / 32, vt.block_bytes(), vt == DType::Q8_1);
        let off =
            vnni_offset(ty).filter(|_| crate::dispatch::level() == crate::dispatch::Level::Avx512);
        let (mut xs, mut init) = (Vec::new(), Vec::new());
        let (mut tmp, mut tmpi) = (Vec::new(), Vec::new());
        for t in range.clone().step_by(g) {
            widen_scales_of(g, &xq[t * xrb..], xrb, nb, xb, sums, &mut tmp);
            xs.extend_from_slice(&tmp);
            if let Some(off) = off {
                lane_starts(off, &xq[t * xrb..], xrb, nb, g, &mut tmpi);
                init.extend_from_slice(&tmpi);
            }
        }
        let per_init = if off.is_some() { nb * g * 8 } else { 0 };
        ActTables {
            xq,
            xrb,
            t0: range.start,
            g,
            xs,
            init,
            per_xs: nb * g * (1 + sums as usize),
            per_init,
        }
    }

    /// The group starting at token `t`.
    pub(crate) fn acts(&self, t: usize) -> crate::x86::tile::Acts<'_> {
        let k = (t - self.t0) / self.g;
        crate::x86::tile::Acts {
            x: &self.xq[t * self.xrb..],
            xrb: self.xrb,
            xs: &self.xs[k * self.per_xs..][..self.per_xs],
            init: &self.init[k * self.per_init..][..self.per_init],
        }
    }
}

/// Walks `rows × n` outputs (`rows` a multiple of 4) in blocks of rows ×
/// tokens spread over the pool: a block's groups of four rows are unpacked
/// once ([`crate::x86::tile_u8`]), then `tile(buf, t, out)` runs each group
/// against four tokens at a time, tokens outer so their activations stay
/// in L1; `tail(r, t, out)` takes the tokens past the last whole tile.
pub(crate) fn blocked_unpacked(
    rows: usize,
    n: usize,
    nb: usize,
    put4: &(impl Fn(usize, usize, [f32; 4]) + Sync),
    tail: &(impl Fn(usize, usize, &mut [[f32; 1]; 4]) + Sync),
    (unpack, ub): (impl Fn(usize, &mut [u8]) + Sync, usize),
    tile: impl Fn(&[u8], usize, &mut [[f32; 4]; 4]) + Sync,
) {
    // 16 rows: a token's outputs of a block fill whole cache lines, which
    // no other block (thread) writes.
    const RB: usize = 16;
    const TB: usize = 128;
    let whole = n - n % 4;
    let (nrb, ntb) = (rows.div_ceil(RB), n.div_ceil(TB));
    crate::pool::for_each(nrb * ntb, |item| {
        let (r0, t0) = (item / ntb * RB, item % ntb * TB);
        let (r1, t1) = ((r0 + RB).min(rows), (t0 + TB).min(n));
        let gb = nb * ub;
        // Every byte is written by `unpack` before it is read: the buffer
        // of this thread's last item serves (no allocation, no zeroing).
        let mut buf = UNPACKED.with(|b| std::mem::take(&mut *b.borrow_mut()));
        buf.resize((r1 - r0) / 4 * gb, 0);
        for (g, b) in buf.chunks_exact_mut(gb).enumerate() {
            unpack(r0 + 4 * g, b);
        }
        let (mut o, mut o1) = ([[0f32; 4]; 4], [[0f32; 1]; 4]);
        // Tokens outer: a tile's activations stay in L1 for every group.
        for t in (t0..t1.min(whole)).step_by(4) {
            for (g, b) in buf.chunks_exact(gb).enumerate() {
                let r = r0 + 4 * g;
                tile(b, t, &mut o);
                for j in 0..4 {
                    put4(t + j, r, [o[0][j], o[1][j], o[2][j], o[3][j]]);
                }
            }
        }
        for t in whole.max(t0)..t1 {
            for r in (r0..r1).step_by(4) {
                tail(r, t, &mut o1);
                put4(t, r, [o1[0][0], o1[1][0], o1[2][0], o1[3][0]]);
            }
        }
        UNPACKED.with(|b| *b.borrow_mut() = buf);
    });
}

thread_local! {
    /// [`blocked_unpacked`]'s buffer of unpacked rows, kept per thread.
    static UNPACKED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Walks `rows × n` outputs in blocks of rows × tokens (the weights of a
/// block stay in L1/L2 while its tokens' activations stream past), spread
/// over the pool: `tile(r, t, out)` fills `R` rows × `C` tokens where a
/// whole tile fits, `tail(r, t, out)` `R` rows of one token past the last
/// whole tile, `single(t, r)` the rows past the last whole tile.
pub(crate) fn blocked<const R: usize, const C: usize>(
    rows: usize,
    n: usize,
    put: &(impl Fn(usize, usize, f32) + Sync),
    single: &(impl Fn(usize, usize) -> f32 + Sync),
    tail: &(impl Fn(usize, usize, &mut [[f32; 1]; R]) + Sync),
    tile: impl Fn(usize, usize, &mut [[f32; C]; R]) + Sync,
) {
    const RB: usize = 32;
    // About 32 tokens a block, whole tiles of C.
    let tb = (32 / C).max(1) * C;
    let (nrb, ntb) = (rows.div_ceil(RB), n.div_ceil(tb));
    crate::pool::for_each(nrb * ntb, |item| {
        let (r0, t0) = (item / ntb * RB, item % ntb * tb);
        let (r1, t1) = ((r0 + RB).min(rows), (t0 + tb).min(n));
        let mut o = [[0f32; C]; R];
        let mut o1 = [[0f32; 1]; R];
        for t in (t0..t1).step_by(C) {
            for r in (r0..r1).step_by(R) {
                if t + C <= t1 && r + R <= r1 {
                    tile(r, t, &mut o);
                    for (i, row) in o.iter().enumerate() {
                        for (j, &v) in row.iter().enumerate() {
                            put(t + j, r + i, v);
                        }
                    }
                } else if r + R <= r1 {
                    for tt in t..(t + C).min(t1) {
                        tail(r, tt, &mut o1);
                        for (i, v) in o1.iter().enumerate() {
                            put(tt, r + i, v[0]);
                        }
                    }
                } else {
                    for tt in t..(t + C).min(t1) {
                        for rr in r..(r + R).min(r1) {
                            put(tt, rr, single(tt, rr));
                        }
                    }
                }
            }
        }
    });
}

/// The prefill split of the repacked (row-group) layouts: `f(group, t0,
/// t1)` for every group and run of at most 32 tokens, across the pool, a
/// few groups reused across the tokens of a run. (Fewer than four tokens
/// take row runs: [`crate::decode`].)
pub(crate) fn group_tiles(groups: usize, n: usize, f: impl Fn(usize, usize, usize) + Sync) {
    const TB: usize = 32;
    debug_assert!(n >= 4, "fewer tokens take row runs (crate::decode)");
    let gb = 4;
    let (ngb, ntb) = (groups.div_ceil(gb), n.div_ceil(TB));
    crate::pool::for_each(ngb * ntb, |item| {
        let (g0, t0) = (item / ntb * gb, item % ntb * TB);
        let (g1, t1) = ((g0 + gb).min(groups), (t0 + TB).min(n));
        for g in g0..g1 {
            f(g, t0, t1);
        }
    });
}
