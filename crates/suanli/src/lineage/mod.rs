//! 套壳 detection: were model B's weights derived from model A's?
//!
//! Weight-only tests that survive what a re-release does to a parent —
//! quantization, fine-tuning, permuted hidden dimensions / heads /
//! neurons, rescaled Q↔K or up↔down pairs, a rotated residual stream,
//! dropped layers, renamed tensors, experts upcycled from a dense FFN:
//!
//! 1. [`read`]: tensors by layer and role, found from shapes;
//! 2. [`align`]: B's hidden dimensions aligned to A's through the
//!    embedding rows of the tokens both vocabularies share;
//! 3. [`stats`]: per layer pair, unbiased CKA of every role's weights over
//!    the aligned dimensions (against shuffling), and on the best-matching
//!    pair the neuron test (gate and up must match neurons alike);
//! 4. per-layer p-values (the neuron test's; CKA's where a layer has no
//!    FFN) combined by Fisher's method, and a verdict:
//!    `derived` below 1e-6 with at least three layers matched in order, `independent` with no evidence (p > 0.01), `inconclusive`
//!    between.
//!
//! What it cannot see: knowledge distilled through outputs (new weights
//! trained on a teacher's text leave no trace in the weights), and a shared
//! tokenizer or architecture, which is reported but is not evidence.

pub mod align;
pub mod read;
pub mod report;
pub mod stats;

use std::path::PathBuf;

use nalgebra::DMatrix;
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;

pub use read::{Model, Role};
use stats::Kernel;

#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("{path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("tensor {name}: {why}")]
    Tensor { name: String, why: String },
    #[error("{path}: no {what} found")]
    Missing { path: PathBuf, what: String },
    #[error("{a} and {b} share {shared} tokens (by their bytes): too few to align hidden dimensions through")]
    NoSharedTokens {
        a: PathBuf,
        b: PathBuf,
        shared: usize,
    },
}

/// Sampling sizes and the seed; the defaults keep two 1.5B models well
/// under a minute on 2 threads.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// Hidden dimensions the kernels are built over.
    pub dims: usize,
    /// Rows (features) sampled from each matrix that reads the residual.
    pub features: usize,
    /// A's neurons matched in the neuron test.
    pub neurons: usize,
    /// Shuffles in each CKA null.
    pub rounds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 0x5eed,
            dims: 256,
            features: 512,
            neurons: 128,
            rounds: 100,
        }
    }
}

/// One of A's layers and the layer of B it matches best.
#[derive(Clone, Debug)]
pub struct LayerMatch {
    pub a: usize,
    pub b: usize,
    /// Mean CKA over the roles both layers have, and its z-score.
    pub cka: f64,
    pub z: f64,
    /// Neuron test: agreements of the sampled neurons, and (for a mixture
    /// of experts) the expert pair that matched.
    pub neurons: Option<(usize, usize)>,
    pub experts: Option<(usize, usize)>,
    pub log10_p_weights: f64,
    pub log10_p_neurons: Option<f64>,
    /// The layer's p-value: the neuron test's, or the weights' where the
    /// layer has no FFN to test.
    pub log10_p: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Derived,
    Independent,
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Derived => "derived",
            Verdict::Independent => "independent",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Everything `lineage` found about one pair.
pub struct Comparison {
    pub a: Summary,
    pub b: Summary,
    pub shared_tokens: usize,
    pub alignment: align::Alignment,
    /// Mean CKA of every layer pair: A's layers × B's.
    pub similarity: Vec<Vec<f64>>,
    pub layers: Vec<LayerMatch>,
    pub log10_p: f64,
    /// The largest set of A's layers matched in order, each at p < 1e-3
    /// (indices into `layers`).
    pub block: Vec<usize>,
    pub verdict: Verdict,
}

/// A model's metadata, for the triage.
pub struct Summary {
    pub path: PathBuf,
    pub arch: String,
    pub format: &'static str,
    pub d: usize,
    pub layers: usize,
    pub vocab: usize,
    pub parameters: u64,
    pub experts: usize,
}

impl Summary {
    fn of(m: &Model) -> Summary {
        Summary {
            path: m.path.clone(),
            arch: m.arch.clone(),
            format: m.format,
            d: m.d,
            layers: m.layers.len(),
            vocab: m.vocab.len(),
            parameters: m.parameters,
            experts: m
                .layers
                .iter()
                .flat_map(|l| l.expert_in.iter().map(|&i| m.mats[i].experts))
                .max()
                .unwrap_or(0),
        }
    }
}

/// Every role's kernel of every layer of one model over A's dimensions
/// `dims`: A's own columns (`map` `None`), or B's through the alignment.
fn kernels(m: &Model, dims: &[usize], map: Option<&BMap>, o: &Options) -> Vec<Vec<(Role, Kernel)>> {
    m.layers
        .par_iter()
        .map(|l| {
            l.roles
                .iter()
                .map(|(&role, &i)| {
                    // The same rows of a role in every layer and model: a
                    // layer copied under another number samples alike.
                    let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed ^ role as u64);
                    let w = &m.mats[i];
                    let y = if role.reads_residual() {
                        // Readers: the dimensions are columns; a sample of
                        // rows are the features.
                        let f: Vec<usize> = sample(&mut rng, w.rows, o.features.min(w.rows))
                            .into_iter()
                            .collect();
                        match map {
                            None => DMatrix::from_row_slice(f.len(), w.cols, &w.rows(0, &f))
                                .select_columns(dims),
                            Some(bm) => rows_in_a(w, 0, &f, dims, bm),
                        }
                        .transpose()
                    } else {
                        // Writers: the dimensions are rows; columns thinned
                        // to at most 2048 features.
                        let step = w.cols.div_ceil(2048);
                        let keep: Vec<usize> = (0..w.cols).step_by(step).collect();
                        match map {
                            None => DMatrix::from_row_slice(dims.len(), w.cols, &w.rows(0, dims)),
                            Some(BMap::Gather(cols, signs)) => {
                                let mut y =
                                    DMatrix::from_row_slice(cols.len(), w.cols, &w.rows(0, cols));
                                for (mut r, &s) in y.row_iter_mut().zip(signs) {
                                    r *= s;
                                }
                                y
                            }
                            Some(BMap::Dense(t)) => {
                                let all: Vec<usize> = (0..w.rows).collect();
                                t.transpose()
                                    * DMatrix::from_row_slice(w.rows, w.cols, &w.rows(0, &all))
                            }
                        }
                        .select_columns(&keep)
                    };
                    (role, Kernel::new(y))
                })
                .collect()
        })
        .collect()
}

/// B's rows of `mat` (expert `e`) in A's coordinates `dims`.
fn rows_in_a(
    mat: &read::Mat,
    e: usize,
    rows: &[usize],
    dims: &[usize],
    b_map: &BMap,
) -> DMatrix<f32> {
    let y = DMatrix::from_row_slice(rows.len(), mat.cols, &mat.rows(e, rows));
    match b_map {
        BMap::Gather(cols, signs) => {
            let mut g = y.select_columns(cols);
            for (mut c, &s) in g.column_iter_mut().zip(signs) {
                c *= s;
            }
            g
        }
        BMap::Dense(t) => {
            debug_assert_eq!(t.ncols(), dims.len());
            y * t
        }
    }
}

enum BMap {
    /// B's dimension for each of A's, and its sign.
    Gather(Vec<usize>, Vec<f32>),
    Dense(DMatrix<f32>),
}

/// The (gate, up) sources of a layer's neurons: the dense pair, or each
/// expert of a stack (at most 16).
fn neuron_sources(m: &Model, l: &read::LayerMats) -> Vec<(usize, usize, usize)> {
    if let (Some(&g), Some(&u)) = (l.roles.get(&Role::Gate), l.roles.get(&Role::Up)) {
        return vec![(g, u, 0)];
    }
    if l.expert_in.len() >= 2 {
        let mut s = l.expert_in.clone();
        s.sort_by_key(|&i| (!m.mats[i].name.contains("gate"), i));
        let ne = m.mats[s[0]].experts.min(m.mats[s[1]].experts).min(16);
        return (0..ne).map(|e| (s[0], s[1], e)).collect();
    }
    Vec::new()
}

/// Compares `a` (the presumed parent) with `b`.
pub fn compare(
    a: &Model,
    b: &Model,
    o: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Comparison, LineageError> {
    progress("aligning hidden dimensions through shared tokens");
    let al = align::align(a, b, o.seed)?;
    let matched = al.matched();
    let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed);
    let mut dims: Vec<usize> = sample(&mut rng, matched.len(), o.dims.min(matched.len()))
        .into_iter()
        .map(|k| matched[k])
        .collect();
    dims.sort_unstable();
    let b_map = match &al.rotation {
        Some(_) => BMap::Dense(al.map(b.d, &dims)),
        None => BMap::Gather(
            dims.iter().map(|&i| al.perm[i].unwrap_or(0)).collect(),
            dims.iter().map(|&i| al.sign[i]).collect(),
        ),
    };
    progress("layer kernels");
    let ka = kernels(a, &dims, None, o);
    let kb = kernels(b, &dims, Some(&b_map), o);
    progress("layer similarities");
    let similarity: Vec<Vec<f64>> = ka
        .par_iter()
        .map(|ra| {
            kb.iter()
                .map(|rb| {
                    let v: Vec<f64> = ra
                        .iter()
                        .filter_map(|(role, k)| {
                            let (_, l) = rb.iter().find(|(r, _)| r == role)?;
                            Some(stats::cka(k, l))
                        })
                        .collect();
                    if v.is_empty() {
                        0.0
                    } else {
                        v.iter().sum::<f64>() / v.len() as f64
                    }
                })
                .collect()
        })
        .collect();
    progress("per-layer tests");
    let nb = b.layers.len().max(1);
    let layers: Vec<LayerMatch> = (0..a.layers.len())
        .into_par_iter()
        .map(|i| {
            let row = &similarity[i];
            let j = (0..row.len())
                .max_by(|&x, &y| row[x].total_cmp(&row[y]))
                .unwrap_or(0);
            let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed ^ (i as u64) << 20);
            let pairs: Vec<(&Kernel, &Kernel)> = ka[i]
                .iter()
                .filter_map(|(role, k)| {
                    let (_, l) = kb[j].iter().find(|(r, _)| r == role)?;
                    Some((k, l))
                })
                .collect();
            let (_, z) = stats::layer_z(&pairs, o.rounds, &mut rng);
            // The best of B's layers was chosen: Šidák over them.
            let log10_p_weights = stats::log10_sidak(stats::log10_normal_tail(z), nb);
            let nr = neuron_pair(a, b, i, j, &dims, &b_map, o, &mut rng);
            let log10_p_neurons = nr.as_ref().map(|n| n.log10_p);
            let neurons = nr.as_ref().map(|n| n.agree);
            let many = |l: &read::LayerMats| l.expert_in.len() >= 2;
            let experts = nr
                .as_ref()
                .filter(|_| many(&a.layers[i]) || many(&b.layers[j]))
                .map(|n| n.experts);
            // The neuron test decides where there is an FFN to test: its
            // null (two matchings agreeing by chance) holds for models
            // trained apart on the same data, whose weights in aligned
            // coordinates do resemble each other by convergence — two tiny
            // models trained from scratch with different seeds score CKA z
            // 25–53 and agree on 0–2 of 128 neurons. CKA maps the layers,
            // and decides only for a layer without an FFN.
            let log10_p = log10_p_neurons.unwrap_or(log10_p_weights);
            LayerMatch {
                a: a.layers[i].index,
                b: b.layers[j].index,
                cka: row[j],
                z,
                neurons,
                experts,
                log10_p_weights,
                log10_p_neurons,
                log10_p,
            }
        })
        .collect();
    let log10_p = stats::log10_fisher(&layers.iter().map(|l| l.log10_p).collect::<Vec<_>>());
    let block = ordered_chain(&layers);
    let need = 3.min(layers.len());
    let verdict = if log10_p < -6.0 && block.len() >= need {
        Verdict::Derived
    } else if log10_p > -2.0 {
        Verdict::Independent
    } else {
        Verdict::Inconclusive
    };
    Ok(Comparison {
        a: Summary::of(a),
        b: Summary::of(b),
        shared_tokens: al.shared_tokens,
        alignment: al,
        similarity,
        layers,
        log10_p,
        block,
        verdict,
    })
}

/// What the neuron test found for a layer pair: the sampled neurons'
/// agreements (of how many), the expert pair where experts were tried, and
/// log10 p.
struct NeuronResult {
    agree: (usize, usize),
    experts: (usize, usize),
    log10_p: f64,
}

/// The neuron test of A's layer `i` against B's layer `j` (every pair of
/// neuron sources, Šidák over them); `None` where a side has no gate and
/// up to test.
#[allow(clippy::too_many_arguments)]
fn neuron_pair(
    a: &Model,
    b: &Model,
    i: usize,
    j: usize,
    dims: &[usize],
    b_map: &BMap,
    o: &Options,
    rng: &mut impl rand::Rng,
) -> Option<NeuronResult> {
    let (sa, sb) = (
        neuron_sources(a, &a.layers[i]),
        neuron_sources(b, &b.layers[j]),
    );
    let tries = sa.len() * sb.len();
    let mut best: Option<NeuronResult> = None;
    for &(ga, ua, ea) in &sa {
        let (gm, um) = (&a.mats[ga], &a.mats[ua]);
        let picked: Vec<usize> = sample(rng, gm.rows, o.neurons.min(gm.rows))
            .into_iter()
            .collect();
        let g_a = DMatrix::from_row_slice(picked.len(), gm.cols, &gm.rows(ea, &picked))
            .select_columns(dims);
        let u_a = DMatrix::from_row_slice(picked.len(), um.cols, &um.rows(ea, &picked))
            .select_columns(dims);
        for &(gb, ub, eb) in &sb {
            let (gbm, ubm) = (&b.mats[gb], &b.mats[ub]);
            let all: Vec<usize> = (0..gbm.rows.min(ubm.rows)).collect();
            let g_b = rows_in_a(gbm, eb, &all, dims, b_map);
            let u_b = rows_in_a(ubm, eb, &all, dims, b_map);
            let (agree, m, lp) = stats::neuron_test(&g_a, &u_a, &g_b, &u_b, rng.random());
            if best.as_ref().is_none_or(|b| lp < b.log10_p) {
                best = Some(NeuronResult {
                    agree: (agree, m),
                    experts: (ea, eb),
                    log10_p: lp,
                });
            }
        }
    }
    best.map(|b| NeuronResult {
        log10_p: stats::log10_sidak(b.log10_p, tries),
        ..b
    })
}

/// The largest set of layers at p < 1e-3 whose B layers rise with A's
/// (a longest increasing chain: dropped or inserted layers leave gaps, not
/// breaks), as indices into `layers`.
fn ordered_chain(layers: &[LayerMatch]) -> Vec<usize> {
    let ok: Vec<usize> = (0..layers.len())
        .filter(|&k| layers[k].log10_p < -3.0)
        .collect();
    // O(n²) longest increasing subsequence by B layer.
    let (mut len, mut prev) = (vec![1usize; ok.len()], vec![usize::MAX; ok.len()]);
    for x in 0..ok.len() {
        for y in 0..x {
            if layers[ok[y]].b < layers[ok[x]].b && len[y] + 1 > len[x] {
                len[x] = len[y] + 1;
                prev[x] = y;
            }
        }
    }
    let Some(mut at) = (0..ok.len()).max_by_key(|&x| (len[x], usize::MAX - x)) else {
        return Vec::new();
    };
    let mut chain = vec![ok[at]];
    while prev[at] != usize::MAX {
        at = prev[at];
        chain.push(ok[at]);
    }
    chain.reverse();
    chain
}
