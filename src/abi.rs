//! The C ABI: every type, constant and callback signature a C host sees.
//!
//! This file is the single source of the header's types (cbindgen) and of the
//! layout checks (the `ctest` crate). It is kept in plain syntax on purpose:
//! the layout checker parses it with an old Rust parser.
//!
//! Enumerations cross the boundary as plain integers (`typedef int32_t
//! DistWorkerType;` plus `#define` values) so that any value a C caller
//! passes is a valid Rust value; the FFI layer validates it before use.

use std::os::raw::{c_char, c_void};

/// Status returned by every fallible function (int32). Values never change.
pub type DistStatus = i32;
/// Success.
pub const DIST_OK: DistStatus = 0;
/// A required pointer argument is NULL.
pub const DIST_ERR_NULL_ARGUMENT: DistStatus = 1;
/// A value is out of range (worker type, tag, ndims, dtype, alignment, group size...).
pub const DIST_ERR_INVALID_ARGUMENT: DistStatus = 2;
/// The call is not allowed now (adding a worker after start, unmatched scope end...).
pub const DIST_ERR_BAD_STATE: DistStatus = 3;
/// An args blob would not fit in the 4032 bytes of a mailbox.
pub const DIST_ERR_ARGS_TOO_LARGE: DistStatus = 4;
/// The callable reported a non-zero error; the message names worker, callable and code.
pub const DIST_ERR_TASK_FAILED: DistStatus = 5;
/// The child process serving the task exited or was killed.
pub const DIST_ERR_CHILD_DIED: DistStatus = 6;
/// A deadline passed (task, start-up or shutdown).
pub const DIST_ERR_TIMEOUT: DistStatus = 7;
/// The worker is shutting down and takes no new work.
pub const DIST_ERR_SHUT_DOWN: DistStatus = 8;
/// A task this one depends on failed, so this one never ran.
pub const DIST_ERR_DEPENDENCY_FAILED: DistStatus = 9;
/// No live worker of the requested type exists.
pub const DIST_ERR_NO_WORKER: DistStatus = 10;
/// Heap ring or task slots exhausted past the back-pressure deadline.
pub const DIST_ERR_RESOURCE_EXHAUSTED: DistStatus = 11;
/// A system call failed; the message carries the errno text.
pub const DIST_ERR_OS: DistStatus = 12;
/// An internal panic was caught at the C boundary.
pub const DIST_ERR_PANIC: DistStatus = 13;
/// A mailbox held a state the protocol does not allow.
pub const DIST_ERR_PROTOCOL: DistStatus = 14;

/// Identifies a dispatched task; never 0.
pub type DistTaskId = u64;

/// Kind of worker a task runs on (int32).
pub type DistWorkerType = i32;
/// The level below: a chip, or a whole lower-level DistWorker. Callable is an opaque handle.
pub const DIST_WORKER_NEXT_LEVEL: DistWorkerType = 0;
/// A helper function. Callable is a small id the worker looks up itself.
pub const DIST_WORKER_SUB: DistWorkerType = 1;

/// How a task uses a tensor argument; consumed at submit time, never sent (int32).
pub type DistTensorArgType = i32;
/// Read: waits for the last writer of the address.
pub const DIST_ARG_INPUT: DistTensorArgType = 0;
/// Written: becomes the last writer. With `data == 0` the engine allocates it.
pub const DIST_ARG_OUTPUT: DistTensorArgType = 1;
/// Read and written: waits for the last writer, then becomes it.
pub const DIST_ARG_INOUT: DistTensorArgType = 2;
/// Written into existing memory: becomes the last writer.
pub const DIST_ARG_OUTPUT_EXISTING: DistTensorArgType = 3;
/// Passed through; takes no part in dependency tracking.
pub const DIST_ARG_NO_DEP: DistTensorArgType = 4;

/// Element type of a tensor (uint8).
pub type DistDataType = u8;
/// 32-bit float (4 bytes).
pub const DIST_FLOAT32: DistDataType = 0;
/// 16-bit float (2 bytes).
pub const DIST_FLOAT16: DistDataType = 1;
/// 32-bit signed integer (4 bytes).
pub const DIST_INT32: DistDataType = 2;
/// 16-bit signed integer (2 bytes).
pub const DIST_INT16: DistDataType = 3;
/// 8-bit signed integer (1 byte).
pub const DIST_INT8: DistDataType = 4;
/// 8-bit unsigned integer (1 byte).
pub const DIST_UINT8: DistDataType = 5;
/// bfloat16 (2 bytes).
pub const DIST_BFLOAT16: DistDataType = 6;
/// 64-bit signed integer (8 bytes).
pub const DIST_INT64: DistDataType = 7;
/// 64-bit unsigned integer (8 bytes).
pub const DIST_UINT64: DistDataType = 8;

/// Value of a mailbox's state word (int32, offset 0).
pub type DistMailboxState = i32;
/// No task; the parent may write a new one.
pub const DIST_MAILBOX_IDLE: DistMailboxState = 0;
/// The parent wrote callable, config and blob, then published this.
pub const DIST_MAILBOX_TASK_READY: DistMailboxState = 1;
/// The child finished; the error field is valid.
pub const DIST_MAILBOX_TASK_DONE: DistMailboxState = 2;
/// The child must leave its loop and exit.
pub const DIST_MAILBOX_SHUTDOWN: DistMailboxState = 3;

/// Extension: a child spawned by the library reports that its init function
/// failed (the error field holds the code).
pub const DIST_MAILBOX_INIT_FAILED: DistMailboxState = 4;
/// Extension: a child spawned by the library announces it is ready to serve.
pub const DIST_MAILBOX_CHILD_READY: DistMailboxState = 5;

/// Size of one mailbox in bytes.
pub const DIST_MAILBOX_SIZE: u32 = 4096;
/// Offset of the int32 state word.
pub const DIST_MAILBOX_OFF_STATE: u32 = 0;
/// Offset of the int32 error code written by the child.
pub const DIST_MAILBOX_OFF_ERROR: u32 = 4;
/// Offset of the uint64 callable (handle or callable id).
pub const DIST_MAILBOX_OFF_CALLABLE: u32 = 8;
/// Offset of the int32 block_dim.
pub const DIST_MAILBOX_OFF_BLOCK_DIM: u32 = 16;
/// Offset of the int32 aicpu_thread_num.
pub const DIST_MAILBOX_OFF_AICPU_THREAD_NUM: u32 = 20;
/// Offset of the int32 enable_profiling flag (0/1).
pub const DIST_MAILBOX_OFF_ENABLE_PROFILING: u32 = 24;
/// Offset of the int32 enable_dump_tensor flag (0/1).
pub const DIST_MAILBOX_OFF_ENABLE_DUMP_TENSOR: u32 = 28;
/// Offset of the args blob.
pub const DIST_MAILBOX_OFF_ARGS: u32 = 64;
/// Capacity of the args blob in bytes.
pub const DIST_MAILBOX_ARGS_CAPACITY: u32 = 4032;
/// Most dimensions a tensor may have.
pub const DIST_TENSOR_MAX_DIMS: u32 = 5;
/// Deepest nesting of scopes.
pub const DIST_MAX_SCOPE_DEPTH: u32 = 64;

/// Major version of this library (equals Cargo.toml's).
pub const DIST_WORKER_VERSION_MAJOR: u32 = 0;
/// Minor version of this library.
pub const DIST_WORKER_VERSION_MINOR: u32 = 2;
/// Patch version of this library.
pub const DIST_WORKER_VERSION_PATCH: u32 = 0;

/// A tensor argument: 40 bytes, the wire layout of the mailbox's args blob.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistTensor {
    /// Address (host or device); also the dependency key. 0 = none.
    pub data: u64,
    /// Element count per dimension; entries past `ndims` are ignored.
    pub shapes: [u32; 5],
    /// Number of dimensions, 0..5: 0 is a 0-d tensor (one element); shapes
    /// beyond ndims are ignored.
    pub ndims: u32,
    /// Element type, a `DistDataType` value.
    pub dtype: u8,
}

/// Launch configuration passed with every task.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistCallConfig {
    /// Default 24.
    pub block_dim: i32,
    /// Default 3.
    pub aicpu_thread_num: i32,
    /// Default false.
    pub enable_profiling: bool,
    /// Default false.
    pub enable_dump_tensor: bool,
}

/// The arguments of one task (or of one member of a group), as a submitter passes them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DistTaskArgs {
    /// `tensor_count` tensors (may be NULL when the count is 0).
    pub tensors: *const DistTensor,
    /// One tag per tensor; NULL means every tensor is INPUT.
    pub tags: *const DistTensorArgType,
    /// Number of tensors.
    pub tensor_count: u32,
    /// `scalar_count` 64-bit scalars (may be NULL when the count is 0).
    pub scalars: *const u64,
    /// Number of scalars.
    pub scalar_count: u32,
}

/// What a callable receives: the decoded args blob.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DistTaskView {
    /// Number of tensors.
    pub tensor_count: i32,
    /// Number of scalars.
    pub scalar_count: i32,
    /// The tensors (valid for the duration of the call).
    pub tensors: *const DistTensor,
    /// The scalars (valid for the duration of the call).
    pub scalars: *const u64,
}

/// One task as submitted to `dist_worker_dispatch`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DistTask {
    /// Which pool runs it (a `DistWorkerType` value).
    pub worker_type: DistWorkerType,
    /// NEXT_LEVEL: opaque handle; SUB: callable id.
    pub callable: u64,
    /// Launch configuration.
    pub config: DistCallConfig,
    /// `group_size` entries (NULL allowed when group_size <= 1: no args).
    pub args: *const DistTaskArgs,
    /// 0 or 1: one task on one worker; N > 1: one DAG node run on N workers at once.
    pub group_size: u32,
}

/// Options of `dist_worker_create`; fill with `dist_worker_options_init` first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DistWorkerOptions {
    /// Level of this worker in the hierarchy (3 = host). Default 3.
    pub level: u32,
    /// Bytes of the MAP_SHARED heap ring. Default 64 MiB (0 also means the default).
    pub heap_ring_size: u64,
    /// How long a dispatch or alloc waits for heap ring space before failing
    /// with DIST_ERR_RESOURCE_EXHAUSTED, in ms. Default 5000; 0 = fail at once.
    pub alloc_timeout_ms: u32,
    /// A task running longer than this, in ms, ends with DIST_ERR_TIMEOUT
    /// and its worker leaves the pool (a spawned child is killed). Default
    /// 0 = no deadline.
    pub task_timeout_ms: u32,
    /// One deadline for all of dist_worker_shutdown, in ms: dispatched work
    /// may finish until it passes; then busy children are killed with
    /// SIGKILL and reaped, their tasks end with DIST_ERR_TIMEOUT, and
    /// shutdown returns DIST_ERR_TIMEOUT naming them. Shutdown returns
    /// within this deadline plus a fixed grace of 200 ms however many
    /// workers misbehave. Default 10000; 0 = no limit.
    pub shutdown_timeout_ms: u32,
    /// How long a library-run worker (spawned child, pool thread) spins for
    /// its next task before sleeping on its mailbox futex, in µs. Default 50.
    pub worker_spin_us: u32,
    /// How long the dispatcher thread spins for completions while work is in
    /// flight before sleeping on the doorbell, in µs. Default 50.
    pub dispatcher_spin_us: u32,
    /// How long a thread in dist_worker_wait / dist_worker_drain polls for
    /// completions itself before sleeping on the doorbell, in µs. Default 5.
    pub wait_spin_us: u32,
    /// Longest sleep between polls while a worker that never rings the
    /// doorbell (a caller-owned child) has work in flight, in µs. Default 50.
    pub poll_interval_us: u32,
    /// How long dist_worker_start waits for spawned children and levels to
    /// announce readiness, in ms; past it start fails with DIST_ERR_TIMEOUT
    /// naming the first one not ready. Default 30000; 0 = no limit.
    pub start_timeout_ms: u32,
}

/// A function a forked child calls first (`dist_worker_set_child_start`).
pub type DistChildStartFn = Option<unsafe extern "C" fn()>;

/// Init function of a spawned child, run in the child before it serves:
/// returns 0 when ready, a non-zero error code when the child cannot serve.
pub type DistInitFn = Option<unsafe extern "C" fn(user: *mut c_void) -> i32>;

/// A callable: returns 0 on success, a non-zero error code on failure.
pub type DistTaskFn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        callable: u64,
        args: *const DistTaskView,
        config: *const DistCallConfig,
    ) -> i32,
>;

/// Where a worker's callable runs, as `dist_worker_worker_info` reports it (int32).
pub type DistWorkerMode = i32;
/// A pool thread of this process (`dist_worker_add_thread`).
pub const DIST_WORKER_MODE_THREAD: DistWorkerMode = 0;
/// A child process the library forked (`dist_worker_spawn`).
pub const DIST_WORKER_MODE_SPAWNED: DistWorkerMode = 1;
/// A process the caller started (`dist_worker_add_process`).
pub const DIST_WORKER_MODE_PROCESS: DistWorkerMode = 2;
/// An inner level: driven by a pool thread (pid 0, `dist_worker_add_level`)
/// or its own process (`dist_worker_spawn_level`).
pub const DIST_WORKER_MODE_LEVEL: DistWorkerMode = 3;

/// What a worker is doing, as `dist_worker_worker_info` reports it (int32).
pub type DistWorkerState = i32;
/// In its pool, without a task.
pub const DIST_WORKER_STATE_IDLE: DistWorkerState = 0;
/// Running a task.
pub const DIST_WORKER_STATE_BUSY: DistWorkerState = 1;
/// Out of its pool for good: its process died, it passed a deadline or it
/// broke the protocol.
pub const DIST_WORKER_STATE_RETIRED: DistWorkerState = 2;

/// The tasks of one worker type: totals since create, and where the
/// others stand now. submitted = pending + ready + running + completed + failed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistTypeStats {
    /// Tasks accepted by dispatch (a group counts once).
    pub submitted: u64,
    /// Now: waiting for the tasks they depend on.
    pub pending: u64,
    /// Now: queued for an idle worker (placed tasks included).
    pub ready: u64,
    /// Now: on workers.
    pub running: u64,
    /// Finished with DIST_OK.
    pub completed: u64,
    /// Finished with a failure, whether they ran or not (DEPENDENCY_FAILED,
    /// NO_WORKER and deadlines included).
    pub failed: u64,
    /// Workers in the pool now (retired ones left it).
    pub live_workers: u32,
    /// Of those, the ones running a task now.
    pub busy_workers: u32,
}

/// Bytes of the first version of `DistWorkerStats`: the smallest `size`
/// `dist_worker_stats` accepts. Later versions only append fields.
pub const DIST_WORKER_STATS_V1_SIZE: u32 = 224;

/// What `dist_worker_stats` reports. Set `size` to sizeof(DistWorkerStats)
/// first: the library fills the fields that fit in `size` and sets `size`
/// to the bytes it filled, so a program built against a newer header still
/// runs against an older library (and the other way round).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistWorkerStats {
    /// In: sizeof(DistWorkerStats), at least DIST_WORKER_STATS_V1_SIZE.
    /// Out: the bytes filled.
    pub size: u32,
    /// Workers of the started pool, retired ones included (0 before
    /// start): the indices `dist_worker_worker_info` takes.
    pub worker_count: u32,
    /// Per worker type, indexed by DistWorkerType (NEXT_LEVEL 0, SUB 1).
    pub types: [DistTypeStats; 2],
    /// Tasks whose dispatch-to-completion time was measured (those that
    /// ran; from dispatch to the end of their last member), since create.
    pub latency_count: u64,
    /// Median dispatch-to-completion time, in ns (a histogram bucket's
    /// upper edge: at most 6.25 % above the true value).
    pub latency_p50_ns: u64,
    /// 99th percentile, in ns.
    pub latency_p99_ns: u64,
    /// 99.9th percentile, in ns.
    pub latency_p999_ns: u64,
    /// Longest, in ns.
    pub latency_max_ns: u64,
    /// Engine slots in use: tasks known (until drain) and allocations alive.
    pub slots: u64,
    /// Tensor-map entries (addresses with a last writer).
    pub map_entries: u64,
    /// Bytes of the heap ring in live allocations.
    pub heap_live_bytes: u64,
    /// The most bytes of the heap ring that were live at once.
    pub heap_peak_bytes: u64,
    /// Size of the heap ring in bytes.
    pub heap_capacity_bytes: u64,
    /// Scopes open (not counting the root).
    pub scope_depth: u32,
    /// Level of this worker in the hierarchy.
    pub level: u32,
    /// Events of the timeline trace recorded since it started (0 without one).
    pub trace_events: u64,
    /// Trace events that found its buffer full and were dropped.
    pub trace_dropped: u64,
}

/// Bytes of the first version of `DistWorkerInfo`: the smallest `size`
/// `dist_worker_worker_info` accepts. Later versions only append fields.
pub const DIST_WORKER_INFO_V1_SIZE: u32 = 56;

/// What `dist_worker_worker_info` reports about one worker. Set `size` to
/// sizeof(DistWorkerInfo) first (as for DistWorkerStats).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistWorkerInfo {
    /// In: sizeof(DistWorkerInfo), at least DIST_WORKER_INFO_V1_SIZE. Out:
    /// the bytes filled.
    pub size: u32,
    /// Its index among all workers (registration order).
    pub index: u32,
    /// Its type (a DistWorkerType value).
    pub worker_type: DistWorkerType,
    /// Its registration order within its type, as messages, traces and
    /// `dist_worker_dispatch_on` name it ("SUB worker 1").
    pub rank: u32,
    /// Where it runs (a DistWorkerMode value).
    pub mode: DistWorkerMode,
    /// What it is doing (a DistWorkerState value).
    pub state: DistWorkerState,
    /// Its process: a spawned child, a level's process, or a caller-owned
    /// child named with dist_worker_set_process_pid; 0 for a pool thread
    /// (and a caller-owned child whose pid was not named).
    pub pid: i32,
    /// For a DIST_WORKER_MODE_LEVEL worker: the inner level's number; else 0.
    pub level: u32,
    /// Task members it ran to their end, failures included.
    pub tasks_run: u64,
    /// Of those, the ones that failed (a child that died mid-task included).
    pub tasks_failed: u64,
    /// Time it spent running them, in ns (the current one included so far).
    pub busy_ns: u64,
}

/// Importance of a log line (int32).
pub type DistLogLevel = i32;
/// No line is logged (for `dist_worker_set_log_level`).
pub const DIST_LOG_OFF: DistLogLevel = 0;
/// Something failed that the library could not work around.
pub const DIST_LOG_ERROR: DistLogLevel = 1;
/// A worker was lost, a deadline passed, a peer broke the protocol (the default level).
pub const DIST_LOG_WARN: DistLogLevel = 2;
/// The life cycle: children spawned, start, shutdown, traces written.
pub const DIST_LOG_INFO: DistLogLevel = 3;
/// Per task: launches and completions.
pub const DIST_LOG_DEBUG: DistLogLevel = 4;

/// Receives log lines instead of stderr (`dist_worker_set_log_callback`):
/// `level` is a DistLogLevel value, `message` the line stderr would have
/// got, without the newline ("dist-worker[812] L3 warn: SUB worker 1 (child
/// pid 813) killed by signal 9; it leaves the pool"), valid for the call.
pub type DistLogFn =
    Option<unsafe extern "C" fn(user: *mut c_void, level: DistLogLevel, message: *const c_char)>;
