//! Every registered architecture: a tiny random GGUF model (written by
//! suanli's own writer) loads, and prefill + one-token decode steps give the
//! same logits as one pass over the whole sequence.

use suanli_models::arch::REGISTRY;
use suanli_models::tiny::variants;
use suanli_models::{ForwardCtx, KvDtype, Logits};

/// A variant's name in messages and file names (`llama+moe`: Mixtral).
fn label(arch: &str, moe: bool) -> String {
    let dense_arch = REGISTRY.iter().any(|e| e.name == arch && !e.moe);
    if moe && dense_arch {
        format!("{arch}+moe")
    } else {
        arch.to_string()
    }
}

#[test]
fn every_architecture_prefills_and_decodes_consistently() {
    assert!(REGISTRY.len() >= 6);
    let dir = std::env::temp_dir().join(format!("suanli-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tokens: Vec<u32> = vec![72, 101, 108, 108, 111, 32, 119, 111, 114, 108];
    for (arch, moe) in variants() {
        let name = label(arch, moe);
        let path = dir.join(format!("{name}.gguf"));
        suanli_models::tiny::write_tiny(arch, moe, &path, 7).expect("write");
        let model = suanli_models::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.active_expert_bytes() > 0, moe, "{name}");
        assert_eq!(model.config().arch, arch);
        let nv = model.config().n_vocab;
        for dtype in [KvDtype::F16, KvDtype::F32] {
            let mut kv = model.new_cache(32, dtype);
            let all = model
                .forward(&tokens, &mut ForwardCtx::new(&mut kv, Logits::All))
                .expect("forward");
            assert_eq!(all.len(), tokens.len() * nv);
            assert!(
                all.iter().all(|v| v.is_finite()),
                "{}: non-finite logits",
                name
            );
            let mut kv = model.new_cache(32, dtype);
            let mut last = model
                .forward(&tokens[..4], &mut ForwardCtx::new(&mut kv, Logits::Last))
                .expect("prefill");
            for p in 4..tokens.len() {
                let want = &all[(p - 1) * nv..p * nv];
                let d = last
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    d <= 1e-4,
                    "{} {dtype:?}: position {}: decode differs from the batch by {d}",
                    name,
                    p - 1
                );
                last = model
                    .forward(
                        &tokens[p..p + 1],
                        &mut ForwardCtx::new(&mut kv, Logits::Last),
                    )
                    .expect("decode");
            }
            // The context limit is enforced, not overrun.
            let mut small = model.new_cache(4, dtype);
            let err = model.forward(&tokens, &mut ForwardCtx::new(&mut small, Logits::Last));
            assert!(
                matches!(err, Err(suanli_models::ModelError::ContextFull { .. })),
                "{}: context overflow not reported",
                name
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Several sequences in one batched pass over a paged pool (blocks of 4 in
/// scattered order) give each sequence the logits it gets alone, through
/// prefill and joint decode steps.
#[test]
fn every_architecture_batches_sequences_like_single_runs() {
    use suanli_models::{Batch, Pages, SeqSpan};
    let dir = std::env::temp_dir().join(format!("suanli-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let prompts: [&[u32]; 3] = [
        &[72, 101, 108, 108, 111, 32, 119],
        &[5, 9],
        &[33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43],
    ];
    const B: usize = 4;
    for (arch, moe) in variants() {
        let name = label(arch, moe);
        let path = dir.join(format!("{name}.gguf"));
        suanli_models::tiny::write_tiny(arch, moe, &path, 3).expect("write");
        let model = suanli_models::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.active_expert_bytes() > 0, moe, "{name}");
        let nv = model.config().n_vocab;
        let steps = 3;
        // Alone: prompt (all logits), then `steps` decode steps of fixed tokens.
        let alone: Vec<Vec<f32>> = prompts
            .iter()
            .map(|p| {
                let mut kv = model.new_cache(32, KvDtype::F32);
                let mut out = model
                    .forward(p, &mut ForwardCtx::new(&mut kv, Logits::All))
                    .expect("prefill");
                for s in 0..steps {
                    out.extend(
                        model
                            .forward(&[s as u32 + 1], &mut ForwardCtx::new(&mut kv, Logits::Last))
                            .expect("decode"),
                    );
                }
                out
            })
            .collect();
        // Together: blocks handed out interleaved from the back of the pool.
        let mut pool = model.new_pool(40, B, KvDtype::F32);
        let tables: Vec<Vec<u32>> = (0..3)
            .map(|i| (0..5).map(|b| 39 - (b * 3 + i) as u32).collect())
            .collect();
        let mut got: Vec<Vec<f32>> = vec![Vec::new(); 3];
        let spans: Vec<SeqSpan> = (0..3)
            .map(|i| SeqSpan {
                n: prompts[i].len(),
                pos0: 0,
                pages: Pages::new(&tables[i], B),
                logits: Logits::All,
            })
            .collect();
        let tokens: Vec<u32> = prompts.concat();
        let mut batch = Batch::new(&mut pool, &spans, None).expect("batch");
        let out = model
            .forward_batch(&tokens, &mut batch)
            .expect("batched prefill");
        let mut at = 0;
        for (i, p) in prompts.iter().enumerate() {
            got[i].extend_from_slice(&out[at..at + p.len() * nv]);
            at += p.len() * nv;
        }
        for s in 0..steps {
            let spans: Vec<SeqSpan> = (0..3)
                .map(|i| SeqSpan {
                    n: 1,
                    pos0: prompts[i].len() + s,
                    pages: Pages::new(&tables[i], B),
                    logits: Logits::Last,
                })
                .collect();
            let mut batch = Batch::new(&mut pool, &spans, None).expect("batch");
            let out = model
                .forward_batch(&[s as u32 + 1; 3], &mut batch)
                .expect("batched decode");
            for (i, g) in got.iter_mut().enumerate() {
                g.extend_from_slice(&out[i * nv..(i + 1) * nv]);
            }
        }
        for i in 0..3 {
            assert_eq!(got[i].len(), alone[i].len());
            let d = got[i]
                .iter()
                .zip(&alone[i])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-4, "{}: sequence {i} differs by {d}", name);
        }
        // A table that does not cover the span is an error, not a panic.
        let short = [SeqSpan {
            n: 6,
            pos0: 0,
            pages: Pages::new(&tables[0][..1], B),
            logits: Logits::Last,
        }];
        assert!(matches!(
            Batch::new(&mut pool, &short, None),
            Err(suanli_models::ModelError::ContextFull { .. })
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
