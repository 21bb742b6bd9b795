//! Benchmark evaluations: GSM8K, GPQA-diamond and AIME 2025, scored the way
//! the field scores them.
//!
//! - [`tasks`]: the data files (fetched through [`crate::hub::resolve_eval`])
//!   parsed into items with their prompts and gold answers; GPQA's choices
//!   shuffled by a seed.
//! - [`score`]: pulling the final answer out of a model's output (the last
//!   `\boxed{}` or number, the choice letter) and comparing it with the gold.
//!
//! The generation itself (every item in flight at once through the batching
//! engine) is `suanli eval`'s.

pub mod score;
pub mod tasks;

pub use tasks::{Item, Task};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("unknown task '{0}'; known: gsm8k, gpqa-diamond, aime2025")]
    UnknownTask(String),
    #[error("{file}:{line}: {why}")]
    Malformed {
        file: String,
        line: usize,
        why: String,
    },
    #[error("{file}: no items")]
    Empty { file: String },
}

pub type Result<T> = std::result::Result<T, EvalError>;

/// Accuracy over items with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The mean of per-item scores (each the fraction of an item's samples that
/// were right: pass@1 averaged over the samples) and a 95% interval over
/// items: Wilson's when every score is 0 or 1 (one sample each), else the
/// normal one from the items' standard error, clipped to [0, 1].
pub fn accuracy(item_scores: &[f64]) -> Accuracy {
    let n = item_scores.len() as f64;
    if item_scores.is_empty() {
        return Accuracy {
            mean: 0.0,
            lo: 0.0,
            hi: 0.0,
        };
    }
    let mean = item_scores.iter().sum::<f64>() / n;
    let z = 1.959964;
    if item_scores.iter().all(|&s| s == 0.0 || s == 1.0) {
        let d = 1.0 + z * z / n;
        let c = (mean + z * z / (2.0 * n)) / d;
        let h = z * (mean * (1.0 - mean) / n + z * z / (4.0 * n * n)).sqrt() / d;
        return Accuracy {
            mean,
            lo: (c - h).max(0.0),
            hi: (c + h).min(1.0),
        };
    }
    let var = if n > 1.0 {
        item_scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let h = z * (var / n).sqrt();
    Accuracy {
        mean,
        lo: (mean - h).max(0.0),
        hi: (mean + h).min(1.0),
    }
}

/// SplitMix64: a small, stable generator for seeded shuffles and per-request
/// seeds (the same seed gives the same order on every machine and version).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one (item, sample) from the run's seed.
pub fn mix_seed(seed: u64, item: usize, sample: usize) -> u64 {
    let mut s = seed ^ (item as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    s ^= (sample as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    splitmix64(&mut s)
}
