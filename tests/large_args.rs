//! Arguments of any size: a blob longer than a mailbox (4032 bytes) goes
//! through the shared heap ring to workers that speak the library's
//! protocol; a child that does not (a reference child) refuses it at
//! dispatch; blobs stay bounded (1 MiB).

use dist_worker::abi::DistTensor;
use dist_worker::wire::OwnedMailbox;
use dist_worker::{Args, Options, Runtime, Status, WorkerType};

mod common;
use common::spec;

fn tensors(n: usize) -> Vec<DistTensor> {
    (0..n)
        .map(|i| DistTensor {
            data: 0x1000 + 64 * i as u64,
            shapes: [i as u32 + 1, 2, 0, 0, 0],
            ndims: 2,
            dtype: (i % 9) as u8,
        })
        .collect()
}

/// Checks every descriptor and scalar of a 300-tensor task: 0 if all match.
fn check(_: u64, v: &dist_worker::TaskView<'_>, _: &dist_worker::DistCallConfig) -> i32 {
    let want = tensors(300);
    if v.tensors.len() != 300 || v.scalars.len() != 500 {
        return 1;
    }
    for (t, w) in v.tensors.iter().zip(&want) {
        if (t.data, t.shapes, t.ndims, t.dtype) != (w.data, w.shapes, w.ndims, w.dtype) {
            return 2;
        }
    }
    if v.scalars
        .iter()
        .enumerate()
        .any(|(i, &s)| s != i as u64 * 7)
    {
        return 3;
    }
    0
}

#[test]
fn three_hundred_tensors_reach_children_and_threads_intact() {
    let rt = Runtime::new(Options::default()).unwrap();
    rt.spawn(WorkerType::Sub, Box::new(check)).unwrap();
    rt.add_thread(WorkerType::NextLevel, Box::new(check))
        .unwrap();
    let ts = tensors(300);
    let scalars: Vec<u64> = (0..500).map(|i| i * 7).collect();
    let a = [Args {
        tensors: &ts,
        tags: None,
        scalars: &scalars,
    }];
    let before = rt.stats().engine;
    for _ in 0..20 {
        for ty in [WorkerType::Sub, WorkerType::NextLevel] {
            let id = rt.submit(&spec(ty, 1, &a)).unwrap();
            rt.wait(id).unwrap();
        }
    }
    rt.drain().unwrap();
    assert_eq!(
        rt.stats().engine.heap_live_bytes,
        before.heap_live_bytes,
        "blobs freed"
    );
    // Over the limit: refused.
    let big = tensors(30_000);
    let a = [Args {
        tensors: &big,
        tags: None,
        scalars: &[],
    }];
    let e = rt.submit(&spec(WorkerType::Sub, 1, &a)).unwrap_err();
    assert_eq!(e.status, Status::ArgsTooLarge, "{}", e.message);
    rt.shutdown().unwrap();
}

#[test]
fn a_reference_child_refuses_large_args_at_dispatch() {
    let rt = Runtime::new(Options::default()).unwrap();
    let owned = OwnedMailbox::new().unwrap();
    rt.add_process(WorkerType::Sub, owned.handle()).unwrap();
    rt.start().unwrap();
    let ts = tensors(101); // 8 + 40 * 101 = 4048 bytes
    let a = [Args {
        tensors: &ts,
        tags: None,
        scalars: &[],
    }];
    let e = rt.submit(&spec(WorkerType::Sub, 1, &a)).unwrap_err();
    assert_eq!(e.status, Status::ArgsTooLarge, "{}", e.message);
    assert!(
        e.message.contains("does not read blobs from the heap"),
        "{}",
        e.message
    );
    drop(rt);
    drop(owned);
}

/// A child started apart from the host (here: forked before the runtime
/// and its heap ring exist) serves with the library's loop, which speaks
/// large arguments, yet cannot map the heap ring: the large task fails with
/// a message saying why, the child lives on, and small tasks still run.
#[test]
fn a_child_without_the_heap_ring_fails_a_large_task_and_serves_on() {
    let owned = OwnedMailbox::new().unwrap();
    let mb = owned.handle();
    let pid = dist_worker::os::fork_child(move || {
        let mut h = |_: u64, _: &dist_worker::TaskView<'_>, _: &dist_worker::DistCallConfig| 0;
        match dist_worker::wire::serve(mb, &mut h, &Default::default()) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    })
    .unwrap();
    let rt = Runtime::new(Options::default()).unwrap();
    rt.add_process(WorkerType::Sub, mb).unwrap();
    rt.set_process_pid(mb, pid).unwrap();
    // Let the child announce the library's extensions before start.
    let t = std::time::Instant::now();
    while !mb.speaks_large_args() {
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        std::thread::yield_now();
    }
    let ts = tensors(300);
    let big = [Args {
        tensors: &ts,
        tags: None,
        scalars: &[],
    }];
    let e = rt
        .wait(rt.submit(&spec(WorkerType::Sub, 1, &big)).unwrap())
        .unwrap_err();
    assert_eq!(e.status, Status::TaskFailed, "{}", e.message);
    assert!(e.message.contains("could not be read"), "{}", e.message);
    let small = [Args::scalars(&[1])];
    rt.wait(rt.submit(&spec(WorkerType::Sub, 1, &small)).unwrap())
        .unwrap();
    let _ = rt.drain();
    rt.shutdown().unwrap();
    dist_worker::os::wait_child(pid, true).unwrap();
    drop(owned);
}
