//! Aligning B's hidden dimensions to A's through the embedding rows of the
//! tokens both vocabularies share.
//!
//! A derived model keeps its parent's residual basis up to what leaves the
//! function unchanged: a permutation of the hidden dimensions, their signs,
//! a scale, or (with the norms' weights folded in) a rotation. Over the
//! shared tokens, column `i` of A's embedding then correlates with one
//! column of B's. The columns are matched by linear assignment on the
//! absolute correlations of half the tokens (a signed permutation), and
//! also by an orthogonal Procrustes fit; each is scored on the other half,
//! so an independent pair, whose best matching only fits noise, scores
//! near zero rather than by how much noise a fit can absorb.

use nalgebra::DMatrix;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::read::Model;
use super::LineageError;

/// Shared tokens used (half to fit, half to score).
const TOKENS: usize = 4096;
/// Held-out correlation from which an orthogonal fit counts as a rotated
/// residual stream.
const ROTATED: f64 = 0.8;

/// How B's hidden dimensions map onto A's.
pub struct Alignment {
    /// Tokens whose bytes both vocabularies have.
    pub shared_tokens: usize,
    /// `perm[i]`: the B dimension matched to A dimension `i` (`None` past
    /// the narrower model's width).
    pub perm: Vec<Option<usize>>,
    /// The matched dimension's sign (±1).
    pub sign: Vec<f32>,
    /// Held-out mean correlation of matched columns under the signed
    /// permutation, and under the orthogonal fit where one was made.
    pub perm_quality: f64,
    pub rotation_quality: Option<f64>,
    /// `dB × dA`, where the orthogonal fit was clearly better: B's
    /// coordinates times this are A's.
    pub rotation: Option<DMatrix<f32>>,
    /// Median ratio of B's column spread to A's (matched columns).
    pub scale: f64,
}

impl Alignment {
    /// The map from B's hidden space to A dimensions `dims` (`dB ×
    /// dims.len()`): signed one-hot columns, or the rotation's columns.
    pub fn map(&self, d_b: usize, dims: &[usize]) -> DMatrix<f32> {
        match &self.rotation {
            Some(r) => r.select_columns(dims),
            None => {
                let mut t = DMatrix::zeros(d_b, dims.len());
                for (k, &i) in dims.iter().enumerate() {
                    if let Some(j) = self.perm[i] {
                        t[(j, k)] = self.sign[i];
                    }
                }
                t
            }
        }
    }

    /// A dimensions with a match.
    pub fn matched(&self) -> Vec<usize> {
        (0..self.perm.len())
            .filter(|&i| self.perm[i].is_some())
            .collect()
    }

    /// Fraction of A dimensions matched to the B dimension of the same
    /// index (1 for an unpermuted copy).
    pub fn identity_fraction(&self) -> f64 {
        let n = self.perm.len().max(1);
        (0..self.perm.len())
            .filter(|&i| self.perm[i] == Some(i))
            .count() as f64
            / n as f64
    }

    pub fn sign_flips(&self) -> usize {
        self.perm
            .iter()
            .zip(&self.sign)
            .filter(|(p, &s)| p.is_some() && s < 0.0)
            .count()
    }
}

/// Token id pairs `(a, b)` whose bytes are the same (non-empty), in A's id
/// order.
pub fn shared_tokens(a: &Model, b: &Model) -> Vec<(usize, usize)> {
    let mut index: std::collections::HashMap<&[u8], usize> = Default::default();
    for (id, t) in b.vocab.iter().enumerate() {
        if !t.is_empty() {
            index.entry(t.as_slice()).or_insert(id);
        }
    }
    a.vocab
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .filter_map(|(ia, t)| index.get(t.as_slice()).map(|&ib| (ia, ib)))
        .collect()
}

/// Standardized embedding rows of `ids` (mean 0, spread 1 per column),
/// and each column's spread before.
fn embedding_rows(m: &Model, ids: &[usize]) -> (DMatrix<f32>, Vec<f32>) {
    let e = &m.mats[m.embedding];
    let rows = e.rows(0, ids);
    let mut x = DMatrix::from_row_slice(ids.len(), e.cols, &rows);
    let n = ids.len() as f32;
    let mut spread = Vec::with_capacity(e.cols);
    for mut c in x.column_iter_mut() {
        let mean = c.sum() / n;
        c.add_scalar_mut(-mean);
        let sd = (c.norm_squared() / n).sqrt();
        spread.push(sd);
        if sd > 0.0 {
            c /= sd * n.sqrt();
        }
    }
    (x, spread)
}

/// Mean over A's columns `i` of corr(A[:, i], (B·t)[:, i]) on standardized
/// rows (A's columns already unit norm).
fn held_out_quality(a: &DMatrix<f32>, bt: &DMatrix<f32>) -> f64 {
    let mut total = 0f64;
    for (ca, cb) in a.column_iter().zip(bt.column_iter()) {
        let nb = cb.norm();
        if nb > 0.0 {
            total += (ca.dot(&cb) / nb) as f64;
        }
    }
    total / a.ncols().max(1) as f64
}

pub fn align(a: &Model, b: &Model, seed: u64) -> Result<Alignment, LineageError> {
    let mut pairs = shared_tokens(a, b);
    let shared = pairs.len();
    if shared < 64 {
        return Err(LineageError::NoSharedTokens {
            a: a.path.clone(),
            b: b.path.clone(),
            shared,
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    pairs.shuffle(&mut rng);
    pairs.truncate(TOKENS);
    let half = pairs.len() / 2;
    let (fit, score) = pairs.split_at(half);
    let ids = |p: &[(usize, usize)], first: bool| -> Vec<usize> {
        p.iter().map(|&(x, y)| if first { x } else { y }).collect()
    };
    let (fa, spread_a) = embedding_rows(a, &ids(fit, true));
    let (fb, spread_b) = embedding_rows(b, &ids(fit, false));
    let (sa, _) = embedding_rows(a, &ids(score, true));
    let (sb, _) = embedding_rows(b, &ids(score, false));
    let (da, db) = (fa.ncols(), fb.ncols());
    // Correlations of the fitting half: dA × dB.
    let c = fa.transpose() * &fb;
    let (perm, sign) = assign(&c);
    let mut al = Alignment {
        shared_tokens: shared,
        perm,
        sign,
        perm_quality: 0.0,
        rotation_quality: None,
        rotation: None,
        scale: 1.0,
    };
    let all: Vec<usize> = (0..da).collect();
    let t = al.map(db, &all);
    al.perm_quality = held_out_quality(&sa, &(&sb * &t));
    let mut ratios: Vec<f64> = (0..da)
        .filter_map(|i| {
            let j = al.perm[i]?;
            (spread_a[i] > 0.0).then(|| (spread_b[j] / spread_a[i]) as f64)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    al.scale = ratios.get(ratios.len() / 2).copied().unwrap_or(1.0);
    // A rotated residual stream leaves no one-to-one columns: fit an
    // orthogonal map where the permutation explains little.
    if al.perm_quality < 0.5 {
        let m = fb.transpose() * &fa; // dB × dA
        let svd = m.svd(true, true);
        if let (Some(u), Some(v_t)) = (svd.u, svd.v_t) {
            let r = u * v_t; // dB × dA
            let q = held_out_quality(&sa, &(&sb * &r));
            al.rotation_quality = Some(q);
            // Independent models' embeddings share meaning, and so a
            // rotation that fits them some (held-out 0.25–0.4 between the
            // unrelated pairs measured); a rotated copy fits near 1.
            if q >= ROTATED && q > al.perm_quality + 0.2 {
                al.rotation = Some(r);
            }
        }
    }
    Ok(al)
}

/// A's dimensions matched one-to-one to B's by the largest total absolute
/// correlation (`c`: dA × dB), with the correlation's signs.
fn assign(c: &DMatrix<f32>) -> (Vec<Option<usize>>, Vec<f32>) {
    let (da, db) = c.shape();
    // Kuhn–Munkres wants no more rows than columns.
    let transpose = da > db;
    let (r, k) = if transpose { (db, da) } else { (da, db) };
    let w = pathfinding::matrix::Matrix::from_fn(r, k, |(i, j)| {
        let v = if transpose { c[(j, i)] } else { c[(i, j)] };
        (v.abs() as f64 * 1e6).round() as i64
    });
    let (_, to) = pathfinding::kuhn_munkres::kuhn_munkres(&w);
    let mut perm = vec![None; da];
    for (i, &j) in to.iter().enumerate() {
        if transpose {
            perm[j] = Some(i);
        } else {
            perm[i] = Some(j);
        }
    }
    let sign = (0..da)
        .map(|i| match perm[i] {
            Some(j) if c[(i, j)] < 0.0 => -1.0,
            _ => 1.0,
        })
        .collect();
    (perm, sign)
}
