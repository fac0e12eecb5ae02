//! Submitting work, waiting for it, scopes and heap memory.

use super::convert::{self, CMembers};
use super::handle::DistWorker;
use super::{arg, lookup, null, put, Out};
use crate::abi::{
    DistDataType, DistStatus, DistTask, DistTaskId, DistTensor, DIST_TENSOR_MAX_DIMS,
};
use crate::engine::TaskSpec;
use crate::status::{Error, Status};
use crate::worker::WorkerType;

/// Submits a task. Everything it needs is copied before it returns.
/// `*out_task` (may be NULL) gets its id, never 0.
///
/// Threads: any, concurrently with any call; also from a THREAD worker's
/// callable (the task joins this worker's DAG). Concurrently
/// with shutdown: DIST_ERR_SHUT_DOWN. In a child process (a forked copy):
/// DIST_ERR_BAD_STATE.
///
/// # Safety
/// `worker` from `dist_worker_create`; `task` readable, with `args` pointing
/// to `group_size` entries (or NULL when group_size <= 1), each describing
/// readable arrays of the counts it gives.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_dispatch(
    worker: *mut DistWorker,
    task: *const DistTask,
    out_task: *mut DistTaskId,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: this function's contract is `submit`'s, with no placement.
        let id = unsafe { submit(worker, task, None) }?;
        // SAFETY: `out_task` is NULL (skipped) or writable, per this function's contract.
        unsafe { put(out_task, id) };
        Ok(())
    })
}

/// As `dist_worker_dispatch`, but member i of the task runs on worker
/// `worker_indices[i]` of `task->worker_type` (its registration order within
/// the type, from 0): `group_size` entries, or one when group_size is 0 or 1.
/// Indices out of range or repeated are DIST_ERR_INVALID_ARGUMENT. A named
/// worker that has left its pool (dead, hung, broken) gives
/// DIST_ERR_NO_WORKER here, or ends the queued task with
/// DIST_ERR_CHILD_DIED; a placed task is never moved to another worker. It
/// waits for its own workers only: unplaced tasks of the same type keep
/// flowing to the others, and a worker that becomes idle goes first to the
/// placed tasks that name it.
///
/// Threads: any, concurrently with any call; also from a THREAD worker's
/// callable. Concurrently with shutdown: DIST_ERR_SHUT_DOWN. In a forked
/// copy: DIST_ERR_BAD_STATE.
///
/// # Safety
/// As `dist_worker_dispatch`; `worker_indices` readable for the entries
/// above.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_dispatch_on(
    worker: *mut DistWorker,
    task: *const DistTask,
    worker_indices: *const u32,
    out_task: *mut DistTaskId,
) -> DistStatus {
    boundary!(|| {
        if worker_indices.is_null() {
            return Err(null("worker_indices"));
        }
        // SAFETY: this function's contract is `submit`'s, the indices
        // readable for one entry per member.
        let id = unsafe { submit(worker, task, Some(worker_indices)) }?;
        // SAFETY: `out_task` is NULL (skipped) or writable, per this function's contract.
        unsafe { put(out_task, id) };
        Ok(())
    })
}

/// What both dispatch functions do: checks and converts `task`, then
/// submits it, placed on `indices` (one per member) when given.
///
/// # Safety
/// As `dist_worker_dispatch`; `indices`, when given, readable for
/// `max(group_size, 1)` entries.
unsafe fn submit(
    worker: *mut DistWorker,
    task: *const DistTask,
    indices: Option<*const u32>,
) -> crate::Result<DistTaskId> {
    // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
    // dist_worker_create, per the caller's contract.
    let w = unsafe { lookup(worker) }?;
    // SAFETY: `task` is NULL (refused) or points to a readable DistTask.
    let t = unsafe { arg(task, "task") }?;
    let ty = WorkerType::from_abi(t.worker_type)?;
    let members = CMembers::new(t.args, t.group_size)?;
    let place = match indices {
        None => &[][..],
        // SAFETY: readable for one entry per member (the caller's
        // contract); CMembers::new bounded the count by MAX_GROUP.
        Some(p) => unsafe { std::slice::from_raw_parts(p, t.group_size.max(1) as usize) },
    };
    let spec = TaskSpec {
        ty,
        callable: t.callable,
        // SAFETY: `task` is readable, so is its config.
        config: unsafe { convert::config(&t.config) },
        members: &members,
    };
    w.submit_on(&spec, place)
}

/// Waits for a task and returns its status (any number of times, until the
/// next drain or shutdown; after that the id is unknown: INVALID_ARGUMENT).
///
/// Threads: any, concurrently with any call. From a THREAD worker's callable
/// it never hangs: a wait that could never end (on its own task, on a task
/// that needs it, or with every busy worker of the DistWorker waiting like
/// this) returns DIST_ERR_BAD_STATE naming the deadlock. Concurrently with
/// shutdown: it returns its task's status once shutdown has finished the work
/// (DIST_ERR_SHUT_DOWN if the id was released), and shutdown frees the worker
/// only after it returned. A drain by another thread releases no id while a
/// wait is in progress.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_wait(worker: *mut DistWorker, task: DistTaskId) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?.wait(task)
    })
}

/// Waits up to `timeout_ms` for a task (0 = do not wait) and returns its
/// status as `dist_worker_wait` does; DIST_ERR_TIMEOUT when it has not
/// finished by then. The task is unaffected and can be waited for again.
///
/// Threads: as `dist_worker_wait` (any thread, concurrently with any call;
/// from a callable it never hangs). Concurrently with shutdown: as
/// `dist_worker_wait`, and never past its own timeout.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_wait_timeout(
    worker: *mut DistWorker,
    task: DistTaskId,
    timeout_ms: u32,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?
            .wait_timeout(task, std::time::Duration::from_millis(timeout_ms as u64))
    })
}

/// Waits for every submitted task; returns the first failure since the last
/// drain. Releases the ids of finished tasks: also those of tasks another
/// thread dispatched while the drain waited (it waits for them too), unless
/// a wait on them was already in progress. A thread that dispatches while
/// another drains should wait on its tasks before that drain can end, or
/// leave draining to the thread that dispatches.
///
/// Threads: any host thread, concurrently with any call; not from a callable
/// (DIST_ERR_BAD_STATE: it would wait for the callable's own task).
/// Concurrently with shutdown: as `dist_worker_wait`.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_drain(worker: *mut DistWorker) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?.drain()
    })
}

/// Opens a nested scope (at most DIST_MAX_SCOPE_DEPTH deep, else
/// DIST_ERR_INVALID_ARGUMENT). Tasks and allocations made in it keep their
/// heap memory until the scope ends and nothing depends on them any more.
/// Scopes belong to the worker: open and close them from one submitting thread.
///
/// Threads: one submitting thread at a time (scopes are the worker's, not the
/// thread's: a callable that opens one nests it inside whatever the host has
/// open, and must end it before the host ends its own). From a callable
/// too. Concurrently with shutdown: DIST_ERR_SHUT_DOWN.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_scope_begin(worker: *mut DistWorker) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?.scope_begin()
    })
}

/// Closes the innermost scope (DIST_ERR_BAD_STATE without a matching
/// begin). Does not wait for its tasks; their memory is reclaimed once they
/// finish and nothing depends on them.
///
/// Threads: the thread that opened the scope (scopes are the worker's, not
/// the thread's); from a callable too. Concurrently with shutdown:
/// DIST_ERR_SHUT_DOWN.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_scope_end(worker: *mut DistWorker) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?.scope_end()
    })
}

/// Allocates a tensor of `shape[0..ndims]` elements of `dtype` (ndims 0..5;
/// 0 is a 0-d tensor of one element, and `shape` may then be NULL) from the
/// shared heap ring (64-byte aligned; children spawned after create see it at
/// the same address), owned by the current scope. `*out_tensor` gets the
/// descriptor. When the ring is full, waits up to `alloc_timeout_ms` for
/// reclamation, then fails with DIST_ERR_RESOURCE_EXHAUSTED.
///
/// Threads: any, concurrently with any call; from a callable too.
/// Concurrently with shutdown (also while waiting for space):
/// DIST_ERR_SHUT_DOWN.
///
/// # Safety
/// `worker` from `dist_worker_create`; `shape` readable for `ndims` entries;
/// `out_tensor` writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_alloc(
    worker: *mut DistWorker,
    shape: *const u32,
    ndims: u32,
    dtype: DistDataType,
    out_tensor: *mut DistTensor,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        // SAFETY: `out_tensor` is NULL (refused) or writable, per this function's `# Safety` contract.
        let out = unsafe { Out::new(out_tensor, "out_tensor") }?;
        if ndims > DIST_TENSOR_MAX_DIMS {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("ndims {ndims} is out of range 0..5 (0 is a 0-d tensor)"),
            ));
        }
        let shape = if ndims == 0 {
            &[][..]
        } else {
            // SAFETY: `shape` is NULL (refused) or readable for `ndims`
            // entries, and ndims was checked to be at most 5.
            unsafe { arg(shape, "shape").map(|s| std::slice::from_raw_parts(s, ndims as usize)) }?
        };
        out.write(w.alloc(shape, dtype)?);
        Ok(())
    })
}

/// The descriptor of tensor `index` of group member `member` (0 for a
/// single task) as the task was dispatched: for an OUTPUT submitted with
/// `data == 0`, `data` is the heap address the engine allocated. Valid from
/// dispatch until the next drain, like the task id.
///
/// Threads: any, concurrently with any call; from a callable too.
/// Concurrently with shutdown: the descriptor while the id is still known,
/// an error status (never a crash) once shutdown released it; not after
/// `dist_worker_shutdown` returned (the worker is freed).
///
/// # Safety
/// `worker` from `dist_worker_create`; `out_tensor` writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_task_tensor(
    worker: *mut DistWorker,
    task: DistTaskId,
    member: u32,
    index: u32,
    out_tensor: *mut DistTensor,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        // SAFETY: `out_tensor` is NULL (refused) or writable, per this function's `# Safety` contract.
        let out = unsafe { Out::new(out_tensor, "out_tensor") }?;
        out.write(w.task_tensor(task, member, index)?);
        Ok(())
    })
}
