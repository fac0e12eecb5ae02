//! `Runtime::stats` and `Runtime::worker_stats`: the counts add up after a
//! known workload (failures, a dependency failure and a killed child
//! included), the live figures show work where it waits, the latency
//! percentiles are ordered and plausible, and the figures can be read from
//! a callable and while another thread shuts the runtime down.

use dist_worker::abi::{DistTensor, DIST_ARG_INPUT, DIST_ARG_OUTPUT};
use dist_worker::{Args, Handler, Options, Runtime, Stats, Status, TaskSpec, WorkerType};
use dist_worker::{WorkerMode, WorkerState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

mod common;
use common::spec;

const NEXT: WorkerType = WorkerType::NextLevel;
const SUB: WorkerType = WorkerType::Sub;

/// Scalars: [what, µs]. what 0: sleep µs and succeed; 1: fail with 3;
/// 9: kill the process serving it.
fn handler() -> Handler {
    Box::new(|_, v, _| match v.scalars.first().copied().unwrap_or(0) {
        1 => 3,
        9 => {
            // SAFETY: the child kills itself mid-task.
            unsafe { libc::raise(libc::SIGKILL) };
            0
        }
        _ => {
            let us = v.scalars.get(1).copied().unwrap_or(0);
            std::thread::sleep(Duration::from_micros(us));
            0
        }
    })
}

fn tensor(data: u64) -> [DistTensor; 1] {
    [DistTensor {
        data,
        shapes: [1, 0, 0, 0, 0],
        ndims: 1,
        dtype: 0,
    }]
}

/// Every type's tasks are where the counts say: nothing lost or doubled.
fn assert_adds_up(s: &Stats) {
    for t in &s.types {
        assert_eq!(
            t.submitted,
            t.pending + t.ready + t.running + t.completed + t.failed,
            "{t:?}"
        );
    }
}

#[test]
fn counts_add_up_after_a_known_workload() {
    let rt = Runtime::new(Options::default()).unwrap();
    let victim = rt.spawn(SUB, handler()).unwrap();
    let other = rt.spawn(SUB, handler()).unwrap();
    rt.add_thread(SUB, handler()).unwrap();
    rt.add_thread(NEXT, handler()).unwrap();
    let before = rt.stats();
    assert_eq!(
        (before.workers, before.types[SUB.index()].submitted),
        (0, 0)
    );
    assert_eq!(rt.worker_stats(0), None, "no worker before start");

    let ok = [0u64, 200];
    let slow = [0u64, 1000];
    let fail = [1u64];
    for _ in 0..40 {
        rt.submit(&spec(SUB, 1, &[Args::scalars(&ok)])).unwrap();
    }
    for _ in 0..10 {
        rt.submit(&spec(NEXT, 2, &[Args::scalars(&slow)])).unwrap();
    }
    // Five failures; the first writes 0x1000, which three tasks read.
    let (out, input) = ([DIST_ARG_OUTPUT], [DIST_ARG_INPUT]);
    let t = tensor(0x1000);
    let producer = Args {
        tensors: &t,
        tags: Some(&out),
        scalars: &fail,
    };
    let p = rt.submit(&spec(SUB, 3, &[producer])).unwrap();
    for _ in 0..4 {
        rt.submit(&spec(SUB, 3, &[Args::scalars(&fail)])).unwrap();
    }
    let consumer = Args {
        tensors: &t,
        tags: Some(&input),
        scalars: &ok,
    };
    let consumers: Vec<_> = (0..3)
        .map(|_| rt.submit(&spec(SUB, 4, &[consumer])).unwrap())
        .collect();
    assert_eq!(rt.wait(p).unwrap_err().status, Status::TaskFailed);
    for c in consumers {
        assert_eq!(rt.wait(c).unwrap_err().status, Status::DependencyFailed);
    }
    // A child killed mid-task: placed on SUB worker 0, the first spawned.
    let die = [9u64];
    let k = rt
        .submit_on(&spec(SUB, 5, &[Args::scalars(&die)]), &[0])
        .unwrap();
    assert_eq!(rt.wait(k).unwrap_err().status, Status::ChildDied);
    assert!(rt.drain().is_err());

    let s = rt.stats();
    assert_adds_up(&s);
    let sub = s.types[SUB.index()];
    let next = s.types[NEXT.index()];
    assert_eq!(
        (sub.submitted, sub.completed, sub.failed),
        (40 + 5 + 3 + 1, 40, 5 + 3 + 1),
        "{sub:?}"
    );
    assert_eq!((sub.pending, sub.ready, sub.running), (0, 0, 0));
    assert_eq!((next.submitted, next.completed, next.failed), (10, 10, 0));
    assert_eq!((sub.live_workers, sub.busy_workers), (2, 0), "one retired");
    assert_eq!((next.live_workers, next.busy_workers), (1, 0));
    assert_eq!(s.workers, 4);
    assert_eq!(s.level, 3);
    assert_eq!(s.engine.unfinished, 0);
    assert_eq!(s.engine.slots, 0, "ids released by the drain");

    // Latency: every task that ran (the three consumers never did).
    let l = s.latency;
    assert_eq!(l.count, 40 + 10 + 5 + 1, "{l:?}");
    assert!(
        l.p50_ns <= l.p99_ns && l.p99_ns <= l.p999_ns && l.p999_ns <= l.max_ns,
        "{l:?}"
    );
    // 50 of the 56 slept at least 200 µs, 10 of them 1 ms.
    assert!(l.p50_ns >= 200_000, "{l:?}");
    assert!(l.p99_ns >= 1_000_000, "{l:?}");
    assert!(l.max_ns < 30_000_000_000, "{l:?}");

    // Per worker: each one's own figures, in registration order.
    let w: Vec<_> = (0..4).map(|i| rt.worker_stats(i).unwrap()).collect();
    assert_eq!(rt.worker_stats(4), None);
    assert_eq!(
        (w[0].mode, w[0].pid, w[0].state),
        (WorkerMode::Spawned, Some(victim), WorkerState::Retired)
    );
    assert!(w[0].tasks_failed >= 1, "{:?}", w[0]);
    assert_eq!(
        (w[1].mode, w[1].pid, w[1].state, w[1].rank),
        (WorkerMode::Spawned, Some(other), WorkerState::Idle, 1)
    );
    assert_eq!(
        (w[2].mode, w[2].pid, w[2].ty),
        (WorkerMode::Thread, None, SUB)
    );
    assert_eq!(
        (w[3].mode, w[3].ty, w[3].rank),
        (WorkerMode::Thread, NEXT, 0)
    );
    let sub_runs: u64 = w[..3].iter().map(|w| w.tasks_run).sum();
    let sub_failed: u64 = w[..3].iter().map(|w| w.tasks_failed).sum();
    assert_eq!(sub_runs, 40 + 5 + 1, "{w:?}");
    assert_eq!(sub_failed, 5 + 1, "{w:?}");
    assert_eq!((w[3].tasks_run, w[3].tasks_failed), (10, 0));
    assert!(w[3].busy_ns >= 10_000_000, "ten 1 ms tasks: {:?}", w[3]);
    assert!(w[3].busy_ns < 5_000_000_000, "{:?}", w[3]);
    rt.shutdown().unwrap();
}

static RELEASE: AtomicBool = AtomicBool::new(false);
static SEEN_FROM_CALLABLE: AtomicUsize = AtomicUsize::new(0);

#[test]
fn live_figures_show_where_work_waits_and_a_callable_can_read_them() {
    let rt = Arc::new(Runtime::new(Options::default()).unwrap());
    let me: Arc<OnceLock<Weak<Runtime>>> = Arc::new(OnceLock::new());
    let cell = me.clone();
    rt.add_thread(
        SUB,
        Box::new(move |callable, _, _| {
            if callable == 1 {
                // From inside a callable: the figures, this task running.
                let rt = cell.get().and_then(Weak::upgrade).expect("set");
                let s = rt.stats();
                SEEN_FROM_CALLABLE.store(s.types[1].running as usize, Ordering::SeqCst);
                while !RELEASE.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            0
        }),
    )
    .unwrap();
    me.set(Arc::downgrade(&rt)).unwrap();
    let none = [Args::default()];
    let blocker = rt.submit(&spec(SUB, 1, &none)).unwrap();
    let (out, input) = ([DIST_ARG_OUTPUT], [DIST_ARG_INPUT]);
    let t = tensor(0x2000);
    for _ in 0..3 {
        rt.submit(&spec(SUB, 2, &none)).unwrap();
    }
    let producer = Args {
        tensors: &t,
        tags: Some(&out),
        scalars: &[],
    };
    rt.submit(&spec(SUB, 2, &[producer])).unwrap();
    let consumer = Args {
        tensors: &t,
        tags: Some(&input),
        scalars: &[],
    };
    rt.submit(&spec(SUB, 2, &[consumer])).unwrap();
    let t0 = Instant::now();
    while SEEN_FROM_CALLABLE.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the blocker never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(SEEN_FROM_CALLABLE.load(Ordering::SeqCst), 1);
    let s = rt.stats();
    assert_adds_up(&s);
    let sub = s.types[SUB.index()];
    assert_eq!(
        (sub.submitted, sub.running, sub.ready, sub.pending),
        (6, 1, 4, 1),
        "one runs, four are queued behind it, one waits for a producer: {sub:?}"
    );
    assert_eq!((sub.live_workers, sub.busy_workers), (1, 1));
    let w = rt.worker_stats(0).unwrap();
    assert_eq!(w.state, WorkerState::Busy);
    std::thread::sleep(Duration::from_millis(5));
    let later = rt.worker_stats(0).unwrap();
    assert!(later.busy_ns >= w.busy_ns + 4_000_000, "{w:?} {later:?}");
    RELEASE.store(true, Ordering::Release);
    rt.wait(blocker).unwrap();
    rt.drain().unwrap();
    let s = rt.stats();
    assert_eq!((s.types[1].completed, s.types[1].running), (6, 0));
    assert_eq!(rt.worker_stats(0).unwrap().state, WorkerState::Idle);
    rt.close().unwrap();
}

#[test]
fn figures_can_be_read_while_another_thread_shuts_down() {
    let rt = Arc::new(Runtime::new(Options::default()).unwrap());
    for _ in 0..2 {
        rt.spawn(SUB, handler()).unwrap();
    }
    let two_ms = [0u64, 2000];
    for _ in 0..50 {
        rt.submit(&spec(SUB, 1, &[Args::scalars(&two_ms)])).unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (rt, done) = (rt.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let s = rt.stats();
                assert_adds_up(&s);
                for i in 0..s.workers {
                    rt.worker_stats(i).unwrap();
                }
                reads += 1;
            }
            reads
        })
    };
    rt.close().unwrap();
    done.store(true, Ordering::Release);
    assert!(reader.join().unwrap() > 0);
    let s = rt.stats();
    assert_eq!(
        s.types[SUB.index()].completed,
        50,
        "shutdown finished the work"
    );
    assert_eq!(s.latency.count, 50);
}

#[test]
fn reading_the_figures_is_cheap() {
    let rt = Runtime::new(Options::default()).unwrap();
    rt.add_thread(SUB, handler()).unwrap();
    let none = [Args::default()];
    for _ in 0..1000 {
        rt.submit(&TaskSpec {
            ty: SUB,
            callable: 1,
            config: Default::default(),
            members: &none[..],
        })
        .unwrap();
    }
    rt.drain().unwrap();
    let n = 10_000;
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(rt.stats());
        std::hint::black_box(rt.worker_stats(0));
    }
    let each = t0.elapsed() / n;
    // A generous bound for an unoptimised build on a busy machine; a
    // release build takes about a microsecond.
    assert!(each < Duration::from_micros(200), "{each:?} per call");
    rt.shutdown().unwrap();
}
