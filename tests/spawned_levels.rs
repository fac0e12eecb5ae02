//! Levels in PROCESS mode: an L4 drives two spawned L3 levels, each with
//! two spawned SUB children and a THREAD NEXT_LEVEL worker. A DAG at the top
//! runs DAGs below on the top's heap (no copies), failures come up with the
//! path, a killed level ends its outer task at once and takes its children
//! with it, and shutting down the top leaves no process at any depth.

use dist_worker::abi::{DIST_ARG_INOUT, DIST_UINT64};
use dist_worker::{Args, Options, Orch, Runtime, Status, WorkerType};
use std::time::{Duration, Instant};

mod common;
use common::spec;

/// Callable 1: add scalar 1 to the u64 at scalar 0. Callable 5: fail with
/// 5, saying why. Callable 9: sleep a long time.
fn leaf(callable: u64, v: &dist_worker::TaskView<'_>, _: &dist_worker::DistCallConfig) -> i32 {
    match callable {
        1 => {
            // SAFETY: scalar 0 is an 8-byte slot of the top level's
            // MAP_SHARED heap, mapped in every process under it.
            unsafe { *(v.scalars[0] as *mut u64) += v.scalars[1] };
            0
        }
        5 => {
            dist_worker::set_error_message(b"disk full");
            5
        }
        9 => {
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        _ => 0,
    }
}

/// Runs the outer task as one SUB task below, and waits for it.
fn forward() -> Orch {
    Box::new(|inner, callable, v, _| {
        let a = [Args::scalars(v.scalars)];
        match inner.submit(&spec(WorkerType::Sub, callable, &a)) {
            Ok(id) => {
                let _ = inner.wait(id);
                0
            }
            Err(_) => 1,
        }
    })
}

fn l3_setup(inner: &Runtime) -> i32 {
    for _ in 0..2 {
        if inner.spawn(WorkerType::Sub, Box::new(leaf)).is_err() {
            return 1;
        }
    }
    match inner.add_thread(WorkerType::NextLevel, Box::new(leaf)) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

fn tree() -> (Runtime, Vec<i32>) {
    let top = Runtime::new(Options {
        level: 4,
        heap_ring_size: 1 << 20,
        ..Options::default()
    })
    .unwrap();
    let pids = (0..2)
        .map(|_| {
            let opts = Options {
                level: 3,
                heap_ring_size: 1 << 20,
                ..Options::default()
            };
            top.spawn_level(opts, l3_setup, forward()).unwrap()
        })
        .collect();
    (top, pids)
}

fn processes_under(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let ppid: i32 = after.split(' ').nth(1).unwrap().parse().unwrap();
            if ppid == pid {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn spawned_levels_run_a_dag_on_the_tops_memory_and_leave_nothing() {
    let (top, levels) = tree();
    top.start().unwrap();
    for &l in &levels {
        assert_eq!(
            processes_under(l).len(),
            2,
            "level {l} has its two children"
        );
    }
    let counter = top.alloc(&[], DIST_UINT64).unwrap();
    let mut last = 0;
    for i in 0..40u64 {
        let t = [counter];
        let tags = [DIST_ARG_INOUT];
        let s = [counter.data, 1 + i];
        let a = [Args {
            tensors: &t,
            tags: Some(&tags),
            scalars: &s,
        }];
        last = top.submit(&spec(WorkerType::NextLevel, 1, &a)).unwrap();
    }
    top.wait(last).unwrap();
    // SAFETY: the allocation is live until the drain.
    let total = unsafe { *(counter.data as *const u64) };
    assert_eq!(total, (1..=40).sum::<u64>());
    top.drain().unwrap();
    let grandchildren: Vec<i32> = levels.iter().flat_map(|&l| processes_under(l)).collect();
    top.shutdown().unwrap();
    for pid in levels.iter().chain(&grandchildren) {
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true);
        assert!(gone, "process {pid} outlived the shutdown of the top");
    }
}

#[test]
fn a_failure_in_a_spawned_level_carries_the_path() {
    let (top, levels) = tree();
    let s = [0u64, 0];
    let a = [Args::scalars(&s)];
    let id = top
        .submit_on(&spec(WorkerType::NextLevel, 5, &a), &[1])
        .unwrap();
    let e = top.wait(id).unwrap_err();
    println!("{}", e.message);
    assert_eq!(e.status, Status::TaskFailed);
    let m = &e.message;
    let want = format!("-> L3 worker 1 (child pid {}): task 0x", levels[1]);
    assert!(m.starts_with("L4 task 0x") && m.contains(&want), "{m}");
    common::assert_failed_at_the_bottom(m);
    let _ = top.drain();
    top.shutdown().unwrap();
}

#[test]
fn a_killed_level_ends_its_task_at_once_and_takes_its_children() {
    let (top, levels) = tree();
    top.start().unwrap();
    let children = processes_under(levels[0]);
    assert_eq!(children.len(), 2);
    let s = [0u64, 0];
    let a = [Args::scalars(&s)];
    let id = top
        .submit_on(&spec(WorkerType::NextLevel, 9, &a), &[0])
        .unwrap();
    std::thread::sleep(Duration::from_millis(100)); // the task runs below
                                                    // SAFETY: killing a level process the top forked.
    unsafe { libc::kill(levels[0], libc::SIGKILL) };
    let t = Instant::now();
    let e = top.wait(id).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.status, Status::ChildDied, "{}", e.message);
    assert!(took < Duration::from_millis(100), "noticed after {took:?}");
    // Its children die with it (their lifelines closed).
    let deadline = Instant::now() + Duration::from_secs(1);
    for c in children {
        while std::path::Path::new(&format!("/proc/{c}")).exists()
            && !std::fs::read_to_string(format!("/proc/{c}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "child {c} outlived its level by 1 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The other level still serves.
    let id = top
        .submit_on(&spec(WorkerType::NextLevel, 0, &a), &[1])
        .unwrap();
    top.wait(id).unwrap();
    let _ = top.drain();
    let _ = top.shutdown();
}
