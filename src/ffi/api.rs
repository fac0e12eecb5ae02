//! The exported functions of `dist_worker.h`. Each is a few lines: validate,
//! convert, call the core inside `guard`.

use super::convert::{self, CMembers};
use super::{arg, guard, last_error_ptr, null, put};
use crate::abi::*;
use crate::dispatcher::WaitPolicy;
use crate::engine::TaskSpec;
use crate::runtime::SHUTDOWN_GRACE;
use crate::runtime::{Options, Runtime, DEFAULT_HEAP_RING_SIZE};
use crate::status::Status;
use crate::worker::WorkerType;
use crate::{child, child::ServeOptions};
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One level of the hierarchy: its pools of workers, its engine and its
/// shared heap. Opaque to C; created by `dist_worker_create`, freed by
/// `dist_worker_shutdown`.
///
/// Threads: every function says from which threads it may be called and
/// what it does concurrently with shutdown. A DistWorker belongs to the
/// process that created it: in a copy made by fork() every call but
/// `dist_worker_shutdown` returns DIST_ERR_BAD_STATE.
pub struct DistWorker {
    core: Runtime,
    /// Calls in progress on it, so shutdown frees it only once they left.
    calls: AtomicUsize,
}

/// A call in progress on a `DistWorker`: derefs to its runtime.
struct Call<'a> {
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
unsafe fn worker<'a>(w: *mut DistWorker) -> crate::Result<Call<'a>> {
    // SAFETY: the caller vouches that `w` is NULL or a live DistWorker.
    let worker = unsafe { arg(w as *const DistWorker, "worker") }?;
    worker.calls.fetch_add(1, Ordering::AcqRel);
    Ok(Call { worker })
}

/// Fills `options` with defaults: level 3, a 64 MiB heap ring. NULL is a no-op.
///
/// Threads: any, at any time; it touches only `options`.
///
/// # Safety
/// A non-NULL `options` must be writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_options_init(options: *mut DistWorkerOptions) {
    let d = Options::default();
    // SAFETY: per the contract above.
    unsafe {
        put(
            options,
            DistWorkerOptions {
                level: d.level,
                heap_ring_size: d.heap_ring_size as u64,
                alloc_timeout_ms: d.alloc_timeout.as_millis() as u32,
                task_timeout_ms: d.wait.task_timeout.map_or(0, |t| t.as_millis() as u32),
                shutdown_timeout_ms: d.shutdown_timeout.map_or(0, |t| t.as_millis() as u32),
                worker_spin_us: d.worker_spin.as_micros() as u32,
                dispatcher_spin_us: d.wait.spin.as_micros() as u32,
                wait_spin_us: d.wait.caller_spin.as_micros() as u32,
                poll_interval_us: d.wait.poll.as_micros() as u32,
            },
        )
    };
}

/// Creates a worker. `options` NULL = defaults. The heap ring is mapped
/// MAP_SHARED here, so children forked later share it. `*out_worker` is
/// written only on success.
///
/// Threads: any; the new worker shares nothing with others.
///
/// # Safety
/// `options`, if non-NULL, must point to an initialised `DistWorkerOptions`;
/// `out_worker` must be writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_create(
    options: *const DistWorkerOptions,
    out_worker: *mut *mut DistWorker,
) -> DistStatus {
    guard("dist_worker_create", || {
        if out_worker.is_null() {
            return Err(null("out_worker"));
        }
        // SAFETY: per the contract above.
        let opts = match unsafe { options.as_ref() } {
            None => Options::default(),
            Some(o) => {
                let size = usize::try_from(o.heap_ring_size).unwrap_or(usize::MAX);
                Options {
                    level: o.level,
                    heap_ring_size: if size == 0 {
                        DEFAULT_HEAP_RING_SIZE
                    } else {
                        size
                    },
                    alloc_timeout: Duration::from_millis(o.alloc_timeout_ms as u64),
                    shutdown_timeout: (o.shutdown_timeout_ms != 0)
                        .then(|| Duration::from_millis(o.shutdown_timeout_ms as u64)),
                    worker_spin: Duration::from_micros(o.worker_spin_us as u64),
                    wait: WaitPolicy {
                        spin: Duration::from_micros(o.dispatcher_spin_us as u64),
                        caller_spin: Duration::from_micros(o.wait_spin_us as u64),
                        // A zero interval would spin the dispatcher: at least 1 µs.
                        poll: Duration::from_micros(o.poll_interval_us.max(1) as u64),
                        task_timeout: (o.task_timeout_ms != 0)
                            .then(|| Duration::from_millis(o.task_timeout_ms as u64)),
                        ..WaitPolicy::default()
                    },
                }
            }
        };
        let core = Runtime::new(opts)?;
        let boxed = Box::into_raw(Box::new(DistWorker {
            core,
            calls: AtomicUsize::new(0),
        }));
        // SAFETY: checked non-NULL above.
        unsafe { out_worker.write(boxed) };
        Ok(())
    })
}

/// Registers a PROCESS worker served by a caller-started child through
/// `mailbox` (4096 bytes, MAP_SHARED, 8-byte aligned, IDLE). Before start only.
///
/// Threads: any host thread, before start (DIST_ERR_BAD_STATE after;
/// DIST_ERR_SHUT_DOWN after a failed start). Concurrent registrations are
/// serialised. Not from a callable or a child.
///
/// # Safety
/// `worker` from `dist_worker_create`; `mailbox` must stay mapped until shutdown.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_add_process(
    worker: *mut DistWorker,
    r#type: DistWorkerType,
    mailbox: *mut c_void,
) -> DistStatus {
    guard("dist_worker_add_process", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        let ty = WorkerType::from_abi(r#type)?;
        // SAFETY: per the contract above.
        let mb = unsafe { convert::mailbox(mailbox) }?;
        w.add_process(ty, mb)
    })
}

/// Names the process (`pid`) that serves a mailbox registered with
/// `dist_worker_add_process`, so that its death is noticed at once: its
/// task then ends with DIST_ERR_CHILD_DIED and the worker leaves the pool.
/// The caller still reaps its own child. Before start only.
///
/// Threads: as `dist_worker_add_process`.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_set_process_pid(
    worker: *mut DistWorker,
    mailbox: *mut c_void,
    pid: i32,
) -> DistStatus {
    guard("dist_worker_set_process_pid", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        // SAFETY: only compared with registered mailboxes, never dereferenced here.
        let mb = unsafe { convert::mailbox(mailbox) }?;
        w.set_process_pid(mb, pid)
    })
}

/// Registers a THREAD worker: `fn(user, ...)` runs on a pool thread. Before start only.
///
/// Threads: as `dist_worker_add_process`.
///
/// # Safety
/// `worker` from `dist_worker_create`; `fn` and `user` must be callable from
/// another thread until shutdown.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_add_thread(
    worker: *mut DistWorker,
    r#type: DistWorkerType,
    r#fn: DistTaskFn,
    user: *mut c_void,
) -> DistStatus {
    guard("dist_worker_add_thread", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        let ty = WorkerType::from_abi(r#type)?;
        w.add_thread(ty, convert::handler(r#fn, user)?)
    })
}

/// Forks a child that serves `fn(user, ...)` on a library-owned mailbox and
/// registers it as a PROCESS worker. Before start only (no library thread
/// exists yet, so the fork is safe). `*out_pid` (may be NULL) gets its pid.
///
/// Threads: any host thread, before start; the child dies with this process
/// whichever thread spawned it (a lifeline, not a parent-death signal). Not
/// from a callable or a child.
///
/// # Safety
/// `worker` from `dist_worker_create`; `out_pid` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_spawn(
    worker: *mut DistWorker,
    r#type: DistWorkerType,
    r#fn: DistTaskFn,
    user: *mut c_void,
    out_pid: *mut i32,
) -> DistStatus {
    guard("dist_worker_spawn", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        let ty = WorkerType::from_abi(r#type)?;
        let pid = w.spawn(ty, convert::handler(r#fn, user)?)?;
        // SAFETY: per the contract above.
        unsafe { put(out_pid, pid) };
        Ok(())
    })
}

/// As `dist_worker_spawn`, running `init(user)` in the child before it
/// serves. A child whose init returns non-zero (or that dies first) makes
/// `dist_worker_start` (or the first dispatch) fail with
/// DIST_ERR_CHILD_DIED naming the worker and the code; every child is then
/// reaped and the worker only accepts `dist_worker_shutdown`.
///
/// Threads: as `dist_worker_spawn`.
///
/// # Safety
/// As `dist_worker_spawn`; `init` is called in the child with `user`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_spawn_with_init(
    worker: *mut DistWorker,
    r#type: DistWorkerType,
    init: DistInitFn,
    r#fn: DistTaskFn,
    user: *mut c_void,
    out_pid: *mut i32,
) -> DistStatus {
    guard("dist_worker_spawn_with_init", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        let ty = WorkerType::from_abi(r#type)?;
        let init = init.ok_or_else(|| null("init"))?;
        let handler = convert::handler(r#fn, user)?;
        let user = convert::SendPtr(user);
        // SAFETY: `init` is the caller's function, called once in the child.
        let init: crate::runtime::Init = Box::new(move || unsafe { init(user.get()) });
        let pid = w.spawn_with_init(ty, Some(init), handler)?;
        // SAFETY: per the contract above.
        unsafe { put(out_pid, pid) };
        Ok(())
    })
}

/// Starts the pool (threads and dispatcher). Also done by the first
/// dispatch. Calling it again is a no-op.
///
/// Threads: any host thread; concurrent calls start the pool once. Not from a
/// callable. Concurrently with shutdown: DIST_ERR_SHUT_DOWN.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_start(worker: *mut DistWorker) -> DistStatus {
    guard("dist_worker_start", || {
        // SAFETY: per the contract above.
        unsafe { self::worker(worker) }?.start()
    })
}

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
    guard("dist_worker_dispatch", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        // SAFETY: per the contract above.
        let t = unsafe { arg(task, "task") }?;
        let ty = WorkerType::from_abi(t.worker_type)?;
        let members = CMembers::new(t.args, t.group_size)?;
        let spec = TaskSpec {
            ty,
            callable: t.callable,
            // SAFETY: `task` is readable, so is its config.
            config: unsafe { convert::config(&t.config) },
            members: &members,
        };
        let id = w.submit(&spec)?;
        // SAFETY: per the contract above.
        unsafe { put(out_task, id) };
        Ok(())
    })
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
    guard("dist_worker_wait", || {
        // SAFETY: per the contract above.
        unsafe { self::worker(worker) }?.wait(task)
    })
}

/// Waits for every submitted task; returns the first failure since the last
/// drain. Releases the ids of finished tasks.
///
/// Threads: any host thread, concurrently with any call; not from a callable
/// (DIST_ERR_BAD_STATE: it would wait for the callable's own task).
/// Concurrently with shutdown: as `dist_worker_wait`.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_drain(worker: *mut DistWorker) -> DistStatus {
    guard("dist_worker_drain", || {
        // SAFETY: per the contract above.
        unsafe { self::worker(worker) }?.drain()
    })
}

/// Opens a nested scope (at most DIST_MAX_SCOPE_DEPTH deep, else
/// DIST_ERR_INVALID_ARGUMENT). Tasks and allocations made in it keep their
/// heap memory until the scope ends and nothing depends on them any more.
/// Scopes belong to the worker: open and close them from one submitting thread.
///
/// Threads: one submitting thread at a time (scopes are the worker's, not the
/// thread's); from a callable too. Concurrently with shutdown:
/// DIST_ERR_SHUT_DOWN.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_scope_begin(worker: *mut DistWorker) -> DistStatus {
    guard("dist_worker_scope_begin", || {
        // SAFETY: per the contract above.
        unsafe { self::worker(worker) }?.scope_begin()
    })
}

/// Closes the innermost scope (DIST_ERR_BAD_STATE without a matching
/// begin). Does not wait for its tasks; their memory is reclaimed once they
/// finish and nothing depends on them.
///
/// Threads: as `dist_worker_scope_begin`.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_scope_end(worker: *mut DistWorker) -> DistStatus {
    guard("dist_worker_scope_end", || {
        // SAFETY: per the contract above.
        unsafe { self::worker(worker) }?.scope_end()
    })
}

/// Allocates a tensor of `shape[0..ndims]` elements of `dtype` from the
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
    guard("dist_worker_alloc", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        if out_tensor.is_null() {
            return Err(null("out_tensor"));
        }
        if !(1..=DIST_TENSOR_MAX_DIMS).contains(&ndims) {
            return Err(crate::Error::new(
                Status::InvalidArgument,
                format!("ndims {ndims} is out of range 1..5"),
            ));
        }
        // SAFETY: per the contract above; ndims is at most 5.
        let shape =
            unsafe { arg(shape, "shape").map(|s| std::slice::from_raw_parts(s, ndims as usize)) }?;
        let t = w.alloc(shape, dtype)?;
        // SAFETY: checked non-NULL above.
        unsafe { out_tensor.write(t) };
        Ok(())
    })
}

/// The descriptor of tensor `index` of group member `member` (0 for a
/// single task) as the task was dispatched: for an OUTPUT submitted with
/// `data == 0`, `data` is the heap address the engine allocated. Valid from
/// dispatch until the next drain, like the task id.
///
/// Threads: any, concurrently with any call but shutdown's end.
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
    guard("dist_worker_task_tensor", || {
        // SAFETY: per the contract above.
        let w = unsafe { self::worker(worker) }?;
        if out_tensor.is_null() {
            return Err(null("out_tensor"));
        }
        let t = w.task_tensor(task, member, index)?;
        // SAFETY: checked non-NULL above.
        unsafe { out_tensor.write(t) };
        Ok(())
    })
}

/// Finishes dispatched work, writes SHUTDOWN to every mailbox, joins the
/// library's threads, reaps the children it spawned and frees `worker`.
/// NULL is a no-op. Returns DIST_OK or the first failure not yet reported by
/// a drain; DIST_ERR_TIMEOUT when `shutdown_timeout_ms` passed first (busy
/// children are then killed with SIGKILL and reaped, their tasks end with
/// DIST_ERR_TIMEOUT, and the message names them). It returns within
/// `shutdown_timeout_ms` plus a fixed grace of 200 ms, however many workers
/// misbehave.
///
/// Threads: any thread but a pool thread of `worker` (from inside one of its
/// callables it returns DIST_ERR_BAD_STATE and frees nothing). Other threads'
/// calls may be in progress: dispatch, alloc and scope calls then return
/// DIST_ERR_SHUT_DOWN; a wait or drain returns its task's status once the
/// work is finished (DIST_ERR_SHUT_DOWN if the id was released meanwhile).
/// `worker` is freed only after every such call has returned (never, if a
/// pool thread was left running in a callable that may still use it); no
/// call may start once this function may have returned. In a copy of the
/// process made by fork(), it frees the copy's memory only and touches no
/// mailbox or child.
///
/// # Safety
/// `worker` NULL or from `dist_worker_create`, not shut down before.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_shutdown(worker: *mut DistWorker) -> DistStatus {
    guard("dist_worker_shutdown", || {
        if worker.is_null() {
            return Ok(());
        }
        // SAFETY: non-NULL, and live until freed below (the caller's contract).
        let w = unsafe { &*worker };
        if let Some(index) = w.core.pool_worker() {
            return Err(crate::Error::new(
                Status::BadState,
                format!(
                    "called from a callable on the pool thread of worker {index}: shutdown \
                     joins that thread; call it from a host thread"
                ),
            ));
        }
        let outcome = w.core.close();
        // Calls still inside (a wait woken by the close) leave promptly,
        // within the shutdown's own bound. In a forked copy, calls of other
        // threads were copied mid-way and will never return: there is
        // nobody to wait for.
        let bound = w
            .core
            .close_by()
            .unwrap_or(Instant::now() + SHUTDOWN_GRACE)
            .max(Instant::now() + Duration::from_millis(5));
        if w.core.is_forked_copy() {
            w.calls.store(0, Ordering::Release);
        }
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
            return outcome.and(Err(crate::Error::new(
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

/// Child side: serves `mailbox` with `fn(user, ...)` until SHUTDOWN
/// (returns DIST_OK then), or until the mailbox holds a state no parent
/// writes (DIST_ERR_PROTOCOL).
///
/// Threads: the serving thread of a caller's child process (or any thread
/// that owns the mailbox's serving side); it never touches a DistWorker.
///
/// # Safety
/// `mailbox` must point to a 4096-byte MAP_SHARED mailbox that stays mapped.
#[no_mangle]
pub unsafe extern "C" fn dist_child_serve(
    mailbox: *mut c_void,
    r#fn: DistTaskFn,
    user: *mut c_void,
) -> DistStatus {
    guard("dist_child_serve", || {
        // SAFETY: per the contract above.
        let mb = unsafe { convert::mailbox(mailbox) }?;
        let mut h = convert::handler(r#fn, user)?;
        child::serve(mb, &mut *h, &ServeOptions::default())
    })
}

/// Called from inside a callable (in a child or on a pool thread): a short
/// message (cut to 256 bytes) that travels back with the callable's non-zero
/// return and joins the task's failure message ("... returned error 5 from
/// callable 0x7: disk full"). Ignored if the callable returns 0. It uses
/// reserved mailbox bytes that reference children leave zero.
///
/// Threads: from inside a callable, on the thread that runs it (the message
/// is per thread).
///
/// # Safety
/// `message` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dist_child_set_error_message(message: *const c_char) -> DistStatus {
    guard("dist_child_set_error_message", || {
        if message.is_null() {
            return Err(null("message"));
        }
        // SAFETY: per the contract above.
        let bytes = unsafe { std::ffi::CStr::from_ptr(message) }.to_bytes();
        child::set_error_message(bytes);
        Ok(())
    })
}

/// Message of the last failure on the calling thread: valid until the next
/// failing call on that thread; an empty string when there was none.
///
/// Threads: any; the message is the calling thread's own.
#[no_mangle]
pub extern "C" fn dist_last_error_message() -> *const c_char {
    last_error_ptr()
}

/// Name of a status value ("DIST_OK", "DIST_ERR_TIMEOUT", ...); "DIST_UNKNOWN_STATUS"
/// for a value that is not one.
///
/// Threads: any.
#[no_mangle]
pub extern "C" fn dist_status_str(status: DistStatus) -> *const c_char {
    let name: &'static std::ffi::CStr = match Status::from_code(status) {
        None if status == DIST_OK => c"DIST_OK",
        None => c"DIST_UNKNOWN_STATUS",
        Some(s) => status_cstr(s),
    };
    name.as_ptr()
}

fn status_cstr(s: Status) -> &'static std::ffi::CStr {
    match s {
        Status::NullArgument => c"DIST_ERR_NULL_ARGUMENT",
        Status::InvalidArgument => c"DIST_ERR_INVALID_ARGUMENT",
        Status::BadState => c"DIST_ERR_BAD_STATE",
        Status::ArgsTooLarge => c"DIST_ERR_ARGS_TOO_LARGE",
        Status::TaskFailed => c"DIST_ERR_TASK_FAILED",
        Status::ChildDied => c"DIST_ERR_CHILD_DIED",
        Status::Timeout => c"DIST_ERR_TIMEOUT",
        Status::ShutDown => c"DIST_ERR_SHUT_DOWN",
        Status::DependencyFailed => c"DIST_ERR_DEPENDENCY_FAILED",
        Status::NoWorker => c"DIST_ERR_NO_WORKER",
        Status::ResourceExhausted => c"DIST_ERR_RESOURCE_EXHAUSTED",
        Status::Os => c"DIST_ERR_OS",
        Status::Panic => c"DIST_ERR_PANIC",
        Status::Protocol => c"DIST_ERR_PROTOCOL",
    }
}
