//! Task deadlines: a task running past `task_timeout` ends with TIMEOUT,
//! its worker leaves the pool (a spawned child is killed and reaped), its
//! dependents fail, and the other workers go on.

use dist_worker::abi::{DistCallConfig, DistTensor, DIST_ARG_INPUT, DIST_ARG_OUTPUT};
use dist_worker::TaskSpec;
use dist_worker::WaitPolicy;
use dist_worker::WorkerType;
use dist_worker::{Args, TaskView};
use dist_worker::{Options, Runtime, Status};
use std::time::Duration;

fn hang(_: u64, v: &TaskView<'_>, _: &DistCallConfig) -> i32 {
    if v.scalars.first() == Some(&1) {
        std::thread::sleep(Duration::from_secs(3600));
    }
    0
}

#[test]
fn a_task_past_its_deadline_times_out_and_its_worker_leaves() {
    let opts = Options {
        wait: WaitPolicy {
            task_timeout: Some(Duration::from_millis(200)),
            ..WaitPolicy::default()
        },
        shutdown_timeout: Some(Duration::from_millis(500)),
        ..Options::default()
    };
    let rt = Runtime::new(opts).unwrap();
    let hung_pid = rt.spawn(WorkerType::Sub, Box::new(hang)).unwrap();
    rt.spawn(WorkerType::Sub, Box::new(hang)).unwrap();
    let t = [DistTensor {
        data: 0x40,
        shapes: [1, 0, 0, 0, 0],
        ndims: 1,
        dtype: 0,
    }];
    let (out, input) = ([DIST_ARG_OUTPUT], [DIST_ARG_INPUT]);
    let spec = |a: &[Args]| {
        rt.submit(&TaskSpec {
            ty: WorkerType::Sub,
            callable: 3,
            config: DistCallConfig::default(),
            members: a,
        })
        .unwrap()
    };
    let stuck = spec(&[Args {
        tensors: &t,
        tags: Some(&out),
        scalars: &[1],
    }]);
    let dependent = spec(&[Args {
        tensors: &t,
        tags: Some(&input),
        scalars: &[0],
    }]);
    let e = rt.wait(stuck).unwrap_err();
    assert_eq!(e.status, Status::Timeout, "{}", e.message);
    assert!(
        e.message.contains(&format!("child pid {hung_pid}")),
        "{}",
        e.message
    );
    assert_eq!(
        rt.wait(dependent).unwrap_err().status,
        Status::DependencyFailed
    );
    // The other child goes on.
    for _ in 0..50 {
        let id = spec(&[Args::default()]);
        rt.wait(id).unwrap();
    }
    assert_eq!(rt.drain().unwrap_err().status, Status::Timeout);
    rt.shutdown().unwrap();
    // The hung child was killed and reaped.
    // SAFETY: waitpid on a pid forked through the runtime.
    assert_eq!(
        unsafe { libc::waitpid(hung_pid, std::ptr::null_mut(), libc::WNOHANG) },
        -1
    );
}
