//! Every registered architecture: a tiny random GGUF model (written by
//! suanli's own writer) loads, and prefill + one-token decode steps give the
//! same logits as one pass over the whole sequence.

use suanli_models::arch::REGISTRY;
use suanli_models::{ForwardCtx, KvDtype, Logits};

#[test]
fn every_architecture_prefills_and_decodes_consistently() {
    assert!(REGISTRY.len() >= 4);
    let dir = std::env::temp_dir().join(format!("suanli-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tokens: Vec<u32> = vec![72, 101, 108, 108, 111, 32, 119, 111, 114, 108];
    for entry in REGISTRY {
        let path = dir.join(format!("{}.gguf", entry.name));
        suanli_models::tiny::write_tiny_gguf(entry.name, &path, 7).expect("write");
        let model = suanli_models::load(&path).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        assert_eq!(model.config().arch, entry.name);
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
                entry.name
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
                    entry.name,
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
                entry.name
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
