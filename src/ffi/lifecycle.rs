//! Creating, starting and shutting down a DistWorker.

use super::handle::DistWorker;
use super::{lookup, put, Out};
use crate::abi::{DistCallConfig, DistStatus, DistWorkerOptions};
use crate::runtime::{Options, Runtime, SHUTDOWN_GRACE};
use crate::status::{Error, Status};
use std::os::raw::c_char;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Fills `options` with defaults: level 3, a 64 MiB heap ring. NULL is a no-op.
///
/// Threads: any, at any time, from a callable or a child too; it touches
/// only `options`.
///
/// # Safety
/// A non-NULL `options` must be writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_options_init(options: *mut DistWorkerOptions) {
    // SAFETY: `options` is NULL (skipped) or writable, per this function's contract.
    unsafe { put(options, DistWorkerOptions::from(&Options::default())) };
}

/// Fills `config` with the defaults of a call config: block_dim 24,
/// aicpu_thread_num 3, enable_profiling and enable_dump_tensor false. NULL
/// is a no-op.
///
/// Threads: any, at any time, from a callable or a child too; it touches
/// only `config`.
///
/// # Safety
/// A non-NULL `config` must be writable.
#[no_mangle]
pub unsafe extern "C" fn dist_call_config_init(config: *mut DistCallConfig) {
    // SAFETY: `config` is NULL (skipped) or writable, per this function's contract.
    unsafe { put(config, DistCallConfig::default()) };
}

/// "MAJOR.MINOR.PATCH" of the library actually loaded: a static string,
/// never freed. Compare it with the header's DIST_WORKER_VERSION_MAJOR,
/// _MINOR and _PATCH to catch a program running against another build than
/// the one it was compiled with.
///
/// Threads: any, at any time, from a callable or a child too.
#[no_mangle]
pub extern "C" fn dist_worker_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The crate's version, NUL-terminated for C.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// Creates a worker. `options` NULL = defaults. The heap ring is mapped
/// MAP_SHARED here, so children forked later share it. `*out_worker` is
/// written only on success. With `DIST_WORKER_TRACE=<path>` in the
/// environment the worker records a timeline trace from here on (as
/// `dist_worker_trace_start`): the first worker created in the process
/// writes `path`, later ones (inner levels, a level's own process) write
/// beside it with `.<pid>-<n>` before the extension.
///
/// Threads: any, at any time, from a callable or a child too (a new level
/// inside a level); the new worker shares nothing with others, so another
/// worker's shutdown does not touch it.
///
/// # Safety
/// `options`, if non-NULL, must point to an initialised `DistWorkerOptions`;
/// `out_worker` must be writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_create(
    options: *const DistWorkerOptions,
    out_worker: *mut *mut DistWorker,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `out_worker` is NULL (refused) or writable, per this function's `# Safety` contract.
        let out = unsafe { Out::new(out_worker, "out_worker") }?;
        // SAFETY: `options` is NULL or points to an initialised DistWorkerOptions.
        let opts = match unsafe { options.as_ref() } {
            None => Options::default(),
            Some(o) => Options::from(o),
        };
        let core = Runtime::new(opts)?;
        out.write(DistWorker::boxed(core));
        Ok(())
    })
}

/// Starts the pool (threads and dispatcher). Also done by the first
/// dispatch. Calling it again is a no-op.
///
/// Threads: any host thread; concurrent calls start the pool once. From a
/// callable (the pool already runs) it returns DIST_OK and does nothing; a
/// child has no DistWorker of its parent to start. Concurrently with
/// shutdown: DIST_ERR_SHUT_DOWN.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_start(worker: *mut DistWorker) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?.start()
    })
}

/// Finishes dispatched work, writes SHUTDOWN to every mailbox, joins the
/// library's threads, reaps the children it spawned and frees `worker`.
/// NULL is a no-op. Returns DIST_OK or the first failure not yet reported by
/// a drain; DIST_ERR_TIMEOUT when `shutdown_timeout_ms` passed first (busy
/// children are then killed with SIGKILL and reaped, their tasks end with
/// DIST_ERR_TIMEOUT, and the message names them). It returns within
/// `shutdown_timeout_ms` plus a fixed grace of 200 ms, however many workers
/// misbehave. A trace being recorded is written to its file last (a
/// failure to write it is logged, not returned). At info level it logs how
/// long it took and what it reaped; at warn level what it had to kill.
///
/// Threads: any thread but a pool thread of `worker` (from inside one of its
/// callables it returns DIST_ERR_BAD_STATE and frees nothing). Other threads'
/// calls may be in progress: dispatch, alloc and scope calls then return
/// DIST_ERR_SHUT_DOWN; a wait or drain returns its task's status once the
/// work is finished (DIST_ERR_SHUT_DOWN if the id was released meanwhile).
/// `worker` is freed only after every such call has returned (never, if a
/// pool thread was left running in a callable that may still use it); no
/// call may start once this function may have returned. A second shutdown
/// from another thread while one is under way returns DIST_ERR_SHUT_DOWN at
/// once and frees nothing (the first frees the worker). In a copy of the
/// process made by fork(), it frees the copy's private memory only (shared
/// mappings stay until the copy exits: a child the worker spawned may call it
/// and serve on) and touches no
/// mailbox or child.
///
/// # Safety
/// `worker` NULL or from `dist_worker_create`, not shut down before.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_shutdown(worker: *mut DistWorker) -> DistStatus {
    boundary!(|| {
        if worker.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL, and live until freed below (the caller's contract).
        let w = unsafe { &*worker };
        if let Some(index) = w.core.pool_worker() {
            return Err(Error::new(
                Status::BadState,
                format!(
                    "called from a callable on the pool thread of worker {index}: shutdown \
                     joins that thread; call it from a host thread"
                ),
            ));
        }
        // A second shutdown while one is under way: counted as a call in
        // progress (so the first frees nothing under it), then it leaves.
        w.calls.fetch_add(1, Ordering::AcqRel);
        let already = w.closing.swap(true, Ordering::AcqRel);
        w.calls.fetch_sub(1, Ordering::AcqRel);
        if already {
            return Err(Error::new(
                Status::ShutDown,
                "another thread is shutting this worker down; it frees the worker when done",
            ));
        }
        if w.core.is_forked_copy() {
            // Calls of other threads were copied mid-way and never return,
            // and locks they held stay held: free this copy's memory alone.
            // SAFETY: ownership returns to Rust once; nothing in this copy
            // can use the worker after its shutdown.
            drop(unsafe { Box::from_raw(worker) });
            return Ok(());
        }
        let outcome = w.core.close();
        // Calls still inside (a wait woken by the close) leave promptly,
        // within the shutdown's own bound.
        let bound = w
            .core
            .close_by()
            .unwrap_or(Instant::now() + SHUTDOWN_GRACE)
            .max(Instant::now() + Duration::from_millis(5));
        if w.core.left_threads() {
            // A pool thread still in a callable may call this worker when
            // the callable returns: its memory must outlive it.
            return outcome;
        }
        while w.calls.load(Ordering::Acquire) > 0 && Instant::now() < bound {
            std::thread::sleep(Duration::from_micros(200));
        }
        let inside = w.calls.load(Ordering::Acquire);
        if inside > 0 {
            // Freeing now would pull the memory from under them: keep it.
            return outcome.and(Err(Error::new(
                Status::Timeout,
                format!(
                    "{inside} call(s) on this worker from other threads had not returned; \
                     its memory was left allocated"
                ),
            )));
        }
        // SAFETY: ownership returns to Rust once; no call is in progress.
        drop(unsafe { Box::from_raw(worker) });
        outcome
    })
}
