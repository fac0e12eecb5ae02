//! Behaviour of the worker pool through the Rust core: THREAD and PROCESS
//! workers, ordering within a type, independence of types, errors, groups,
//! and a clean lifecycle.

use dist_worker::abi::{DistCallConfig, DistTensor, DIST_ARG_OUTPUT, DIST_FLOAT32};
use dist_worker::wire::OwnedMailbox;
use dist_worker::Args;
use dist_worker::Handler;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime, Status};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod common;
use common::spec;

type Log = Arc<Mutex<Vec<(u64, Vec<u64>)>>>;

fn recorder(log: Log, fail_on: u64) -> Handler {
    Box::new(move |c, v, _| {
        log.lock().unwrap().push((c, v.scalars.to_vec()));
        if c == fail_on {
            7
        } else {
            0
        }
    })
}

#[test]
fn thread_workers_run_tasks_in_dispatch_order() {
    let rt = Runtime::new(Options::default()).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    rt.add_thread(WorkerType::Sub, recorder(log.clone(), u64::MAX))
        .unwrap();
    for i in 0..100u64 {
        let s = [i];
        let a = [Args::scalars(&s)];
        rt.submit(&spec(WorkerType::Sub, 5, &a)).unwrap();
    }
    rt.drain().unwrap();
    let got: Vec<u64> = log.lock().unwrap().iter().map(|(_, s)| s[0]).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    rt.shutdown().unwrap();
}

#[test]
fn failures_name_worker_callable_and_code() {
    let rt = Runtime::new(Options::default()).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    rt.add_thread(WorkerType::NextLevel, recorder(log, 0xbad))
        .unwrap();
    let ok = rt
        .submit(&spec(WorkerType::NextLevel, 1, &[Args::default()]))
        .unwrap();
    let bad = rt
        .submit(&spec(WorkerType::NextLevel, 0xbad, &[Args::default()]))
        .unwrap();
    assert!(rt.wait(ok).is_ok());
    let e = rt.wait(bad).unwrap_err();
    assert_eq!(e.status, Status::TaskFailed);
    assert!(
        e.message.contains("0xbad") && e.message.contains("error 7"),
        "{}",
        e.message
    );
    assert!(e.message.contains("NEXT_LEVEL worker 0"), "{}", e.message);
    // Waiting again gives the same answer; drain reports it once.
    assert_eq!(rt.wait(bad).unwrap_err().status, Status::TaskFailed);
    assert_eq!(rt.drain().unwrap_err().status, Status::TaskFailed);
    assert_eq!(rt.wait(bad).unwrap_err().status, Status::InvalidArgument);
    rt.drain().unwrap();
    rt.shutdown().unwrap();
}

#[test]
fn a_saturated_type_does_not_hold_back_the_other() {
    let rt = Runtime::new(Options::default()).unwrap();
    let gate = Arc::new(AtomicUsize::new(0));
    let g = gate.clone();
    rt.add_thread(
        WorkerType::NextLevel,
        Box::new(move |_, _, _| {
            while g.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
            0
        }),
    )
    .unwrap();
    rt.add_thread(WorkerType::Sub, Box::new(|_, _, _| 0))
        .unwrap();
    let blocked: Vec<_> = (0..4)
        .map(|_| {
            rt.submit(&spec(WorkerType::NextLevel, 1, &[Args::default()]))
                .unwrap()
        })
        .collect();
    for _ in 0..10 {
        let id = rt
            .submit(&spec(WorkerType::Sub, 2, &[Args::default()]))
            .unwrap();
        rt.wait(id).unwrap();
    }
    gate.store(1, Ordering::Release);
    for id in blocked {
        rt.wait(id).unwrap();
    }
    rt.shutdown().unwrap();
}

#[test]
fn groups_run_on_distinct_workers_at_once() {
    let rt = Runtime::new(Options::default()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3u64 {
        let s = seen.clone();
        rt.add_thread(
            WorkerType::Sub,
            Box::new(move |_, v, _| {
                s.lock().unwrap().push((i, v.scalars[0]));
                if v.scalars[0] == 99 {
                    4
                } else {
                    0
                }
            }),
        )
        .unwrap();
    }
    let sc = [[10u64], [11], [12]];
    let members: Vec<Args> = sc.iter().map(|s| Args::scalars(s)).collect();
    let id = rt.submit(&spec(WorkerType::Sub, 1, &members)).unwrap();
    rt.wait(id).unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    let workers: std::collections::HashSet<u64> = got.iter().map(|p| p.0).collect();
    assert_eq!(workers.len(), 3);
    let mut vals: Vec<u64> = got.iter().map(|p| p.1).collect();
    vals.sort();
    assert_eq!(vals, vec![10, 11, 12]);
    // A failing member fails the group; too large a group is refused.
    let sc = [[1u64], [99]];
    let members: Vec<Args> = sc.iter().map(|s| Args::scalars(s)).collect();
    let id = rt.submit(&spec(WorkerType::Sub, 1, &members)).unwrap();
    assert_eq!(rt.wait(id).unwrap_err().status, Status::TaskFailed);
    let four = vec![Args::default(); 4];
    assert_eq!(
        rt.submit(&spec(WorkerType::Sub, 1, &four))
            .unwrap_err()
            .status,
        Status::InvalidArgument
    );
    let _ = rt.drain();
    rt.shutdown().unwrap();
}

#[test]
fn bad_input_is_refused() {
    let rt = Runtime::new(Options::default()).unwrap();
    assert_eq!(
        rt.submit(&spec(WorkerType::Sub, 1, &[Args::default()]))
            .unwrap_err()
            .status,
        Status::NoWorker
    );
    // Registration after start is refused.
    assert_eq!(
        rt.add_thread(WorkerType::Sub, Box::new(|_, _, _| 0))
            .unwrap_err()
            .status,
        Status::BadState
    );
    assert_eq!(
        rt.spawn(WorkerType::Sub, Box::new(|_, _, _| 0))
            .unwrap_err()
            .status,
        Status::BadState
    );
    let rt = Runtime::new(Options::default()).unwrap();
    rt.add_thread(WorkerType::Sub, Box::new(|_, _, _| 0))
        .unwrap();
    let t = DistTensor {
        data: 1,
        shapes: [1; 5],
        ndims: 6,
        dtype: DIST_FLOAT32,
    };
    // The status a submit of one member with these arguments is refused with.
    let refused = |tensors: &[DistTensor], tags: Option<&[i32]>, scalars: &[u64]| {
        let a = [Args {
            tensors,
            tags,
            scalars,
        }];
        rt.submit(&spec(WorkerType::Sub, 1, &a)).unwrap_err().status
    };
    assert_eq!(refused(&[t], None, &[]), Status::InvalidArgument);
    let t = DistTensor {
        ndims: 1,
        dtype: 9,
        ..t
    };
    assert_eq!(refused(&[t], None, &[]), Status::InvalidArgument);
    let t = DistTensor { dtype: 0, ..t };
    assert_eq!(refused(&[t], Some(&[7]), &[]), Status::InvalidArgument);
    let big = vec![7u64; 131_072]; // past the 1 MiB blob limit
    assert_eq!(
        refused(&[t], Some(&[DIST_ARG_OUTPUT]), &big),
        Status::ArgsTooLarge
    );
    // A refused submit leaves nothing behind.
    assert_eq!(rt.stats().engine.slots, 0);
    let m = OwnedMailbox::new().unwrap();
    assert_eq!(
        rt.add_process(WorkerType::Sub, m.handle())
            .unwrap_err()
            .status,
        Status::BadState
    );
    rt.shutdown().unwrap();
}

#[test]
fn a_child_can_say_why_it_failed() {
    let rt = Runtime::new(Options::default()).unwrap();
    let fail = |_: u64, v: &dist_worker::TaskView<'_>, _: &DistCallConfig| {
        if v.scalars.first() == Some(&1) {
            dist_worker::set_error_message(b"disk full");
            5
        } else {
            // A message without a failure is ignored.
            dist_worker::set_error_message(b"ignored");
            0
        }
    };
    rt.spawn(WorkerType::Sub, Box::new(fail)).unwrap();
    rt.add_thread(WorkerType::NextLevel, Box::new(fail))
        .unwrap();
    for ty in [WorkerType::Sub, WorkerType::NextLevel] {
        let (bad, good) = ([1u64], [0u64]);
        let a = [Args::scalars(&bad)];
        let e = rt.wait(rt.submit(&spec(ty, 7, &a)).unwrap()).unwrap_err();
        assert_eq!(e.status, Status::TaskFailed);
        assert!(
            e.message
                .ends_with("returned error 5 from callable 0x7: disk full"),
            "{}",
            e.message
        );
        let a = [Args::scalars(&good)];
        rt.wait(rt.submit(&spec(ty, 7, &a)).unwrap()).unwrap();
    }
    let _ = rt.drain();
    rt.shutdown().unwrap();
}

#[test]
fn a_mailbox_written_while_idle_takes_its_worker_out() {
    // A caller-owned "child" that writes TASK_READY (or garbage) on its own.
    let rt = Runtime::new(Options::default()).unwrap();
    let rogue = OwnedMailbox::new().unwrap();
    rt.add_process(WorkerType::Sub, rogue.handle()).unwrap();
    rt.add_thread(WorkerType::Sub, Box::new(|_, _, _| 0))
        .unwrap();
    rt.start().unwrap();
    rogue.handle().set_state(1);
    // Tasks still run, on the other worker; none is lost.
    for _ in 0..20 {
        rt.wait(
            rt.submit(&spec(WorkerType::Sub, 1, &[Args::default()]))
                .unwrap(),
        )
        .unwrap();
    }
    let e = rt.drain().unwrap_err();
    assert_eq!(e.status, Status::Protocol, "{}", e.message);
    assert!(e.message.contains("held state 1"), "{}", e.message);
    rt.shutdown().unwrap();
}
