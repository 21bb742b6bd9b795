//! Sampling: greedy, seeding, truncations and penalties.

use suanli_engine::{Sampler, SamplingParams};

fn logits() -> Vec<f32> {
    vec![1.0, 3.0, 2.5, 0.5, 2.9, -1.0, 0.0, 2.0]
}

fn params(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..Default::default()
    }
}

#[test]
fn temperature_zero_is_argmax() {
    let mut s = Sampler::new(params(0.0));
    for _ in 0..5 {
        assert_eq!(s.sample(&mut logits()), 1);
    }
}

#[test]
fn same_seed_same_output_and_seeds_differ() {
    let run = |seed| {
        let mut s = Sampler::new(SamplingParams {
            seed,
            ..params(1.0)
        });
        (0..64).map(|_| s.sample(&mut logits())).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn frequencies_follow_the_softmax() {
    let mut s = Sampler::new(SamplingParams {
        seed: 1,
        ..params(1.0)
    });
    let n = 40_000;
    let mut counts = [0usize; 8];
    for _ in 0..n {
        counts[s.sample(&mut logits()) as usize] += 1;
    }
    let l = logits();
    let z: f32 = l.iter().map(|v| v.exp()).sum();
    for (i, &c) in counts.iter().enumerate() {
        let p = l[i].exp() / z;
        let f = c as f32 / n as f32;
        assert!(
            (f - p).abs() < 0.01,
            "token {i}: frequency {f} vs probability {p}"
        );
    }
}

#[test]
fn truncations_keep_the_right_candidates() {
    // top-k 2: only tokens 1 and 4 can come out.
    let mut s = Sampler::new(SamplingParams {
        top_k: 2,
        seed: 3,
        ..params(5.0)
    });
    for _ in 0..200 {
        assert!([1, 4].contains(&s.sample(&mut logits())));
    }
    // top-p tiny: the single most likely token.
    let mut s = Sampler::new(SamplingParams {
        top_p: 0.01,
        seed: 3,
        ..params(5.0)
    });
    assert!((0..50).all(|_| s.sample(&mut logits()) == 1));
    // min-p 0.9: tokens with p >= 0.9 p_max: 1 (3.0) and 4 (2.9, ratio e^-0.1 = 0.905).
    let mut s = Sampler::new(SamplingParams {
        min_p: 0.9,
        seed: 3,
        ..params(5.0)
    });
    for _ in 0..200 {
        assert!([1, 4].contains(&s.sample(&mut logits())));
    }
}

#[test]
fn penalties_push_repeated_tokens_down() {
    let mut s = Sampler::new(SamplingParams {
        repeat_penalty: 2.0,
        ..params(0.0)
    });
    s.accept(&[1]);
    // 3.0 / 2 = 1.5 < 2.9: token 4 wins.
    assert_eq!(s.sample(&mut logits()), 4);
    let mut s = Sampler::new(SamplingParams {
        presence_penalty: 0.2,
        frequency_penalty: 0.1,
        ..params(0.0)
    });
    s.accept(&[1, 1]);
    // 3.0 - 2·0.1 - 0.2 = 2.6 < 2.9.
    let mut l = logits();
    assert_eq!(s.sample(&mut l), 4);
    assert!((l[1] - 2.6).abs() < 1e-6);
}
