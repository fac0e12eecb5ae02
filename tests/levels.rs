//! Levels in THREAD mode: a level drives levels (L5 -> L4 -> L3 -> spawned
//! children), failures travel up with the path, memory from the top's heap
//! is written at the bottom with no copy, and shutting down the top ends
//! every level and child under it.

use dist_worker::abi::{DIST_ARG_INOUT, DIST_UINT64};
use dist_worker::{Args, Options, Orch, Runtime, Status, WorkerType};

mod common;
use common::spec;

fn options(level: u32) -> Options {
    Options {
        level,
        heap_ring_size: 1 << 20,
        ..Options::default()
    }
}

/// Callable 1: add scalar 1 to the u64 at scalar 0 (an address), then ok.
/// Callable 5: fail with 5, saying why.
fn leaf(callable: u64, v: &dist_worker::TaskView<'_>, _: &dist_worker::DistCallConfig) -> i32 {
    match callable {
        1 => {
            let p = v.scalars[0] as *mut u64;
            // SAFETY: the address is an 8-byte slot of the top level's
            // MAP_SHARED heap, mapped in this child too.
            unsafe { *p += v.scalars[1] };
            0
        }
        5 => {
            dist_worker::set_error_message(b"disk full");
            5
        }
        _ => 0,
    }
}

/// An orchestration function that forwards the outer task to the inner
/// level's `ty` workers: each scalar pair (address, amount) becomes one
/// inner task, all waited for.
fn forward(ty: WorkerType) -> Orch {
    Box::new(move |inner, callable, v, _| {
        let mut ids = Vec::new();
        for pair in v.scalars.chunks(2) {
            let a = [Args::scalars(pair)];
            match inner.submit(&spec(ty, callable, &a)) {
                Ok(id) => ids.push(id),
                Err(_) => return 1,
            }
        }
        for id in ids {
            let _ = inner.wait(id); // the drain after us reports failures
        }
        0
    })
}

/// L5 -> L4 -> two L3 levels -> two spawned SUB children each.
fn tree() -> (Runtime, Vec<i32>) {
    let top = Runtime::new(options(5)).unwrap();
    let l4 = Runtime::new(options(4)).unwrap();
    let mut pids = Vec::new();
    for _ in 0..2 {
        let l3 = Runtime::new(options(3)).unwrap();
        for _ in 0..2 {
            pids.push(l3.spawn(WorkerType::Sub, Box::new(leaf)).unwrap());
        }
        l4.add_level(l3, forward(WorkerType::Sub)).unwrap();
    }
    top.add_level(l4, forward(WorkerType::NextLevel)).unwrap();
    (top, pids)
}

#[test]
fn three_levels_run_a_dag_on_memory_from_the_top() {
    let (top, pids) = tree();
    let counter = top.alloc(&[], DIST_UINT64).unwrap();
    let addr = counter.data;
    // A chain of 20 INOUT tasks at the top; each adds 1 + i at the bottom.
    let mut last = 0;
    for i in 0..20u64 {
        let t = [counter];
        let tags = [DIST_ARG_INOUT];
        let s = [addr, 1 + i];
        let a = [Args {
            tensors: &t,
            tags: Some(&tags),
            scalars: &s,
        }];
        last = top.submit(&spec(WorkerType::NextLevel, 1, &a)).unwrap();
    }
    top.wait(last).unwrap(); // the chain is ordered: all ran
                             // SAFETY: the allocation is live until the drain ends its scope.
    let total = unsafe { *(addr as *const u64) };
    top.drain().unwrap();
    assert_eq!(
        total,
        (1..=20).sum::<u64>(),
        "every task ran once, at the bottom"
    );
    top.shutdown().unwrap();
    for pid in pids {
        // SAFETY: waitpid on a pid an inner level forked and reaped.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "child {pid} of an inner level was left");
    }
}

#[test]
fn a_failure_at_the_bottom_carries_the_path() {
    let (top, _) = tree();
    let s = [0u64, 0];
    let a = [Args::scalars(&s)];
    let id = top.submit(&spec(WorkerType::NextLevel, 5, &a)).unwrap();
    let e = top.wait(id).unwrap_err();
    assert_eq!(e.status, Status::TaskFailed);
    let m = &e.message;
    println!("{m}");
    assert!(m.starts_with("L5 task 0x"), "{m}");
    assert!(m.contains("-> L4 worker 0 (thread): L4 task 0x"), "{m}");
    assert!(m.contains("-> L3 worker 0 (thread): task 0x"), "{m}");
    common::assert_failed_at_the_bottom(m);
    let _ = top.drain();
    top.shutdown().unwrap();
}
