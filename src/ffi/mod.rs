//! The C boundary. Every exported function validates its arguments,
//! converts them (`convert`), calls the safe core, and turns the outcome
//! into a `DistStatus` inside `boundary!`, which also catches panics and
//! records the message under the function's own name. Nothing outside this
//! folder sees a raw pointer from C.
//!
//! - `handle`: the opaque `DistWorker` and the lookup every call makes;
//! - `lifecycle`, `register`, `level`, `work`, `observe`, `log`, `serve`,
//!   `errors`: the functions of `dist_worker.h`, by what they are for.

/// The path of a function nested in the enclosing one (a static string;
/// `function_name` turns it into the enclosing function's name, on failure only).
macro_rules! function_path {
    () => {{
        fn here() {}
        std::any::type_name_of_val(&here)
    }};
}

/// The body of an exported function: runs the closure, catches panics,
/// records a failure's message under the function's name, returns the status.
macro_rules! boundary {
    ($body:expr) => {
        $crate::ffi::guard(function_path!(), $body)
    };
}

mod convert;
mod errors;
mod handle;
mod level;
mod lifecycle;
mod log;
#[cfg(feature = "mpi")]
mod mpi;
mod observe;
mod register;
mod serve;
mod work;

pub use errors::*;
pub use handle::DistWorker;
pub use level::*;
pub use lifecycle::*;
pub use log::*;
#[cfg(feature = "mpi")]
pub use mpi::*;
pub use observe::*;
pub use register::*;
pub use serve::*;
pub use work::*;

use crate::abi::{DistStatus, DIST_ERR_PANIC, DIST_OK};
use crate::status::{Error, Result, Status};
use handle::lookup;
use std::cell::RefCell;
use std::ffi::CString;

thread_local! {
    /// Message of the last failure on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(function: &str, message: &str) {
    let text = format!("{function}: {message}").replace('\0', " ");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Pointer to the last failure message of this thread (valid until the next
/// failure on it).
fn last_error_ptr() -> *const std::os::raw::c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Runs `f` as the body of exported function `function`: catches panics,
/// records the message of a failure, and returns the status.
pub(crate) fn guard(path: &'static str, f: impl FnOnce() -> Result<()>) -> DistStatus {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => DIST_OK,
        Ok(Err(e)) => {
            set_last_error(function_name(path), &e.message);
            e.status as DistStatus
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(function_name(path), &format!("internal panic: {what}"));
            DIST_ERR_PANIC
        }
    }
}

/// "dist_worker_wait" from "dist_worker::ffi::work::dist_worker_wait::here".
fn function_name(path: &str) -> &str {
    let path = path.strip_suffix("::here").unwrap_or(path);
    path.rsplit("::").next().unwrap_or(path)
}

/// `DIST_ERR_NULL_ARGUMENT` naming the parameter.
fn null(name: &str) -> Error {
    Error::new(Status::NullArgument, format!("`{name}` must not be NULL"))
}

/// Borrows a required pointer argument.
///
/// # Safety
/// A non-NULL `p` must point to a valid `T` for the lifetime chosen.
unsafe fn arg<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: `as_ref` maps NULL to None; a non-NULL `p` points to a valid
    // `T` for 'a, which this function's caller guarantees.
    unsafe { p.as_ref() }.ok_or_else(|| null(name))
}

/// Writes an optional out-parameter.
///
/// # Safety
/// A non-NULL `p` must be valid for writing a `T`.
unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-NULL here, and valid for writing a `T`, which this
        // function's caller guarantees.
        unsafe { p.write(v) };
    }
}

/// A required out-parameter, checked non-NULL before the call does
/// anything else, and written only on success.
struct Out<T>(std::ptr::NonNull<T>);

impl<T> Out<T> {
    /// Refuses NULL with `DIST_ERR_NULL_ARGUMENT` naming `name`.
    ///
    /// # Safety
    /// A non-NULL `p` must be valid for writing a `T` until `write`.
    unsafe fn new(p: *mut T, name: &str) -> Result<Out<T>> {
        std::ptr::NonNull::new(p).map(Out).ok_or_else(|| null(name))
    }

    /// Writes the result.
    fn write(self, v: T) {
        // SAFETY: non-NULL (checked in `new`) and writable, which the
        // caller of `new` guaranteed.
        unsafe { self.0.as_ptr().write(v) }
    }
}
