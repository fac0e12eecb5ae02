//! The child side: serving a mailbox, and a callable's error message.

use super::{convert, null};
use crate::abi::{DistStatus, DistTaskFn};
use crate::child::{self, ServeOptions};
use std::os::raw::{c_char, c_void};

/// Child side: serves `mailbox` with `fn(user, ...)` until SHUTDOWN
/// (returns DIST_OK then), or until the mailbox holds a state no parent
/// writes (DIST_ERR_PROTOCOL). Idle, it sleeps on the mailbox's futex (no
/// core burnt); it announces the library's extensions (launch echo, large
/// arguments). It returns DIST_ERR_SHUT_DOWN within 500 ms of the death of
/// the process that started it (its parent at the call; none when that is
/// init), so an orphan never serves on.
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
    boundary!(|| {
        // SAFETY: the caller keeps the 4096 mailbox bytes mapped while it serves.
        let mb = unsafe { convert::mailbox(mailbox) }?;
        let mut h = convert::handler(r#fn, user)?;
        let parent = crate::sys::getppid();
        let opts = ServeOptions {
            parent: (parent > 1).then_some(parent),
            ..ServeOptions::default()
        };
        child::serve(mb, &mut *h, &opts)
    })
}

/// Called from inside a callable (in a child or on a pool thread): a short
/// message (cut to 2048 bytes) that travels back with the callable's non-zero
/// return and joins the task's failure message ("... returned error 5 from
/// callable 0x7: disk full"). Ignored if the callable returns 0. It uses
/// reserved mailbox bytes that reference children leave zero.
///
/// Threads: from inside a callable, on the thread that runs it (the message
/// is per thread), in a child or on a pool thread; elsewhere it only sets
/// this thread's message. It touches no worker, so a shutdown under way
/// does not matter.
///
/// # Safety
/// `message` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dist_child_set_error_message(message: *const c_char) -> DistStatus {
    boundary!(|| {
        if message.is_null() {
            return Err(null("message"));
        }
        // SAFETY: non-NULL (checked above) and NUL-terminated per this function's `# Safety` contract.
        let bytes = unsafe { std::ffi::CStr::from_ptr(message) }.to_bytes();
        child::set_error_message(bytes);
        Ok(())
    })
}
