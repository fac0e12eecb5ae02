//! # dist-worker
//!
//! One level of a hierarchical task-dispatch runtime for accelerator hosts,
//! with a C ABI. A host submits tasks; each runs on an idle worker of its
//! type (NEXT_LEVEL: a chip or a lower level; SUB: a helper function), in a
//! pool thread (THREAD mode) or a pre-forked child reached through a
//! 4096-byte shared-memory mailbox (PROCESS mode).
//!
//! Module map, top-down:
//! - [`runtime`]: the safe core object (`Runtime`) and its lifecycle.
//! - [`engine`]: task slots, per-type ready queues, completion rules.
//! - [`pool`]: one worker type's live and idle workers and ready queue.
//! - [`dispatcher`]: the thread that notices completions on every mailbox.
//! - [`reaper`]: the thread that notices dead children at once.
//! - [`worker`]: a registered worker (type, mode, mailbox).
//! - [`mailbox`]: the wire layout and protocol, and the doorbell.
//! - [`blob`]: encoding and decoding of the args blob.
//! - [`child`]: the serving loop of a child process or pool thread.
//! - [`sys`]: mmap, futex, fork and waitpid.
//! - [`status`]: status codes and the error type.
//! - [`abi`]: the C types and constants; [`ffi`]: the exported C functions.

pub mod abi;
pub mod blob;
pub mod child;
pub mod dispatcher;
pub mod doorbell;
pub mod engine;
pub mod ffi;
pub mod mailbox;
pub mod pool;
pub mod reaper;
pub mod runtime;
pub mod status;
pub mod sys;
pub mod worker;

pub use runtime::{Options, Runtime};
pub use status::{Error, Result, Status};
