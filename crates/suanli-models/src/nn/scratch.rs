//! Reused buffers for a layer's large intermediates.
//!
//! A prefill pass of a mixture-of-experts or latent-attention layer makes
//! buffers of tens of MB (DeepSeek-V2-Lite at 512 tokens: the experts' gate
//! and up outputs, 17 MB each; the latent queries, 19 MB) that the kernels
//! overwrite whole. `vec![0.0; n]` zeroes them first — calloc's memset over
//! memory that has left the cache, 6% of a pp512 on one thread while the
//! other waits. [`take`] hands out a buffer given back by an earlier
//! [`give`] on this thread instead, with whatever values it held: only for
//! buffers every element of which is written before it is read.

use std::cell::RefCell;

/// Buffers kept per thread: enough for the intermediates alive at once.
const KEEP: usize = 8;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` floats with unspecified (initialized) contents.
pub fn take(len: usize) -> Vec<f32> {
    let mut v = FREE
        .with(|f| {
            let mut f = f.borrow_mut();
            // The shortest at least `len` long (one given back by a request
            // of this size, as a rule), else the longest: lengthening
            // zeroes the new part.
            let fit = (0..f.len())
                .filter(|&i| f[i].len() >= len)
                .min_by_key(|&i| f[i].len())
                .or_else(|| (0..f.len()).max_by_key(|&i| f[i].len()));
            fit.map(|i| f.swap_remove(i))
        })
        .unwrap_or_default();
    // Shorter: cut (the values stay, the capacity too). Longer: the new
    // tail zeroed, once — the same shapes come every layer.
    v.resize(len, 0.0);
    v
}

/// Gives `v` back for a later [`take`] on this thread.
pub fn give(v: Vec<f32>) {
    if v.capacity() == 0 {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(v);
        } else if let Some(i) = (0..f.len()).min_by_key(|&i| f[i].len()) {
            if f[i].len() < v.len() {
                f[i] = v;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_the_asked_length() {
        let mut a = take(100);
        assert_eq!(a.len(), 100);
        a.iter_mut().for_each(|v| *v = 1.0);
        let p = a.as_ptr();
        give(a);
        // The same buffer, shorter, then longer than it was.
        let b = take(40);
        assert_eq!((b.len(), b.as_ptr()), (40, p));
        assert!(b.iter().all(|&v| v == 1.0));
        give(b);
        let c = take(1000);
        assert_eq!(c.len(), 1000);
        assert!(c[..40].iter().all(|&v| v == 1.0) && c[40..].iter().all(|&v| v == 0.0));
        give(c);
        // Two alive at once are two buffers.
        let (d, e) = (take(10), take(10));
        assert_ne!(d.as_ptr(), e.as_ptr());
    }
}
