//! dist-worker measured through its C API, as a C host drives it: a pool of
//! forked SUB children running a no-op callable.

use crate::Lat;
use dist_worker::abi::*;
use dist_worker::ffi::*;
use std::os::raw::c_void;
use std::ptr;
use std::time::{Duration, Instant};

/// Idle time before a round trip to a sleeping child (its spin window is 50 µs).
pub const SLEEP_GAP: Duration = Duration::from_millis(3);

/// The waiting tunables `DIST_BENCH_OPTS` sets (None: the library's default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tunables {
    worker_spin_us: Option<u32>,
    dispatcher_spin_us: Option<u32>,
    wait_spin_us: Option<u32>,
    poll_interval_us: Option<u32>,
}

impl Tunables {
    /// Parses `key=value,key=value` (empty items are skipped).
    pub fn parse(s: &str) -> Result<Tunables, String> {
        let mut t = Tunables::default();
        for kv in s.split(',').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("`{kv}` is not key=value"))?;
            let v: u32 = v
                .parse()
                .map_err(|_| format!("`{kv}`: the value is not a number of microseconds"))?;
            let field = match k {
                "worker_spin_us" => &mut t.worker_spin_us,
                "dispatcher_spin_us" => &mut t.dispatcher_spin_us,
                "wait_spin_us" => &mut t.wait_spin_us,
                "poll_interval_us" => &mut t.poll_interval_us,
                _ => return Err(format!("unknown option `{k}`")),
            };
            *field = Some(v);
        }
        Ok(t)
    }

    fn apply(&self, o: &mut DistWorkerOptions) {
        let set = |field: &mut u32, v: Option<u32>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut o.worker_spin_us, self.worker_spin_us);
        set(&mut o.dispatcher_spin_us, self.dispatcher_spin_us);
        set(&mut o.wait_spin_us, self.wait_spin_us);
        set(&mut o.poll_interval_us, self.poll_interval_us);
    }
}

/// The children's callable: does nothing.
unsafe extern "C" fn noop(
    _: *mut c_void,
    _: u64,
    _: *const DistTaskView,
    _: *const DistCallConfig,
) -> i32 {
    0
}

fn check(s: DistStatus, what: &str) {
    if s != DIST_OK {
        // SAFETY: dist_last_error_message returns a NUL-terminated string that
        // stays valid until this thread's next failing call; it is copied at once.
        let m = unsafe { std::ffi::CStr::from_ptr(dist_last_error_message()) };
        panic!("{what}: status {s}: {}", m.to_string_lossy());
    }
}

/// The library's default options with `tunables` applied.
fn options(tunables: &Tunables) -> DistWorkerOptions {
    // SAFETY: DistWorkerOptions holds only integers, so all-zero bytes are
    // a valid value; options_init then writes through a valid pointer.
    let mut o = unsafe {
        let mut o = std::mem::zeroed::<DistWorkerOptions>();
        dist_worker_options_init(&mut o);
        o
    };
    tunables.apply(&mut o);
    o
}

/// A started DistWorker sent no-op tasks of one worker type; shut down on drop.
pub struct Host {
    w: *mut DistWorker,
    ty: DistWorkerType,
}

impl Host {
    /// Creates a worker with `o`, lets `register` add its workers, starts it.
    fn start(
        o: &DistWorkerOptions,
        ty: DistWorkerType,
        register: impl FnOnce(*mut DistWorker),
    ) -> Host {
        let mut w = ptr::null_mut();
        // SAFETY: `o` is initialised and `w` is a writable out-pointer.
        check(unsafe { dist_worker_create(o, &mut w) }, "create");
        register(w);
        // SAFETY: `w` is a live worker from dist_worker_create.
        check(unsafe { dist_worker_start(w) }, "start");
        Host { w, ty }
    }

    fn task(&self) -> DistTask {
        no_op_task(self.ty)
    }

    /// One dispatch + wait: ns to the end of the dispatch, and to the end of the wait.
    pub fn round_trip_split(&self) -> (u64, u64) {
        let task = self.task();
        let mut id = 0;
        let t = Instant::now();
        // SAFETY: live worker; `task` is readable with no args (group_size 1,
        // args NULL); `id` is writable.
        check(
            unsafe { dist_worker_dispatch(self.w, &task, &mut id) },
            "dispatch",
        );
        let d = t.elapsed().as_nanos() as u64;
        // SAFETY: live worker.
        check(unsafe { dist_worker_wait(self.w, id) }, "wait");
        (d, t.elapsed().as_nanos() as u64)
    }

    /// One dispatch + wait, in ns.
    pub fn round_trip(&self) -> u64 {
        self.round_trip_split().1
    }

    pub fn drain(&self) {
        // SAFETY: live worker.
        check(unsafe { dist_worker_drain(self.w) }, "drain");
    }

    /// Dispatches `tasks` no-op tasks, then drains; tasks per second.
    pub fn throughput(&self, tasks: usize) -> f64 {
        let task = self.task();
        let t = Instant::now();
        dispatch_n(self.w, &task, tasks);
        self.drain();
        tasks as f64 / t.elapsed().as_secs_f64()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SAFETY: the worker came from dist_worker_create and is shut down
        // once, here; nothing uses `self.w` after.
        check(unsafe { dist_worker_shutdown(self.w) }, "shutdown");
    }
}

/// A host with `children` forked SUB children.
pub struct Pool {
    host: Host,
    pids: Vec<i32>,
}

impl std::ops::Deref for Pool {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.host
    }
}

impl Pool {
    pub fn new(children: usize, tunables: &Tunables) -> Pool {
        let mut pids = Vec::with_capacity(children);
        let host = Host::start(&options(tunables), DIST_WORKER_SUB, |w| {
            for _ in 0..children {
                let mut pid = 0;
                // SAFETY: `w` is a live worker from dist_worker_create, not
                // started yet; `noop` ignores its user pointer; `pid` is writable.
                let s = unsafe {
                    dist_worker_spawn(w, DIST_WORKER_SUB, Some(noop), ptr::null_mut(), &mut pid)
                };
                check(s, "spawn");
                pids.push(pid);
            }
        });
        Pool { host, pids }
    }
}

/// Round trips to a hot child (after 1000 to warm up).
pub fn hot_rtt(n: usize, tunables: &Tunables) -> Lat {
    let p = Pool::new(1, tunables);
    for _ in 0..1000 {
        p.round_trip();
    }
    p.drain();
    let mut s = Vec::with_capacity(n);
    for i in 0..n {
        s.push(p.round_trip());
        if i % 4096 == 4095 {
            p.drain();
        }
    }
    Lat::of(s)
}

/// Round trips to a child that went to sleep (`SLEEP_GAP` idle before each).
pub fn sleeping_rtt(n: usize, tunables: &Tunables) -> Lat {
    let p = Pool::new(1, tunables);
    p.round_trip();
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        // Long enough for the child (and the dispatcher) to go to sleep.
        std::thread::sleep(SLEEP_GAP);
        s.push(p.round_trip());
    }
    p.drain();
    Lat::of(s)
}

/// CPU time in ns of every thread of `pid` (0 = this process), from
/// /proc/PID/task/*/schedstat (nanosecond resolution).
fn cpu_ns(pid: i32) -> u64 {
    let dir = if pid == 0 {
        "/proc/self/task".to_string()
    } else {
        format!("/proc/{pid}/task")
    };
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU used by the parent (all threads) and 16 children over 2 s of idleness
/// after a burst, as a percent of one core.
pub fn idle_cost(tunables: &Tunables) -> f64 {
    let p = Pool::new(16, tunables);
    p.throughput(20_000);
    std::thread::sleep(Duration::from_millis(200));
    let all = |p: &Pool| cpu_ns(0) + p.pids.iter().map(|&c| cpu_ns(c)).sum::<u64>();
    let before = all(&p);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let ns = all(&p) - before;
    ns as f64 / 1e9 / t.elapsed().as_secs_f64() * 100.0
}

/// Level setup: one spawned SUB child in the new level.
unsafe extern "C" fn one_child(_: *mut c_void, inner: *mut DistWorker) -> i32 {
    // SAFETY: `inner` is the live, not yet started level being set up.
    let s = unsafe {
        dist_worker_spawn(
            inner,
            DIST_WORKER_SUB,
            Some(noop),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    (s != DIST_OK) as i32
}

/// Orchestration: one SUB no-op on the inner level (the library drains it).
unsafe extern "C" fn one_sub_task(
    _: *mut c_void,
    inner: *mut DistWorker,
    _: u64,
    _: *const DistTaskView,
    config: *const DistCallConfig,
) -> i32 {
    let task = DistTask {
        worker_type: DIST_WORKER_SUB,
        callable: 1,
        // SAFETY: the library passes a readable config.
        config: unsafe { *config },
        args: ptr::null(),
        group_size: 1,
    };
    // SAFETY: `inner` is the live inner level; `task` is readable.
    let s = unsafe { dist_worker_dispatch(inner, &task, ptr::null_mut()) };
    (s != DIST_OK) as i32
}

/// A level 4 driving one spawned level 3 that has one SUB child: each
/// outer NEXT_LEVEL task runs one SUB no-op below.
pub fn two_levels(tunables: &Tunables) -> Host {
    let mut o = options(tunables);
    o.level = 4;
    let mut inner = o;
    inner.level = 3;
    Host::start(&o, DIST_WORKER_NEXT_LEVEL, |top| {
        // SAFETY: live, not started top; both functions ignore `user`.
        let s = unsafe {
            dist_worker_spawn_level(
                top,
                &inner,
                Some(one_child),
                Some(one_sub_task),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        check(s, "spawn_level");
    })
}

/// Dispatches `task` `n` times on the live worker `w` (ids not kept).
fn dispatch_n(w: *mut DistWorker, task: &DistTask, n: usize) {
    for _ in 0..n {
        // SAFETY: `w` is a live worker (the C API may be called on it from
        // any thread); `task` and the args it points to are readable for
        // the call; the id out-pointer may be NULL.
        check(
            unsafe { dist_worker_dispatch(w, task, ptr::null_mut()) },
            "dispatch",
        );
    }
}

/// A no-op task for a worker of type `ty`: callable 1, default config, no args.
fn no_op_task(ty: DistWorkerType) -> DistTask {
    DistTask {
        worker_type: ty,
        callable: 1,
        config: DistCallConfig {
            block_dim: 24,
            aicpu_thread_num: 3,
            enable_profiling: false,
            enable_dump_tensor: false,
        },
        args: ptr::null(),
        group_size: 1,
    }
}

/// A host with `threads` THREAD-mode SUB workers running the no-op.
pub fn threads(threads: usize, tunables: &Tunables) -> Host {
    Host::start(&options(tunables), DIST_WORKER_SUB, |w| {
        for _ in 0..threads {
            // SAFETY: `w` is live and not started; `noop` ignores `user`.
            let s =
                unsafe { dist_worker_add_thread(w, DIST_WORKER_SUB, Some(noop), ptr::null_mut()) };
            check(s, "add_thread");
        }
    })
}

/// Resident memory of this process, in bytes (/proc/self/statm).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

impl Host {
    /// `tasks` no-op tasks that each take the one tensor at a fixed address
    /// as INOUT, so each waits for the one before: a chain. Tasks per second.
    pub fn chain_throughput(&self, tasks: usize) -> f64 {
        let tensor = DistTensor {
            data: 0x1000,
            shapes: [1, 0, 0, 0, 0],
            ndims: 1,
            dtype: DIST_UINT64,
        };
        let tag = DIST_ARG_INOUT;
        let args = DistTaskArgs {
            tensors: &tensor,
            tags: &tag,
            tensor_count: 1,
            scalars: ptr::null(),
            scalar_count: 0,
        };
        let mut task = self.task();
        task.args = &args;
        let t = Instant::now();
        dispatch_n(self.w, &task, tasks);
        self.drain();
        tasks as f64 / t.elapsed().as_secs_f64()
    }

    /// Bytes of resident memory each dispatched, not yet drained no-op task
    /// costs: the growth over a batch of `tasks`, per task (then drained).
    pub fn bytes_per_undrained_task(&self, tasks: usize) -> f64 {
        let task = self.task();
        let before = resident_bytes();
        dispatch_n(self.w, &task, tasks);
        let grown = resident_bytes().saturating_sub(before);
        self.drain();
        grown as f64 / tasks as f64
    }

    /// `threads` host threads each dispatching `tasks / threads` no-op
    /// tasks at once, then one drain. Tasks per second.
    pub fn concurrent_throughput(&self, threads: usize, tasks: usize) -> f64 {
        let w = SendWorker(self.w);
        let ty = self.ty;
        let per = tasks / threads;
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let w = &w;
                s.spawn(move || {
                    let task = no_op_task(ty);
                    dispatch_n(w.0, &task, per);
                });
            }
        });
        self.drain();
        (per * threads) as f64 / t.elapsed().as_secs_f64()
    }
}

/// A DistWorker pointer handed to submitting threads.
struct SendWorker(*mut DistWorker);
// SAFETY: the C API may be called on one DistWorker from any thread.
unsafe impl Sync for SendWorker {}
