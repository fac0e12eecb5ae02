//! A spawned child that dies (killed mid-task, or while idle) is noticed:
//! its task ends with CHILD_DIED, dependents with DEPENDENCY_FAILED, the
//! work of its type moves to the remaining workers, NO_WORKER once none is
//! left, and shutdown still completes.

use dist_worker::abi::{DistTensor, DIST_ARG_INPUT, DIST_ARG_OUTPUT};
use dist_worker::Args;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime, Status};
use std::time::{Duration, Instant};

mod common;
use common::spec;

#[test]
fn dead_children_fail_their_task_and_leave_the_pool() {
    let rt = Runtime::new(Options::default()).unwrap();
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(
            rt.spawn(
                WorkerType::Sub,
                Box::new(|_, v, _| {
                    if v.scalars.first() == Some(&9) {
                        // SAFETY: the child kills itself mid-task.
                        unsafe { libc::raise(libc::SIGKILL) };
                    }
                    0
                }),
            )
            .unwrap(),
        );
    }
    let t = [DistTensor {
        data: 0x100,
        shapes: [1, 0, 0, 0, 0],
        ndims: 1,
        dtype: 0,
    }];
    let (out, input) = ([DIST_ARG_OUTPUT], [DIST_ARG_INPUT]);
    // Killed mid-task: the task fails with CHILD_DIED, its consumer never runs.
    let die = [9u64];
    let a = [Args {
        tensors: &t,
        tags: Some(&out),
        scalars: &die,
    }];
    let victim = rt.submit(&spec(WorkerType::Sub, 1, &a)).unwrap();
    let b = [Args {
        tensors: &t,
        tags: Some(&input),
        scalars: &[],
    }];
    let dependent = rt.submit(&spec(WorkerType::Sub, 1, &b)).unwrap();
    let e = rt.wait(victim).unwrap_err();
    assert_eq!(e.status, Status::ChildDied, "{}", e.message);
    assert!(e.message.contains("killed by signal 9"), "{}", e.message);
    assert_eq!(
        rt.wait(dependent).unwrap_err().status,
        Status::DependencyFailed
    );
    // The other two keep working.
    let none = [Args::default()];
    for _ in 0..100 {
        rt.wait(rt.submit(&spec(WorkerType::Sub, 1, &none)).unwrap())
            .unwrap();
    }
    assert_eq!(rt.drain().unwrap_err().status, Status::ChildDied);
    // Killed while idle: both remaining children; then there is no worker left.
    for &pid in &pids {
        // SAFETY: killing our own children.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let t0 = Instant::now();
    loop {
        match rt.submit(&spec(WorkerType::Sub, 1, &none)) {
            Err(e) if e.status == Status::NoWorker => break,
            Err(e) => panic!("{e}"),
            Ok(id) => {
                // Launched before the deaths were noticed: it fails, never hangs.
                let r = rt.wait(id);
                assert!(r.is_ok() || r.unwrap_err().status == Status::ChildDied);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "deaths never noticed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = rt.drain();
    rt.shutdown().unwrap();
    for pid in pids {
        // Reaped: no such child any more.
        // SAFETY: waitpid on a pid we forked.
        assert_eq!(
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) },
            -1
        );
    }
}

#[test]
fn a_caller_owned_child_named_by_pid_is_noticed_and_left_to_the_caller() {
    use dist_worker::wire::OwnedMailbox;
    use dist_worker::{wire, ServeOptions};
    let rt = Runtime::new(Options::default()).unwrap();
    let owned = OwnedMailbox::new().unwrap();
    let mb = owned.handle();
    // SAFETY: the child only serves the mailbox and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let r = wire::serve(
            mb,
            &mut |_, v, _| {
                if v.scalars.first() == Some(&9) {
                    // SAFETY: the child kills itself mid-task.
                    unsafe { libc::raise(libc::SIGKILL) };
                }
                0
            },
            &ServeOptions::default(),
        );
        // SAFETY: leave the forked child at once.
        unsafe { libc::_exit(r.is_err() as i32) };
    }
    rt.add_process(WorkerType::Sub, mb).unwrap();
    rt.set_process_pid(mb, pid).unwrap();
    assert_eq!(
        rt.set_process_pid(mb, 0).unwrap_err().status,
        Status::InvalidArgument
    );
    let none = [Args::default()];
    rt.wait(rt.submit(&spec(WorkerType::Sub, 1, &none)).unwrap())
        .unwrap();
    let die = [9u64];
    let a = [Args::scalars(&die)];
    let e = rt
        .wait(rt.submit(&spec(WorkerType::Sub, 1, &a)).unwrap())
        .unwrap_err();
    assert_eq!(e.status, Status::ChildDied, "{}", e.message);
    assert!(
        e.message.contains(&format!("process pid {pid}")),
        "{}",
        e.message
    );
    assert_eq!(
        rt.submit(&spec(WorkerType::Sub, 1, &none))
            .unwrap_err()
            .status,
        Status::NoWorker
    );
    let _ = rt.drain();
    rt.shutdown().unwrap();
    // The library left the caller's child for the caller to reap.
    let mut status = 0;
    // SAFETY: reaping our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSIGNALED(status));
}
