//! Chaos: 100,000 tasks over 8 spawned children per pool, with random kills,
//! random task failures and random hangs (with a task deadline). Every task
//! is accounted for exactly once (completed, failed with its cause, or never
//! run because a producer failed); drain and shutdown return; and nothing is
//! left: no child, zombie, thread, file descriptor or mapping.

mod common;

use common::Rng;
use dist_worker::abi::{DistCallConfig, DistTensor, DIST_ARG_INOUT};
use dist_worker::os::SharedMap;
use dist_worker::Args;
use dist_worker::TaskSpec;
use dist_worker::WaitPolicy;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime, Status};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const POOLS: u64 = 10;
const PER_POOL: u64 = 10_000;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Shared mappings (heap rings, mailboxes, doorbells are all MAP_SHARED;
/// private ones come and go with the allocator and thread stacks).
fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.ends_with('s'))
        })
        .count()
}

#[test]
fn every_task_is_accounted_for_and_nothing_is_left() {
    let (threads, fds, shm, mapped) = (
        count("/proc/self/task"),
        count("/proc/self/fd"),
        count("/dev/shm"),
        maps(),
    );
    // runs[n]: how many times task n started, across every child.
    let runs = SharedMap::new(4 * (POOLS * PER_POOL) as usize).unwrap();
    let runs_at = runs.as_ptr() as usize;
    let ran = move |n: u64| {
        // SAFETY: a live shared mapping of one u32 per task.
        unsafe { &*((runs_at + 4 * n as usize) as *const AtomicU32) }
    };
    let mut rng = Rng(0xc4a05);
    let mut tally = std::collections::HashMap::<&'static str, u64>::new();
    for pool in 0..POOLS {
        let opts = Options {
            wait: WaitPolicy {
                task_timeout: Some(Duration::from_millis(100)),
                ..WaitPolicy::default()
            },
            shutdown_timeout: Some(Duration::from_secs(2)),
            ..Options::default()
        };
        let rt = Runtime::new(opts).unwrap();
        let mut pids = Vec::new();
        for _ in 0..8 {
            let h = Box::new(
                move |_: u64, v: &dist_worker::TaskView<'_>, _: &DistCallConfig| {
                    let (n, what) = (v.scalars[0], v.scalars[1]);
                    ran(n).fetch_add(1, Ordering::Relaxed);
                    match what {
                        1 => 17, // fails
                        2 => {
                            std::thread::sleep(Duration::from_secs(60));
                            0
                        } // hangs
                        // SAFETY: the child kills itself mid-task.
                        3 => unsafe { libc::raise(libc::SIGKILL) },
                        _ => 0,
                    }
                },
            );
            pids.push(rt.spawn(WorkerType::Sub, h).unwrap());
        }
        let mut ids = Vec::new();
        let settle =
            |rt: &Runtime,
             ids: &mut Vec<(u64, u64)>,
             tally: &mut std::collections::HashMap<&'static str, u64>| {
                for (n, id) in ids.drain(..) {
                    let result = rt.wait(id);
                    let runs = ran(n).load(Ordering::Relaxed);
                    let outcome = match result {
                        Ok(()) => "completed",
                        Err(e) => match e.status {
                            Status::TaskFailed => "failed",
                            Status::ChildDied => "child died",
                            Status::Timeout => "timed out",
                            Status::DependencyFailed => "dependency failed",
                            Status::NoWorker => "no worker",
                            other => panic!("task {n}: unexpected {other:?}: {}", e.message),
                        },
                    };
                    match outcome {
                        "completed" | "failed" | "timed out" => {
                            assert_eq!(runs, 1, "task {n} {outcome} but ran {runs} times")
                        }
                        "dependency failed" | "no worker" => {
                            assert_eq!(runs, 0, "task {n} {outcome} but ran")
                        }
                        _ => assert!(runs <= 1, "task {n} ran {runs} times"),
                    }
                    *tally.entry(outcome).or_default() += 1;
                }
                // A drain ends the root scope: failed chains do not doom later rounds.
                let _ = rt.drain();
            };
        for i in 0..PER_POOL {
            if i % 500 == 0 {
                settle(&rt, &mut ids, &mut tally);
            }
            let n = pool * PER_POOL + i;
            let what = match rng.below(10_000) {
                0..=199 => 1,   // 2% fail
                200..=201 => 2, // hang past the deadline
                202..=203 => 3, // the child dies mid-task
                _ => 0,
            };
            // Chains through a few addresses, so failures have dependents.
            let t = [DistTensor {
                data: 0x1000 + 64 * rng.below(32),
                shapes: [1, 0, 0, 0, 0],
                ndims: 1,
                dtype: 0,
            }];
            let tags = [DIST_ARG_INOUT];
            let s = [n, what];
            let a = [Args {
                tensors: &t,
                tags: Some(&tags),
                scalars: &s,
            }];
            let spec = TaskSpec {
                ty: WorkerType::Sub,
                callable: 1,
                config: DistCallConfig::default(),
                members: &a[..],
            };
            match rt.submit(&spec) {
                Ok(id) => ids.push((n, id)),
                Err(e) => {
                    assert_eq!(e.status, Status::NoWorker, "{}", e.message);
                    *tally.entry("no worker").or_default() += 1;
                    assert_eq!(ran(n).load(Ordering::Relaxed), 0);
                }
            }
            if rng.below(10_000) == 0 {
                // SAFETY: killing one of our own children while it may be idle.
                unsafe { libc::kill(pids[rng.below(8) as usize], libc::SIGKILL) };
            }
        }
        settle(&rt, &mut ids, &mut tally);
        let _ = rt.drain();
        let _ = rt.shutdown();
    }
    let total: u64 = tally.values().sum();
    assert_eq!(total, POOLS * PER_POOL, "{tally:?}");
    eprintln!("chaos outcomes: {tally:?}");
    for kind in ["completed", "failed", "dependency failed"] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) > 0,
            "no task {kind}: {tally:?}"
        );
    }
    drop(runs);
    // Nothing left behind.
    // SAFETY: waitpid(-1) with WNOHANG only reports on our own children.
    let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(r, -1, "a child or zombie is left");
    assert_eq!(count("/proc/self/task"), threads, "threads left");
    assert_eq!(count("/proc/self/fd"), fds, "file descriptors left");
    assert_eq!(count("/dev/shm"), shm, "shared-memory files left");
    assert_eq!(maps(), mapped, "shared mappings left");
}
