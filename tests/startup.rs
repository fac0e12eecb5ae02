//! Start-up: a spawned child runs its init function before it serves and
//! announces readiness; a failed init, or a child that dies first, makes
//! start fail naming the worker, with no child left behind.

use dist_worker::WorkerType;
use dist_worker::{Options, Runtime, Status};

fn gone(pid: i32) -> bool {
    // SAFETY: waitpid on a pid forked through the runtime.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) == -1 }
}

/// Starts `rt`, which must fail with CHILD_DIED saying `why`.
fn start_fails_with(rt: &Runtime, why: &str) -> dist_worker::Error {
    let e = rt.start().unwrap_err();
    assert_eq!(e.status, Status::ChildDied, "{}", e.message);
    assert!(e.message.contains(why), "{}", e.message);
    e
}

#[test]
fn a_failed_init_fails_start_and_leaves_no_child() {
    let rt = Runtime::new(Options::default()).unwrap();
    let ok = rt
        .spawn_with_init(WorkerType::Sub, Some(Box::new(|| 0)), Box::new(|_, _, _| 0))
        .unwrap();
    let bad = rt
        .spawn_with_init(
            WorkerType::NextLevel,
            Some(Box::new(|| {
                dist_worker::set_error_message(b"no device 3");
                7
            })),
            Box::new(|_, _, _| 0),
        )
        .unwrap();
    let e = start_fails_with(&rt, &format!("NEXT_LEVEL worker 1 (child pid {bad})"));
    assert!(e.message.contains("error 7: no device 3"), "{}", e.message);
    assert!(gone(ok) && gone(bad), "every child reaped");
    assert_eq!(rt.start().unwrap_err().status, Status::ShutDown);
    rt.shutdown().unwrap();
}

#[test]
fn a_child_that_dies_before_it_is_ready_fails_start() {
    let rt = Runtime::new(Options::default()).unwrap();
    let pid = rt
        .spawn_with_init(
            WorkerType::Sub,
            // SAFETY: the child leaves at once, as a crashing init would.
            Some(Box::new(|| unsafe { libc::_exit(3) })),
            Box::new(|_, _, _| 0),
        )
        .unwrap();
    start_fails_with(&rt, "exited with status 3 before it was ready");
    assert!(gone(pid));
    rt.shutdown().unwrap();
}

#[test]
fn ready_children_serve() {
    let rt = Runtime::new(Options::default()).unwrap();
    for _ in 0..3 {
        rt.spawn_with_init(WorkerType::Sub, Some(Box::new(|| 0)), Box::new(|_, _, _| 0))
            .unwrap();
    }
    rt.start().unwrap();
    let none = [dist_worker::Args::default()];
    let spec = dist_worker::TaskSpec {
        ty: WorkerType::Sub,
        callable: 1,
        config: Default::default(),
        members: &none[..],
    };
    for _ in 0..100 {
        rt.wait(rt.submit(&spec).unwrap()).unwrap();
    }
    rt.drain().unwrap();
    rt.shutdown().unwrap();
}

static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn mark_started() {
    STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The child-start function runs in every forked child before its init,
/// and never in the host.
#[test]
fn the_child_start_function_runs_first_in_each_child() {
    dist_worker::set_child_start(Some(mark_started));
    let rt = Runtime::new(Options::default()).unwrap();
    let init = || {
        if STARTED.load(std::sync::atomic::Ordering::SeqCst) {
            0
        } else {
            9
        }
    };
    rt.spawn_with_init(WorkerType::Sub, Some(Box::new(init)), Box::new(|_, _, _| 0))
        .unwrap();
    rt.start().unwrap();
    dist_worker::set_child_start(None);
    assert!(
        !STARTED.load(std::sync::atomic::Ordering::SeqCst),
        "ran in the host"
    );
    rt.shutdown().unwrap();
}
