//! Registering workers before the pool starts.

use super::convert;
use super::handle::DistWorker;
use super::{lookup, null, put};
use crate::abi::{DistChildStartFn, DistInitFn, DistStatus, DistTaskFn, DistWorkerType};
use crate::worker::WorkerType;
use std::os::raw::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Registers a PROCESS worker served by a caller-started child through
/// `mailbox` (4096 bytes, MAP_SHARED, 8-byte aligned, IDLE). Before start only.
///
/// Threads: any host thread, before start (DIST_ERR_BAD_STATE after;
/// DIST_ERR_SHUT_DOWN after a failed start). Concurrent registrations are
/// serialised. Not from a callable or a child (DIST_ERR_BAD_STATE: the pool
/// runs). Concurrently with shutdown: DIST_ERR_SHUT_DOWN, nothing registered.
///
/// # Safety
/// `worker` from `dist_worker_create`; `mailbox` must stay mapped until shutdown.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_add_process(
    worker: *mut DistWorker,
    r#type: DistWorkerType,
    mailbox: *mut c_void,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        // Registration closed (after start) comes before any argument check.
        w.registration_open()?;
        let ty = WorkerType::from_abi(r#type)?;
        // SAFETY: the caller keeps the 4096 mailbox bytes mapped until shutdown.
        let mb = unsafe { convert::mailbox(mailbox) }?;
        w.add_process(ty, mb)
    })
}

/// Names the process (`pid`) that serves a mailbox registered with
/// `dist_worker_add_process`, so that its death is noticed at once: its
/// task then ends with DIST_ERR_CHILD_DIED and the worker leaves the pool.
/// The caller still reaps its own child. Before start only.
///
/// Threads: any host thread, before start (DIST_ERR_BAD_STATE after;
/// DIST_ERR_SHUT_DOWN after a failed start or once shutdown began). Not from
/// a callable or a child.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_set_process_pid(
    worker: *mut DistWorker,
    mailbox: *mut c_void,
    pid: i32,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        // Registration closed (after start) comes before any argument check.
        w.registration_open()?;
        // SAFETY: only compared with registered mailboxes, never dereferenced here.
        let mb = unsafe { convert::mailbox(mailbox) }?;
        w.set_process_pid(mb, pid)
    })
}

/// Registers a THREAD worker: `fn(user, ...)` runs on a pool thread. Before start only.
///
/// Threads: any host thread, before start (DIST_ERR_BAD_STATE after;
/// DIST_ERR_SHUT_DOWN after a failed start); not from a callable or a child.
/// Concurrently with shutdown: DIST_ERR_SHUT_DOWN, nothing registered.
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
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        // Registration closed (after start) comes before any argument check.
        w.registration_open()?;
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
/// from a callable or a child. Concurrently with shutdown (or after a
/// failed start): DIST_ERR_SHUT_DOWN, and nothing is forked.
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
    // SAFETY: this function's contract is `spawn`'s, with no init.
    boundary!(|| unsafe { spawn(worker, r#type, None, r#fn, user, out_pid) })
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
    boundary!(|| {
        let init = init.ok_or_else(|| null("init"))?;
        // SAFETY: this function's contract is `spawn`'s, `init` called in the child.
        unsafe { spawn(worker, r#type, Some(init), r#fn, user, out_pid) }
    })
}

/// What both spawn functions do: checks the arguments, forks the child
/// (running `init(user)` there first when given) and reports its pid.
///
/// # Safety
/// As `dist_worker_spawn`; `init`, when given, is the caller's function.
unsafe fn spawn(
    worker: *mut DistWorker,
    ty: DistWorkerType,
    init: DistInitFn,
    f: DistTaskFn,
    user: *mut c_void,
    out_pid: *mut i32,
) -> crate::Result<()> {
    // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
    // dist_worker_create, per the caller's contract.
    let w = unsafe { lookup(worker) }?;
    // Registration closed (after start) comes before any argument check.
    w.registration_open()?;
    let ty = WorkerType::from_abi(ty)?;
    let handler = convert::handler(f, user)?;
    let init = init.map(|init| {
        let user = convert::SendPtr(user);
        // SAFETY: `init` is the caller's function, called once in the child
        // with the caller's `user`.
        Box::new(move || unsafe { init(user.get()) }) as crate::runtime::Init
    });
    let pid = w.spawn_with_init(ty, init, handler)?;
    // SAFETY: `out_pid` is NULL (skipped) or writable, per the caller's contract.
    unsafe { put(out_pid, pid) };
    Ok(())
}

/// A function every child the library forks (spawned workers and levels)
/// calls first, in the child, before anything else runs there: before its
/// lifeline is armed, its init function or a level's setup. For a language
/// runtime embedded in the host that must put itself right after a fork and
/// cannot do it from an init function written in that language (CPython's
/// `PyOS_AfterFork_Child`, which must run before any Python code does).
/// NULL clears it. Process-wide; children forked earlier are not affected.
///
/// Threads: any, at any time (best before the first spawn), from a
/// callable or a child too. It touches no DistWorker, so a shutdown under
/// way does not matter.
///
/// # Safety
/// `fn`, when not NULL, must be safe to call in a child forked from any
/// thread of this process.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_set_child_start(r#fn: DistChildStartFn) -> DistStatus {
    boundary!(|| {
        CHILD_START_C.store(r#fn.map_or(0, |f| f as usize), Ordering::Release);
        crate::runtime::set_child_start(r#fn.map(|_| call_child_start as fn()));
        Ok(())
    })
}

/// The C function `dist_worker_set_child_start` named, as an address.
static CHILD_START_C: AtomicUsize = AtomicUsize::new(0);

/// Calls the C function `dist_worker_set_child_start` named.
fn call_child_start() {
    let addr = CHILD_START_C.load(Ordering::Acquire);
    if addr != 0 {
        // SAFETY: only `dist_worker_set_child_start` stores a non-zero value:
        // the address of the caller's `void (*)(void)`, which it vouched is
        // safe to call in a forked child.
        unsafe {
            let f: unsafe extern "C" fn() =
                std::mem::transmute::<usize, unsafe extern "C" fn()>(addr);
            f()
        }
    }
}
