//! What the dispatch path is set beside: the machine's floor (two processes
//! spinning on one shared word, a pipe round trip, a futex round trip), the
//! reference protocol (the parent polls every 50 µs) and the process pools
//! a user would write instead (the reference design's, and one on pipes).
//!
//! The shared words are the state words of mailboxes mapped by the library,
//! with the mailbox's states; children are forked and reaped through
//! `dist_worker::os`.

use crate::Lat;
use dist_worker::os::{fork_child, futex_wait, futex_wake, wait_child};
use dist_worker::wire::state::{IDLE, SHUTDOWN, TASK_DONE, TASK_READY};
use dist_worker::wire::{Mailbox, OwnedMailbox};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A fresh shared mailbox (IDLE) for a child forked after it.
fn mailbox() -> OwnedMailbox {
    OwnedMailbox::new().expect("mapping a shared mailbox")
}

/// Forks a child that runs `child`, then exits with status 0.
fn spawn(child: impl FnOnce()) -> i32 {
    fork_child(|| {
        child();
        0
    })
    .expect("fork")
}

fn reap(pid: i32) {
    wait_child(pid, true).expect("reaping a benchmark child");
}

fn pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    std::io::pipe().expect("pipe")
}

/// A child that answers every TASK_READY with TASK_DONE, spinning, until SHUTDOWN.
fn spinning_child(mb: Mailbox) -> i32 {
    answering_child(mb, std::hint::spin_loop)
}

/// A child that answers every TASK_READY with TASK_DONE, `idle` between
/// looks, until SHUTDOWN.
fn answering_child(mb: Mailbox, idle: fn()) -> i32 {
    spawn(move || loop {
        match mb.state() {
            TASK_READY => mb.set_state(TASK_DONE),
            SHUTDOWN => return,
            _ => idle(),
        }
    })
}

/// Pins the calling thread (and what it forks later) to CPU `cpu`.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity
    // get a valid pointer to it and its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The floor of a hand-over between two processes that share one core:
/// both pinned to the last CPU, each yielding between looks, so every
/// round trip is two context switches. What a level chain pays on a
/// machine with fewer cores than runnable parties. Runs in a thread of its
/// own, so the pinning ends with it.
pub fn one_core_yield_floor(n: usize) -> Option<Lat> {
    std::thread::spawn(move || {
        let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
        if !pin_to(cpus - 1) {
            return None;
        }
        let owned = mailbox();
        let mb = owned.handle();
        let pid = answering_child(mb, std::thread::yield_now);
        let mut s = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            hand_over(mb, std::thread::yield_now);
            s.push(t.elapsed().as_nanos() as u64);
            take_back(mb);
        }
        mb.set_state(SHUTDOWN);
        reap(pid);
        Some(Lat::of(s))
    })
    .join()
    .expect("the one-core floor")
}

/// Hands one task to a spinning child: publishes it, then waits for
/// TASK_DONE with `idle` between looks.
fn hand_over(mb: Mailbox, idle: impl Fn()) {
    mb.set_state(TASK_READY);
    while mb.state() != TASK_DONE {
        idle();
    }
}

/// Takes the mailbox back after TASK_DONE.
fn take_back(mb: Mailbox) {
    mb.state_word().store(IDLE, Ordering::Relaxed);
}

/// Round trips to a spinning child, the parent waiting with `idle`.
fn spinning_rtt(n: usize, idle: impl Fn()) -> Lat {
    let owned = mailbox();
    let mb = owned.handle();
    let pid = spinning_child(mb);
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        hand_over(mb, &idle);
        s.push(t.elapsed().as_nanos() as u64);
        take_back(mb);
    }
    mb.set_state(SHUTDOWN);
    reap(pid);
    Lat::of(s)
}

/// Two processes spinning on one word.
pub fn spin_floor(n: usize) -> Lat {
    spinning_rtt(n, std::hint::spin_loop)
}

/// The reference protocol: child spins, parent sleeps 50 µs between polls.
pub fn reference_rtt(n: usize) -> Lat {
    spinning_rtt(n, || std::thread::sleep(Duration::from_micros(50)))
}

/// Futex wait/wake on both sides.
pub fn futex_rtt(n: usize) -> Lat {
    let owned = mailbox();
    let mb = owned.handle();
    let st = mb.state_word();
    let pid = spawn(|| loop {
        let v = st.load(Ordering::SeqCst);
        match v {
            TASK_READY => {
                st.store(TASK_DONE, Ordering::SeqCst);
                futex_wake(st, 1);
            }
            SHUTDOWN => return,
            _ => futex_wait(st, v, None),
        }
    });
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        st.store(TASK_READY, Ordering::SeqCst);
        futex_wake(st, 1);
        loop {
            let v = st.load(Ordering::SeqCst);
            if v == TASK_DONE {
                break;
            }
            futex_wait(st, v, None);
        }
        s.push(t.elapsed().as_nanos() as u64);
        st.store(IDLE, Ordering::SeqCst);
    }
    st.store(SHUTDOWN, Ordering::SeqCst);
    futex_wake(st, 1);
    reap(pid);
    Lat::of(s)
}

/// A pipe round trip (one byte each way); with `gap`, each one after the
/// child slept that long.
pub fn pipe_rtt(n: usize, gap: Option<Duration>) -> Lat {
    let ((to_child, mut to_child_w), (mut from_child, from_child_w)) = (pipe(), pipe());
    let pid = spawn(|| {
        let mut c = [0u8];
        while (&to_child).read_exact(&mut c).is_ok() && c[0] != 0 {
            (&from_child_w).write_all(&c).expect("pipe write");
        }
    });
    let mut s = Vec::with_capacity(n);
    let mut c = [1u8];
    for _ in 0..n {
        if let Some(g) = gap {
            std::thread::sleep(g);
        }
        let t = Instant::now();
        to_child_w.write_all(&[1]).expect("pipe write");
        from_child.read_exact(&mut c).expect("pipe read");
        s.push(t.elapsed().as_nanos() as u64);
    }
    to_child_w.write_all(&[0]).expect("pipe write");
    reap(pid);
    Lat::of(s)
}

/// What a user would write instead: a pool of processes fed through one task
/// pipe (64-byte records, each written whole, so atomically) and answering
/// on one result pipe, pipelined: 16 records in flight per child. Tasks per
/// second.
pub fn pipe_pool(children: usize, tasks: usize) -> f64 {
    let ((task_r, mut task_w), (mut result_r, result_w)) = (pipe(), pipe());
    let pids: Vec<i32> = (0..children)
        .map(|_| {
            spawn(|| {
                let mut rec = [0u8; 64];
                while (&task_r).read_exact(&mut rec).is_ok() && rec[0] != 0 {
                    (&result_w).write_all(&rec[..8]).expect("pipe write");
                }
            })
        })
        .collect();
    let window = 16 * children;
    let mut rec = [1u8; 64];
    let mut out = [0u8; 8];
    let t = Instant::now();
    let (mut sent, mut done) = (0, 0);
    while done < tasks {
        while sent < tasks && sent - done < window {
            rec[8..16].copy_from_slice(&(sent as u64).to_le_bytes());
            task_w.write_all(&rec).expect("pipe write");
            sent += 1;
        }
        result_r.read_exact(&mut out).expect("pipe read");
        done += 1;
    }
    let rate = tasks as f64 / t.elapsed().as_secs_f64();
    rec[0] = 0;
    for _ in 0..children {
        task_w.write_all(&rec).expect("pipe write");
    }
    pids.into_iter().for_each(reap);
    rate
}

/// The reference design's pool: a thread per child, each publishing a task
/// and polling every 50 µs; children spin. Tasks per second.
pub fn reference_pool(children: usize, tasks: usize) -> f64 {
    let owned: Vec<OwnedMailbox> = (0..children).map(|_| mailbox()).collect();
    let boxes: Vec<Mailbox> = owned.iter().map(OwnedMailbox::handle).collect();
    let pids: Vec<i32> = boxes.iter().map(|&mb| spinning_child(mb)).collect();
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for &mb in &boxes {
            let next = &next;
            s.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < tasks {
                    hand_over(mb, || std::thread::sleep(Duration::from_micros(50)));
                    take_back(mb);
                }
            });
        }
    });
    let rate = tasks as f64 / t.elapsed().as_secs_f64();
    for mb in &boxes {
        mb.set_state(SHUTDOWN);
    }
    pids.into_iter().for_each(reap);
    rate
}

/// Runs `f` while `n` foreign processes spin on the cores beside it (a
/// host's own busy threads), then ends them.
pub fn with_busy_processes<T>(n: usize, f: impl FnOnce() -> T) -> T {
    let stop = mailbox();
    let word = stop.handle();
    let pids: Vec<i32> = (0..n)
        .map(|_| {
            spawn(move || {
                while word.state() != SHUTDOWN {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let r = f();
    word.set_state(SHUTDOWN);
    pids.into_iter().for_each(reap);
    r
}
