//! Run-time choice of kernels by CPU features: one binary from a plain
//! `cargo build`, the best path picked at start.

use crate::dtype::VecDot;
use crate::DType;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The SIMD level kernels run at, chosen once at start from the CPU's
/// features (`SUANLI_ISA=generic|avx2|avx512` lowers it, for comparisons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The portable reference code.
    Generic,
    /// aarch64 NEON (base, so every aarch64 CPU). Levels of different
    /// architectures never meet: only the order within one matters.
    Neon,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/VNNI on top of AVX2.
    Avx512,
}

/// The best level this CPU supports (capped by `SUANLI_ISA`).
pub fn level() -> Level {
    static L: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *L.get_or_init(|| {
        let cap = match std::env::var("SUANLI_ISA").as_deref() {
            Ok("generic") => Level::Generic,
            Ok("avx2") => Level::Avx2,
            Ok("neon") => Level::Neon,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

static BATCH_INVARIANT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Batch-invariant numerics (for a server batching many sequences): every
/// matmul sums each (row, token) dot product in one order whatever the
/// batch size or the token's place in it, and attention takes the tiled
/// kernel for any number of query rows — so a sequence's logits do not
/// depend on what it was batched with or how its prompt was chunked.
///
/// Off (the default), kernels follow llama.cpp's per-case choices, so that
/// single-sequence runs agree with it bit for bit. Process-wide: set it
/// once at start, before the first forward pass.
pub fn set_batch_invariant(on: bool) {
    BATCH_INVARIANT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`set_batch_invariant`] is on (or `SUANLI_BATCH_INVARIANT=1`
/// was set at start).
#[inline]
pub fn batch_invariant() -> bool {
    static ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    BATCH_INVARIANT.load(std::sync::atomic::Ordering::Relaxed)
        || *ENV.get_or_init(|| std::env::var("SUANLI_BATCH_INVARIANT").is_ok_and(|v| v == "1"))
}

/// The best level this CPU supports, whatever `SUANLI_ISA` says.
pub fn detected() -> Level {
    static L: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *L.get_or_init(detect)
}

/// Defines `fn NAME(args)` running `body` compiled for the best
/// [`Level`] in use, and `fn NAME_AT(level, args)` for a chosen level
/// (capped by the CPU; tests hold the levels together). The body is the
/// reference: the same source, so the same operations in the same order,
/// with FMA and rounding as single instructions instead of libm calls.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident / $at:ident ($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            $at($crate::dispatch::level(), $($a),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] at a chosen SIMD level.")]
        #[allow(clippy::too_many_arguments)]
        $vis fn $at(level: $crate::dispatch::Level, $($a: $t),*) $(-> $r)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($a: $t),*) $(-> $r)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v512($($a: $t),*) $(-> $r)? { body($($a),*) }
                #[target_feature(enable = "avx2,fma,f16c")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v256($($a: $t),*) $(-> $r)? { body($($a),*) }
                // SAFETY: the CPU has the features of the level run.
                match level.min($crate::dispatch::detected()) {
                    $crate::dispatch::Level::Avx512 => return unsafe { v512($($a),*) },
                    $crate::dispatch::Level::Avx2 => return unsafe { v256($($a),*) },
                    _ => {}
                }
            }
            let _ = level;
            body($($a),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    use std::arch::is_x86_feature_detected as has;
    if !(has!("avx2") && has!("fma") && has!("f16c")) {
        Level::Generic
    } else if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
        Level::Avx512
    } else {
        Level::Avx2
    }
}

#[cfg(target_arch = "aarch64")]
fn detect() -> Level {
    Level::Neon
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> Level {
    Level::Generic
}

/// The instruction-set path in use, for `inspect` and `bench`.
pub fn isa() -> &'static str {
    match level() {
        Level::Avx512 => match (bf16_dot_products(), q6_k_planes()) {
            (true, true) => "x86-64 AVX-512 F/BW/VL/VNNI/BF16 + GFNI (VNNI tiles, repacked Q4_K, Q6_K planes, BF16 dot products) + AVX2/FMA/F16C",
            (true, false) => "x86-64 AVX-512 F/BW/VL/VNNI/BF16 (VNNI tiles, repacked Q4_K, BF16 dot products) + AVX2/FMA/F16C",
            (false, true) => "x86-64 AVX-512 F/BW/VL/VNNI + GFNI (VNNI tiles, repacked Q4_K, Q6_K planes) + AVX2/FMA/F16C",
            (false, false) => "x86-64 AVX-512 F/BW/VL/VNNI (VNNI tiles, repacked Q4_K) + AVX2/FMA/F16C",
        },
        Level::Avx2 => "x86-64 AVX2 + FMA + F16C (maddubs tiles)",
        Level::Neon => "aarch64 NEON (quantized dot products)",
        Level::Generic => "reference (portable)",
    }
}

/// [`isa`], the weight prefetch ([`prefetch_ahead`]), the Intel prefill
/// tile and the 16-lane `expf` ([`vector_expf`]), as `inspect`,
/// `bench` and `serve` report them.
pub fn kernels() -> String {
    let mut k = match prefetch_ahead() {
        0 => format!("{}; hardware prefetch only", isa()),
        b => format!(
            "{}; weights prefetched {} KiB ahead into L2, {} KiB into L1",
            isa(),
            b >> 10,
            L1_AHEAD >> 10
        ),
    };
    if level() == Level::Avx512 && intel() {
        k.push_str("; 32-element prefill two tokens a zmm");
    }
    if vector_expf() {
        k.push_str("; attention expf 16 lanes (libm's bits)");
    }
    k
}

/// How far ahead of the weight stream the decode kernels (repacked Q4_K,
/// Q6_K planes, the 4- and 16-row layouts of the 32-element formats) ask
/// for lines into L2 with `prefetcht1`, in bytes; 0: none, the hardware
/// prefetchers alone. `SUANLI_PREFETCH=BYTES` sets it (0 turns it off);
/// otherwise [`prefetch_for_weights`] picks it when a model is loaded
/// ([`FROM_MEMORY`] until then).
///
/// On by default on Intel, where it was measured (a KVM guest of a Xeon
/// with AMX, 2 vCPUs; 2 threads, alternating runs of the same binary with
/// `SUANLI_PREFETCH=0`): Qwen2.5-Coder-1.5B Q4_K_M tg64 20.4 → 27.4 t/s
/// (64 → 85% of the bandwidth streamed in-process), SmolLM2-135M tg128
/// 135 → 231, Qwen2.5-Coder-0.5B 48 → 56. One thread decoding alone there
/// streamed ~11 GB/s of the ~16 a plain read reaches: the hardware
/// prefetchers do not run far enough ahead of a kernel that also computes.
/// Into L2 beat 1.5–3 KiB into L1 alone (`prefetcht0`; from 4 KiB into
/// L1 the gain went, the fill buffers full) and L3 (`prefetcht2`); the
/// lines move on into L1 [`L1_AHEAD`] bytes ahead. Off on other
/// x86 CPUs until measured there: on this project's Zen 4 decode already
/// reaches 91–93% of the bandwidth in one of the VM's two bandwidth states.
pub fn prefetch_ahead() -> usize {
    match AHEAD.load(Ordering::Relaxed) {
        UNSET => {
            let b = fixed_prefetch().unwrap_or_else(|| default_prefetch(FROM_MEMORY));
            AHEAD.store(b, Ordering::Relaxed);
            b
        }
        b => b,
    }
}

/// [`prefetch_ahead`] for weights that come from memory: lines asked for
/// 3 KiB ahead, about as many as one core keeps in flight to DRAM. Further
/// ahead, the stream slowed (Intel guest above, alternating runs, 2
/// threads): Qwen2.5-Coder-1.5B tg32 ~29.4 t/s at 2.5–3.5 KiB, ~28.3 at
/// 5–8 KiB (the Q6_K matrices 26 → 28 GB/s); Qwen2.5-Coder-0.5B tg128
/// 56.8 → 64.0 at 3 vs 8 KiB (its 145 MB Q8_0 output 26.6 → 30.2 GB/s);
/// Gemma-3-270M tg64 105 → 112.
pub const FROM_MEMORY: usize = 3 << 10;

/// [`prefetch_ahead`] for weights that stay in the last-level cache from
/// one token to the next: there the longer distance streamed faster
/// (SmolLM2-135M, 98 MB a token against the guest's 480 MiB L3: tg128
/// ~293 t/s at 8 KiB and ~302 at 6 KiB, ~274 at 3 KiB; its 30 MB output
/// 46 GB/s at 8 KiB, 39 at 3).
pub const FROM_CACHE: usize = 8 << 10;

/// How far ahead of an AVX-512 decode kernel the weight prefetch
/// ([`prefetch_ahead`]) moves the lines it asked into L2 on into L1
/// (`prefetcht0`), in bytes (the AVX2 decode tile, bound by its
/// arithmetic, asks for L2 alone). The kernels' demand loads otherwise
/// wait on L2, and the compute around them holds the stream back. In one process, alternating with no L1 stage every
/// pass over 1.2 GB of matrices (10 rounds, twice): Q6_K planes
/// 1536×8960 27.3/27.5 → 28.9/29.3 GB/s, Q5_0 4864×896 23.7/24.3 →
/// 25.4/25.4, Q8_0 151936×896 30.2/29.4 → 30.7/30.5, Q4_1 1536×576
/// 23.1/24.1 → 24.0/24.7, repacked Q4_K within noise (32.1/31.5 →
/// 32.1/31.4); 1.5 and 2 KiB about the same, 256–512 bytes less.
pub const L1_AHEAD: usize = 1024;

const UNSET: usize = usize::MAX;
static AHEAD: AtomicUsize = AtomicUsize::new(UNSET);

/// `SUANLI_PREFETCH`, when set to a number (rounded up to a cache line).
fn fixed_prefetch() -> Option<usize> {
    static B: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *B.get_or_init(|| {
        std::env::var("SUANLI_PREFETCH")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(|b| b.next_multiple_of(64))
    })
}

/// `bytes` where software prefetch is on by default (Intel), else 0.
fn default_prefetch(bytes: usize) -> usize {
    match level() >= Level::Avx2 && intel() {
        true => bytes,
        false => 0,
    }
}

/// Sets [`prefetch_ahead`] for a model that reads `bytes` of weights a
/// decoded token: [`FROM_CACHE`] where they fit in a quarter of the
/// last-level cache (the rest of it is the KV cache's, the activations',
/// and — in a VM — other tenants': Gemma-3-270M's 235 MB a token against
/// the 480 MiB L3 above came from memory, its output 30 GB/s), else
/// [`FROM_MEMORY`]. `SUANLI_PREFETCH` overrides it; the last model loaded
/// decides.
pub fn prefetch_for_weights(bytes: u64) {
    if fixed_prefetch().is_some() {
        return;
    }
    let cached = last_level_cache().is_some_and(|llc| bytes.saturating_mul(4) <= llc);
    let b = match cached {
        true => FROM_CACHE,
        false => FROM_MEMORY,
    };
    AHEAD.store(default_prefetch(b), Ordering::Relaxed);
}

/// The size of the largest cache CPU 0 reports (Linux sysfs), in bytes.
fn last_level_cache() -> Option<u64> {
    static LLC: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LLC.get_or_init(|| {
        let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
        dir.filter_map(|e| {
            let s = std::fs::read_to_string(e.ok()?.path().join("size")).ok()?;
            parse_cache_size(&s)
        })
        .max()
    })
}

/// A sysfs cache size: `"491520K"`, `"32M"`, or bytes.
fn parse_cache_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = num.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Whether decode attention computes its exponentials 16 at a time
/// ([`crate::x86::expf`]: glibc's `expf` bits, vectorized) instead of one
/// `expf` call per score: at [`Level::Avx512`] where the process's own
/// `expf` returns the same bits on a check at first use (every 99,991st
/// input of the range, ~1 ms), or where `SUANLI_FAST_EXP=0` says not.
pub fn vector_expf() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if level() == Level::Avx512 && std::env::var("SUANLI_FAST_EXP").as_deref() != Ok("0") {
            return crate::x86::expf::matches_libm(99_991);
        }
        false
    })
}

/// Whether the CPU's vendor is Intel.
pub(crate) fn intel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU (a safe function
        // in newer Rust).
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let v: Vec<u8> = [r.ebx, r.edx, r.ecx]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        v == b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The BF16 dot product in the order of the register tiles where
/// [`bf16_dot_products`] holds ([`crate::quants::float::vec_dot_bf16_dp`]:
/// one accumulator per output over 32-element steps, as llama.cpp's
/// prefill GEMM), which batches of 2+ tokens take when the rows' length is
/// a multiple of 32 (else every product takes [`vec_dot`]'s order).
pub fn bf16_tile_dot() -> Option<VecDot> {
    #[cfg(target_arch = "x86_64")]
    if bf16_dot_products() {
        return Some(avx2::bf16_dp);
    }
    None
}

/// The F16 dot product in the order of the register tiles at
/// [`Level::Avx512`] ([`crate::quants::float::vec_dot_f16_zmm_tile`]: one
/// 16-lane FMA accumulator per output, as llama.cpp's prefill GEMM), which
/// batches of 2+ tokens take when the rows' length is a multiple of 16.
pub fn f16_tile_dot() -> Option<VecDot> {
    #[cfg(target_arch = "x86_64")]
    if level() == Level::Avx512 {
        return Some(avx2::f16_zmm_tile);
    }
    None
}

/// Whether BF16 weights take AVX512_BF16's dot products (`vdpbf16ps`, two
/// products per lane and step: Zen 4, Cooper Lake, Sapphire Rapids on) at
/// [`Level::Avx512`], in the order of
/// [`crate::quants::float::vec_dot_bf16_dp`] — the order llama.cpp's BF16
/// dot product has on these CPUs — rather than the eight-lane order.
pub fn bf16_dot_products() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static BF16: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        level() == Level::Avx512
            && *BF16.get_or_init(|| std::arch::is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether Q6_K matrices move at load into the planes layout of
/// [`crate::x86::q6k_planes`] (AVX-512 VNNI with GFNI: Zen 4, Ice Lake on),
/// whose kernels take fewer instructions a block for the same bits. With
/// batch-invariant numerics, only where a matrix has no 16-row copy (the
/// output projection, tied embeddings): the copy serves every batch there.
pub fn q6_k_planes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static GFNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        level() == Level::Avx512
            && *GFNI.get_or_init(|| std::arch::is_x86_feature_detected!("gfni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The kernels of a Q6_K matrix in the planes layout, each with the bits
/// of its twin on Q6_K's own layout.
#[cfg(target_arch = "x86_64")]
pub(crate) struct PlanesKernels {
    /// One row in the reference (per-row) order.
    pub dot: VecDot,
    /// One row in the tiled order.
    pub tiled: VecDot,
    /// A run of rows in the reference order.
    pub rows: RowsDot,
    /// A run of rows in the tiled order (batch-invariant decoding).
    pub rows_tiled: RowsDot,
    /// Eight tokens in the tiled order.
    pub x8: KQuantX8,
}

/// [`PlanesKernels`].
#[cfg(target_arch = "x86_64")]
pub(crate) fn q6_k_planes_kernels() -> PlanesKernels {
    use crate::x86::kquant::{KActs, KState};
    use crate::x86::q6k_planes as p;
    use std::ops::Range;
    // SAFETY (all): a matrix is in the planes layout only after
    // `q6_k_planes` saw AVX-512 VNNI and GFNI.
    fn dot(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { p::dot(n, w, x) }
    }
    fn tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { p::dot_tiled(n, w, x) }
    }
    fn rows(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
        unsafe { p::rows(n, w, x, out) }
    }
    fn rows_tiled(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
        unsafe { p::rows_tiled(n, w, x, out) }
    }
    fn x8(b: Range<usize>, w: &[u8], _: &[u8], _: usize, a: &KActs, s: &mut KState) {
        unsafe { p::tiled_x8_vnni(b, w, a, s) }
    }
    PlanesKernels {
        dot,
        tiled,
        rows,
        rows_tiled,
        x8,
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    level() >= Level::Avx2
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::x86;
    // SAFETY (all): handed out by `vec_dot` only after AVX2, FMA and F16C were detected.
    pub fn q8_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q8_0_q8_0(n, w, x) }
    }
    pub fn q5_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q5_k_q8_k(n, w, x) }
    }
    pub fn q5_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q5_k_q8_k_tiled(n, w, x) }
    }
    pub fn f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { crate::x86::float::vec_dot_f32(n, w, x) }
    }
    pub fn f16(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { crate::x86::float::vec_dot_f16(n, w, x) }
    }
    pub fn bf16(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { crate::x86::float::vec_dot_bf16(n, w, x) }
    }
    /// Handed out only where [`super::bf16_dot_products`] holds.
    pub fn bf16_dp(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { crate::x86::float::vec_dot_bf16_dp(n, w, x) }
    }
    /// Handed out only at [`Level::Avx512`](super::Level::Avx512).
    pub fn f16_zmm_gemv(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { crate::x86::float::vec_dot_f16_zmm_gemv(n, w, x) }
    }
    /// Handed out only at [`Level::Avx512`](super::Level::Avx512).
    pub fn f16_zmm_tile(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { crate::x86::float::vec_dot_f16_zmm_tile(n, w, x) }
    }
    /// Handed out only where [`super::bf16_dot_products`] holds.
    pub fn bf16_dp_gemv(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { crate::x86::float::vec_dot_bf16_dp_gemv(n, w, x) }
    }
    pub fn q4_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_0_q8_0(n, w, x) }
    }
    pub fn mxfp4(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_mxfp4_q8_0(n, w, x) }
    }
    pub fn q5_0(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q5_0_q8_0(n, w, x) }
    }
    pub fn q4_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_1_q8_1(n, w, x) }
    }
    pub fn q5_1(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q5_1_q8_1(n, w, x) }
    }
    pub fn q6_k(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q6_k_q8_k(n, w, x) }
    }
    /// Handed out only at [`Level::Avx512`](super::Level::Avx512).
    pub fn q6_k_avx512(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q6_k_q8_k_avx512(n, w, x) }
    }
    pub fn q6_k_rows(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
        unsafe { x86::q6k_rows_avx2(n, w, x, out) }
    }
    /// Handed out only at [`Level::Avx512`](super::Level::Avx512).
    pub fn q6_k_rows_avx512(n: usize, w: &[u8], x: &[u8], out: &mut [f32]) {
        unsafe { x86::q6k_rows_avx512(n, w, x, out) }
    }
    pub fn q6_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q6_k_q8_k_tiled(n, w, x) }
    }
    pub fn q4_k_tiled(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_k_q8_k_tiled(n, w, x) }
    }
    pub fn q4_k_interleaved(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_k_q8_k_interleaved(n, w, x) }
    }
    pub fn q4_k_interleaved_gemm(n: usize, w: &[u8], x: &[u8]) -> f32 {
        unsafe { x86::vec_dot_q4_k_q8_k_interleaved_gemm(n, w, x) }
    }
}

/// The fastest available dot product of `ty` with its `vec_dot_type`; it
/// returns bit for bit what the reference (`ty.traits().vec_dot`) returns.
pub fn vec_dot(ty: DType) -> Option<VecDot> {
    #[cfg(target_arch = "aarch64")]
    if level() == Level::Neon {
        use crate::aarch64::neon;
        let f: Option<VecDot> = match ty {
            DType::Q8_0 => Some(neon::vec_dot_q8_0_q8_0),
            DType::Q4_0 => Some(neon::vec_dot_q4_0_q8_0),
            DType::Q4_1 => Some(neon::vec_dot_q4_1_q8_1),
            DType::Q5_0 => Some(neon::vec_dot_q5_0_q8_0),
            DType::Q5_1 => Some(neon::vec_dot_q5_1_q8_1),
            DType::Q4_K => Some(neon::vec_dot_q4_k_q8_k),
            DType::Q6_K => Some(neon::vec_dot_q6_k_q8_k),
            _ => None,
        };
        if f.is_some() {
            return f;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if level() == Level::Avx512 && ty == DType::Q6_K {
        return Some(avx2::q6_k_avx512);
    }
    #[cfg(target_arch = "x86_64")]
    if bf16_dot_products() && ty == DType::BF16 {
        return Some(avx2::bf16_dp_gemv);
    }
    #[cfg(target_arch = "x86_64")]
    if level() == Level::Avx512 && ty == DType::F16 {
        return Some(avx2::f16_zmm_gemv);
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        let f: Option<VecDot> = match ty {
            DType::Q8_0 => Some(avx2::q8_0),
            DType::Q4_0 => Some(avx2::q4_0),
            DType::MXFP4 => Some(avx2::mxfp4),
            DType::Q5_0 => Some(avx2::q5_0),
            DType::Q4_1 => Some(avx2::q4_1),
            DType::Q5_1 => Some(avx2::q5_1),
            DType::Q6_K => Some(avx2::q6_k),
            DType::Q5_K => Some(avx2::q5_k),
            DType::F32 => Some(avx2::f32),
            DType::F16 => Some(avx2::f16),
            DType::BF16 => Some(avx2::bf16),
            _ => None,
        };
        if f.is_some() {
            return f;
        }
    }
    ty.traits().vec_dot
}

/// Fast twins of the interleaved Q4_K orders: (GEMV order, GEMM order).
pub fn q4_k_interleaved() -> (VecDot, VecDot) {
    use crate::quants::kquants;
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        return (avx2::q4_k_interleaved, avx2::q4_k_interleaved_gemm);
    }
    #[cfg(target_arch = "aarch64")]
    if level() == Level::Neon {
        use crate::aarch64::neon;
        return (
            neon::vec_dot_q4_k_q8_k_interleaved,
            neon::vec_dot_q4_k_q8_k_interleaved_gemm,
        );
    }
    (
        kquants::vec_dot_q4_k_q8_k_interleaved,
        kquants::vec_dot_q4_k_q8_k_interleaved_gemm,
    )
}

/// The fastest twin of the tiled K-quant order of `ty` (batches of 8+ rows).
pub fn tiled_vec_dot(ty: DType) -> Option<VecDot> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        match ty {
            DType::Q4_K => return Some(avx2::q4_k_tiled),
            DType::Q6_K => return Some(avx2::q6_k_tiled),
            DType::Q5_K => return Some(avx2::q5_k_tiled),
            _ => {}
        }
    }
    crate::quants::kquants::tiled_vec_dot(ty)
}

multiversion! {
    fn q8_0 / q8_0_at(x: &[f32], out: &mut [u8]) {
        crate::quants::legacy::quantize_q8_0(x, out)
    }
}
multiversion! {
    fn q8_1 / q8_1_at(x: &[f32], out: &mut [u8]) {
        crate::quants::legacy::quantize_q8_1(x, out)
    }
}
multiversion! {
    fn q8_k / q8_k_at(x: &[f32], out: &mut [u8]) {
        crate::quants::kquants::quantize_q8_k(x, out)
    }
}

/// The fastest twin of `ty`'s `from_float` (activation quantization).
pub fn from_float(ty: DType) -> Option<crate::dtype::FromFloat> {
    match ty {
        DType::Q8_0 => Some(q8_0),
        DType::Q8_1 => Some(q8_1),
        DType::Q8_K => Some(q8_k),
        _ => ty.traits().from_float,
    }
}

/// A multi-row decode kernel for `ty` (`GR` weight rows × one token per
/// call, each output bit-identical to `vec_dot`), where the level has one.
#[cfg(target_arch = "x86_64")]
pub fn gemv_dot(ty: DType) -> Option<crate::x86::tile::GemvDot> {
    crate::x86::tile::gemv_dot(ty, level())
}

/// `out[r] = vec_dot(n, row r of w, x)` for consecutive rows in one call,
/// where the level has such a kernel for `ty` (each output bit-identical to
/// [`vec_dot`]'s).
pub type RowsDot = fn(n: usize, w: &[u8], x: &[u8], out: &mut [f32]);

/// The [`RowsDot`] of `ty` at this level.
pub fn rows_dot(ty: DType) -> Option<RowsDot> {
    #[cfg(target_arch = "x86_64")]
    if level() == Level::Avx512 && ty == DType::Q6_K {
        return Some(avx2::q6_k_rows_avx512);
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() && ty == DType::Q6_K {
        return Some(avx2::q6_k_rows);
    }
    let _ = ty;
    None
}

/// A register-tiled kernel for `ty` (`TR` weight rows × `TC` tokens per
/// call, each output bit-identical to `vec_dot`), where the level has one.
#[cfg(target_arch = "x86_64")]
pub fn tile_dot(ty: DType) -> Option<crate::x86::tile::TileDot> {
    crate::x86::tile::tile_dot(ty, level())
}

/// One K-quant weight row against `KC` Q8_K activation rows (`x + c·xrb`)
/// over a range of blocks, continuing a [`crate::x86::kquant::KState`].
#[cfg(target_arch = "x86_64")]
pub type KQuantX8 = fn(
    blocks: std::ops::Range<usize>,
    w: &[u8],
    x: &[u8],
    xrb: usize,
    acts: &crate::x86::kquant::KActs,
    state: &mut crate::x86::kquant::KState,
);

#[cfg(target_arch = "x86_64")]
mod kx8 {
    use std::ops::Range;

    use crate::x86::kquant::{self as k, KActs, KState};
    // SAFETY (both): handed out by `k_quant_x8` only after AVX2, FMA and F16C were detected.
    pub fn q4_k_gemm(b: Range<usize>, w: &[u8], x: &[u8], xrb: usize, a: &KActs, s: &mut KState) {
        unsafe { k::q4_k_gemm_x8(b, w, x, xrb, a, s) }
    }
    pub fn q6_k_tiled(b: Range<usize>, w: &[u8], x: &[u8], xrb: usize, a: &KActs, s: &mut KState) {
        unsafe { k::q6_k_tiled_x8(b, w, x, xrb, a, s) }
    }
    // SAFETY: handed out only at Level::Avx512 (VNNI detected).
    pub fn q6_k_tiled_vnni(
        b: Range<usize>,
        w: &[u8],
        x: &[u8],
        xrb: usize,
        a: &KActs,
        s: &mut KState,
    ) {
        unsafe { k::q6_k_tiled_x8_vnni(b, w, x, xrb, a, s) }
    }
}

/// The eight-token twin of a K-quant prefill order: the interleaved Q4_K
/// GEMM order (`interleaved`) or the tiled Q6_K order (batches of 8+).
#[cfg(target_arch = "x86_64")]
pub fn k_quant_x8(ty: DType, interleaved: bool) -> Option<KQuantX8> {
    k_quant_x8_at(level(), ty, interleaved)
}

/// [`k_quant_x8`] at a chosen level (capped by the CPU). Interleaved Q4_K
/// has no VNNI variant here: at that level a multiple of 16 rows is
/// repacked at load and runs `x86::q4k_r16` instead.
#[cfg(target_arch = "x86_64")]
pub fn k_quant_x8_at(level: Level, ty: DType, interleaved: bool) -> Option<KQuantX8> {
    let f: KQuantX8 = match (level.min(detected()), ty, interleaved) {
        (Level::Generic, _, _) => return None,
        (Level::Avx512, DType::Q6_K, false) => kx8::q6_k_tiled_vnni,
        (_, DType::Q4_K, true) => kx8::q4_k_gemm,
        (_, DType::Q6_K, false) => kx8::q6_k_tiled,
        _ => return None,
    };
    Some(f)
}

/// `x86::kquant::KR` Q4_K rows (`w + r·wrb`) · one Q8_K row.
#[cfg(target_arch = "x86_64")]
pub type Q4kGemv = fn(usize, &[u8], usize, &[u8]) -> [f32; crate::x86::kquant::KR];

/// The Q4_K decode kernel (rows of the original layout × one token in the
/// interleaved GEMV order), where the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
pub fn q4_k_gemv_x4() -> Option<Q4kGemv> {
    fn f(n: usize, w: &[u8], wrb: usize, x: &[u8]) -> [f32; crate::x86::kquant::KR] {
        // SAFETY: handed out only after AVX2, FMA and F16C were detected.
        unsafe { crate::x86::kquant::q4_k_gemv_x4(n, w, wrb, x) }
    }
    has_avx2_fma().then_some(f as Q4kGemv)
}

#[cfg(test)]
mod prefetch_tests {
    use super::parse_cache_size;

    #[test]
    fn sysfs_cache_sizes_parse() {
        assert_eq!(parse_cache_size("491520K\n"), Some(491520 << 10));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("1G"), Some(1 << 30));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("12Q"), None);
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("K"), None);
    }
}
