//! Status codes and the error type of the Rust core.
//!
//! `Status` mirrors the C `DistStatus` values one for one (a unit test checks
//! it against `abi`), so the FFI layer converts with `as i32`.

use std::fmt;

/// Declares `Status` from one table: each variant with its C value, its C
/// name and its doc. Everything else about statuses derives from it (the
/// values in `abi` are checked against it by a test).
macro_rules! statuses {
    ($($(#[doc = $doc:literal])* $variant:ident = $value:literal => $name:ident,)*) => {
        /// Why an operation failed. Discriminants are the C ABI values.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum Status {
            $($(#[doc = $doc])* $variant = $value,)*
        }

        impl Status {
            /// Every status, in value order.
            pub const ALL: &'static [Status] = &[$(Status::$variant),*];

            /// The C name of this status, NUL-terminated for the C API.
            pub fn c_name(self) -> &'static std::ffi::CStr {
                match self {
                    $(Status::$variant => {
                        const NAME: &str = concat!(stringify!($name), "\0");
                        match std::ffi::CStr::from_bytes_with_nul(NAME.as_bytes()) {
                            Ok(c) => c,
                            Err(_) => unreachable!(),
                        }
                    })*
                }
            }
        }
    };
}

statuses! {
    /// A required pointer is NULL.
    NullArgument = 1 => DIST_ERR_NULL_ARGUMENT,
    /// A value is out of range.
    InvalidArgument = 2 => DIST_ERR_INVALID_ARGUMENT,
    /// The call is not allowed in the current state.
    BadState = 3 => DIST_ERR_BAD_STATE,
    /// An args blob would not fit in a mailbox.
    ArgsTooLarge = 4 => DIST_ERR_ARGS_TOO_LARGE,
    /// The callable returned a non-zero error.
    TaskFailed = 5 => DIST_ERR_TASK_FAILED,
    /// The child process serving the task died.
    ChildDied = 6 => DIST_ERR_CHILD_DIED,
    /// A deadline passed.
    Timeout = 7 => DIST_ERR_TIMEOUT,
    /// The worker is shutting down.
    ShutDown = 8 => DIST_ERR_SHUT_DOWN,
    /// A task this one depends on failed.
    DependencyFailed = 9 => DIST_ERR_DEPENDENCY_FAILED,
    /// No live worker of the requested type.
    NoWorker = 10 => DIST_ERR_NO_WORKER,
    /// Heap ring or task slots exhausted.
    ResourceExhausted = 11 => DIST_ERR_RESOURCE_EXHAUSTED,
    /// A system call failed.
    Os = 12 => DIST_ERR_OS,
    /// A panic was caught.
    Panic = 13 => DIST_ERR_PANIC,
    /// A mailbox held a state the protocol does not allow.
    Protocol = 14 => DIST_ERR_PROTOCOL,
}

impl Status {
    /// The C name of this status ("DIST_ERR_TIMEOUT", ...).
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("DIST_UNKNOWN_STATUS")
    }

    /// The status with this C value, if any (0 is success, not a `Status`).
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as i32 == code)
    }
}

/// A failed operation: a status and a message for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure.
    pub status: Status,
    /// What went wrong, naming the value or worker involved.
    pub message: String,
}

impl Error {
    /// An error with this status and message.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// `DIST_ERR_OS` carrying the current `errno` text, prefixed by what was attempted.
    pub fn last_os(what: &str) -> Error {
        let e = std::io::Error::last_os_error();
        Error::new(Status::Os, format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}

/// Result of the core's operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for an `Err` with this status and message.
pub fn fail<T>(status: Status, message: impl Into<String>) -> Result<T> {
    Err(Error::new(status, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi;

    #[test]
    fn values_and_names_match_the_abi() {
        // The abi constants are plain (cbindgen writes them into the header).
        let abi = [
            abi::DIST_ERR_NULL_ARGUMENT,
            abi::DIST_ERR_INVALID_ARGUMENT,
            abi::DIST_ERR_BAD_STATE,
            abi::DIST_ERR_ARGS_TOO_LARGE,
            abi::DIST_ERR_TASK_FAILED,
            abi::DIST_ERR_CHILD_DIED,
            abi::DIST_ERR_TIMEOUT,
            abi::DIST_ERR_SHUT_DOWN,
            abi::DIST_ERR_DEPENDENCY_FAILED,
            abi::DIST_ERR_NO_WORKER,
            abi::DIST_ERR_RESOURCE_EXHAUSTED,
            abi::DIST_ERR_OS,
            abi::DIST_ERR_PANIC,
            abi::DIST_ERR_PROTOCOL,
        ];
        assert_eq!(Status::ALL.len(), abi.len());
        for (&s, v) in Status::ALL.iter().zip(abi) {
            assert_eq!(s as i32, v, "{}", s.name());
            assert_eq!(Status::from_code(v), Some(s));
            assert!(s.name().starts_with("DIST_ERR_"));
        }
        assert_eq!(Status::Timeout.name(), "DIST_ERR_TIMEOUT");
        assert_eq!(Status::from_code(0), None);
        assert_eq!(Status::from_code(15), None);
    }
}
