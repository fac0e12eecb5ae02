//! A demo host: spawns PROCESS children and THREAD workers of both types,
//! dispatches a batch of tasks, and prints what ran where and how fast.
//!
//! cargo run --release --example demo [-- TASKS]

use dist_worker::abi::{DistCallConfig, DistTensor, DIST_FLOAT32};
use dist_worker::Args;
use dist_worker::TaskSpec;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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

    let config = DistCallConfig {
        block_dim: 24,
        aicpu_thread_num: 3,
        enable_profiling: false,
        enable_dump_tensor: false,
    };
    let start = Instant::now();
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
    rt.drain()?;
    let elapsed = start.elapsed();

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
    rt.shutdown()
}
