//! `lineage`'s statistics on small synthetic models where the answer is
//! known: a copy with its hidden dimensions, heads and neurons permuted
//! (and noise, as fine-tuning leaves) is derived, so is a rotated one and
//! one with a layer dropped (the mapping shows the gap); independent random
//! models are not, and their p-values spread over (0, 1] rather than pile
//! near zero.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr_free::normal;
use suanli::lineage::{compare, Model, Options, Verdict};
use suanli_kernels::{Blob, DType};

/// Standard normal samples without another crate (Box–Muller).
mod rand_distr_free {
    use rand::Rng;
    pub fn normal(rng: &mut impl Rng) -> f32 {
        let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

const D: usize = 64;
const VOCAB: usize = 600;
const HEADS: usize = 4;
const KV: usize = 2;
const HD: usize = 16;
const FF: usize = 160;

/// A matrix, row-major, `rows × cols`.
#[derive(Clone)]
struct M {
    rows: usize,
    cols: usize,
    v: Vec<f32>,
}

impl M {
    fn random(rng: &mut impl Rng, rows: usize, cols: usize) -> M {
        M {
            rows,
            cols,
            v: (0..rows * cols).map(|_| normal(rng)).collect(),
        }
    }
    fn at(&self, r: usize, c: usize) -> f32 {
        self.v[r * self.cols + c]
    }
    fn map(&self, rows: usize, cols: usize, f: impl Fn(usize, usize) -> f32) -> M {
        M {
            rows,
            cols,
            v: (0..rows * cols).map(|i| f(i / cols, i % cols)).collect(),
        }
    }
    fn noisy(&self, rng: &mut impl Rng, s: f32) -> M {
        M {
            v: self.v.iter().map(|x| x + s * normal(rng)).collect(),
            ..self.clone()
        }
    }
}

/// Embedding, then per layer q, k, v, o, gate, up, down.
#[derive(Clone)]
struct Net {
    embd: M,
    layers: Vec<[M; 7]>,
}

fn random_net(rng: &mut impl Rng, layers: usize) -> Net {
    Net {
        embd: M::random(rng, VOCAB, D),
        layers: (0..layers)
            .map(|_| {
                [
                    M::random(rng, HEADS * HD, D),
                    M::random(rng, KV * HD, D),
                    M::random(rng, KV * HD, D),
                    M::random(rng, D, HEADS * HD),
                    M::random(rng, FF, D),
                    M::random(rng, FF, D),
                    M::random(rng, D, FF),
                ]
            })
            .collect(),
    }
}

/// The function-preserving permutations (residual dims with signs, KV
/// heads with their query groups, neurons), scales (Q↔K, up↔down), then
/// noise of `noise` relative to the weights.
fn permuted(net: &Net, rng: &mut impl Rng, noise: f32) -> Net {
    let mut p: Vec<usize> = (0..D).collect();
    p.shuffle(rng);
    let s: Vec<f32> = (0..D)
        .map(|_| if rng.random() { 1.0 } else { -1.0 })
        .collect();
    let read = |m: &M| m.map(m.rows, D, |r, c| m.at(r, p[c]) * s[c]);
    let write = |m: &M| m.map(D, m.cols, |r, c| m.at(p[r], c) * s[r]);
    let layers = net
        .layers
        .iter()
        .map(|[q, k, v, o, g, u, dn]| {
            let mut kv: Vec<usize> = (0..KV).collect();
            kv.shuffle(rng);
            let group = HEADS / KV;
            let qh: Vec<usize> = (0..HEADS)
                .map(|h| kv[h / group] * group + h % group)
                .collect();
            let mut nr: Vec<usize> = (0..FF).collect();
            nr.shuffle(rng);
            let (q, k, v, o) = (read(q), read(k), read(v), write(o));
            let q = q.map(q.rows, D, |r, c| 2.0 * q.at(qh[r / HD] * HD + r % HD, c));
            let k = k.map(k.rows, D, |r, c| 0.5 * k.at(kv[r / HD] * HD + r % HD, c));
            let v = v.map(v.rows, D, |r, c| v.at(kv[r / HD] * HD + r % HD, c));
            let o = o.map(D, o.cols, |r, c| o.at(r, qh[c / HD] * HD + c % HD));
            let (g, u, dn) = (read(g), read(u), write(dn));
            let g = g.map(FF, D, |r, c| g.at(nr[r], c));
            let u = u.map(FF, D, |r, c| 3.0 * u.at(nr[r], c));
            let dn = dn.map(D, FF, |r, c| dn.at(r, nr[c]) / 3.0);
            [q, k, v, o, g, u, dn].map(|m| m.noisy(rng, noise))
        })
        .collect();
    Net {
        embd: read(&net.embd).noisy(rng, noise),
        layers,
    }
}

/// A random orthogonal `D × D` matrix (Gram–Schmidt of a normal one).
fn orthogonal(rng: &mut impl Rng) -> M {
    let mut q = M::random(rng, D, D);
    for i in 0..D {
        for j in 0..i {
            let dot: f32 = (0..D).map(|k| q.at(i, k) * q.at(j, k)).sum();
            for k in 0..D {
                q.v[i * D + k] -= dot * q.v[j * D + k];
            }
        }
        let n: f32 = (0..D).map(|k| q.at(i, k).powi(2)).sum::<f32>().sqrt();
        for k in 0..D {
            q.v[i * D + k] /= n;
        }
    }
    q
}

fn rotated(net: &Net, rng: &mut impl Rng) -> Net {
    let r = orthogonal(rng);
    // Readers W·R, writers Rᵀ·W.
    let read = |m: &M| {
        m.map(m.rows, D, |i, j| {
            (0..D).map(|k| m.at(i, k) * r.at(k, j)).sum()
        })
    };
    let write = |m: &M| {
        m.map(D, m.cols, |i, j| {
            (0..D).map(|k| r.at(k, i) * m.at(k, j)).sum()
        })
    };
    Net {
        embd: read(&net.embd),
        layers: net
            .layers
            .iter()
            .map(|[q, k, v, o, g, u, dn]| {
                [
                    read(q),
                    read(k),
                    read(v),
                    write(o),
                    read(g),
                    read(u),
                    write(dn),
                ]
            })
            .collect(),
    }
}

fn model(net: &Net, name: &str) -> Model {
    let blob = |m: &M| {
        let bytes: Vec<u8> = m.v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Blob::from_vec(bytes)
    };
    let mut raw = vec![(
        "token_embd.weight".to_string(),
        DType::F32,
        vec![VOCAB, D],
        blob(&net.embd),
    )];
    let names = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    for (i, l) in net.layers.iter().enumerate() {
        for (m, n) in l.iter().zip(names) {
            raw.push((
                format!("blk.{i}.{n}.weight"),
                DType::F32,
                vec![m.rows, m.cols],
                blob(m),
            ));
        }
    }
    let vocab = (0..VOCAB).map(|t| format!("tok{t}").into_bytes()).collect();
    Model::from_parts(Path::new(name), "synthetic".into(), "test", raw, vocab, 0).expect("model")
}

fn options() -> Options {
    Options {
        dims: D,
        ..Options::default()
    }
}

#[test]
fn a_permuted_rescaled_noisy_copy_is_derived() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let a = random_net(&mut rng, 4);
    let b = permuted(&a, &mut rng, 0.3);
    let c = compare(&model(&a, "a"), &model(&b, "b"), &options(), &mut |_| {}).expect("compare");
    assert_eq!(c.verdict, Verdict::Derived, "log10 p {}", c.log10_p);
    assert!(c.alignment.rotation.is_none());
    assert!(
        c.alignment.perm_quality > 0.9,
        "{}",
        c.alignment.perm_quality
    );
    assert!(c.alignment.identity_fraction() < 0.2);
    let map: Vec<(usize, usize)> = c.layers.iter().map(|l| (l.a, l.b)).collect();
    assert_eq!(map, vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    assert!(c
        .layers
        .iter()
        .all(|l| l.neurons.is_some_and(|(k, m)| k * 10 >= m * 9)));
}

#[test]
fn a_rotated_copy_is_derived_and_a_dropped_layer_shows() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let a = random_net(&mut rng, 4);
    let b = rotated(&a, &mut rng);
    let c = compare(&model(&a, "a"), &model(&b, "b"), &options(), &mut |_| {}).expect("compare");
    assert_eq!(c.verdict, Verdict::Derived, "log10 p {}", c.log10_p);
    assert!(c.alignment.rotation.is_some());
    let mut d = permuted(&a, &mut rng, 0.1);
    d.layers.remove(2);
    let c = compare(&model(&a, "a"), &model(&d, "d"), &options(), &mut |_| {}).expect("compare");
    assert_eq!(c.verdict, Verdict::Derived);
    let map: Vec<(usize, usize)> = c.layers.iter().map(|l| (l.a, l.b)).collect();
    assert_eq!((map[0], map[1], map[3]), ((0, 0), (1, 1), (3, 2)));
    // The dropped layer matches nothing: its p is far above the others'.
    assert!(c.layers[2].log10_p > -3.0, "{}", c.layers[2].log10_p);
}

#[test]
fn independent_models_are_not_derived_and_their_p_values_spread() {
    let mut ps = Vec::new();
    for seed in 0..24u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(100 + seed);
        let a = random_net(&mut rng, 4);
        let b = random_net(&mut rng, 4);
        let o = Options { seed, ..options() };
        let c = compare(&model(&a, "a"), &model(&b, "b"), &o, &mut |_| {}).expect("compare");
        assert_ne!(
            c.verdict,
            Verdict::Derived,
            "seed {seed}: log10 p {}",
            c.log10_p
        );
        ps.push(10f64.powf(c.log10_p));
    }
    ps.sort_by(f64::total_cmp);
    // Kolmogorov–Smirnov distance from the uniform: 0.27 is its 5% critical
    // value for 24 samples.
    let n = ps.len() as f64;
    let ks = ps
        .iter()
        .enumerate()
        .map(|(i, &p)| (p - i as f64 / n).abs().max(((i + 1) as f64 / n - p).abs()))
        .fold(0f64, f64::max);
    assert!(ks < 0.27, "p-values {ps:?} (KS distance {ks:.3})");
    assert!(ps.iter().filter(|&&p| p < 0.01).count() <= 2, "{ps:?}");
}

#[test]
fn bad_input_is_an_error_naming_what_is_missing() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let a = model(&random_net(&mut rng, 2), "a");
    // No tokens in common.
    let net = random_net(&mut rng, 2);
    let blob = |m: &M| Blob::from_vec(m.v.iter().flat_map(|x| x.to_le_bytes()).collect());
    let raw = vec![(
        "token_embd.weight".to_string(),
        DType::F32,
        vec![VOCAB, D],
        blob(&net.embd),
    )];
    let other: Vec<Vec<u8>> = (0..VOCAB)
        .map(|t| format!("other{t}").into_bytes())
        .collect();
    // Only an embedding: no attention to compare.
    let e = Model::from_parts(
        Path::new("bare.gguf"),
        "x".into(),
        "test",
        raw,
        other.clone(),
        0,
    )
    .err()
    .expect("a model without layers is refused");
    assert!(
        e.to_string().contains("bare.gguf") && e.to_string().contains("attention"),
        "{e}"
    );
    let mut b = model(&net, "b");
    b.vocab = other;
    let e = compare(&a, &b, &options(), &mut |_| {})
        .err()
        .expect("no shared tokens");
    assert!(e.to_string().contains("share 0 tokens"), "{e}");
    // A file that is not a model.
    let dir = std::env::temp_dir().join(format!("suanli-lineage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").expect("write");
    let e = Model::open(&junk).err().expect("junk is refused");
    assert!(e.to_string().contains("junk.gguf"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
