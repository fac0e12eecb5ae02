//! Placement: a task names the workers its members run on (the chip that
//! holds their data). It runs there and nowhere else, waits only for its
//! own workers, and ends when a named worker leaves its pool.

use dist_worker::{Args, Handler, Options, Runtime, Status, WorkerType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::spec;

type Log = Arc<Mutex<Vec<(u64, usize)>>>;

/// A SUB thread worker that logs (scalar 0, its own number) for each task;
/// callable 2 holds until `release` is set.
fn recorder(me: usize, log: &Log, release: &Arc<AtomicBool>) -> Handler {
    let (log, release) = (log.clone(), release.clone());
    Box::new(move |callable, v, _| {
        if callable == 2 {
            while !release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        log.lock().unwrap().push((v.scalars[0], me));
        0
    })
}

fn pool(n: usize) -> (Runtime, Log, Arc<AtomicBool>) {
    let rt = Runtime::new(Options::default()).unwrap();
    let log = Log::default();
    let release = Arc::new(AtomicBool::new(false));
    for me in 0..n {
        rt.add_thread(WorkerType::Sub, recorder(me, &log, &release))
            .unwrap();
    }
    (rt, log, release)
}

fn submit_on(
    rt: &Runtime,
    callable: u64,
    tags: &[u64],
    workers: &[u32],
) -> dist_worker::Result<u64> {
    let members: Vec<Args<'_>> = tags
        .iter()
        .map(|t| Args::scalars(std::slice::from_ref(t)))
        .collect();
    rt.submit_on(&spec(WorkerType::Sub, callable, &members), workers)
}

#[test]
fn placed_tasks_and_groups_run_on_the_workers_they_name() {
    let (rt, log, _) = pool(3);
    for t in 0..30u64 {
        submit_on(&rt, 1, &[t], &[(t % 3) as u32]).unwrap();
    }
    // A group: member 0 on worker 2, member 1 on worker 0.
    submit_on(&rt, 1, &[100, 101], &[2, 0]).unwrap();
    rt.drain().unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 32);
    for &(t, me) in log.iter() {
        let want = match t {
            100 => 2,
            101 => 0,
            t => (t % 3) as usize,
        };
        assert_eq!(me, want, "task {t} ran on worker {me}");
    }
}

#[test]
fn bad_placements_are_refused() {
    let (rt, log, _) = pool(2);
    rt.start().unwrap();
    let e = submit_on(&rt, 1, &[0], &[2]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{}", e.message);
    assert!(e.message.contains("does not exist"), "{}", e.message);
    let e = submit_on(&rt, 1, &[0, 1], &[1, 1]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{}", e.message);
    assert!(e.message.contains("named twice"), "{}", e.message);
    let e = submit_on(&rt, 1, &[0, 1], &[1]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{}", e.message);
    let e = rt
        .submit_on(&spec(WorkerType::NextLevel, 1, &[Args::default()]), &[0])
        .unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{}", e.message);
    rt.drain().unwrap();
    assert!(log.lock().unwrap().is_empty(), "a refused task ran");
}

#[test]
fn a_placed_task_waits_for_its_worker_only() {
    let (rt, log, release) = pool(3);
    // Worker 0 holds a task; a second task placed on it must wait...
    submit_on(&rt, 2, &[1000], &[0]).unwrap();
    let queued = submit_on(&rt, 1, &[1001], &[0]).unwrap();
    // ...while unplaced tasks flow to workers 1 and 2 and finish.
    let others: Vec<u64> = (0..20)
        .map(|t| submit_on(&rt, 1, &[t], &[]).unwrap())
        .collect();
    for id in others {
        rt.wait(id).unwrap();
    }
    {
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 20, "unplaced tasks were held back: {log:?}");
        assert!(log.iter().all(|&(_, me)| me != 0));
    }
    release.store(true, Ordering::Release);
    rt.wait(queued).unwrap();
    rt.drain().unwrap();
    let log = log.lock().unwrap();
    assert!(
        log.contains(&(1000, 0)) && log.contains(&(1001, 0)),
        "{log:?}"
    );
}

#[test]
fn a_dead_named_worker_ends_its_placed_tasks_and_they_never_move() {
    let rt = Runtime::new(Options::default()).unwrap();
    // Worker 0: a child that sleeps in callable 2; worker 1: a thread.
    let child = rt
        .spawn(
            WorkerType::Sub,
            Box::new(|c, _, _| {
                if c == 2 {
                    std::thread::sleep(Duration::from_secs(30));
                }
                0
            }),
        )
        .unwrap();
    let log = Log::default();
    let release = Arc::new(AtomicBool::new(true));
    rt.add_thread(WorkerType::Sub, recorder(1, &log, &release))
        .unwrap();
    let running = submit_on(&rt, 2, &[1], &[0]).unwrap();
    let queued = submit_on(&rt, 1, &[2], &[0]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: killing the child this test's runtime forked.
    unsafe { libc::kill(child, libc::SIGKILL) };
    let t = Instant::now();
    assert_eq!(rt.wait(running).unwrap_err().status, Status::ChildDied);
    let e = rt.wait(queued).unwrap_err();
    assert_eq!(e.status, Status::ChildDied, "{}", e.message);
    assert!(e.message.contains("was placed on"), "{}", e.message);
    assert!(t.elapsed() < Duration::from_secs(5));
    // Naming it now is refused; the thread worker never ran its tasks.
    let e = submit_on(&rt, 1, &[3], &[0]).unwrap_err();
    assert_eq!(e.status, Status::NoWorker, "{}", e.message);
    let _ = rt.drain();
    assert!(log.lock().unwrap().is_empty(), "a placed task moved");
}
