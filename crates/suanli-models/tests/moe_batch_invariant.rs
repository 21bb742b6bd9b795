//! The server's batch-invariant numerics hold through mixture-of-experts
//! layers: a sequence's logits have the same bits alone and batched with
//! others that share its experts (so each expert's products run over
//! different numbers of rows), in prefill and in joint decode steps.
//! Its own test binary: the numerics are chosen per process, before load.

use suanli_models::{Batch, ForwardCtx, KvDtype, Logits, Pages, SeqSpan};

#[test]
fn moe_logits_do_not_depend_on_the_batch() {
    suanli_kernels::dispatch::set_batch_invariant(true);
    let dir = std::env::temp_dir().join(format!("suanli-moe-bi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (arch, moe) in [("qwen3moe", true), ("qwen2moe", true), ("llama", true)] {
        let path = dir.join(format!("{arch}.gguf"));
        suanli_models::tiny::write_tiny(arch, moe, &path, 11).expect("write");
        let model = suanli_models::load(&path).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let nv = model.config().n_vocab;
        // Sequence 0 alone: a 40-token prompt, then 3 decode steps.
        let prompts: Vec<Vec<u32>> = (0..4)
            .map(|s| (0..40).map(|i| ((i * 7 + s * 13) % 250) as u32).collect())
            .collect();
        let mut kv = model.new_cache(64, KvDtype::F16);
        let mut alone = model
            .forward(&prompts[0], &mut ForwardCtx::new(&mut kv, Logits::All))
            .expect("prefill");
        for s in 0..3u32 {
            alone.extend(
                model
                    .forward(&[s + 1], &mut ForwardCtx::new(&mut kv, Logits::Last))
                    .expect("decode"),
            );
        }
        // The same with three others in every pass.
        const B: usize = 16;
        let mut pool = model.new_pool(24, B, KvDtype::F16);
        let tables: Vec<Vec<u32>> = (0..4)
            .map(|i| (0..6).map(|b| (b * 4 + i) as u32).collect())
            .collect();
        let spans: Vec<SeqSpan> = (0..4)
            .map(|i| SeqSpan {
                n: 40,
                pos0: 0,
                pages: Pages::new(&tables[i], B),
                logits: if i == 0 { Logits::All } else { Logits::Last },
            })
            .collect();
        let mut batch = Batch::new(&mut pool, &spans, None).expect("batch");
        let out = model
            .forward_batch(&prompts.concat(), &mut batch)
            .expect("batched prefill");
        let mut together = out[..40 * nv].to_vec();
        for s in 0..3u32 {
            let spans: Vec<SeqSpan> = (0..4)
                .map(|i| SeqSpan {
                    n: 1,
                    pos0: 40 + s as usize,
                    pages: Pages::new(&tables[i], B),
                    logits: Logits::Last,
                })
                .collect();
            let mut batch = Batch::new(&mut pool, &spans, None).expect("batch");
            let out = model
                .forward_batch(&[s + 1; 4], &mut batch)
                .expect("batched decode");
            together.extend_from_slice(&out[..nv]);
        }
        assert_eq!(alone.len(), together.len());
        let same = alone
            .iter()
            .zip(&together)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        let d = alone
            .iter()
            .zip(&together)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            same,
            "{arch}: batched logits differ from alone (max |Δ| {d})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
