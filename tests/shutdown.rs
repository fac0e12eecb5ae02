//! Shutdown always returns: past its deadline, children still running a
//! task are killed and reaped, pool threads stuck in a callable are left,
//! tasks that never started fail, and the status says so.

use dist_worker::abi::DistCallConfig;
use dist_worker::Args;
use dist_worker::TaskSpec;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime, Status};
use std::time::Duration;

fn options() -> Options {
    Options {
        shutdown_timeout: Some(Duration::from_millis(300)),
        ..Options::default()
    }
}

fn hang(_: u64, v: &dist_worker::TaskView<'_>, _: &DistCallConfig) -> i32 {
    if v.scalars.first() == Some(&1) {
        std::thread::sleep(Duration::from_secs(3600));
    }
    0
}

fn submit(rt: &Runtime, ty: WorkerType, hang: bool) {
    let s = [hang as u64];
    let a = [Args::scalars(&s)];
    rt.submit(&TaskSpec {
        ty,
        callable: 7,
        config: DistCallConfig::default(),
        members: &a[..],
    })
    .unwrap();
}

#[test]
fn a_hung_child_is_killed_and_reaped_at_the_deadline() {
    let rt = Runtime::new(options()).unwrap();
    let pid = rt.spawn(WorkerType::Sub, Box::new(hang)).unwrap();
    submit(&rt, WorkerType::Sub, true);
    submit(&rt, WorkerType::Sub, false); // queued behind it: never starts
    let e = rt.shutdown().unwrap_err();
    assert_eq!(e.status, Status::Timeout, "{}", e.message);
    assert!(
        e.message.contains(&format!("child pid {pid}")),
        "names the child: {}",
        e.message
    );
    // Reaped: no such child any more.
    // SAFETY: waitpid on a pid this test forked through the runtime.
    assert_eq!(
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) },
        -1
    );
}

#[test]
fn a_thread_stuck_in_a_callable_does_not_hold_shutdown() {
    let rt = Runtime::new(options()).unwrap();
    rt.add_thread(WorkerType::NextLevel, Box::new(hang))
        .unwrap();
    submit(&rt, WorkerType::NextLevel, true);
    let e = rt.shutdown().unwrap_err();
    assert_eq!(e.status, Status::Timeout, "{}", e.message);
}

#[test]
fn a_prompt_shutdown_reports_no_timeout() {
    let rt = Runtime::new(options()).unwrap();
    rt.spawn(WorkerType::Sub, Box::new(hang)).unwrap();
    submit(&rt, WorkerType::Sub, false);
    rt.shutdown().unwrap();
}

#[test]
fn a_shutdown_during_a_slow_start_wins() {
    let rt = std::sync::Arc::new(Runtime::new(options()).unwrap());
    rt.spawn_with_init(
        WorkerType::Sub,
        Some(Box::new(|| {
            std::thread::sleep(Duration::from_millis(300));
            0
        })),
        Box::new(hang),
    )
    .unwrap();
    let starter = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.start())
    };
    std::thread::sleep(Duration::from_millis(50));
    let t = std::time::Instant::now();
    rt.close().unwrap();
    // The deadline (300 ms) counts from the call, not from the end of start.
    assert!(
        t.elapsed() < Duration::from_millis(300 + 200 + 300),
        "{:?}",
        t.elapsed()
    );
    let _ = starter.join().unwrap();
    let e = rt.submit(&TaskSpec {
        ty: WorkerType::Sub,
        callable: 7,
        config: DistCallConfig::default(),
        members: &[Args::default()][..],
    });
    assert_eq!(e.unwrap_err().status, Status::ShutDown);
}

/// A THREAD-mode level whose pool thread is stuck driving a hung task
/// below: the outer shutdown closes the inner level by its own deadline,
/// so the inner child is killed and reaped, not left running.
#[test]
fn a_stuck_thread_level_is_closed_with_its_children_at_the_deadline() {
    let top = Runtime::new(options()).unwrap();
    let inner = Runtime::new(Options {
        shutdown_timeout: Some(Duration::from_secs(60)),
        ..Options::default()
    })
    .unwrap();
    let child = inner.spawn(WorkerType::Sub, Box::new(hang)).unwrap();
    top.add_level(
        inner,
        Box::new(|inner, _, v, _| {
            submit(inner, WorkerType::Sub, v.scalars.first() == Some(&1));
            0
        }),
    )
    .unwrap();
    submit(&top, WorkerType::NextLevel, true);
    std::thread::sleep(Duration::from_millis(100)); // the task hangs below
    let t = std::time::Instant::now();
    let e = top.shutdown().unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.status, Status::Timeout, "{}", e.message);
    // 300 ms deadline plus the documented 200 ms grace, and some slack.
    assert!(took < Duration::from_millis(800), "took {took:?}");
    let gone = !std::path::Path::new(&format!("/proc/{child}")).exists();
    assert!(
        gone,
        "the inner level's child {child} outlived the shutdown"
    );
}
