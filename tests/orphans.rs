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

/// A caller's own child serving with `dist_child_serve` ends once the
/// process that started it is gone, instead of serving on as an orphan.
#[test]
fn a_served_mailbox_ends_with_its_parent() {
    // SAFETY: prctl with a documented option.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child runs the block and leaves with _exit.
    let host_pid = unsafe { libc::fork() };
    if host_pid == 0 {
        let owned = dist_worker::wire::OwnedMailbox::new().unwrap();
        let mb = owned.handle();
        // SAFETY: the grandchild serves the mailbox, then leaves.
        let child = unsafe { libc::fork() };
        if child == 0 {
            unsafe extern "C" fn noop(
                _: *mut std::os::raw::c_void,
                _: u64,
                _: *const dist_worker::abi::DistTaskView,
                _: *const dist_worker::DistCallConfig,
            ) -> i32 {
                0
            }
            // SAFETY: a live 4096-byte shared mailbox, mapped in this process.
            let s = unsafe {
                dist_worker::ffi::dist_child_serve(
                    mb.as_ptr().cast(),
                    Some(noop),
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: leave at once with the status.
            unsafe { libc::_exit(s) }
        }
        // SAFETY: writing 4 bytes from a live i32 to our pipe.
        unsafe { libc::write(fds[1], (&child as *const i32).cast(), 4) };
        std::thread::sleep(Duration::from_millis(50)); // it falls asleep
                                                       // SAFETY: leave at once, as a crashing host would.
        unsafe { libc::_exit(0) }
    }
    let mut child = 0i32;
    // SAFETY: reading 4 bytes into a live i32.
    assert_eq!(
        unsafe { libc::read(fds[0], (&mut child as *mut i32).cast(), 4) },
        4
    );
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(host_pid, std::ptr::null_mut(), 0) };
    let died = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: reaping an orphan re-parented to us.
        let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if r == child {
            break;
        }
        assert!(
            died.elapsed() < Duration::from_millis(1500),
            "the serving child {child} still runs 1.5 s after its parent died"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(libc::WIFEXITED(status));
    assert_eq!(
        libc::WEXITSTATUS(status),
        dist_worker::abi::DIST_ERR_SHUT_DOWN & 0xff
    );
}
