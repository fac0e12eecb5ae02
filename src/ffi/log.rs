//! Where log lines go, and how many there are: process-wide settings.

use crate::abi::{DistLogFn, DistLogLevel, DistStatus};
use std::os::raw::c_void;

/// Sends the library's log lines to `fn(user, level, message)` instead of
/// stderr, for every DistWorker of the process (children forked later
/// inherit it); NULL sends them to stderr again. `message` is the line
/// stderr would get, without the newline; `level` a DistLogLevel. Which
/// lines are logged is set by `DIST_WORKER_LOG=error|warn|info|debug|off`
/// (read once, at the first line; default warn) or
/// `dist_worker_set_log_level`. Lines come at the library's rare events:
/// children spawned (pid) and dead (how), workers retired (why), task and
/// shutdown deadlines, protocol violations, start (its workers), shutdown
/// (how long it took, what it killed), traces written; at debug level also
/// one line per task launch and completion. No line is logged while the
/// library holds a lock a call could need, so `fn` may call the library
/// (but not this function). Returns once no thread is inside the callback
/// it replaces, so `user` may be freed then.
///
/// Threads: any, at any time; from the log callback itself it returns
/// DIST_ERR_BAD_STATE (it would wait for itself). `fn` is called from any
/// thread of the process, also concurrently; a line the callback itself
/// logs goes to stderr.
///
/// # Safety
/// `fn` and `user` callable from any thread until replaced.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_set_log_callback(
    r#fn: DistLogFn,
    user: *mut c_void,
) -> DistStatus {
    boundary!(|| crate::log::set_callback(r#fn, user))
}

/// Sets which lines are logged, for the whole process: DIST_LOG_OFF (0),
/// DIST_LOG_ERROR (1), DIST_LOG_WARN (2, the default), DIST_LOG_INFO (3) or
/// DIST_LOG_DEBUG (4) and every level below it; overrides
/// `DIST_WORKER_LOG`. Another value is DIST_ERR_INVALID_ARGUMENT.
///
/// Threads: any, at any time, from a callable or a child too.
#[no_mangle]
pub extern "C" fn dist_worker_set_log_level(level: DistLogLevel) -> DistStatus {
    boundary!(|| crate::log::set_level(level))
}
