//! A gated feed-forward's first half — `act(x · gateᵀ) ⊙ (x · upᵀ)` — made
//! straight into the activation format of the matrix that reads it next
//! (the down projection).
//!
//! While decoding, the gate and up products run as one pass over the pool in
//! runs of rows that cover the same rows of both matrices; as soon as every
//! row of a 256-wide chunk of the output is done, the thread that finished
//! it applies the activation to that chunk and quantizes it. The gated
//! values are never gathered on one thread: the serial step between the two
//! passes (about 10 µs a layer on Qwen2.5-1.5B) is gone, and each thread
//! mostly reads back only the rows it wrote itself — on this VM the two
//! threads are at times far apart in the machine, where every cache line
//! one reads from the other costs hundreds of nanoseconds.
//!
//! Every output byte equals that of the unfused path: the same kernels
//! compute the products, the activation is elementwise, and the
//! activation formats quantize blocks that divide the chunk
//! independently.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::decode::{Acts, Quantized};
use crate::matmul::{QMatrix, SendPtr};

/// Output values per chunk: a multiple of every activation format's block
/// (Q8_K's 256, Q8_0/Q8_1's 32, one for float formats) and of
/// [`crate::ops::EXP_LANES`], so a chunk's activation is the row's.
const CHUNK: usize = 256;

/// Buffers above this many bytes are not kept (a 512-token prefill of
/// Qwen2.5-0.5B needs 20 MB; zeroing them anew every layer was 2.5% of a
/// perplexity run).
const KEEP_BYTES: usize = 64 << 20;

thread_local! {
    /// The gate and up products of this thread's last call.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Keeps decode-sized buffers for the next call.
fn keep(g: Vec<f32>, u: Vec<f32>) {
    if (g.capacity() + u.capacity()) * 4 <= KEEP_BYTES {
        SCRATCH.with(|s| *s.borrow_mut() = (g, u));
    }
}

/// An activation applied in place over a chunk of gate values with the
/// matching up values (for example [`crate::ops::glu_row`]).
pub type GluFn<'a> = &'a (dyn Fn(&mut [f32], &[f32]) + Sync);

/// `act(gate(x)) ⊙ up(x)` for `n` activation rows, quantized for `next`
/// (whose `cols` must be the gate's rows). `acts` are the rows of `x`.
///
/// # Panics
/// When the shapes disagree (a caller's bug).
pub fn glu_quantized(
    gate: &QMatrix,
    up: &QMatrix,
    acts: Acts,
    n: usize,
    act: GluFn,
    next: &QMatrix,
) -> Quantized {
    let (ff, cols) = (gate.rows, gate.cols);
    assert!(
        up.rows == ff && up.cols == cols && next.cols == ff,
        "glu_quantized: gate {ff}×{cols}, up {}×{}, next takes {}",
        up.rows,
        up.cols,
        next.cols
    );
    let xq = Quantized::new([gate, up].into_iter(), acts, n, cols);
    // Every value is written before it is read, so the last call's buffers
    // serve as they are: no zeroing pass, and each row's cache lines are
    // still where the thread that computes it (mostly the same each
    // layer) wrote them last time.
    let (mut g, mut u) = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    g.resize(n * ff, 0.0);
    u.resize(n * ff, 0.0);
    let vt = next.dtype.traits().vec_dot_type;
    let fused = (|| {
        let quant = crate::dispatch::from_float(vt)?;
        let (xrb, cb) = (vt.row_bytes(ff)?, vt.row_bytes(CHUNK)?);
        if !ff.is_multiple_of(CHUNK) {
            return None;
        }
        let (xg, gb) = xq.of(gate);
        let (xu, ub) = xq.of(up);
        let gj = gate.row_job(xg, gb, n, SendPtr::new(&mut g))?;
        let uj = up.row_job(xu, ub, n, SendPtr::new(&mut u))?;
        (gj.runs == uj.runs && gj.unit == uj.unit).then_some((gj, uj, quant, xrb, cb))
    })();
    let Some((gj, uj, quant, xrb, cb)) = fused else {
        // Prefill (tiled products) or mismatched layouts: the two products,
        // then the activation fused into the quantization of each row.
        crate::decode::matmul_many_quantized(&xq, n, &mut [(gate, &mut g), (up, &mut u)]);
        let row = |t: usize, out: &mut [f32]| {
            out.copy_from_slice(&g[t * ff..(t + 1) * ff]);
            act(out, &u[t * ff..(t + 1) * ff])
        };
        let q = Quantized::new([next].into_iter(), Acts::Each(&row), n, ff);
        keep(g, u);
        return q;
    };
    let mut out = vec![0u8; n * xrb];
    let (gp, up_, op) = (
        SendPtr::new(&mut g),
        SendPtr::new(&mut u),
        SendPtr::new_bytes(&mut out),
    );
    let rows_done: Vec<AtomicUsize> = (0..ff / CHUNK).map(|_| AtomicUsize::new(0)).collect();
    // Chunk c of every token, once all its rows of both products are in.
    let finish = |c: usize| {
        let mut h = [0f32; CHUNK];
        for t in 0..n {
            let at = t * ff + c * CHUNK;
            // SAFETY: the chunk's rows were written by finished runs (the
            // counter's acquire orders their writes before these reads) and
            // no run writes them again; each chunk's bytes of `out` are
            // written by this call only; all in bounds (n × ff values,
            // n × xrb bytes).
            unsafe {
                h.copy_from_slice(std::slice::from_raw_parts(gp.get().add(at), CHUNK));
                act(&mut h, std::slice::from_raw_parts(up_.get().add(at), CHUNK));
                let q = (op.get() as *mut u8).add(t * xrb + c * cb);
                quant(&h, std::slice::from_raw_parts_mut(q, cb));
            }
        }
    };
    let run = |i: usize| {
        let r = gj.runs[i].clone();
        (gj.run)(r.clone());
        (uj.run)(r.clone());
        let rows = r.start * gj.unit..(r.end * gj.unit).min(ff);
        let mut c = rows.start / CHUNK;
        while c * CHUNK < rows.end {
            let lo = rows.start.max(c * CHUNK);
            let hi = rows.end.min((c + 1) * CHUNK);
            let k = hi - lo;
            if rows_done[c].fetch_add(k, Ordering::AcqRel) + k == CHUNK {
                finish(c);
            }
            c += 1;
        }
    };
    crate::pool::for_each(gj.runs.len(), run);
    keep(g, u);
    Quantized(vec![(vt, out, xrb)])
}
