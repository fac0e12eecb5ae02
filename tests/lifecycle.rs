//! Lifecycle of a runtime with spawned children: no library thread before
//! start, every thread joined and every child reaped after shutdown. One
//! test per binary, so thread counts are not disturbed by other tests.

use dist_worker::Args;
use dist_worker::Handler;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime};

mod common;
use common::spec;

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn spawned_children_serve_tasks_and_are_reaped() {
    let threads_before = thread_count();
    let rt = Runtime::new(Options::default()).unwrap();
    // The child writes the product of its scalars into shared memory the
    // parent reads back: a child genuinely ran it.
    let (heap, _) = rt.heap();
    let heap_addr = heap as usize;
    let mut pids = Vec::new();
    for _ in 0..3 {
        let h: Handler = Box::new(move |c, v, _| {
            let out = (heap_addr + 8 * c as usize) as *mut u64;
            // SAFETY: the heap is MAP_SHARED and large; c < 64 in this test.
            unsafe { out.write_volatile(v.scalars[0] * v.scalars[1]) };
            0
        });
        pids.push(rt.spawn(WorkerType::Sub, h).unwrap());
    }
    assert_eq!(
        thread_count(),
        threads_before,
        "no library thread before start"
    );
    let mut ids = Vec::new();
    for c in 0..48u64 {
        let s = [c, 3];
        let a = [Args::scalars(&s)];
        ids.push(rt.submit(&spec(WorkerType::Sub, c, &a)).unwrap());
    }
    for id in ids {
        rt.wait(id).unwrap();
    }
    for c in 0..48u64 {
        // SAFETY: written by a child through the shared mapping.
        let v = unsafe { ((heap_addr + 8 * c as usize) as *const u64).read_volatile() };
        assert_eq!(v, c * 3);
    }
    rt.shutdown().unwrap();
    assert_eq!(thread_count(), threads_before, "threads joined");
    for pid in pids {
        // Already reaped by shutdown: no such child any more.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1);
    }
}
