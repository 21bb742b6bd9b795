//! A persistent thread pool for the many small parallel ops of one forward
//! pass: workers are started once, spin briefly between ops (an op every few
//! microseconds while decoding) and sleep when idle; the calling thread works
//! too. Items are handed out by an atomic counter, so causal attention's
//! uneven rows balance themselves.
//!
//! One op runs at a time; a call made while another thread's op is running,
//! or from inside an op, runs on the calling thread alone.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// How long idle workers spin before sleeping, in `spin_loop` hints (tens of
/// microseconds).
const SPIN: u32 = 1 << 16;

type Task<'a> = &'a (dyn Fn(usize) + Sync);

struct Job {
    f: Task<'static>,
    n: usize,
}

struct Shared {
    /// Bumped once per op; workers wait for it to change.
    epoch: AtomicUsize,
    job: AtomicPtr<Job>,
    next: AtomicUsize,
    /// Workers still inside the current op.
    busy: AtomicUsize,
    /// Set when an item panicked on a worker; the submitter re-raises it.
    panicked: AtomicBool,
    sleep: Mutex<usize>,
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
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleep: Mutex::new(0),
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
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if spins < SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let mut g = sh.sleep.lock().unwrap_or_else(|e| e.into_inner());
                *g += 1;
                while sh.epoch.load(Ordering::Acquire) == seen {
                    g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                *g -= 1;
            }
        }
        let job = sh.job.load(Ordering::Acquire);
        // SAFETY: the submitter keeps the job alive until `busy` drops to 0,
        // which it cannot before this worker's decrement below.
        if let Some(job) = unsafe { job.as_ref() } {
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
    sh.job
        .store(&job as *const Job as *mut Job, Ordering::Release);
    sh.epoch.fetch_add(1, Ordering::AcqRel);
    {
        let g = sh.sleep.lock().unwrap_or_else(|e| e.into_inner());
        if *g > 0 {
            sh.wake.notify_all();
        }
    }
    INSIDE.with(|c| c.set(true));
    let mine = catch_unwind(AssertUnwindSafe(|| run_items(sh, &job)));
    INSIDE.with(|c| c.set(false));
    while sh.busy.load(Ordering::Acquire) != 0 {
        std::hint::spin_loop();
    }
    sh.job.store(std::ptr::null_mut(), Ordering::Release);
    if let Err(e) = mine {
        resume_unwind(e);
    }
    if sh.panicked.swap(false, Ordering::AcqRel) {
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
