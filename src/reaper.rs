//! The reaper: one thread that learns at once when a worker's process dies
//! (a child it spawned, or a caller-owned one whose pid the caller named).
//!
//! Owned by: the `Runtime`, started with the pool when it spawned children,
//! stopped at shutdown before SHUTDOWN is written (so normal exits are not
//! mistaken for deaths). It blocks in poll(2) on one pidfd per live child
//! and an eventfd that stops it; it costs nothing while children live. When
//! a child dies it reaps it and takes its worker out of the pool: the task
//! it ran fails with CHILD_DIED, its dependents with DEPENDENCY_FAILED.

use crate::dispatcher::Progress;
use crate::sys;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// A spawned child the reaper watches.
pub struct Watched {
    /// Index of its worker.
    pub worker: usize,
    /// Its pid.
    pub pid: i32,
    /// Readable once it exits.
    pub pidfd: OwnedFd,
    /// Whether this runtime reaps it (it forked it); a caller-owned child
    /// is left for the caller to reap.
    pub reap: bool,
}

/// The reaper thread's body: runs until `stop` is signalled.
/// A reaped child's pid is removed from `children`, so shutdown never waits
/// for a pid the system may have given to another process since.
pub fn run(
    progress: &Progress,
    children: &Mutex<Vec<i32>>,
    mut watched: Vec<Watched>,
    stop: &OwnedFd,
) {
    let mut ready = Vec::new();
    loop {
        let mut fds: Vec<&OwnedFd> = vec![stop];
        fds.extend(watched.iter().map(|w| &w.pidfd));
        if sys::poll_readable(&fds, &mut ready).is_err() || ready.contains(&0) {
            return;
        }
        // Highest index first, so removals keep the others' positions.
        for &i in ready.iter().rev() {
            let w = watched.remove(i - 1);
            let how = if w.reap {
                match sys::wait_child(w.pid, true) {
                    Ok(Some(status)) => status.to_string(),
                    Ok(None) => "exited".to_string(),
                    Err(e) => e.message,
                }
            } else {
                "exited".to_string()
            };
            children
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|&p| p != w.pid);
            progress.child_died(w.worker, &how);
        }
    }
}
