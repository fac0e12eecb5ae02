//! The serving side of a mailbox: the loop a child process (or a pool
//! thread) runs (`serve`), and one task's run and completion (`run_task`).
//! Forking a library-owned child is `runtime::setup`'s.
//!
//! Called from: `dist_child_serve` in a caller's child, the child branch of
//! `dist_worker_spawn`, and every THREAD-mode pool thread (a THREAD worker
//! is a pool thread serving a private mailbox, so both modes speak one
//! protocol and one dispatcher polls them all).

use crate::abi::DistCallConfig;
use crate::blob::{self, TaskView};
use crate::doorbell::Doorbell;
use crate::mailbox::{state, Mailbox};
use crate::status::{fail, Result, Status};
use crate::sys;
use std::time::Duration;

/// A callable as the core sees it: `(callable, args, config) -> error code`.
pub type Handler = Box<dyn FnMut(u64, &TaskView<'_>, &DistCallConfig) -> i32 + Send>;

/// Error code a serving side reports when the blob it received is malformed.
pub const ERROR_BAD_BLOB: i32 = -(Status::Protocol as i32);
/// Error code a serving side reports when its handler panicked.
pub const ERROR_HANDLER_PANIC: i32 = -(Status::Panic as i32);

thread_local! {
    /// The message the running callable set for its failure.
    static MESSAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Called by a callable while it runs: a short message (at most 2048 bytes)
/// that travels back with a non-zero error and joins the task's failure
/// message. Ignored when the callable returns 0.
pub fn set_error_message(message: &[u8]) {
    MESSAGE.with(|m| {
        let mut m = m.borrow_mut();
        m.clear();
        m.extend_from_slice(&message[..message.len().min(crate::mailbox::MESSAGE_CAPACITY)]);
    });
}

/// Forgets any message set on this thread (a forked child starts clean).
pub(crate) fn clear_message() {
    MESSAGE.with(|m| m.borrow_mut().clear());
}

/// The message the running callable (or orchestration function) set on
/// this thread, if any.
pub(crate) fn current_message() -> Option<String> {
    MESSAGE.with(|m| {
        let m = m.borrow();
        (!m.is_empty()).then(|| String::from_utf8_lossy(&m).into_owned())
    })
}

/// How a serving side waits and whom it tells when a task is done.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// How long to spin on the state word before sleeping on it.
    pub spin: Duration,
    /// Longest single sleep before re-checking liveness.
    pub nap: Duration,
    /// Rung after every TASK_DONE so a sleeping dispatcher wakes at once.
    pub doorbell: Option<Doorbell>,
    /// The parent process: the loop ends (within one `nap`) once it is gone,
    /// so no child outlives its parent.
    pub parent: Option<i32>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            spin: Duration::from_micros(50),
            nap: Duration::from_millis(500),
            doorbell: None,
            parent: None,
        }
    }
}

/// Serves `mailbox` until SHUTDOWN (Ok) or a state the protocol does not
/// allow (PROTOCOL).
pub fn serve(
    mailbox: Mailbox,
    handler: &mut dyn FnMut(u64, &TaskView<'_>, &DistCallConfig) -> i32,
    opts: &ServeOptions,
) -> Result<()> {
    serve_then(mailbox, handler, opts, &mut || {
        // Ring only if the completion is still unclaimed: a parent
        // spinning on this mailbox has taken it already.
        if let Some(bell) = opts
            .doorbell
            .filter(|_| mailbox.state() == state::TASK_DONE)
        {
            bell.ring();
        }
    })
}

/// As `serve`, but `done` runs after each TASK_DONE is stored, instead of
/// the doorbell's ring (a pool thread hands its completion to the engine
/// itself).
pub(crate) fn serve_then(
    mailbox: Mailbox,
    handler: &mut dyn FnMut(u64, &TaskView<'_>, &DistCallConfig) -> i32,
    opts: &ServeOptions,
    done: &mut dyn FnMut(),
) -> Result<()> {
    mailbox.announce_features(crate::mailbox::FEATURE_ECHO | crate::mailbox::FEATURE_LARGE_ARGS);
    loop {
        let parent_alive = || opts.parent.is_none_or(|p| sys::getppid() == p);
        let Some(s) = mailbox.wait_for_work(opts.spin, opts.nap, parent_alive) else {
            return fail(Status::ShutDown, "the parent process is gone");
        };
        match s {
            state::TASK_READY => {
                if !run_task(mailbox, handler) {
                    // The parent wrote SHUTDOWN while the task ran (a
                    // deadline passed): the completion is not wanted.
                    return match mailbox.state() {
                        state::SHUTDOWN => Ok(()),
                        other => fail(
                            Status::Protocol,
                            format!(
                                "mailbox {:p} holds state {other} at the end of a task",
                                mailbox.as_ptr()
                            ),
                        ),
                    };
                }
                done();
            }
            state::SHUTDOWN => return Ok(()),
            other => {
                return fail(
                    Status::Protocol,
                    format!(
                        "mailbox {:p} holds state {other}, which a parent never writes",
                        mailbox.as_ptr()
                    ),
                )
            }
        }
    }
}

/// Runs the task published in `mailbox` (TASK_READY) with `handler` and
/// reports it: error code, message on failure, the launch's sequence echoed,
/// TASK_DONE stored with a compare-and-swap from TASK_READY. Returns false
/// when the parent wrote another state meanwhile (SHUTDOWN), which the
/// completion then leaves alone.
pub(crate) fn run_task(
    mailbox: Mailbox,
    handler: &mut dyn FnMut(u64, &TaskView<'_>, &DistCallConfig) -> i32,
) -> bool {
    let seq = mailbox.launch_seq();
    let callable = mailbox.callable();
    let config = mailbox.config();
    MESSAGE.with(|m| m.borrow_mut().clear());
    let error = match blob::decode(mailbox.blob()) {
        Ok(view) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler(callable, &view, &config)
        }))
        .unwrap_or(ERROR_HANDLER_PANIC),
        Err(_) => {
            set_error_message(
                b"the args blob could not be read: malformed, or large arguments (past 4032 \
                  bytes) in a heap ring this process does not map (a child started apart \
                  from the host receives blobs of at most 4032 bytes)",
            );
            ERROR_BAD_BLOB
        }
    };
    if error != 0 {
        MESSAGE.with(|m| {
            let m = m.borrow();
            if !m.is_empty() {
                mailbox.set_message(&m);
            }
        });
    }
    mailbox.complete(error, seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::DistTensor;
    use crate::mailbox::OwnedMailbox;

    fn encode(tensors: &[DistTensor], scalars: &[u64]) -> Vec<u8> {
        let mut v = Vec::new();
        blob::encode(tensors, scalars, &mut v);
        v
    }

    #[test]
    fn serves_tasks_until_shutdown() {
        let owned = OwnedMailbox::new().unwrap();
        let mb = owned.handle();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let r = serve(
                mb,
                &mut |c, v, cfg| {
                    seen.push((c, v.tensors.len(), v.scalars.to_vec(), cfg.block_dim));
                    if c == 9 {
                        3
                    } else {
                        0
                    }
                },
                &ServeOptions::default(),
            );
            (r, seen)
        });
        let cfg = DistCallConfig {
            block_dim: 24,
            aicpu_thread_num: 3,
            enable_profiling: false,
            enable_dump_tensor: false,
        };
        let t = DistTensor {
            data: 64,
            shapes: [1; 5],
            ndims: 1,
            dtype: 0,
        };
        for (c, want) in [(1u64, 0), (9, 3)] {
            mb.write_task(c, &cfg, &encode(&[t], &[c * 10]), c as u32);
            mb.publish(state::TASK_READY);
            while mb.state() != state::TASK_DONE {
                std::hint::spin_loop();
            }
            assert_eq!(mb.error(), want);
            mb.set_state(state::IDLE);
        }
        mb.shut_down();
        let (r, seen) = server.join().unwrap();
        r.unwrap();
        assert_eq!(seen, vec![(1, 1, vec![10], 24), (9, 1, vec![90], 24)]);
    }

    #[test]
    fn bad_blob_and_bad_state() {
        let owned = OwnedMailbox::new().unwrap();
        let mb = owned.handle();
        let cfg = DistCallConfig {
            block_dim: 1,
            aicpu_thread_num: 1,
            enable_profiling: false,
            enable_dump_tensor: false,
        };
        mb.write_task(1, &cfg, &(-3i32).to_le_bytes(), 1);
        mb.publish(state::TASK_READY);
        let server =
            std::thread::spawn(move || serve(mb, &mut |_, _, _| 0, &ServeOptions::default()));
        while mb.state() != state::TASK_DONE {
            std::hint::spin_loop();
        }
        assert_eq!(mb.error(), ERROR_BAD_BLOB);
        mb.publish(77);
        assert_eq!(server.join().unwrap().unwrap_err().status, Status::Protocol);
    }
}
