//! What went wrong: the calling thread's last message and status names.

use super::last_error_ptr;
use crate::abi::{DistStatus, DIST_OK};
use crate::status::Status;
use std::os::raw::c_char;

/// Message of the last failure on the calling thread: valid until the next
/// failing call on that thread; an empty string when there was none.
///
/// Threads: any, at any time, from a callable or a child too; the message is
/// the calling thread's own, so another thread's shutdown never changes it.
#[no_mangle]
pub extern "C" fn dist_last_error_message() -> *const c_char {
    last_error_ptr()
}

/// Name of a status value ("DIST_OK", "DIST_ERR_TIMEOUT", ...); "DIST_UNKNOWN_STATUS"
/// for a value that is not one.
///
/// Threads: any, at any time, from a callable or a child too (a static
/// string; no worker is involved, so shutdown does not matter).
#[no_mangle]
pub extern "C" fn dist_status_str(status: DistStatus) -> *const c_char {
    let name: &'static std::ffi::CStr = match Status::from_code(status) {
        None if status == DIST_OK => c"DIST_OK",
        None => c"DIST_UNKNOWN_STATUS",
        Some(s) => s.c_name(),
    };
    name.as_ptr()
}
