//! The fast attention returns the reference's bits at every SIMD level this
//! CPU has, and both agree with a plain f64 softmax attention.

use half::f16;
use rand::{Rng, SeedableRng};
use suanli_kernels::attention::{attention, attention_reference, AttnShape, Kv, Pages};
use suanli_kernels::dispatch;

struct Case {
    shape: AttnShape<'static>,
    n: usize,
    pos0: usize,
    /// The values are the keys' first `head_dim_v` elements (latent
    /// attention's cache: one buffer, `v_stride == k_stride`).
    latent: bool,
}

fn shape(
    nh: usize,
    nkv: usize,
    hd: usize,
    window: Option<usize>,
    softcap: Option<f32>,
) -> AttnShape<'static> {
    AttnShape {
        n_head: nh,
        n_head_kv: nkv,
        head_dim: hd,
        head_dim_v: hd,
        k_stride: nkv * hd,
        v_stride: nkv * hd,
        scale: 1.0 / (hd as f32).sqrt(),
        softcap,
        window,
        pages: Pages::CONTIGUOUS,
        sinks: None,
    }
}

/// Attention in f64 with an exact softmax, from the same (rounded) inputs.
fn naive(c: &Case, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let s = &c.shape;
    let (nh, hd, hdv) = (s.n_head, s.head_dim, s.head_dim_v);
    let group = nh / s.n_head_kv;
    let mut out = vec![0f32; c.n * nh * hdv];
    for t in 0..c.n {
        let p = c.pos0 + t;
        for h in 0..nh {
            let kvh = h / group;
            let first = s.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let qh = &q[(t * nh + h) * hd..][..hd];
            let sc: Vec<f64> = (first..=p)
                .map(|j| {
                    let kj = &k[j * s.k_stride + kvh * hd..][..hd];
                    let d: f64 = qh.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let x = d * s.scale as f64;
                    s.softcap.map_or(x, |c| c as f64 * (x / c as f64).tanh())
                })
                .collect();
            let sink = s.sinks.map(|k| k[h] as f64);
            let m = sc
                .iter()
                .cloned()
                .chain(sink)
                .fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
            // A sink joins the softmax's sum with no value.
            let z: f64 = e.iter().sum::<f64>() + sink.map_or(0.0, |k| (k - m).exp());
            let o = &mut out[(t * nh + h) * hdv..][..hdv];
            for (j, w) in (first..=p).zip(&e) {
                let vj = &v[j * s.v_stride + kvh * hdv..][..hdv];
                for (o, x) in o.iter_mut().zip(vj) {
                    *o += (w / z * *x as f64) as f32;
                }
            }
        }
    }
    out
}

#[test]
fn fast_attention_equals_the_reference_and_f64() {
    eprintln!("kernels: {}", dispatch::isa());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut cases = Vec::new();
    for (nh, nkv, hd, window, cap) in [
        (9, 3, 64, None, None),       // SmolLM2
        (14, 2, 64, None, None),      // Qwen2.5 0.5B
        (4, 1, 256, Some(40), None),  // Gemma 3 local layer
        (4, 2, 80, None, Some(50.0)), // tail lanes, soft cap
        (2, 2, 72, Some(100), None),
        (20, 1, 64, None, None), // a KV group wider than the per-row kernel's
    ] {
        for (n, pos0) in [
            (1, 0),
            (1, 130),
            (5, 37),
            (63, 2),
            (64, 0),
            (100, 37),
            (70, 129),
            (1, 300),  // one token past llama.cpp's split point: a key range per thread
            (1, 1100), // … and past Gemma's window
        ] {
            cases.push(Case {
                shape: shape(nh, nkv, hd, window, cap),
                n,
                pos0,
                latent: false,
            });
        }
    }
    // gpt-oss's attention sinks (one logit per head; some above every
    // score, some below), on a windowed and a full layer.
    let sinks: &'static [f32] = Box::leak(vec![-1.5, 0.3, 9.0, 2.0, -8.0, 12.0].into_boxed_slice());
    for window in [Some(4), None] {
        for (n, pos0) in [(1, 0), (1, 130), (5, 37), (64, 0), (70, 129), (1, 300)] {
            let mut sh = shape(6, 2, 64, window, None);
            sh.sinks = Some(sinks);
            cases.push(Case {
                shape: sh,
                n,
                pos0,
                latent: false,
            });
        }
    }
    // DeepSeek's latent attention: 16 query heads over one 576-wide key
    // head whose first 512 values are the value.
    for (n, pos0) in [(1, 0), (1, 130), (5, 37), (64, 0), (70, 129), (1, 300)] {
        let mut sh = shape(16, 1, 576, None, None);
        sh.head_dim_v = 512;
        sh.scale = 0.1147;
        cases.push(Case {
            shape: sh,
            n,
            pos0,
            latent: true,
        });
    }
    let mut max_err = 0f32;
    for c in &cases {
        let s = &c.shape;
        let len = c.pos0 + c.n;
        let q: Vec<f32> = (0..c.n * s.n_head * s.head_dim)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let k: Vec<f32> = (0..len * s.k_stride)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let v: Vec<f32> = match c.latent {
            true => k.clone(),
            false => (0..len * s.v_stride)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
        };
        let kh: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
        let vh: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        let widened = |x: &[f16]| x.iter().map(|h| h.to_f32()).collect::<Vec<_>>();
        // Q8_0 rows where the widths allow (multiples of 32).
        let q8 = |x: &[f32]| {
            let mut b = vec![0u8; x.len() / 32 * 34];
            suanli_kernels::quants::legacy::quantize_q8_0(x, &mut b);
            let mut back = vec![0f32; x.len()];
            suanli_kernels::quants::legacy::dequantize_q8_0(&b, &mut back);
            (b, back)
        };
        let q8_ok = s.head_dim % 32 == 0 && s.k_stride % 32 == 0;
        let (kq8, kq8f) = if q8_ok {
            q8(&k)
        } else {
            (Vec::new(), Vec::new())
        };
        let (vq8, vq8f) = if q8_ok {
            q8(&v)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut caches = vec![
            (
                "f16",
                Kv::F16(&kh),
                Kv::F16(&vh),
                widened(&kh),
                widened(&vh),
            ),
            ("f32", Kv::F32(&k), Kv::F32(&v), k.clone(), v.clone()),
        ];
        if q8_ok {
            caches.push((
                "q8_0",
                Kv::Q8_0(&kq8),
                Kv::Q8_0(&vq8),
                kq8f.clone(),
                vq8f.clone(),
            ));
        }
        for (name, keys, values, kf, vf) in caches {
            let width = c.n * s.n_head * s.head_dim_v;
            let mut want = vec![f32::NAN; width];
            let mut got = vec![f32::NAN; width];
            attention_reference(s, &q, c.n, c.pos0, keys, values, &mut want);
            attention(s, &q, c.n, c.pos0, keys, values, &mut got);
            let what = format!("{name} cache, {s:?}, n {} at {}", c.n, c.pos0);
            for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{what}: element {i}: {a} vs {b}");
            }
            // The per-row f16 kernel rounds Q and its accumulator to f16
            // (the latent case's values are its keys: twice the range).
            let tol = if name == "f16" && c.n < 64 {
                4e-3
            } else {
                1e-5
            };
            let tol = if c.latent { 2.0 * tol } else { tol };
            for (a, b) in naive(c, &q, &kf, &vf).iter().zip(&want) {
                let e = (a - b).abs();
                assert!(e <= tol, "{what}: {a} vs f64 {b}");
                max_err = max_err.max(e);
            }
        }
    }
    eprintln!("{} cases, max |Δ| against f64: {max_err:e}", cases.len());
}

/// A paged cache (blocks of 16 positions in shuffled order, among unused
/// blocks) gives the bits of the same rows stored contiguously, for both
/// kernels and every cache type.
#[test]
fn paged_attention_equals_contiguous() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    const B: usize = 16;
    for (nh, nkv, hd, window) in [(14, 2, 64, None), (4, 1, 256, Some(40))] {
        for (n, pos0) in [(1usize, 0usize), (1, 77), (3, 30), (64, 0), (70, 45)] {
            let base = shape(nh, nkv, hd, window, None);
            let len = pos0 + n;
            let nblk = len.div_ceil(B);
            let pool_blocks = nblk * 2 + 3;
            // A random injective block table.
            let mut free: Vec<u32> = (0..pool_blocks as u32).collect();
            let table: Vec<u32> = (0..nblk)
                .map(|_| free.swap_remove(rng.random_range(0..free.len())))
                .collect();
            let w = base.k_stride;
            let k: Vec<f32> = (0..len * w).map(|_| rng.random_range(-2.0..2.0)).collect();
            let v: Vec<f32> = (0..len * w).map(|_| rng.random_range(-1.0..1.0)).collect();
            let q: Vec<f32> = (0..n * nh * hd)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let mut kp = vec![f32::NAN; pool_blocks * B * w];
            let mut vp = vec![f32::NAN; pool_blocks * B * w];
            let pages = Pages::new(&table, B);
            for j in 0..len {
                let r = pages.row(j);
                kp[r * w..(r + 1) * w].copy_from_slice(&k[j * w..(j + 1) * w]);
                vp[r * w..(r + 1) * w].copy_from_slice(&v[j * w..(j + 1) * w]);
            }
            let paged = AttnShape { pages, ..base };
            let h = |x: &[f32]| x.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
            let (kh, vh, kph, vph) = (h(&k), h(&v), h(&kp), h(&vp));
            let q8 = |x: &[f32]| {
                let mut b = vec![0u8; x.len() / 32 * 34];
                // NaN rows of unused blocks quantize to garbage; never read.
                let x: Vec<f32> = x
                    .iter()
                    .map(|v| if v.is_nan() { 0.0 } else { *v })
                    .collect();
                suanli_kernels::quants::legacy::quantize_q8_0(&x, &mut b);
                b
            };
            let (kq, vq, kpq, vpq) = (q8(&k), q8(&v), q8(&kp), q8(&vp));
            let cases = [
                ("f32", Kv::F32(&k), Kv::F32(&v), Kv::F32(&kp), Kv::F32(&vp)),
                (
                    "f16",
                    Kv::F16(&kh),
                    Kv::F16(&vh),
                    Kv::F16(&kph),
                    Kv::F16(&vph),
                ),
                (
                    "q8_0",
                    Kv::Q8_0(&kq),
                    Kv::Q8_0(&vq),
                    Kv::Q8_0(&kpq),
                    Kv::Q8_0(&vpq),
                ),
            ];
            for (name, kc, vc, kpc, vpc) in cases {
                let width = n * nh * hd;
                let mut want = vec![0f32; width];
                let mut got = vec![0f32; width];
                let mut got_ref = vec![0f32; width];
                attention(&base, &q, n, pos0, kc, vc, &mut want);
                attention(&paged, &q, n, pos0, kpc, vpc, &mut got);
                attention_reference(&paged, &q, n, pos0, kpc, vpc, &mut got_ref);
                for (i, ((a, b), c)) in want.iter().zip(&got).zip(&got_ref).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits() && a.to_bits() == c.to_bits(),
                        "{name} n {n} at {pos0}, element {i}: {a} contiguous, {b} paged, {c} paged reference"
                    );
                }
            }
        }
    }
}
