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
