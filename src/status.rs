//! Status codes and the error type of the Rust core.
//!
//! `Status` mirrors the C `DistStatus` values one for one (a unit test checks
//! it against `abi`), so the FFI layer converts with `as i32`.

use std::fmt;

/// Why an operation failed. Discriminants are the C ABI values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    /// A required pointer is NULL.
    NullArgument = 1,
    /// A value is out of range.
    InvalidArgument = 2,
    /// The call is not allowed in the current state.
    BadState = 3,
    /// An args blob would not fit in a mailbox.
    ArgsTooLarge = 4,
    /// The callable returned a non-zero error.
    TaskFailed = 5,
    /// The child process serving the task died.
    ChildDied = 6,
    /// A deadline passed.
    Timeout = 7,
    /// The worker is shutting down.
    ShutDown = 8,
    /// A task this one depends on failed.
    DependencyFailed = 9,
    /// No live worker of the requested type.
    NoWorker = 10,
    /// Heap ring or task slots exhausted.
    ResourceExhausted = 11,
    /// A system call failed.
    Os = 12,
    /// A panic was caught.
    Panic = 13,
    /// A mailbox held a state the protocol does not allow.
    Protocol = 14,
}

impl Status {
    /// The C name of this status.
    pub fn name(self) -> &'static str {
        match self {
            Status::NullArgument => "DIST_ERR_NULL_ARGUMENT",
            Status::InvalidArgument => "DIST_ERR_INVALID_ARGUMENT",
            Status::BadState => "DIST_ERR_BAD_STATE",
            Status::ArgsTooLarge => "DIST_ERR_ARGS_TOO_LARGE",
            Status::TaskFailed => "DIST_ERR_TASK_FAILED",
            Status::ChildDied => "DIST_ERR_CHILD_DIED",
            Status::Timeout => "DIST_ERR_TIMEOUT",
            Status::ShutDown => "DIST_ERR_SHUT_DOWN",
            Status::DependencyFailed => "DIST_ERR_DEPENDENCY_FAILED",
            Status::NoWorker => "DIST_ERR_NO_WORKER",
            Status::ResourceExhausted => "DIST_ERR_RESOURCE_EXHAUSTED",
            Status::Os => "DIST_ERR_OS",
            Status::Panic => "DIST_ERR_PANIC",
            Status::Protocol => "DIST_ERR_PROTOCOL",
        }
    }

    /// Every status, in value order.
    pub const ALL: [Status; 14] = [
        Status::NullArgument,
        Status::InvalidArgument,
        Status::BadState,
        Status::ArgsTooLarge,
        Status::TaskFailed,
        Status::ChildDied,
        Status::Timeout,
        Status::ShutDown,
        Status::DependencyFailed,
        Status::NoWorker,
        Status::ResourceExhausted,
        Status::Os,
        Status::Panic,
        Status::Protocol,
    ];

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
    fn values_match_the_abi() {
        let pairs = [
            (Status::NullArgument, abi::DIST_ERR_NULL_ARGUMENT),
            (Status::InvalidArgument, abi::DIST_ERR_INVALID_ARGUMENT),
            (Status::BadState, abi::DIST_ERR_BAD_STATE),
            (Status::ArgsTooLarge, abi::DIST_ERR_ARGS_TOO_LARGE),
            (Status::TaskFailed, abi::DIST_ERR_TASK_FAILED),
            (Status::ChildDied, abi::DIST_ERR_CHILD_DIED),
            (Status::Timeout, abi::DIST_ERR_TIMEOUT),
            (Status::ShutDown, abi::DIST_ERR_SHUT_DOWN),
            (Status::DependencyFailed, abi::DIST_ERR_DEPENDENCY_FAILED),
            (Status::NoWorker, abi::DIST_ERR_NO_WORKER),
            (Status::ResourceExhausted, abi::DIST_ERR_RESOURCE_EXHAUSTED),
            (Status::Os, abi::DIST_ERR_OS),
            (Status::Panic, abi::DIST_ERR_PANIC),
            (Status::Protocol, abi::DIST_ERR_PROTOCOL),
        ];
        for (s, v) in pairs {
            assert_eq!(s as i32, v, "{}", s.name());
            assert_eq!(Status::from_code(v), Some(s));
        }
        assert_eq!(Status::from_code(0), None);
        assert_eq!(Status::from_code(15), None);
    }
}
