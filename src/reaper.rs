//! The reaper: one thread that learns at once when a worker's process dies
//! (a child it spawned, or a caller-owned one whose pid the caller named).
//!
//! Owned by: the `Runtime`, started with the pool when it has processes to
//! watch, stopped at shutdown before SHUTDOWN is written (so normal exits
//! are not mistaken for deaths). It blocks in poll(2) on one pidfd per live
//! child and an eventfd that stops it, and costs nothing while children
//! live. Where a pidfd cannot be had (kernels before 5.3, valgrind, seccomp
//! filters), it looks at those children every `POLL_WITHOUT_PIDFD` instead
//! (`waitpid(WNOHANG)` for its own children, /proc for caller-owned ones).
//! When a child dies it reaps it (if the runtime forked it) and takes its
//! worker out of the pool: the task it ran fails with CHILD_DIED, its
//! dependents with DEPENDENCY_FAILED.

use crate::progress::Progress;
use crate::sys::{self, lifeline::Lifeline};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

/// How often children without a pidfd are looked at.
pub const POLL_WITHOUT_PIDFD: Duration = Duration::from_millis(10);

/// A child this runtime forked and has not reaped yet.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid.
    pub pid: i32,
    /// The host's end of its lifeline, held only to be dropped (closed)
    /// once the child is reaped.
    #[allow(dead_code)]
    pub lifeline: Lifeline,
}

/// A process the reaper watches.
pub struct Watched {
    /// Index of its worker.
    pub worker: usize,
    /// Its pid.
    pub pid: i32,
    /// Readable once it exits; None where pidfd_open failed.
    pub pidfd: Option<OwnedFd>,
    /// Whether this runtime reaps it (it forked it); a caller-owned child
    /// is left for the caller to reap.
    pub reap: bool,
}

impl Watched {
    /// For a process without a pidfd: how it ended, if it has.
    fn ended(&self) -> Option<String> {
        if self.reap {
            match sys::wait_child(self.pid, false) {
                Ok(None) => None,
                Ok(Some(status)) => Some(status.to_string()),
                Err(e) => Some(e.message),
            }
        } else {
            sys::process_ended(self.pid).then(|| "exited".to_string())
        }
    }

    /// For a process whose pidfd became readable: reaps it if it is ours.
    fn reap(&self) -> String {
        if !self.reap {
            return "exited".to_string();
        }
        match sys::wait_child(self.pid, true) {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => "exited".to_string(),
            Err(e) => e.message,
        }
    }
}

/// The reaper thread's body: runs until `stop` is signalled.
/// A reaped child is removed from `children`, so shutdown never waits for a
/// pid the system may have given to another process since.
pub fn run(
    progress: &Progress,
    children: &Mutex<Vec<Spawned>>,
    mut watched: Vec<Watched>,
    stop: &OwnedFd,
) {
    let mut ready = Vec::new();
    let mut died = Vec::new();
    loop {
        let mut fds: Vec<&OwnedFd> = vec![stop];
        let mut owners = Vec::new();
        for (i, w) in watched.iter().enumerate() {
            if let Some(fd) = &w.pidfd {
                fds.push(fd);
                owners.push(i);
            }
        }
        let timeout = watched
            .iter()
            .any(|w| w.pidfd.is_none())
            .then_some(POLL_WITHOUT_PIDFD);
        if sys::poll_readable(&fds, &mut ready, timeout).is_err() || ready.contains(&0) {
            return;
        }
        died.clear();
        died.extend(ready.iter().map(|&i| (owners[i - 1], None)));
        for (i, w) in watched.iter().enumerate() {
            if w.pidfd.is_none() {
                if let Some(how) = w.ended() {
                    died.push((i, Some(how)));
                }
            }
        }
        // Highest index first, so removals keep the others' positions.
        died.sort_by_key(|d| std::cmp::Reverse(d.0));
        for (i, how) in died.drain(..) {
            let w = watched.remove(i);
            let how = how.unwrap_or_else(|| w.reap());
            children
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|c| c.pid != w.pid);
            progress.child_died(w.worker, &how);
        }
    }
}
