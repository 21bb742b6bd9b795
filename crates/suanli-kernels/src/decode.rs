//! Products over a few tokens (decode) as runs of rows that any thread may
//! take, and several matrices over the same activations in one pass over
//! the pool ([`matmul_many`]): one quantization per activation format and
//! one barrier, where a layer's q/k/v or gate/up products would otherwise
//! take three or two, each ending in threads idle at a barrier while the
//! next matrix's bytes wait to be streamed.

use std::ops::Range;

#[cfg(target_arch = "x86_64")]
use crate::matmul::TILED_MIN_ROWS;
use crate::matmul::{QMatrix, SendPtr};
#[cfg(target_arch = "x86_64")]
use crate::x86::walk::ActTables;
#[cfg(target_arch = "x86_64")]
use crate::DType;

/// A product split into runs of units (rows or row groups of `unit` rows):
/// `run` computes every output of one run for all tokens.
pub(crate) struct RowJob<'a> {
    pub runs: Vec<Range<usize>>,
    pub unit: usize,
    pub run: Box<dyn Fn(Range<usize>) + Sync + 'a>,
}

impl RowJob<'_> {
    pub fn execute(&self) {
        crate::pool::for_each(self.runs.len(), |i| (self.run)(self.runs[i].clone()));
    }
}

impl QMatrix {
    /// The product with `n` quantized activation rows `xq` (`xrb` bytes
    /// each) into `out` (`n × rows`) as runs of rows, when this matrix
    /// takes a row-at-a-time path for `n` (decode); `None` when it takes a
    /// tiled path (prefill). The kernels and orders are those of
    /// [`QMatrix::vec_dot`] either way.
    pub(crate) fn row_job<'a>(
        &'a self,
        xq: &'a [u8],
        xrb: usize,
        n: usize,
        out: SendPtr,
    ) -> Option<RowJob<'a>> {
        let mut job = self.row_job_runs(xq, xrb, n, out)?;
        if n > 1 {
            // Every run loops over the tokens with its rows' weights: in
            // pieces small enough to stay in L2 until the last token, not
            // decode's long streams, which every token would read from
            // memory again (a 5-token pass of Qwen2.5-1.5B spent 8 ms a
            // token re-reading the 190 MB output matrix). Each output is
            // still one (row, token) call: the same bits.
            let align = if job.unit == 1 { 16 } else { 1 };
            let unit_bytes = (job.unit * self.row_bytes()).max(1);
            let most = (SPLIT_BYTES / unit_bytes / align * align).max(align);
            job.runs = job
                .runs
                .iter()
                .flat_map(|r| {
                    let end = r.end;
                    r.clone().step_by(most).map(move |s| s..(s + most).min(end))
                })
                .collect();
        }
        Some(job)
    }

    fn row_job_runs<'a>(
        &'a self,
        xq: &'a [u8],
        xrb: usize,
        n: usize,
        out: SendPtr,
    ) -> Option<RowJob<'a>> {
        let (rows, cols) = (self.rows, self.cols);
        let w = self.data.bytes();
        // SAFETY (all writers below): every (token, row) pair is written by
        // one run only and is in bounds (the caller's `out` holds n × rows).
        let put = move |t: usize, r: usize, v: f32| unsafe { *out.get().add(t * rows + r) = v };
        #[cfg(target_arch = "x86_64")]
        {
            use crate::dispatch::batch_invariant;
            let fixed = batch_invariant();
            if let Some(copy) = &self.prefill {
                // Below four tokens the original, where it is in the planes
                // layout (whose tiled-order row kernel gives the copy's bits
                // from fewer bytes), or else the copy; from four on (eight
                // in the row order) the copy's tiled products.
                if n >= TILED_MIN_ROWS || (fixed && n >= 4) {
                    return None;
                }
                if fixed && !self.planes {
                    return Some(self.q6k_r16_job(copy.bytes(), xq, xrb, n, put));
                }
            }
            if self.r16 {
                return (n < 4).then(|| self.r16_job(xq, xrb, n, put));
            }
            if self.repacked {
                return (n < 4).then(|| self.q4k_groups_job(xq, xrb, n, out));
            }
            if n > 1
                && crate::dispatch::tile_dot(self.dtype).is_some()
                && crate::dispatch::gemv_dot(self.dtype).is_some()
            {
                return None;
            }
            // The eight-token kernel where it covers a group; fewer
            // tokens (a speculative draft's check) go row run by row run,
            // each token through the run while it is in cache, rather than
            // one output at a time.
            if self
                .k_quant_x8(n)
                .is_some_and(|(_, limit)| limit >= crate::x86::kquant::KC)
            {
                return None;
            }
            if n >= crate::x86::tile::TC && self.float_tiled() {
                return None;
            }
        }
        let dots: Vec<crate::dtype::VecDot> = (0..n).filter_map(|t| self.vec_dot(n, t)).collect();
        if dots.len() != n {
            unreachable!("QMatrix::new checked vec_dot")
        }
        let wrb = self.row_bytes();
        // One output through the per-row dot product.
        let single = move |t: usize, r: usize| {
            put(
                t,
                r,
                dots[t](
                    cols,
                    &w[r * wrb..(r + 1) * wrb],
                    &xq[t * xrb..(t + 1) * xrb],
                ),
            )
        };
        // Long contiguous runs of rows for the prefetchers, short ones to
        // balance the threads (`decode_runs`).
        let runs = decode_runs(rows, 16, wrb);
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(gemv)) = (
            self.interleaved
                && self.dtype == DType::Q4_K
                && (n < 4 || crate::dispatch::batch_invariant()),
            crate::dispatch::q4_k_gemv_x4(),
        ) {
            // Below four tokens every token takes the interleaved GEMV order.
            use crate::x86::kquant::KR;
            let run = move |rr: Range<usize>| {
                for (ti, xr) in xq[..n * xrb].chunks_exact(xrb).enumerate() {
                    in_groups(
                        rr.clone(),
                        KR,
                        |r| {
                            for (i, v) in gemv(cols, &w[r * wrb..], wrb, xr).into_iter().enumerate()
                            {
                                put(ti, r + i, v);
                            }
                        },
                        |r| single(ti, r),
                    );
                }
            };
            return Some(RowJob {
                runs,
                unit: 1,
                run: Box::new(run),
            });
        }
        // The 4-row layout with a whole-run kernel: one call a run (and
        // token), the set-up once for all its groups.
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(groups)) = (self.rows4, crate::x86::gemv_zmm::gemv_groups(self.dtype)) {
            use crate::x86::tile::GR;
            let ones = ActTables::new(self.dtype, xq, xrb, cols, 0..n, 1);
            let run = move |rr: Range<usize>| {
                crate::x86::prefetch_head(&w[rr.start * wrb..rr.end * wrb]);
                debug_assert!(rr.start.is_multiple_of(GR) && rr.len().is_multiple_of(GR));
                for ti in 0..n {
                    // SAFETY: token ti's outputs for this run's rows are in
                    // bounds and written by this run only.
                    let o = unsafe { token_outputs(out, ti, rows, rr.clone()) };
                    groups(cols, &w[rr.start * wrb..], rr.len() / GR, ones.acts(ti), o);
                }
            };
            return Some(RowJob {
                runs,
                unit: 1,
                run: Box::new(run),
            });
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(gemv) = crate::dispatch::gemv_dot(self.dtype) {
            use crate::x86::tile::{Strides, GR};
            let bb = self.dtype.block_bytes();
            let ws = match self.rows4 {
                true => Strides::rows4(bb),
                false => Strides::rows(wrb / bb, bb),
            };
            let ones = ActTables::new(self.dtype, xq, xrb, cols, 0..n, 1);
            let run = move |rr: Range<usize>| {
                crate::x86::prefetch_head(&w[rr.start * wrb..rr.end * wrb]);
                let mut o = [[0f32; 1]; GR];
                for ti in 0..n {
                    in_groups(
                        rr.clone(),
                        GR,
                        |r| {
                            gemv(cols, &w[r * wrb..], ws, ones.acts(ti), &mut o);
                            for (i, v) in o.iter().enumerate() {
                                put(ti, r + i, v[0]);
                            }
                        },
                        |r| single(ti, r),
                    );
                }
            };
            return Some(RowJob {
                runs,
                unit: 1,
                run: Box::new(run),
            });
        }
        // MXFP4 in its planes layout (AVX-512 VNNI): a run of rows per
        // call, up to eight tokens at once (one order whatever the batch).
        #[cfg(target_arch = "x86_64")]
        if self.dtype == DType::MXFP4 && self.planes {
            // SAFETY: the planes layout is only made at Level::Avx512.
            let k = move |w: &[u8], xs: &[&[u8]], os: &mut [&mut [f32]]| unsafe {
                crate::x86::fp4::mxfp4_planes_rows_multi(cols, w, xs, os)
            };
            let per = crate::x86::fp4::MAX_TOKENS;
            return Some(token_groups_job(
                runs,
                (w, wrb),
                (xq, xrb),
                (out, rows, n),
                per,
                k,
            ));
        }
        // A whole run of rows per call, where the order in use (tiled with
        // batch-invariant numerics) has such a kernel.
        #[cfg(target_arch = "x86_64")]
        let tiled = crate::dispatch::batch_invariant() || n >= TILED_MIN_ROWS;
        // Q6_K planes: up to four tokens a call, each block unpacked once.
        #[cfg(target_arch = "x86_64")]
        if self.planes && self.dtype == DType::Q6_K && n > 1 {
            // SAFETY: the planes layout is only made where its kernels'
            // features (AVX-512 VNNI, GFNI) are present.
            let k = move |w: &[u8], xs: &[&[u8]], os: &mut [&mut [f32]]| unsafe {
                crate::x86::q6k_planes::rows_multi(tiled, cols, w, xs, os)
            };
            return Some(token_groups_job(
                runs,
                (w, wrb),
                (xq, xrb),
                (out, rows, n),
                4,
                k,
            ));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(rows_dot) = match (self.planes && self.dtype == DType::Q6_K, tiled) {
            (true, false) => Some(crate::dispatch::q6_k_planes_kernels().rows),
            (true, true) => Some(crate::dispatch::q6_k_planes_kernels().rows_tiled),
            (false, false) => crate::dispatch::rows_dot(self.dtype),
            (false, true) => None,
        } {
            let run = move |rr: Range<usize>| {
                crate::x86::prefetch_head(&w[rr.start * wrb..rr.end * wrb]);
                for t in 0..n {
                    // SAFETY: token t's outputs for this run's rows are in
                    // bounds and written by this run only.
                    let o = unsafe { token_outputs(out, t, rows, rr.clone()) };
                    rows_dot(
                        cols,
                        &w[rr.start * wrb..rr.end * wrb],
                        &xq[t * xrb..(t + 1) * xrb],
                        o,
                    );
                }
            };
            return Some(RowJob {
                runs,
                unit: 1,
                run: Box::new(run),
            });
        }
        let run = move |rr: Range<usize>| {
            for t in 0..n {
                rr.clone().for_each(|r| single(t, r));
            }
        };
        Some(RowJob {
            runs,
            unit: 1,
            run: Box::new(run),
        })
    }

    /// Repacked Q4_K below four tokens: each token in the GEMV order over
    /// runs of 16-row groups.
    #[cfg(target_arch = "x86_64")]
    fn q4k_groups_job<'a>(
        &'a self,
        xq: &'a [u8],
        xrb: usize,
        n: usize,
        out: SendPtr,
    ) -> RowJob<'a> {
        use crate::x86::q4k_r16::{q4_k_r16_run, R16_BYTES, ROWS as GR};
        let (rows, nb) = (self.rows, self.cols / 256);
        let gbytes = nb * R16_BYTES;
        run_job(self.data.bytes(), gbytes, GR, rows / GR, move |gs, wr| {
            // Up to three tokens a call: each block unpacked once for them.
            for t0 in (0..n).step_by(3) {
                // SAFETY: the run's rows of each token are in bounds and
                // written by this run only.
                let mut os: Vec<&mut [f32]> = (t0..(t0 + 3).min(n))
                    .map(|t| unsafe { token_outputs(out, t, rows, GR * gs.start..GR * gs.end) })
                    .collect();
                // SAFETY: `repacked` is only set at Level::Avx512.
                unsafe { q4_k_r16_run(nb, wr, gs.len(), &xq[t0 * xrb..], xrb, &mut os) };
            }
        })
    }

    /// A 16-row repacked matrix ([`crate::x86::r16`]) below four tokens.
    #[cfg(target_arch = "x86_64")]
    fn r16_job<'a>(
        &'a self,
        xq: &'a [u8],
        xrb: usize,
        n: usize,
        put: impl Fn(usize, usize, f32) + Sync + Copy + 'a,
    ) -> RowJob<'a> {
        use crate::x86::r16::{group_block_bytes, tokens, Acts, G};
        let nb = self.cols / 32;
        let gbytes = nb * group_block_bytes(self.dtype);
        let acts = Acts::new(self.dtype, xq, xrb, n, nb);
        let dtype = self.dtype;
        group_job(self.data.bytes(), gbytes, G, self.rows / G, move |g, wg| {
            let p = |t: usize, lane: usize, v: f32| put(t, G * g + lane, v);
            // SAFETY: `r16` is only set at Level::Avx512 for supported types.
            unsafe { tokens(dtype, wg, xq, xrb, &acts, 0, n, p) };
        })
    }

    /// Q6_K from its 16-row copy ([`crate::x86::q6k_r16`]) below four tokens
    /// (batch-invariant decode).
    #[cfg(target_arch = "x86_64")]
    fn q6k_r16_job<'a>(
        &'a self,
        copy: &'a [u8],
        xq: &'a [u8],
        xrb: usize,
        n: usize,
        put: impl Fn(usize, usize, f32) + Sync + Copy + 'a,
    ) -> RowJob<'a> {
        use crate::x86::q6k_r16::{tokens, Acts, G, GB};
        let nb = self.cols / 256;
        let gbytes = nb * GB;
        let acts = Acts::new(xq, xrb, n, nb);
        group_job(copy, gbytes, G, self.rows / G, move |g, wg| {
            let p = |t: usize, lane: usize, v: f32| put(t, G * g + lane, v);
            // SAFETY: the copy is only made at Level::Avx512.
            unsafe { tokens(wg, xq, xrb, &acts, 0, n, p) };
        })
    }
}

/// Decode over a row-group layout: runs of the `groups` groups (`gbytes`
/// each at `w`, `unit` rows each), `f(groups of the run, their bytes)` for
/// each run, its head prefetched first.
#[cfg(target_arch = "x86_64")]
fn run_job<'a>(
    w: &'a [u8],
    gbytes: usize,
    unit: usize,
    groups: usize,
    f: impl Fn(Range<usize>, &'a [u8]) + Sync + 'a,
) -> RowJob<'a> {
    RowJob {
        runs: decode_runs(groups, 1, gbytes),
        unit,
        run: Box::new(move |gs: Range<usize>| {
            let wr = &w[gs.start * gbytes..gs.end * gbytes];
            crate::x86::prefetch_head(wr);
            f(gs, wr)
        }),
    }
}

/// [`run_job`] with `f(g, group g's bytes)` for every group of a run.
#[cfg(target_arch = "x86_64")]
fn group_job<'a>(
    w: &'a [u8],
    gbytes: usize,
    unit: usize,
    groups: usize,
    f: impl Fn(usize, &'a [u8]) + Sync + 'a,
) -> RowJob<'a> {
    run_job(w, gbytes, unit, groups, move |gs, wr| {
        for (g, wg) in gs.zip(wr.chunks_exact(gbytes)) {
            f(g, wg)
        }
    })
}

/// Token `t`'s outputs `rows` (of a matrix of `rows_total` rows) in `out`.
///
/// A job over runs of rows of `w` (`wrb` bytes a row) whose kernel takes
/// the run's rows for up to `per` tokens at once (`kernel(rows, xs, outs)`,
/// each block unpacked once for them): `n` tokens of activations `xq`
/// (`xrb` bytes apart), outputs at `out` (`rows` a token).
#[cfg(target_arch = "x86_64")]
fn token_groups_job<'a>(
    runs: Vec<Range<usize>>,
    (w, wrb): (&'a [u8], usize),
    (xq, xrb): (&'a [u8], usize),
    (out, rows, n): (SendPtr, usize, usize),
    per: usize,
    kernel: impl Fn(&[u8], &[&[u8]], &mut [&mut [f32]]) + Sync + 'a,
) -> RowJob<'a> {
    let run = move |rr: Range<usize>| {
        let wr = &w[rr.start * wrb..rr.end * wrb];
        crate::x86::prefetch_head(wr);
        for t0 in (0..n).step_by(per) {
            let ts = t0..(t0 + per).min(n);
            let xs: Vec<&[u8]> = ts.clone().map(|t| &xq[t * xrb..(t + 1) * xrb]).collect();
            // SAFETY: each token's outputs for this run's rows are in
            // bounds and written by this run only.
            let mut os: Vec<&mut [f32]> = ts
                .map(|t| unsafe { token_outputs(out, t, rows, rr.clone()) })
                .collect();
            kernel(wr, &xs, &mut os);
        }
    };
    RowJob {
        runs,
        unit: 1,
        run: Box::new(run),
    }
}

/// # Safety
/// They must be in bounds and written by the caller's run only.
#[cfg(target_arch = "x86_64")]
unsafe fn token_outputs<'o>(
    out: SendPtr,
    t: usize,
    rows_total: usize,
    rows: Range<usize>,
) -> &'o mut [f32] {
    std::slice::from_raw_parts_mut(out.get().add(t * rows_total + rows.start), rows.len())
}

/// `whole(r)` for each group of `g` rows of `rows` starting at `r`, then
/// `rest(r)` for each row of a last, partial group.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn in_groups(rows: Range<usize>, g: usize, mut whole: impl FnMut(usize), rest: impl FnMut(usize)) {
    let full = rows.start + rows.len() / g * g;
    (rows.start..full).step_by(g).for_each(&mut whole);
    (full..rows.end).for_each(rest);
}

/// The activation rows of a product.
#[derive(Clone, Copy)]
pub enum Acts<'a> {
    /// `n` rows of the matrices' `cols` values, one after another.
    Rows(&'a [f32]),
    /// Row `t` is what `f(t, row)` writes into `row` (`cols` values): a row
    /// op — a norm, an activation — fused into the quantization, so its
    /// output never makes a pass through memory of its own.
    Each(&'a (dyn Fn(usize, &mut [f32]) + Sync)),
}

/// `n` activation rows of `cols` values quantized to each of `types` (in
/// order), with the bytes of one row: one pass over the rows, each row
/// made once ([`Acts::Each`]) and quantized to every type.
fn quantize_rows(
    types: &[crate::DType],
    acts: Acts,
    n: usize,
    cols: usize,
) -> Vec<(crate::DType, Vec<u8>, usize)> {
    let mut out: Vec<(crate::DType, Vec<u8>, usize)> = types
        .iter()
        .map(|&vt| {
            let xrb = vt.row_bytes(cols).unwrap_or(0);
            (vt, vec![0u8; xrb * n], xrb)
        })
        .collect();
    let quants: Vec<(crate::dtype::FromFloat, SendPtr, usize)> = out
        .iter_mut()
        .map(|(vt, xq, xrb)| {
            let Some(q) = crate::dispatch::from_float(*vt) else {
                unreachable!("every vec_dot_type has from_float")
            };
            (q, SendPtr::new_bytes(xq), *xrb)
        })
        .collect();
    crate::pool::for_each(n, |t| {
        let mut made = Vec::new();
        let row: &[f32] = match acts {
            Acts::Rows(x) => &x[t * cols..(t + 1) * cols],
            Acts::Each(f) => {
                made.resize(cols, 0f32);
                f(t, &mut made);
                &made
            }
        };
        for &(quant, ptr, xrb) in &quants {
            // SAFETY: each item writes its own row of each buffer, which
            // holds n rows of xrb bytes.
            let q =
                unsafe { std::slice::from_raw_parts_mut((ptr.get() as *mut u8).add(t * xrb), xrb) };
            quant(row, q);
        }
    });
    out
}

/// `out_i = x · W_iᵀ` for every `(W_i, out_i)` of `parts` over the same `n`
/// activation rows `x` (each `out_i` holds `n × W_i.rows`): the activations
/// are quantized once per format, and the matrices that take row runs for
/// this `n` share one pass over the pool. Each output is bit-identical to
/// [`QMatrix::matmul`]'s.
pub fn matmul_many(x: &[f32], n: usize, parts: &mut [(&QMatrix, &mut [f32])]) {
    matmul_many_acts(Acts::Rows(x), n, parts)
}

/// [`matmul_many`] over activation rows given as [`Acts`] (all the
/// matrices have the same `cols`).
pub fn matmul_many_acts(acts: Acts, n: usize, parts: &mut [(&QMatrix, &mut [f32])]) {
    let Some(cols) = parts.first().map(|(m, _)| m.cols) else {
        return;
    };
    debug_assert!(parts.iter().all(|(m, _)| m.cols == cols));
    let quantized = Quantized::new(parts.iter().map(|(m, _)| *m), acts, n, cols);
    matmul_many_quantized(&quantized, n, parts)
}

/// [`matmul_many`] over activation rows already quantized for every matrix
/// of `parts` (`q` holds each one's format, as [`Quantized::new`] or
/// [`crate::glu_quantized`] made it).
pub fn matmul_many_quantized(q: &Quantized, n: usize, parts: &mut [(&QMatrix, &mut [f32])]) {
    let mut jobs = Vec::new();
    for (m, out) in parts.iter_mut() {
        let (xq, xrb) = q.of(m);
        debug_assert!(out.len() >= n * m.rows);
        match m.row_job(xq, xrb, n, SendPtr::new(out)) {
            Some(job) => jobs.push(job),
            None => m.matmul_quantized(xq, xrb, n, out),
        }
    }
    run_jobs(&jobs);
}

/// Activation rows in the formats of some matrices' dot products, each
/// format made once.
pub struct Quantized(pub(crate) Vec<(crate::DType, Vec<u8>, usize)>);

impl Quantized {
    /// `n` rows of `cols` values in every activation format of `ms`
    /// (one pass over the rows, each made once and quantized to every
    /// format).
    pub fn new<'m>(
        ms: impl Iterator<Item = &'m QMatrix>,
        acts: Acts,
        n: usize,
        cols: usize,
    ) -> Self {
        let mut types: Vec<crate::DType> = Vec::new();
        for m in ms {
            let key = m.dtype.traits().vec_dot_type;
            if !types.contains(&key) {
                types.push(key);
            }
        }
        Quantized(quantize_rows(&types, acts, n, cols))
    }

    /// The rows in `m`'s activation format, and the bytes of one.
    ///
    /// # Panics
    /// When `m`'s format was not made (a caller's bug: the matrices given
    /// to [`Quantized::new`] decide the formats).
    pub(crate) fn of(&self, m: &QMatrix) -> (&[u8], usize) {
        let key = m.dtype.traits().vec_dot_type;
        match self.0.iter().find(|(k, _, _)| *k == key) {
            Some((_, xq, xrb)) => (xq, *xrb),
            None => panic!("activations not quantized for a {:?} matrix", m.dtype),
        }
    }
}

/// Every run of every job in one pass over the pool, in order: a thread
/// done with one matrix's share starts on the next one's while the other
/// finishes.
pub(crate) fn run_jobs(jobs: &[RowJob]) {
    let items: Vec<(usize, Range<usize>)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| job.runs.iter().map(move |r| (j, r.clone())))
        .collect();
    crate::pool::for_each(items.len(), |i| (jobs[items[i].0].run)(items[i].1.clone()));
}

/// Decode's split of `units` (rows or row groups of `unit_bytes` each,
/// runs aligned to `align`) over the pool: first one long run per thread
/// over about 7/8 of them — one stream each keeps the prefetchers ahead —
/// then runs that whichever thread is free takes, each half of what is
/// left per thread, down to about [`LEAST_RUN`] bytes: a thread slowed by
/// a neighbour's memory traffic does not hold the other at the barrier,
/// and the last run, which the other thread may wait out, is short.
/// (Equal short runs throughout lose the streams: Qwen2.5-1.5B tg fell
/// from 33 to 21 t/s with four runs per thread. Runs of 1/64 of the units
/// after the long ones left the main thread waiting 0.4–2 ms a token at
/// ops' ends — the output's were 3 MB each; halving ones: +1.4% tg in the
/// ~33 GB/s state, +2.4% in the fast one, 10-minute alternating A/B.)
pub(crate) fn decode_runs(
    units: usize,
    align: usize,
    unit_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let threads = crate::pool::threads().max(1);
    let align = align.max(1);
    let long = units * 7 / 8 / threads / align * align;
    let mut runs: Vec<_> = (0..threads)
        .map(|t| t * long..(t + 1) * long)
        .filter(|r| !r.is_empty())
        .collect();
    let least = (LEAST_RUN / unit_bytes.max(1))
        .max(1)
        .next_multiple_of(align);
    let mut at = threads * long;
    while at < units {
        let left = units - at;
        let len = (left / (2 * threads))
            .next_multiple_of(align)
            .max(least)
            .min(left);
        runs.push(at..at + len);
        at += len;
    }
    runs
}

/// Weight bytes of a piece of a run over several tokens ([`QMatrix::row_job`]).
const SPLIT_BYTES: usize = 256 << 10;

/// The bytes of weights below which [`decode_runs`] splits no further.
const LEAST_RUN: usize = 32 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_runs_cover_every_unit_once_in_aligned_runs() {
        for (units, align, ub) in [
            (151936 / 16 * 16, 16, 1260),
            (1536, 16, 7350),
            (1120, 1, 6912),
            (32, 1, 40000),
            (7, 1, 100),
            (0, 16, 100),
            (48, 16, 1),
        ] {
            let runs = decode_runs(units, align, ub);
            let mut at = 0;
            for r in &runs {
                assert_eq!(r.start, at, "{units} units: runs in order, no gap");
                assert!(!r.is_empty());
                assert!(
                    r.start % align == 0,
                    "{units} units: {r:?} aligned to {align}"
                );
                at = r.end;
            }
            assert_eq!(at, units);
            // Past the long runs, none shorter than the least bytes unless
            // it is the last.
            let least = (LEAST_RUN / ub).max(1).next_multiple_of(align);
            let tail = runs.iter().skip(crate::pool::threads()).collect::<Vec<_>>();
            for r in tail.iter().rev().skip(1) {
                assert!(
                    r.len() >= least.min(units),
                    "{units} units: {r:?} under {least}"
                );
            }
            // Halving: each tail run is at most the one before.
            for w in tail.windows(2) {
                assert!(w[1].len() <= w[0].len(), "{units} units: {w:?}");
            }
        }
    }
}
