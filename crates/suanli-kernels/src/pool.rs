//! A persistent thread pool for the many small parallel ops of one forward
//! pass: workers are started once, spin briefly between ops (an op every few
//! microseconds while decoding) and sleep when idle; the calling thread works
//! too. Items are handed out by an atomic counter, so causal attention's
//! uneven rows balance themselves.
//!
//! One op runs at a time; a call made while another thread's op is running,
//! or from inside an op, runs on the calling thread alone.

use std::cell::Cell;

use crossbeam_utils::CachePadded;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// How long idle workers spin before sleeping, in `spin_loop` hints (tens of
/// microseconds).
const SPIN: u32 = 1 << 16;

type Task<'a> = &'a (dyn Fn(usize) + Sync);

struct Job {
    f: Task<'static>,
    n: usize,
}

/// What the submitter posts for the workers, on one cache line: the op
/// and the epoch that announces it (a worker reads both in one transfer).
struct Post {
    /// Bumped once per op by the submitter (alone); workers wait for it to
    /// change.
    epoch: AtomicUsize,
    /// The current op: written before `epoch` is bumped, read after it is
    /// seen, and left alone until every worker has left the op (`busy`).
    job: std::cell::UnsafeCell<Option<Job>>,
}

// SAFETY: `job` is written only by the submitter while no worker is inside
// an op (before the epoch's release) and read only by workers inside one.
unsafe impl Sync for Post {}

struct Shared {
    post: CachePadded<Post>,
    /// The next item to hand out; its own line, as `busy`: the submitter
    /// waits on `busy` while the workers take items.
    next: CachePadded<AtomicUsize>,
    /// Workers still inside the current op.
    busy: CachePadded<AtomicUsize>,
    /// Set when an item panicked on a worker; the submitter re-raises it.
    panicked: AtomicBool,
    /// Workers asleep (or about to be) on `wake`.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

struct Pool {
    shared: Arc<Shared>,
    workers: usize,
    submit: Mutex<()>,
}

static THREADS: AtomicUsize = AtomicUsize::new(0);
static POOL: OnceLock<Pool> = OnceLock::new();

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Use `n` threads (the caller included) for parallel ops; takes effect if
/// called before the first op. Returns the count in effect.
pub fn set_threads(n: usize) -> usize {
    let _ = THREADS.compare_exchange(0, n.max(1), Ordering::SeqCst, Ordering::SeqCst);
    threads()
}

/// Threads parallel ops use, the caller included.
pub fn threads() -> usize {
    pool().workers + 1
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = match THREADS.load(Ordering::SeqCst) {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        THREADS.store(n, Ordering::SeqCst);
        let shared = Arc::new(Shared {
            post: CachePadded::new(Post {
                epoch: AtomicUsize::new(0),
                job: std::cell::UnsafeCell::new(None),
            }),
            next: CachePadded::new(AtomicUsize::new(0)),
            busy: CachePadded::new(AtomicUsize::new(0)),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = 0;
        let cpus = allowed_cpus();
        for i in 1..n {
            let sh = shared.clone();
            // Worker i on the i-th CPU this process may use, when there are
            // enough for every thread (the caller itself is left free).
            let cpu = (cpus.len() >= n).then(|| cpus[i]);
            let spawned = std::thread::Builder::new()
                .name(format!("suanli-{i}"))
                .spawn(move || {
                    if let Some(c) = cpu {
                        pin_to(c);
                    }
                    worker(&sh)
                });
            workers += spawned.is_ok() as usize;
        }
        Pool {
            shared,
            workers,
            submit: Mutex::new(()),
        }
    })
}

fn run_items(sh: &Shared, job: &Job) {
    loop {
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.n {
            break;
        }
        (job.f)(i);
    }
}

fn worker(sh: &Shared) {
    INSIDE.with(|c| c.set(true));
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        loop {
            let e = sh.post.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                // No lost wake-up: the submitter bumps the epoch, then reads
                // `sleepers` (both SeqCst); a sleeper counts itself, then
                // reads the epoch — one of them sees the other.
                let mut g = sh.sleep.lock().unwrap_or_else(|e| e.into_inner());
                sh.sleepers.fetch_add(1, Ordering::SeqCst);
                while sh.post.epoch.load(Ordering::SeqCst) == seen {
                    g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                sh.sleepers.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // SAFETY: the submitter wrote the op before the epoch this worker
        // acquired, and leaves it until `busy` drops to 0, which it cannot
        // before this worker's decrement below.
        if let Some(job) = unsafe { &*sh.post.job.get() } {
            let r = catch_unwind(AssertUnwindSafe(|| run_items(sh, job)));
            if r.is_err() {
                sh.panicked.store(true, Ordering::Release);
            }
        }
        sh.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `f(0..n)` across the pool and returns when every item is done.
/// Items may run in any order and on any thread.
pub fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    if n == 0 {
        return;
    }
    let p = pool();
    let serial = || (0..n).for_each(&f);
    if n == 1 || p.workers == 0 || INSIDE.with(|c| c.get()) {
        return serial();
    }
    let Ok(_guard) = p.submit.try_lock() else {
        return serial();
    };
    let sh = &p.shared;
    let f: Task<'_> = &f;
    // SAFETY: the 'static is a lie that ends before this function returns:
    // we wait below until no worker can still touch the job.
    let job = Job {
        f: unsafe { std::mem::transmute::<Task<'_>, Task<'static>>(f) },
        n,
    };
    sh.next.store(0, Ordering::Relaxed);
    sh.busy.store(p.workers, Ordering::Relaxed);
    // SAFETY: no worker is inside an op (the last one ended with `busy` at
    // 0), and the submit lock makes this the only submitter.
    unsafe { *sh.post.job.get() = Some(job) };
    let e = sh.post.epoch.load(Ordering::Relaxed);
    sh.post.epoch.store(e.wrapping_add(1), Ordering::SeqCst);
    if sh.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = sh.sleep.lock().unwrap_or_else(|e| e.into_inner());
        sh.wake.notify_all();
    }
    INSIDE.with(|c| c.set(true));
    // SAFETY: written above; only read until the op ends.
    let Some(job) = (unsafe { &*sh.post.job.get() }) else {
        unreachable!("posted above")
    };
    let mine = catch_unwind(AssertUnwindSafe(|| run_items(sh, job)));
    INSIDE.with(|c| c.set(false));
    while sh.busy.load(Ordering::Acquire) != 0 {
        std::hint::spin_loop();
    }
    // SAFETY: every worker has left the op.
    unsafe { *sh.post.job.get() = None };
    if let Err(e) = mine {
        resume_unwind(e);
    }
    if sh.panicked.load(Ordering::Acquire) && sh.panicked.swap(false, Ordering::AcqRel) {
        panic!("a parallel op panicked on a worker thread");
    }
}

/// Runs `f(i, row_i)` over the `width`-wide rows of `data` across the pool
/// (serially for a single row).
pub fn for_each_row(data: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if width == 0 {
        return;
    }
    let rows = data.len() / width;
    let base = RowsPtr(data.as_mut_ptr());
    for_each(rows, |i| {
        // SAFETY: rows are disjoint, in bounds, and each index runs once.
        let row = unsafe { std::slice::from_raw_parts_mut(base.at(i * width), width) };
        f(i, row)
    });
}

#[derive(Clone, Copy)]
struct RowsPtr(*mut f32);
// SAFETY: only used to hand out disjoint rows inside one `for_each`.
unsafe impl Send for RowsPtr {}
unsafe impl Sync for RowsPtr {}
impl RowsPtr {
    fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// The CPUs this process may run on, in order (empty where unknown).
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes at most
    // its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Pins the calling thread to `cpu` (best effort: a refusal leaves it free).
#[cfg(target_os = "linux")]
fn pin_to(cpu: usize) {
    // SAFETY: as above; the set names one CPU the process may use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_to(_cpu: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item of every op runs once — back to back, and after the
    /// workers have gone to sleep (the wake-up must not be lost).
    #[test]
    fn every_item_runs_once_awake_or_asleep() {
        set_threads(2);
        for round in 0..40 {
            let n = 1 + round * 7 % 61;
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for_each(n, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            for (i, h) in hits.iter().enumerate() {
                assert_eq!(
                    h.load(Ordering::Relaxed),
                    1,
                    "round {round}: item {i} of {n}"
                );
            }
            if round % 8 == 7 {
                // Far past the spin: idle workers are asleep on the condvar.
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
    }

    /// A panicking item reaches the caller, and the pool still serves.
    #[test]
    fn a_panic_reaches_the_caller_and_the_pool_goes_on() {
        set_threads(2);
        for _ in 0..3 {
            let r = catch_unwind(|| {
                for_each(64, |i| {
                    if i == 63 {
                        panic!("item 63");
                    }
                })
            });
            assert!(r.is_err());
            let sum = AtomicUsize::new(0);
            for_each(100, |i| {
                sum.fetch_add(i, Ordering::Relaxed);
            });
            assert_eq!(sum.load(Ordering::Relaxed), 4950);
        }
    }
}
