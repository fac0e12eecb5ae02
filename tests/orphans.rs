//! No child outlives its parent: children spawned by a host that dies
//! without shutting down exit within a second, whether the host forked them
//! from its main thread or from another thread (their lifelines close with
//! the host process). tests/c/faults.c (section lifeline) adds busy
//! children and a main thread that leaves with pthread_exit.

use dist_worker::Args;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime};
use std::time::{Duration, Instant};

mod common;
use common::spec;

fn host(pipe_w: i32) -> ! {
    let rt = Runtime::new(Options::default()).unwrap();
    let mut pids = vec![rt.spawn(WorkerType::Sub, Box::new(|_, _, _| 0)).unwrap()];
    // A second child forked from a thread that is not the main thread.
    std::thread::scope(|s| {
        s.spawn(|| pids.push(rt.spawn(WorkerType::Sub, Box::new(|_, _, _| 0)).unwrap()));
    });
    let none = [Args::default()];
    let spec = spec(WorkerType::Sub, 1, &none[..]);
    rt.wait(rt.submit(&spec).unwrap()).unwrap();
    // Let the children fall asleep on their futexes, then die without shutdown.
    std::thread::sleep(Duration::from_millis(50));
    for p in &pids {
        // SAFETY: writing 4 bytes from a live i32 to our pipe.
        unsafe { libc::write(pipe_w, (p as *const i32).cast(), 4) };
    }
    // SAFETY: leave at once, as a crashing host would.
    unsafe { libc::_exit(0) }
}

#[test]
fn children_exit_within_a_second_of_their_parents_death() {
    // Orphans are re-parented to this process, so it can reap them.
    // SAFETY: prctl with a documented option.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child runs `host` and never returns.
    let host_pid = unsafe { libc::fork() };
    if host_pid == 0 {
        host(fds[1]);
    }
    let mut pids = [0i32; 2];
    for p in &mut pids {
        // SAFETY: reading 4 bytes into a live i32.
        assert_eq!(unsafe { libc::read(fds[0], (p as *mut i32).cast(), 4) }, 4);
    }
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(host_pid, std::ptr::null_mut(), 0) };
    let died = Instant::now();
    for pid in pids {
        loop {
            // SAFETY: reaping an orphan re-parented to us.
            let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if r == pid {
                break;
            }
            assert!(
                died.elapsed() < Duration::from_secs(1),
                "child {pid} still runs a second after its parent died"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
