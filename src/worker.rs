//! A registered worker: its type, its mode and the mailbox it is reached by.
//!
//! Both modes are served through a mailbox: a PROCESS worker's mailbox is
//! shared with a child process; a THREAD worker's is private to a pool
//! thread that runs the same serving loop as a child. The set of workers is
//! fixed when the pool starts and shared read-only by the engine (which
//! dispatches) and the dispatcher (which polls for completions).

use crate::abi;
use crate::mailbox::Mailbox;
use crate::status::{fail, Result, Status};
use std::fmt;
use std::sync::atomic::AtomicU64;

/// The in-flight token is part of the hand-off (model-checked by loom).
type TokenCell = crate::loom::AtomicU64;

/// The two kinds of worker; each has its own pool and ready queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WorkerType {
    /// The level below (a chip or a lower-level DistWorker).
    #[default]
    NextLevel,
    /// A helper function.
    Sub,
}

impl WorkerType {
    /// Both types, in ABI value order.
    pub const ALL: [WorkerType; 2] = [WorkerType::NextLevel, WorkerType::Sub];

    /// Converts a C value, refusing anything undeclared.
    pub fn from_abi(v: abi::DistWorkerType) -> Result<WorkerType> {
        match v {
            abi::DIST_WORKER_NEXT_LEVEL => Ok(WorkerType::NextLevel),
            abi::DIST_WORKER_SUB => Ok(WorkerType::Sub),
            _ => fail(
                Status::InvalidArgument,
                format!("worker type {v} is not a DistWorkerType (0 = NEXT_LEVEL, 1 = SUB)"),
            ),
        }
    }

    /// Index into per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for WorkerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerType::NextLevel => "NEXT_LEVEL",
            WorkerType::Sub => "SUB",
        })
    }
}

/// Where a worker's callable runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On a pool thread of this process.
    Thread,
    /// In a child process the library forked (its pid).
    Spawned(i32),
    /// In a process the caller started, reached through its mailbox (and
    /// its pid, if the caller named it, so its death is noticed).
    External(Option<i32>),
    /// A level on another host, reached over MPI (its rank).
    #[cfg(feature = "mpi")]
    Remote(u32),
}

/// One worker of a started pool.
#[derive(Debug)]
pub struct Worker {
    /// Its type.
    pub ty: WorkerType,
    /// Its mode.
    pub mode: Mode,
    /// Its mailbox.
    pub mailbox: Mailbox,
    /// Token of the task member it runs (0 = none). Set after TASK_READY is
    /// published; cleared by whoever claims the completion.
    pub in_flight: TokenCell,
    /// Index in the pool's worker table.
    pub index: usize,
    /// Registration order within its type, from 0: how messages and
    /// placements name it ("SUB worker 1").
    pub rank: usize,
    /// For a worker that is itself a level: that level's number (messages
    /// name it "L3 worker 1").
    pub level: Option<u32>,
    /// When its current task was launched (`now_ns`), for task deadlines.
    pub launched_at: AtomicU64,
    /// The slot (high half) and group member (low half) of its current
    /// launch, stored before TASK_READY (a remote level reads its task's
    /// tags by it).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub launch: AtomicU64,
}

/// Nanoseconds on a monotonic clock shared by the whole process.
pub fn now_ns() -> u64 {
    static BASE: once_cell::sync::Lazy<std::time::Instant> =
        once_cell::sync::Lazy::new(std::time::Instant::now);
    BASE.elapsed().as_nanos() as u64
}

impl Worker {
    /// Whether it can only take blobs that fit a mailbox: a caller-owned
    /// child that has not announced it reads them from the heap (a
    /// reference child never does).
    pub fn mailbox_only(&self) -> bool {
        matches!(self.mode, Mode::External(_)) && !self.mailbox.speaks_large_args()
    }

    /// Its process, if the library knows one: a spawned child's, or a
    /// caller-owned child's whose pid was named.
    pub fn pid(&self) -> Option<i32> {
        match self.mode {
            Mode::Thread | Mode::External(None) => None,
            #[cfg(feature = "mpi")]
            Mode::Remote(_) => None,
            Mode::Spawned(pid) | Mode::External(Some(pid)) => Some(pid),
        }
    }

    /// Whether it rings the doorbell on completion (library-run serving loops do).
    pub fn rings(&self) -> bool {
        !matches!(self.mode, Mode::External(_))
    }

    /// Whether a pool thread of this process serves it (a THREAD worker, or
    /// the proxy of a level on another host): that thread hands its
    /// completions to the engine itself.
    pub fn on_pool_thread(&self) -> bool {
        match self.mode {
            Mode::Thread => true,
            #[cfg(feature = "mpi")]
            Mode::Remote(_) => true,
            Mode::Spawned(_) | Mode::External(_) => false,
        }
    }
}

impl fmt::Display for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            Some(l) => write!(f, "L{l} worker {}", self.rank)?,
            None => write!(f, "{} worker {}", self.ty, self.rank)?,
        }
        match self.mode {
            Mode::Thread => write!(f, " (thread)"),
            Mode::Spawned(pid) => write!(f, " (child pid {pid})"),
            Mode::External(None) => write!(f, " (process, mailbox {:p})", self.mailbox.as_ptr()),
            Mode::External(Some(pid)) => write!(
                f,
                " (process pid {pid}, mailbox {:p})",
                self.mailbox.as_ptr()
            ),
            #[cfg(feature = "mpi")]
            Mode::Remote(rank) => write!(f, " (rank {rank})"),
        }
    }
}
