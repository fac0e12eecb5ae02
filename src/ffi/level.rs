//! Levels through the C API: a DistWorker that drives another DistWorker.

use super::handle::DistWorker;
use super::{lookup, null};
use crate::abi::{DistCallConfig, DistStatus, DistTaskView};
use crate::blob::TaskView;
use crate::runtime::{outcome, Level, Outcome};
use crate::status::{Error, Status};
use std::os::raw::c_void;
use std::sync::atomic::Ordering;

/// Runs one outer task on an inner level: submits work to `inner`
/// (dispatch, scopes, alloc, wait) and returns 0, or a non-zero error code.
/// After it returns, the library drains `inner`; the outer task fails if
/// the function returned non-zero or if any inner task failed (the first
/// failure's message, prefixed with the path of levels, becomes the outer
/// task's message).
pub type DistOrchFn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        inner: *mut DistWorker,
        callable: u64,
        args: *const DistTaskView,
        config: *const DistCallConfig,
    ) -> i32,
>;

/// A C inner level: the DistWorker the outer level owns, and the caller's
/// orchestration function.
pub(super) struct CLevel {
    pub(super) inner: *mut DistWorker,
    pub(super) orch: unsafe extern "C" fn(
        *mut c_void,
        *mut DistWorker,
        u64,
        *const DistTaskView,
        *const DistCallConfig,
    ) -> i32,
    pub(super) user: *mut c_void,
    pub(super) number: u32,
}

// SAFETY: the inner DistWorker is owned by this value alone from
// registration on, and the caller vouches that `orch` and `user` may be
// called from a pool thread (the contract of dist_worker_add_level).
unsafe impl Send for CLevel {}

impl Level for CLevel {
    fn number(&self) -> u32 {
        self.number
    }

    fn run(&mut self, callable: u64, args: &TaskView<'_>, config: &DistCallConfig) -> Outcome {
        let view = DistTaskView::from(args);
        // SAFETY: the caller's orchestration function, with the live inner
        // worker this value owns; the view and config outlive the call.
        let code = unsafe { (self.orch)(self.user, self.inner, callable, &view, config) };
        // SAFETY: the inner worker stays live until this value is dropped.
        let inner = unsafe { &(*self.inner).core };
        outcome(code, inner.drain())
    }

    fn runtime(&self) -> Option<std::sync::Arc<crate::runtime::Runtime>> {
        // SAFETY: the inner worker stays live until this value is dropped.
        Some(unsafe { (*self.inner).core.clone() })
    }
}

impl Drop for CLevel {
    fn drop(&mut self) {
        // SAFETY: this value owns the inner worker; it is shut down (and
        // freed) once, here.
        unsafe { super::dist_worker_shutdown(self.inner) };
    }
}

/// THREAD mode: `inner` (created, not started, never registered elsewhere)
/// becomes a NEXT_LEVEL worker of `outer`; outer tasks sent to it run
/// `orch(user, inner, callable, args, config)` on a pool thread of `outer`,
/// after which `inner` is drained. From here on `outer` owns `inner`:
/// shutting down `outer` shuts `inner` down (the caller never calls
/// dist_worker_shutdown on it). A started `inner` is DIST_ERR_BAD_STATE;
/// `inner == outer` or an `inner` registered before is
/// DIST_ERR_INVALID_ARGUMENT. Registration rules as for the other add
/// functions (before `outer` starts).
///
/// Threads: any host thread, before `outer` starts (DIST_ERR_BAD_STATE
/// after); not from a callable or a child. Concurrently with shutdown (or
/// after a failed start): DIST_ERR_SHUT_DOWN, and `inner` stays the
/// caller's. `orch` runs on a pool thread of `outer` and may call any
/// function on `inner` but shutdown.
///
/// # Safety
/// `outer` and `inner` from `dist_worker_create`; `orch` and `user` must be
/// callable from another thread until `outer` shuts down.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_add_level(
    outer: *mut DistWorker,
    inner: *mut DistWorker,
    orch: DistOrchFn,
    user: *mut c_void,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `outer` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(outer) }?;
        // Registration closed (after start) comes before any argument check.
        w.registration_open()?;
        if inner.is_null() {
            return Err(null("inner"));
        }
        let orch = orch.ok_or_else(|| null("orch"))?;
        if inner == outer {
            return Err(Error::new(
                Status::InvalidArgument,
                "a worker cannot be a level of itself",
            ));
        }
        // SAFETY: non-NULL, and a live DistWorker per this function's contract.
        let level = unsafe { &*inner };
        if !level.core.is_fresh() {
            return Err(Error::new(
                Status::BadState,
                "the inner level must be created and not yet started",
            ));
        }
        if level.adopted.swap(true, Ordering::AcqRel) {
            return Err(Error::new(
                Status::InvalidArgument,
                "this inner level is registered already",
            ));
        }
        let number = level.core.options().level;
        let registered = w.add_level_with(|| {
            Box::new(CLevel {
                inner,
                orch,
                user,
                number,
            })
        });
        if registered.is_err() {
            // Not taken (nothing was built): the caller still owns it.
            level.adopted.store(false, Ordering::Release);
        }
        registered
    })
}

/// Called once in a spawned level's own process, before it serves, to
/// register the inner level's workers (dist_worker_spawn and friends: no
/// thread of the inner level exists yet, so it may fork). Returns 0, or an
/// error code that fails dist_worker_start of the outer level with
/// DIST_ERR_CHILD_DIED.
pub type DistLevelSetupFn =
    Option<unsafe extern "C" fn(user: *mut c_void, inner: *mut DistWorker) -> i32>;

/// PROCESS mode: forks a child that hosts its own level. In the child a new
/// DistWorker is created with `options` (NULL = defaults with level =
/// `outer`'s level - 1), `setup(user, inner)` registers its workers, and
/// each outer task runs `orch(user, inner, callable, args, config)`, after
/// which `inner` is drained. Memory of `outer`'s heap is the same bytes in
/// the level's process and in its children. The child's level, and every
/// process under it, ends when `outer` shuts down or dies; a level process
/// that dies ends its outer task with DIST_ERR_CHILD_DIED. `*out_pid` (may
/// be NULL) gets its pid. Registration rules as for dist_worker_spawn.
///
/// Threads: any host thread, before `outer` starts; not from a callable or a
/// child. Concurrently with shutdown (or after a failed start):
/// DIST_ERR_SHUT_DOWN, and nothing is forked. `setup` and `orch` run in the
/// child, `orch` on its serving thread.
///
/// # Safety
/// `outer` from `dist_worker_create`; `options` NULL or initialised;
/// `out_pid` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_spawn_level(
    outer: *mut DistWorker,
    options: *const crate::abi::DistWorkerOptions,
    setup: DistLevelSetupFn,
    orch: DistOrchFn,
    user: *mut c_void,
    out_pid: *mut i32,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `outer` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(outer) }?;
        // Registration closed (after start) comes before any argument check.
        w.registration_open()?;
        let setup = setup.ok_or_else(|| null("setup"))?;
        let orch = orch.ok_or_else(|| null("orch"))?;
        // SAFETY: `options` is NULL or points to an initialised DistWorkerOptions.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => crate::runtime::Options::from(o),
            None => crate::runtime::Options {
                level: w.options().level.saturating_sub(1),
                ..Default::default()
            },
        };
        let user = super::convert::SendPtr(user);
        let pid = w.spawn_level_with(opts.level, move || {
            let core = crate::runtime::Runtime::new(opts).map_err(|e| -(e.status as i32))?;
            let inner = super::handle::DistWorker::boxed(core);
            // SAFETY: the caller's setup function, in the child, with the
            // new inner worker.
            let code = unsafe { setup(user.get(), inner) };
            if code != 0 {
                // SAFETY: created above, not shared: shut down once.
                unsafe { super::dist_worker_shutdown(inner) };
                return Err(code);
            }
            Ok(Box::new(CLevel {
                inner,
                orch,
                user: user.get(),
                number: opts.level,
            }) as Box<dyn Level>)
        })?;
        // SAFETY: `out_pid` is NULL (skipped) or writable, per this function's contract.
        unsafe { super::put(out_pid, pid) };
        Ok(())
    })
}
