//! dist-bench: the dispatch path of dist-worker beside the limits of the
//! machine, in one run.
//!
//! cargo run --release -p dist-bench [-- --json] [--quick]
//!
//! Measures: the floor (two processes spinning on one shared word; a pipe
//! round trip; a futex round trip), the reference protocol (parent polling
//! every 50 µs), this library's dispatch+wait through the C API (hot and
//! sleeping child), throughput through 1/4/16/64 children beside the
//! reference protocol and a pipe-based process pool, and the CPU an idle
//! pool costs.
//!
//! Single measurements, for profiling one path: `TPUT=N` (throughput
//! through N children), `SLEEPSTAT=1` (round trip to a sleeping child),
//! `SPLIT=1` (dispatch and wait timed apart). `DIST_BENCH_OPTS` sets the
//! waiting tunables, e.g. `wait_spin_us=0,worker_spin_us=20`.

use dist_worker::abi::*;
use dist_worker::ffi::*;
use std::os::raw::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const IDLE: u32 = 0;
const READY: u32 = 1;
const DONE: u32 = 2;
const STOP: u32 = 3;

/// Idle time before a round trip to a sleeping child (its spin window is 50 µs).
const SLEEP_GAP: Duration = Duration::from_millis(3);

struct Cfg {
    rtt_iters: usize,
    tasks: usize,
}

fn shared_word() -> &'static AtomicU32 {
    // SAFETY: a fresh anonymous shared page, never unmapped (the process exits).
    unsafe {
        let p = libc::mmap(
            ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        &*(p as *const AtomicU32)
    }
}

fn fork(child: impl FnOnce()) -> i32 {
    // SAFETY: the benchmark forks before any library thread of this process
    // runs a task; the child only runs `child` and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child();
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: i32) {
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, ptr::null_mut(), 0) };
}

fn futex(w: &AtomicU32, op: i32, v: u32) {
    // SAFETY: plain futex on a shared word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            op,
            v,
            ptr::null::<libc::timespec>(),
            0,
            0,
        )
    };
}

#[derive(Clone, Copy, Default)]
struct Lat {
    p50: f64,
    p99: f64,
}

fn lat(mut ns: Vec<u64>) -> Lat {
    ns.sort_unstable();
    Lat {
        p50: ns[ns.len() / 2] as f64 / 1e3,
        p99: ns[ns.len() * 99 / 100] as f64 / 1e3,
    }
}

fn spinning_child(st: &'static AtomicU32) -> i32 {
    fork(move || loop {
        match st.load(Ordering::Acquire) {
            READY => st.store(DONE, Ordering::Release),
            STOP => return,
            _ => std::hint::spin_loop(),
        }
    })
}

/// Two processes spinning on one word.
fn spin_floor(n: usize) -> Lat {
    let st = shared_word();
    let pid = spinning_child(st);
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        st.store(READY, Ordering::Release);
        while st.load(Ordering::Acquire) != DONE {
            std::hint::spin_loop();
        }
        s.push(t.elapsed().as_nanos() as u64);
        st.store(IDLE, Ordering::Relaxed);
    }
    st.store(STOP, Ordering::Release);
    reap(pid);
    lat(s)
}

/// The reference protocol: child spins, parent sleeps 50 µs between polls.
fn reference_rtt(n: usize) -> Lat {
    let st = shared_word();
    let pid = spinning_child(st);
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        st.store(READY, Ordering::Release);
        while st.load(Ordering::Acquire) != DONE {
            std::thread::sleep(Duration::from_micros(50));
        }
        s.push(t.elapsed().as_nanos() as u64);
        st.store(IDLE, Ordering::Relaxed);
    }
    st.store(STOP, Ordering::Release);
    reap(pid);
    lat(s)
}

/// Futex wait/wake on both sides.
fn futex_rtt(n: usize) -> Lat {
    let st = shared_word();
    let pid = fork(move || loop {
        let v = st.load(Ordering::SeqCst);
        match v {
            READY => {
                st.store(DONE, Ordering::SeqCst);
                futex(st, libc::FUTEX_WAKE, 1);
            }
            STOP => return,
            _ => futex(st, libc::FUTEX_WAIT, v),
        }
    });
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        st.store(READY, Ordering::SeqCst);
        futex(st, libc::FUTEX_WAKE, 1);
        loop {
            let v = st.load(Ordering::SeqCst);
            if v == DONE {
                break;
            }
            futex(st, libc::FUTEX_WAIT, v);
        }
        s.push(t.elapsed().as_nanos() as u64);
        st.store(IDLE, Ordering::SeqCst);
    }
    st.store(STOP, Ordering::SeqCst);
    futex(st, libc::FUTEX_WAKE, 1);
    reap(pid);
    lat(s)
}

fn pipe() -> [i32; 2] {
    let mut p = [0; 2];
    // SAFETY: p has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    p
}

fn write_all(fd: i32, b: &[u8]) {
    // SAFETY: writing from a live buffer; records are <= PIPE_BUF, so atomic.
    let r = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    assert_eq!(r as usize, b.len());
}

fn read_exact(fd: i32, b: &mut [u8]) -> bool {
    let mut got = 0;
    while got < b.len() {
        // SAFETY: reading into a live buffer.
        let r = unsafe { libc::read(fd, b[got..].as_mut_ptr().cast(), b.len() - got) };
        if r <= 0 {
            return false;
        }
        got += r as usize;
    }
    true
}

fn close(fd: i32) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

/// A pipe round trip; with `gap`, each one after the child slept that long.
fn pipe_rtt(n: usize, gap: Option<Duration>) -> Lat {
    let (a, b) = (pipe(), pipe());
    let pid = fork(move || {
        let mut c = [0u8];
        while read_exact(a[0], &mut c) && c[0] != 0 {
            write_all(b[1], &c);
        }
    });
    let mut s = Vec::with_capacity(n);
    let mut c = [1u8];
    for _ in 0..n {
        if let Some(g) = gap {
            std::thread::sleep(g);
        }
        let t = Instant::now();
        write_all(a[1], &[1]);
        read_exact(b[0], &mut c);
        s.push(t.elapsed().as_nanos() as u64);
    }
    write_all(a[1], &[0]);
    reap(pid);
    for fd in a.into_iter().chain(b) {
        close(fd);
    }
    lat(s)
}

/// What a user would write instead: a pool of processes fed through one task
/// pipe (64-byte records) and answering on one result pipe.
fn pipe_pool(children: usize, tasks: usize) -> f64 {
    let (task, result) = (pipe(), pipe());
    let pids: Vec<i32> = (0..children)
        .map(|_| {
            fork(move || {
                let mut rec = [0u8; 64];
                while read_exact(task[0], &mut rec) && rec[0] != 0 {
                    write_all(result[1], &rec[..8]);
                }
            })
        })
        .collect();
    let window = 4 * children;
    let mut rec = [1u8; 64];
    let mut out = [0u8; 8];
    let t = Instant::now();
    let (mut sent, mut done) = (0, 0);
    while done < tasks {
        while sent < tasks && sent - done < window {
            rec[8..16].copy_from_slice(&(sent as u64).to_le_bytes());
            write_all(task[1], &rec);
            sent += 1;
        }
        read_exact(result[0], &mut out);
        done += 1;
    }
    let rate = tasks as f64 / t.elapsed().as_secs_f64();
    rec[0] = 0;
    for _ in 0..children {
        write_all(task[1], &rec);
    }
    pids.into_iter().for_each(reap);
    for fd in task.into_iter().chain(result) {
        close(fd);
    }
    rate
}

/// The reference design's pool: a thread per child, each publishing a task
/// and polling every 50 µs; children spin.
fn reference_pool(children: usize, tasks: usize) -> f64 {
    let words: Vec<&'static AtomicU32> = (0..children).map(|_| shared_word()).collect();
    let pids: Vec<i32> = words.iter().map(|&w| spinning_child(w)).collect();
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for &w in &words {
            let next = &next;
            s.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < tasks {
                    w.store(READY, Ordering::Release);
                    while w.load(Ordering::Acquire) != DONE {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    w.store(IDLE, Ordering::Relaxed);
                }
            });
        }
    });
    let rate = tasks as f64 / t.elapsed().as_secs_f64();
    for w in &words {
        w.store(STOP, Ordering::Release);
    }
    pids.into_iter().for_each(reap);
    rate
}

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
        // SAFETY: the library returns a NUL-terminated string.
        let m = unsafe { std::ffi::CStr::from_ptr(dist_last_error_message()) };
        panic!("{what}: status {s}: {}", m.to_string_lossy());
    }
}

struct Pool {
    w: *mut DistWorker,
    pids: Vec<i32>,
}

impl Pool {
    fn new(children: usize) -> Pool {
        let mut w = ptr::null_mut();
        // SAFETY: valid out-pointers throughout; the worker is shut down in Drop.
        unsafe {
            let mut o = std::mem::zeroed::<DistWorkerOptions>();
            dist_worker_options_init(&mut o);
            // Tunables to explore: DIST_BENCH_OPTS="wait_spin_us=0,worker_spin_us=20".
            for kv in std::env::var("DIST_BENCH_OPTS")
                .unwrap_or_default()
                .split(',')
            {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v: u32 = v.parse().expect("a number");
                match k {
                    "worker_spin_us" => o.worker_spin_us = v,
                    "dispatcher_spin_us" => o.dispatcher_spin_us = v,
                    "wait_spin_us" => o.wait_spin_us = v,
                    "poll_interval_us" => o.poll_interval_us = v,
                    _ => panic!("unknown option {k}"),
                }
            }
            check(dist_worker_create(&o, &mut w), "create");
            let mut pids = Vec::new();
            for _ in 0..children {
                let mut pid = 0;
                check(
                    dist_worker_spawn(w, DIST_WORKER_SUB, Some(noop), ptr::null_mut(), &mut pid),
                    "spawn",
                );
                pids.push(pid);
            }
            check(dist_worker_start(w), "start");
            Pool { w, pids }
        }
    }

    fn task(&self) -> DistTask {
        DistTask {
            worker_type: DIST_WORKER_SUB,
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

    #[allow(dead_code)]
    fn round_trip_split(&self) -> (u64, u64) {
        let task = self.task();
        let mut id = 0;
        let t = Instant::now();
        // SAFETY: live worker, valid task and out-pointer.
        unsafe {
            check(dist_worker_dispatch(self.w, &task, &mut id), "dispatch");
            let d = t.elapsed().as_nanos() as u64;
            check(dist_worker_wait(self.w, id), "wait");
            (d, t.elapsed().as_nanos() as u64)
        }
    }

    fn round_trip(&self) -> u64 {
        let task = self.task();
        let mut id = 0;
        let t = Instant::now();
        // SAFETY: live worker, valid task and out-pointer.
        unsafe {
            check(dist_worker_dispatch(self.w, &task, &mut id), "dispatch");
            check(dist_worker_wait(self.w, id), "wait");
        }
        t.elapsed().as_nanos() as u64
    }

    fn drain(&self) {
        // SAFETY: live worker.
        check(unsafe { dist_worker_drain(self.w) }, "drain");
    }

    fn throughput(&self, tasks: usize) -> f64 {
        let task = self.task();
        let t = Instant::now();
        for _ in 0..tasks {
            // SAFETY: live worker, valid task.
            check(
                unsafe { dist_worker_dispatch(self.w, &task, ptr::null_mut()) },
                "dispatch",
            );
        }
        self.drain();
        tasks as f64 / t.elapsed().as_secs_f64()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the worker came from create and is shut down once.
        check(unsafe { dist_worker_shutdown(self.w) }, "shutdown");
    }
}

fn hot_rtt(n: usize) -> Lat {
    let p = Pool::new(1);
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
    lat(s)
}

fn sleeping_rtt(n: usize) -> Lat {
    let p = Pool::new(1);
    p.round_trip();
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        // Long enough for the child (and the dispatcher) to go to sleep.
        std::thread::sleep(SLEEP_GAP);
        s.push(p.round_trip());
    }
    p.drain();
    lat(s)
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
fn idle_cost() -> f64 {
    let p = Pool::new(16);
    p.throughput(20_000);
    std::thread::sleep(Duration::from_millis(200));
    let all = |p: &Pool| cpu_ns(0) + p.pids.iter().map(|&c| cpu_ns(c)).sum::<u64>();
    let before = all(&p);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let ns = all(&p) - before;
    ns as f64 / 1e9 / t.elapsed().as_secs_f64() * 100.0
}

/// Median of five runs: throughput on a shared 2-core machine swings with
/// where the scheduler puts the processes.
fn median(mut run: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..5).map(|_| run()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[2]
}

fn main() {
    if let Ok(n) = std::env::var("TPUT") {
        let p = Pool::new(n.parse().expect("children"));
        p.throughput(50_000);
        println!("{n} children: {:.0} tasks/s", p.throughput(1_000_000));
        return;
    }
    if std::env::var("SLEEPSTAT").is_ok() {
        let l = sleeping_rtt(300);
        let c = pipe_rtt(300, Some(SLEEP_GAP));
        println!(
            "sleeping child p50 {:.1} p99 {:.1}; pipe after idle p50 {:.1}",
            l.p50, l.p99, c.p50
        );
        return;
    }
    if std::env::var("SPLIT").is_ok() {
        let p = Pool::new(1);
        p.round_trip();
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(3));
            println!("{:?}", p.round_trip_split());
        }
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let cfg = if quick {
        Cfg {
            rtt_iters: 5_000,
            tasks: 20_000,
        }
    } else {
        Cfg {
            rtt_iters: 50_000,
            tasks: 200_000,
        }
    };

    let spin = spin_floor(cfg.rtt_iters);
    let pipe = pipe_rtt(cfg.rtt_iters, None);
    let pipe_cold = pipe_rtt(if quick { 100 } else { 500 }, Some(SLEEP_GAP));
    let fut = futex_rtt(cfg.rtt_iters);
    let reference = reference_rtt(cfg.rtt_iters / 20);
    let hot = hot_rtt(cfg.rtt_iters);
    let sleeping = sleeping_rtt(if quick { 100 } else { 500 });
    let mut tput = Vec::new();
    for n in [1usize, 4, 16, 64] {
        let p = Pool::new(n);
        // Warm up with a batch of the same size: slot tables then stay
        // allocated, as in a host that dispatches such batches repeatedly.
        p.throughput(cfg.tasks);
        tput.push((n, median(|| p.throughput(cfg.tasks))));
    }
    let ref_pool = median(|| reference_pool(4, cfg.tasks / 20));
    let pipe4 = median(|| pipe_pool(4, cfg.tasks));
    let idle = idle_cost();
    let t = |n: usize| tput.iter().find(|x| x.0 == n).unwrap().1;

    if json {
        let tp: Vec<String> = tput
            .iter()
            .map(|(n, r)| format!("\"{n}\": {r:.0}"))
            .collect();
        println!(
            "{{\"floor_spin_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}, \"floor_pipe_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}, \"floor_pipe_after_idle_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}, \
             \"futex_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}, \"reference_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}, \
             \"hot_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}, \"sleeping_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}, \
             \"throughput_tasks_per_s\": {{{}}}, \"reference_pool_4_tasks_per_s\": {ref_pool:.0}, \
             \"pipe_pool_4_tasks_per_s\": {pipe4:.0}, \"idle_cpu_percent_16_children\": {idle:.3}}}",
            spin.p50, spin.p99, pipe.p50, pipe.p99, pipe_cold.p50, pipe_cold.p99, fut.p50, fut.p99, reference.p50, reference.p99,
            hot.p50, hot.p99, sleeping.p50, sleeping.p99, tp.join(", ")
        );
        return;
    }
    println!(
        "{:<48} {:>10} {:>10}   ratio",
        "round trip (one task, dispatch + wait)", "p50 us", "p99 us"
    );
    let x = |a: Lat, b: Lat| a.p50 / b.p50;
    let rows = [
        (
            "floor: two processes spinning on one word",
            spin,
            "1.0x spin floor".to_string(),
        ),
        (
            "floor: pipe round trip",
            pipe,
            format!("{:.1}x spin floor", x(pipe, spin)),
        ),
        (
            "floor: pipe round trip, child idle 3 ms before",
            pipe_cold,
            format!("{:.2}x pipe", x(pipe_cold, pipe)),
        ),
        (
            "futex wait/wake round trip",
            fut,
            format!("{:.2}x pipe", x(fut, pipe)),
        ),
        (
            "reference protocol (parent polls every 50 us)",
            reference,
            format!("{:.0}x spin floor", x(reference, spin)),
        ),
        (
            "dist-worker, hot child (C API)",
            hot,
            format!("{:.1}x spin floor", x(hot, spin)),
        ),
        (
            "dist-worker, child woken from sleep (C API)",
            sleeping,
            format!(
                "{:.2}x pipe, {:.2}x pipe after idle",
                x(sleeping, pipe),
                x(sleeping, pipe_cold)
            ),
        ),
    ];
    for (name, l, ratio) in rows {
        println!("{name:<48} {:>10.3} {:>10.3}   {ratio}", l.p50, l.p99);
    }
    println!();
    println!(
        "{:<48} {:>12}   ratio",
        "throughput (no-op tasks, dispatch all + drain; median of 5)", "tasks/s"
    );
    for &(n, r) in &tput {
        println!(
            "{:<48} {:>12.0}   {:.1}x reference, {:.1}x pipe pool, {:.2}x of 4 children",
            format!("dist-worker, {n} children"),
            r,
            r / ref_pool,
            r / pipe4,
            r / t(4)
        );
    }
    println!(
        "{:<48} {:>12.0}",
        "reference protocol, 4 children", ref_pool
    );
    println!(
        "{:<48} {:>12.0}",
        "pipe-based process pool, 4 children", pipe4
    );
    println!();
    println!("idle cost, parent + 16 children over 2 s: {idle:.4}% of one core");
}
