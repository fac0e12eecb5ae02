//! # dist-worker
//!
//! One level of a hierarchical task-dispatch runtime for accelerator hosts,
//! with a C ABI. A host submits tasks; each runs on an idle worker of its
//! type (NEXT_LEVEL: a chip or a lower level; SUB: a helper function), in a
//! pool thread (THREAD mode) or a pre-forked child reached through a
//! 4096-byte shared-memory mailbox (PROCESS mode).
//!
//! The Rust API is [`Runtime`] (one level) with [`Options`], tasks as
//! [`TaskSpec`]s of [`Args`], callables as [`Handler`]s, failures as
//! [`Error`] with a [`Status`]; [`wire`] is the mailbox protocol for
//! children written in Rust. The C API is [`ffi`] over the types of [`abi`].
//!
//! Module map, top-down (private modules, for readers of the source):
//! - `runtime`: the safe core object and its life cycle (setup, start, shutdown).
//! - `progress`: carrying out the engine's decisions: launching, claiming
//!   completions, waiting, deadlines, the dispatcher thread.
//! - `engine`: the DAG: task slots, dependencies, pools, heap ring, scopes.
//! - `pool`: one worker type's live and idle workers and ready queue.
//! - `reaper`: the thread that notices dead children.
//! - `log`: log lines on stderr or through a callback, by level.
//! - `trace`: the timeline trace's events and its JSON file.
//! - `worker`: a registered worker (type, mode, mailbox).
//! - `mailbox`, `doorbell`, `blob`: the wire layout and protocol.
//! - `child`: the serving loop of a child process or pool thread.
//! - `clock`: the cheap clock of the figures and the trace.
//! - `sys`: mmap, futex, fork, waitpid, pidfd and the children's lifelines.
//! - `status`: status codes and the error type.
//! - `remote` (feature `mpi`): levels on other hosts, driven over MPI.
//! - [`abi`]: the C types and constants; [`ffi`]: the exported C functions.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod abi;
mod blob;
mod child;
mod clock;
mod doorbell;
mod engine;
pub mod ffi;
mod log;
mod loom;
mod mailbox;
mod pool;
mod progress;
mod reaper;
#[cfg(feature = "mpi")]
mod remote;
mod runtime;
mod status;
mod sys;
mod trace;
mod worker;

pub use abi::{DistCallConfig, DistTaskId, DistTensor};
pub use blob::{Args, TaskView};
pub use child::{set_error_message, Handler, ServeOptions};
pub use engine::{
    EngineStats, Latency, MemberArgs, Stats, TaskSpec, TypeStats, WorkerMode, WorkerState,
    WorkerStats,
};
pub use progress::WaitPolicy;
pub use runtime::{set_child_start, Init, Level, Options, Orch, Outcome, Runtime};
pub use status::{Error, Result, Status};
pub use worker::WorkerType;

/// The mailbox protocol, for serving sides written in Rust and for tools:
/// the mailbox itself, its states, the args blob codec and the serving loop.
pub mod wire {
    pub use crate::blob::{decode, encode, TaskView};
    pub use crate::child::serve;
    pub use crate::mailbox::{
        state, Mailbox, OwnedMailbox, ARGS_CAPACITY, FEATURE_ECHO, OFF_ARGS, SIZE,
    };
}

/// System call wrappers the workspace's benchmark reuses (shared mappings,
/// futexes, fork and reaping). Not a stable API.
#[doc(hidden)]
pub mod os {
    pub use crate::sys::{fork_child, futex_wait, futex_wake, wait_child, SharedMap};
}
