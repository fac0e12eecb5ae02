//! The opaque `DistWorker` handle and the lookup every call makes: it
//! counts calls in progress, so shutdown frees the handle only after them.

use super::arg;
use crate::runtime::Runtime;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One level of the hierarchy: its pools of workers, its engine and its
/// shared heap. Opaque to C; created by `dist_worker_create`, freed by
/// `dist_worker_shutdown`.
///
/// Threads: every function says from which threads it may be called and
/// what it does concurrently with shutdown. A DistWorker belongs to the
/// process that created it: in a copy made by fork() every call but
/// `dist_worker_shutdown` returns DIST_ERR_BAD_STATE.
pub struct DistWorker {
    /// Shared with an outer level that drives it (which may close it).
    pub(super) core: std::sync::Arc<Runtime>,
    /// Calls in progress on it, so shutdown frees it only once they left.
    pub(super) calls: AtomicUsize,
    /// Registered as a level of another worker, which owns it now.
    pub(super) adopted: std::sync::atomic::AtomicBool,
    /// A shutdown is under way: a second one returns at once.
    pub(super) closing: std::sync::atomic::AtomicBool,
}

impl DistWorker {
    /// A new handle owning `core`, as `dist_worker_create` makes.
    pub(super) fn boxed(core: Runtime) -> *mut DistWorker {
        Box::into_raw(Box::new(DistWorker {
            core: std::sync::Arc::new(core),
            calls: AtomicUsize::new(0),
            adopted: std::sync::atomic::AtomicBool::new(false),
            closing: std::sync::atomic::AtomicBool::new(false),
        }))
    }
}

/// A call in progress on a `DistWorker`: derefs to its runtime.
pub(super) struct Call<'a> {
    worker: &'a DistWorker,
}

impl std::ops::Deref for Call<'_> {
    type Target = Runtime;
    fn deref(&self) -> &Runtime {
        &self.worker.core
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.worker.calls.fetch_sub(1, Ordering::Release);
    }
}

/// Borrows the runtime behind a `DistWorker *` for one call.
///
/// # Safety
/// A non-NULL `w` must come from `dist_worker_create` and not be freed.
pub(super) unsafe fn lookup<'a>(w: *mut DistWorker) -> crate::Result<Call<'a>> {
    // SAFETY: the caller vouches that `w` is NULL or a live DistWorker.
    let worker = unsafe { arg(w as *const DistWorker, "worker") }?;
    worker.calls.fetch_add(1, Ordering::AcqRel);
    Ok(Call { worker })
}
