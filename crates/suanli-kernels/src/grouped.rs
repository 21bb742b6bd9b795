//! Many products over subsets of one batch's activation rows in one pass
//! over the pool: the shape of a mixture-of-experts layer, where each of a
//! batch's tokens goes to a few of many experts and every expert multiplies
//! only its own tokens' rows.
//!
//! The activation rows are quantized once per format however many products
//! take them (a token routed to eight experts is quantized once, not eight
//! times); each product's rows are then gathered, already quantized, and
//! every product that takes row runs for its number of rows (decode-sized
//! groups: one token, a few) shares a single pass over the pool with the
//! others — a thread done with one expert's share starts on the next one's
//! instead of waiting at a barrier per expert. Products with enough rows for
//! the tiled kernels run those, one after another.
//!
//! Each product's output is bit-identical to [`QMatrix::matmul`] over its
//! gathered rows: the same quantized bytes, the kernel that `matmul` picks
//! for the same number of rows.

use std::borrow::Cow;

use crate::decode::{run_jobs, Acts, Quantized};
use crate::matmul::{QMatrix, SendPtr};
use crate::KernelError;

/// One product of [`matmul_grouped`]: `out = x[take] · wᵀ`.
pub struct Product<'a> {
    pub w: &'a QMatrix,
    /// The activation rows this product takes, in order (a row may appear
    /// more than once); every row, in order, when `None`.
    pub take: Option<&'a [usize]>,
    /// `rows × w.rows` outputs, `rows` being the number of rows taken.
    pub out: &'a mut [f32],
}

impl Product<'_> {
    fn n(&self, n: usize) -> usize {
        self.take.map_or(n, <[usize]>::len)
    }

    /// The `i`-th row taken.
    fn row(&self, i: usize) -> usize {
        self.take.map_or(i, |t| t[i])
    }
}

/// Every product of `products` over the `n` activation rows of `cols`
/// values given by `acts` (see [`Product`]). Errors, before anything is
/// computed, when a product's matrix is not `cols` wide, takes a row past
/// `n`, or has too short an `out`.
pub fn matmul_grouped(
    acts: Acts,
    n: usize,
    cols: usize,
    products: &mut [Product],
) -> Result<(), KernelError> {
    if let Acts::Rows(x) = acts {
        if x.len() < n * cols {
            return Err(KernelError::BadSize {
                what: "grouped matmul activations (f32 values)",
                expected: n * cols,
                got: x.len(),
            });
        }
    }
    for p in products.iter() {
        if p.w.cols != cols {
            return Err(KernelError::BadSize {
                what: "grouped matmul matrix row (values)",
                expected: cols,
                got: p.w.cols,
            });
        }
        if let Some(&index) = p.take.and_then(|t| t.iter().find(|&&r| r >= n)) {
            return Err(KernelError::BadRowIndex { index, rows: n });
        }
        let need = p.n(n) * p.w.rows;
        if p.out.len() < need {
            return Err(KernelError::BadSize {
                what: "grouped matmul output (f32 values)",
                expected: need,
                got: p.out.len(),
            });
        }
    }
    // The rows some product takes, each once, in row order, and where
    // each one's quantized form lies among them.
    let mut taken = vec![false; n];
    for p in products.iter() {
        (0..p.n(n)).for_each(|i| taken[p.row(i)] = true);
    }
    let used: Vec<usize> = (0..n).filter(|&r| taken[r]).collect();
    if used.is_empty() {
        return Ok(());
    }
    let mut slot = vec![0usize; n];
    for (k, &r) in used.iter().enumerate() {
        slot[r] = k;
    }
    let made = |k: usize, out: &mut [f32]| match acts {
        Acts::Rows(x) => out.copy_from_slice(&x[used[k] * cols..(used[k] + 1) * cols]),
        Acts::Each(f) => f(used[k], out),
    };
    let every = used.len() == n;
    let ms = products.iter().map(|p| p.w);
    let quantized = match acts {
        Acts::Rows(_) if every => Quantized::new(ms, acts, n, cols),
        _ => Quantized::new(ms, Acts::Each(&made), used.len(), cols),
    };
    // Each product's rows in its format: the quantized rows themselves for
    // a product that takes every row in order, else gathered.
    let rows: Vec<(Cow<[u8]>, usize)> = products
        .iter()
        .map(|p| {
            let (xq, xrb) = quantized.of(p.w);
            if every && p.take.is_none() {
                return (Cow::Borrowed(xq), xrb);
            }
            let mut g = Vec::with_capacity(p.n(n) * xrb);
            for i in 0..p.n(n) {
                let k = slot[p.row(i)];
                g.extend_from_slice(&xq[k * xrb..(k + 1) * xrb]);
            }
            (Cow::Owned(g), xrb)
        })
        .collect();
    let mut jobs = Vec::new();
    let mut tiled = Vec::new();
    for (i, (p, (xq, xrb))) in products.iter_mut().zip(&rows).enumerate() {
        let m = p.n(n);
        if m == 0 {
            continue;
        }
        match p.w.row_job(xq, *xrb, m, SendPtr::new(p.out)) {
            Some(job) => jobs.push(job),
            None => tiled.push(i),
        }
    }
    run_jobs(&jobs);
    drop(jobs);
    for i in tiled {
        let (p, (xq, xrb)) = (&mut products[i], &rows[i]);
        p.w.matmul_quantized(xq, *xrb, p.n(n), p.out);
    }
    Ok(())
}
