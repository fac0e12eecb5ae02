//! A demo host: spawns PROCESS children and THREAD workers of both types,
//! dispatches a batch of tasks, and prints what ran where and how fast.
//!
//! cargo run --release --example demo [-- TASKS]
//!
//! On a terminal, a batch that runs longer than a moment shows a live
//! progress line (tasks done, the rate) while it drains.

use dist_worker::abi::{DistCallConfig, DistTensor, DIST_FLOAT32};
use dist_worker::Args;
use dist_worker::TaskSpec;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CHILDREN: usize = 4;
const THREADS: usize = 2;

fn main() -> Result<(), dist_worker::Error> {
    let tasks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = Runtime::new(Options::default())?;
    // Per-worker counters live in the shared heap, so children's counts are
    // visible to the parent.
    let (heap, _) = rt.heap();
    let counters = heap as usize;
    let counter = move |slot: usize| {
        // SAFETY: the heap is MAP_SHARED, 8-aligned, and far larger than 64 counters.
        unsafe { &*((counters + 8 * slot) as *const AtomicU64) }
    };

    let mut pids = Vec::new();
    for slot in 0..CHILDREN {
        let ty = if slot % 2 == 0 {
            WorkerType::Sub
        } else {
            WorkerType::NextLevel
        };
        pids.push(rt.spawn(
            ty,
            Box::new(move |_callable, view, _cfg| {
                // The "work": check the arguments arrived, count the task.
                let ok = view.tensors.len() == 1 && view.scalars.len() == 2;
                counter(slot).fetch_add(1, Ordering::Relaxed);
                if ok {
                    0
                } else {
                    1
                }
            }),
        )?);
    }
    for t in 0..THREADS {
        let slot = CHILDREN + t;
        let ty = if t % 2 == 0 {
            WorkerType::Sub
        } else {
            WorkerType::NextLevel
        };
        rt.add_thread(
            ty,
            Box::new(move |_, _, _| {
                counter(slot).fetch_add(1, Ordering::Relaxed);
                0
            }),
        )?;
    }

    let start = Instant::now();
    let finished = AtomicBool::new(false);
    let done = || {
        (0..CHILDREN + THREADS)
            .map(|s| counter(s).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    std::thread::scope(|scope| -> Result<(), dist_worker::Error> {
        if std::io::stdout().is_terminal() {
            scope.spawn(|| progress(tasks, start, &finished, done));
        }
        let r = submit_all(&rt, tasks);
        finished.store(true, Ordering::Relaxed);
        r
    })?;
    let elapsed = start.elapsed();
    report(tasks, elapsed, &pids, counter);
    rt.shutdown()
}

/// Redraws one line on the terminal every 100 ms (after the first 300 ms,
/// so short batches print nothing) until the batch is drained.
fn progress(tasks: u64, start: Instant, finished: &AtomicBool, done: impl Fn() -> u64) {
    let mut drawn = false;
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let t = start.elapsed();
        if t < Duration::from_millis(300) {
            continue;
        }
        let n = done();
        let rate = n as f64 / t.as_secs_f64();
        print!(
            "\r  {n:>10} / {tasks} tasks ({:>5.1}%), {rate:>10.0} tasks/s, {:>6.1} s",
            100.0 * n as f64 / tasks.max(1) as f64,
            t.as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        drawn = true;
    }
    if drawn {
        println!();
    }
}

/// Dispatches the batch (alternating types, one tensor and two scalars
/// each), then drains it.
fn submit_all(rt: &Runtime, tasks: u64) -> Result<(), dist_worker::Error> {
    let config = DistCallConfig {
        block_dim: 24,
        aicpu_thread_num: 3,
        enable_profiling: false,
        enable_dump_tensor: false,
    };
    for i in 0..tasks {
        let t = [DistTensor {
            data: 0x1000 + 64 * i,
            shapes: [16, 16, 0, 0, 0],
            ndims: 2,
            dtype: DIST_FLOAT32,
        }];
        let s = [i, i * 2];
        let members = [Args {
            tensors: &t,
            tags: None,
            scalars: &s,
        }];
        let ty = if i % 2 == 0 {
            WorkerType::Sub
        } else {
            WorkerType::NextLevel
        };
        rt.submit(&TaskSpec {
            ty,
            callable: i % 7,
            config,
            members: &members[..],
        })?;
    }
    rt.drain()
}

/// What ran where, and how fast.
fn report(
    tasks: u64,
    elapsed: Duration,
    pids: &[i32],
    counter: impl Fn(usize) -> &'static AtomicU64,
) {
    println!("dist-worker demo: {tasks} tasks over {CHILDREN} children and {THREADS} threads");
    for slot in 0..CHILDREN + THREADS {
        let who = if let Some(pid) = pids.get(slot) {
            format!("child pid {pid:>7}")
        } else {
            format!("pool thread {:>5}", slot - CHILDREN)
        };
        let ty = if slot % 2 == 0 {
            "SUB       "
        } else {
            "NEXT_LEVEL"
        };
        println!(
            "  {ty} {who}: {:>8} tasks",
            counter(slot).load(Ordering::Relaxed)
        );
    }
    let rate = tasks as f64 / elapsed.as_secs_f64();
    println!(
        "  {tasks} tasks dispatched and drained in {:.1} ms: {:.0} tasks/s, {:.2} us/task",
        elapsed.as_secs_f64() * 1e3,
        rate,
        1e6 / rate
    );
}
