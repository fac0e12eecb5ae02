//! `Runtime`: one level of the hierarchy, as a safe Rust object.
//!
//! Lifecycle: created → workers registered (and children forked) → started
//! (pool threads and the dispatcher thread exist from here on) → shut down.
//! No thread of the library exists before start, so forking is safe until
//! then. Every method takes `&self` and may be called from any thread.
//!
//! - `setup`: registering workers and forking children;
//! - `start`: the readiness handshake and the library's threads;
//! - `shutdown`: one deadline for finishing work, stopping and reaping.
//!
//! A runtime used in a copy of its process made by `fork()` refuses every
//! call (BAD_STATE) but shutdown, which frees the copy's memory and touches
//! nothing the copy shares with the original (mailboxes, children, threads).

mod level;
mod observe;
#[cfg(feature = "mpi")]
mod remote;
mod setup;
mod shutdown;
mod start;
mod wait;

pub(crate) use level::outcome;
pub use level::{Level, Orch, Outcome};
#[cfg(feature = "mpi")]
pub(crate) use remote::RemoteWorker;
pub use setup::{set_child_start, Init};

use crate::abi::{DistTaskId, DistTensor};
use crate::child::ServeOptions;
use crate::doorbell::Doorbell;
use crate::engine::{Engine, MemberArgs, TaskSpec};
use crate::mailbox::{Mailbox, OwnedMailbox};
use crate::progress::{Progress, WaitPolicy};
use crate::reaper::Spawned;
use crate::status::{fail, Result, Status};
use crate::sys::{self, lifeline, SharedMap};
use crate::worker::{Mode, WorkerType};
use std::cell::Cell;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default size of the shared heap ring.
pub const DEFAULT_HEAP_RING_SIZE: usize = 64 << 20;

/// Default longest wait of a shutdown for work and workers to finish.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start waits for spawned children and levels to be ready.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Default longest wait of an allocation for heap ring space.
pub const DEFAULT_ALLOC_TIMEOUT: Duration = Duration::from_secs(5);

/// What shutdown may take past `shutdown_timeout` at most: the time for
/// threads and children told to stop to leave, and for killed children to
/// be reaped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);

/// Options of a runtime.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Level in the hierarchy (3 = host).
    pub level: u32,
    /// Bytes of the MAP_SHARED heap ring.
    pub heap_ring_size: usize,
    /// How long a submit or alloc waits for heap ring space before failing
    /// with RESOURCE_EXHAUSTED.
    pub alloc_timeout: Duration,
    /// How long shutdown waits for dispatched work and for workers to exit
    /// before it kills children and gives up on threads (None: no limit).
    pub shutdown_timeout: Option<Duration>,
    /// How long start waits for spawned children and levels to announce
    /// readiness before failing with TIMEOUT (None: no limit).
    pub start_timeout: Option<Duration>,
    /// How library-run workers (spawned children, pool threads) spin for
    /// the next task before sleeping on their mailbox.
    pub worker_spin: Duration,
    /// How the dispatcher and waiting host threads wait for completions.
    pub wait: WaitPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            level: 3,
            heap_ring_size: DEFAULT_HEAP_RING_SIZE,
            alloc_timeout: DEFAULT_ALLOC_TIMEOUT,
            shutdown_timeout: Some(DEFAULT_SHUTDOWN_TIMEOUT),
            start_timeout: Some(DEFAULT_START_TIMEOUT),
            worker_spin: ServeOptions::default().spin,
            wait: WaitPolicy::default(),
        }
    }
}

/// A worker registered before start.
struct Registration {
    ty: WorkerType,
    mode: Mode,
    mailbox: Mailbox,
    /// THREAD mode: the callable its pool thread serves.
    handler: Option<crate::child::Handler>,
    /// A level: its number.
    level: Option<u32>,
}

/// The data of each stage of the life cycle.
enum Stage {
    Setup(Vec<Registration>),
    Running(Vec<JoinHandle<()>>),
    Closed,
}

/// The life cycle, under one lock: the stage and what belongs to it.
struct Life {
    stage: Stage,
    /// Mailboxes the library owns (spawned children and pool threads).
    owned: Vec<OwnedMailbox>,
    /// The reaper thread and the eventfd that stops it.
    reaper: Option<(JoinHandle<()>, Arc<OwnedFd>)>,
    /// When a shutdown under way gives up waiting (deadline plus grace).
    close_by: Option<Instant>,
    /// A pool thread stuck in a callable was left running at shutdown.
    left_threads: bool,
    /// Names pool threads.
    next_thread: u64,
    /// Inner levels served by pool threads (THREAD mode): a shutdown that
    /// passes its deadline closes them itself, so a pool thread stuck
    /// driving one cannot keep it (and its children) running.
    levels: Vec<Arc<Runtime>>,
    /// Readiness handshakes of levels on other hosts, run by start.
    #[cfg(feature = "mpi")]
    start_hooks: Vec<remote::StartHook>,
}

/// The stage, mirrored for the hot path, which reads it without the lock:
/// `phase` changes only under the life lock, with the stage.
mod phase {
    pub const SETUP: u8 = 0;
    pub const RUNNING: u8 = 1;
    pub const CLOSING: u8 = 2;
    pub const FAILED: u8 = 3;
}

thread_local! {
    /// On a pool thread: its runtime's id and its worker index, so a
    /// callable that calls its own runtime is known.
    static POOL_THREAD: Cell<Option<(u64, usize)>> = const { Cell::new(None) };
}

/// Ids of runtimes, unique in the process (an address could be reused by a
/// later runtime while a pool thread of an earlier one still runs).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One level of the hierarchy: pools of workers and the engine that feeds them.
pub struct Runtime {
    shared: Arc<Progress>,
    life: Mutex<Life>,
    phase: AtomicU8,
    options: Options,
    /// Children this runtime forked and has not reaped (shared with the
    /// reaper thread, which removes those it reaps).
    children: Arc<Mutex<Vec<Spawned>>>,
    /// Not unmapped if a pool thread that may still use it was left running.
    heap: std::mem::ManuallyDrop<SharedMap>,
    /// Holds the doorbell words; shared with children forked later.
    control: std::mem::ManuallyDrop<SharedMap>,
    /// The process's fork count at creation (see `sys::lifeline`).
    fork_generation: u64,
    /// The process mark at creation: differs in a copy made without the
    /// fork handlers (see `sys::lifeline`).
    mark: u64,
    /// The process that created it.
    creator: i32,
    /// Unique in the process (see `POOL_THREAD`).
    id: u64,
    /// Threads inside `wait`: a drain releases no id before they have seen
    /// their outcomes.
    waiting: AtomicUsize,
    /// Threads inside `drain`, woken when the last waiter leaves.
    draining: AtomicUsize,
    /// The timeline trace being recorded, if any (see `observe`).
    tracing: Mutex<observe::Tracing>,
    /// NEXT_LEVEL tasks' tags, for levels on other hosts.
    #[cfg(feature = "mpi")]
    tags: Arc<remote::TagTable>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is caught at the boundary; the state it
    // protects stays consistent between engine steps, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    /// Creates a runtime and maps its shared heap ring.
    pub fn new(options: Options) -> Result<Runtime> {
        if options.heap_ring_size == 0 {
            return fail(
                Status::InvalidArgument,
                "heap_ring_size must be at least 1 byte",
            );
        }
        lifeline::init();
        crate::clock::init();
        let heap = SharedMap::new(options.heap_ring_size)?;
        let control = SharedMap::new(4096)?;
        debug_assert!(control.len() >= crate::doorbell::DOORBELL_BYTES);
        let engine = Engine::new(options.level, heap.as_ptr() as u64, heap.len() as u64);
        // SAFETY: the control page is 4096 bytes, page aligned, and outlives
        // every copy of the doorbell (the runtime joins its threads and reaps
        // its children before dropping it; children keep their own mapping).
        let bell = unsafe { Doorbell::from_raw(NonNull::new(control.as_ptr()).expect("mapped")) };
        let rt = Runtime {
            shared: Arc::new(Progress::new(engine, bell, options.wait)),
            life: Mutex::new(Life {
                stage: Stage::Setup(Vec::new()),
                owned: Vec::new(),
                reaper: None,
                close_by: None,
                left_threads: false,
                next_thread: 0,
                levels: Vec::new(),
                #[cfg(feature = "mpi")]
                start_hooks: Vec::new(),
            }),
            phase: AtomicU8::new(phase::SETUP),
            options,
            children: Arc::new(Mutex::new(Vec::new())),
            heap: std::mem::ManuallyDrop::new(heap),
            control: std::mem::ManuallyDrop::new(control),
            fork_generation: lifeline::fork_generation(),
            mark: lifeline::process_mark(),
            creator: sys::getpid(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            waiting: AtomicUsize::new(0),
            draining: AtomicUsize::new(0),
            tracing: Mutex::new(observe::Tracing::default()),
            #[cfg(feature = "mpi")]
            tags: Arc::default(),
        };
        rt.trace_from_env();
        Ok(rt)
    }

    /// The options it was created with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Base address and length of the shared heap ring.
    pub fn heap(&self) -> (*mut u8, usize) {
        (self.heap.as_ptr(), self.heap.len())
    }

    /// Whether this runtime is being used in a copy of its process made by
    /// `fork()` (where everything it shares belongs to the original).
    pub fn is_forked_copy(&self) -> bool {
        lifeline::fork_generation() != self.fork_generation || lifeline::marked_elsewhere(self.mark)
    }

    /// The stage of its life, refusing a forked copy.
    fn phase(&self) -> Result<u8> {
        if self.is_forked_copy() {
            return fail(
                Status::BadState,
                format!(
                    "this DistWorker belongs to process {}; process {} is a copy made by \
                     fork(), where only dist_worker_shutdown is allowed (it frees the copy's \
                     memory and leaves the original's workers alone)",
                    self.creator,
                    sys::getpid()
                ),
            );
        }
        Ok(self.phase.load(Ordering::Acquire))
    }

    /// Whether it was created and not yet started (what a new level must be).
    pub fn is_fresh(&self) -> bool {
        matches!(self.phase(), Ok(phase::SETUP))
    }

    /// Refuses work once the runtime is shutting down or failed to start.
    fn accepting(&self) -> Result<u8> {
        match self.phase()? {
            phase::CLOSING => fail(
                Status::ShutDown,
                "the worker is shutting down and takes no new work",
            ),
            phase::FAILED => fail(
                Status::ShutDown,
                "the worker failed to start; only dist_worker_shutdown is allowed",
            ),
            p => Ok(p),
        }
    }

    /// The worker index, if the calling thread is one of this runtime's
    /// pool threads (so it runs inside a callable of this runtime).
    pub fn pool_worker(&self) -> Option<usize> {
        POOL_THREAD
            .with(|c| c.get())
            .filter(|&(id, _)| id == self.id)
            .map(|(_, w)| w)
    }

    /// Whether a shutdown left pool threads running in callables: they may
    /// still call into this runtime, so its memory must never be freed.
    pub fn left_threads(&self) -> bool {
        lock(&self.life).left_threads
    }

    /// When the shutdown under way gives up waiting for anything (its
    /// deadline plus the grace); None before shutdown or without a deadline.
    pub fn close_by(&self) -> Option<Instant> {
        lock(&self.life).close_by
    }

    /// Submits a task (starting the pool on first use). Returns its id.
    /// Waits for heap ring space up to the allocation deadline when its
    /// OUTPUT tensors need memory.
    pub fn submit<M: MemberArgs + ?Sized>(&self, spec: &TaskSpec<'_, M>) -> Result<DistTaskId> {
        self.submit_on(spec, &[])
    }

    /// As `submit`, member `i` running on worker `workers[i]` of the task's
    /// type (registration order within the type, from 0); empty: anywhere.
    /// Indices out of range or repeated are INVALID_ARGUMENT; a named
    /// worker that left its pool is NO_WORKER, or, once the task is
    /// queued, ends it with CHILD_DIED. A placed task waits only for its
    /// own workers and is never moved.
    pub fn submit_on<M: MemberArgs + ?Sized>(
        &self,
        spec: &TaskSpec<'_, M>,
        workers: &[u32],
    ) -> Result<DistTaskId> {
        if self.accepting()? == phase::SETUP {
            self.start()?;
        }
        self.check_large_args(spec, workers)?;
        self.with_backpressure(|e| {
            let id = e.submit_placed(spec, workers, crate::clock::ticks())?;
            // Under the engine lock: recorded before any member launches.
            #[cfg(feature = "mpi")]
            if let Some(id) = id {
                self.tags.record(spec, id);
            }
            Ok(id)
        })
    }

    /// A blob longer than a mailbox travels through the heap, which only
    /// the library's serving loops read: refused (ARGS_TOO_LARGE) when a
    /// worker that may run the task is a child that cannot.
    fn check_large_args<M: MemberArgs + ?Sized>(
        &self,
        spec: &TaskSpec<'_, M>,
        workers: &[u32],
    ) -> Result<()> {
        for i in 0..spec.members.count() {
            let a = spec.members.member(i)?;
            let len = crate::blob::encoded_len(a.tensors.len() as u64, a.scalars.len() as u64)?;
            if len <= crate::mailbox::ARGS_CAPACITY {
                continue;
            }
            if let Some(w) = self.shared.cannot_take_large_args(spec.ty, workers) {
                return fail(
                    Status::ArgsTooLarge,
                    format!(
                        "group member {i}: its {len}-byte blob exceeds the {} bytes of a \
                         mailbox, and {w} may run it but does not read blobs from the heap \
                         (a child that is not a library serving loop)",
                        crate::mailbox::ARGS_CAPACITY
                    ),
                );
            }
        }
        Ok(())
    }

    /// Allocates a tensor from the shared heap ring, owned by the current scope.
    pub fn alloc(&self, shape: &[u32], dtype: u8) -> Result<DistTensor> {
        self.accepting()?;
        self.with_backpressure(|e| e.alloc(shape, dtype))
    }

    /// Runs `attempt` until it gets heap ring space (Some) or the
    /// allocation deadline passes. The engine lock is released while
    /// waiting, so completions, scope ends and drains can free space.
    fn with_backpressure<T>(
        &self,
        mut attempt: impl FnMut(&mut Engine) -> Result<Option<T>>,
    ) -> Result<T> {
        let mut engine = self.shared.lock();
        let mut deadline = None;
        loop {
            if let Some(v) = attempt(&mut engine)? {
                return Ok(v);
            }
            self.accepting()?;
            let timeout = self.options.alloc_timeout;
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let now = Instant::now();
            if now >= deadline {
                let st = engine.engine_stats();
                return fail(
                    Status::ResourceExhausted,
                    format!(
                        "the heap ring stayed full for {timeout:?} ({} bytes live in {} blocks); \
                         end scopes or drain to release memory",
                        st.heap_live_bytes, st.heap_blocks
                    ),
                );
            }
            engine = self.shared.wait_released(engine, deadline - now);
        }
    }

    /// Opens a nested scope.
    pub fn scope_begin(&self) -> Result<()> {
        self.accepting()?;
        self.shared.lock().scope_begin()
    }

    /// Closes the innermost scope; memory nothing depends on any more is reclaimed.
    pub fn scope_end(&self) -> Result<()> {
        self.accepting()?;
        let mut engine = self.shared.lock();
        engine.scope_end()?;
        self.shared.notify();
        Ok(())
    }

    /// The tensor a task member was dispatched with (the allocated address
    /// of an OUTPUT submitted with `data == 0`).
    pub fn task_tensor(&self, id: DistTaskId, member: u32, index: u32) -> Result<DistTensor> {
        if self.phase()? == phase::FAILED {
            self.accepting()?;
        }
        self.shared.lock().task_tensor(id, member, index)
    }

    /// Finishes dispatched work, stops every worker, joins threads and reaps
    /// children. Returns the first failure not reported by a drain.
    pub fn shutdown(self) -> Result<()> {
        self.close()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.is_forked_copy() {
            // The threads, children and mailboxes belong to the original
            // process: forget the handles, free only this copy's private
            // memory. The shared mappings stay mapped until the copy exits:
            // a child this runtime spawned serves its mailbox from them, and
            // every process under it reads the heap.
            let life = self.life.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Stage::Running(threads) = std::mem::replace(&mut life.stage, Stage::Closed) {
                std::mem::forget(threads);
            }
            if let Some((thread, _stop)) = life.reaper.take() {
                std::mem::forget(thread);
            }
            std::mem::forget(std::mem::take(&mut life.owned));
            return;
        } else {
            let _ = self.close();
            setup::forget_mailboxes(self.id);
        }
        if !self
            .life
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .left_threads
        {
            // SAFETY: dropped once, here; no thread of ours uses them any more.
            unsafe {
                std::mem::ManuallyDrop::drop(&mut self.heap);
                std::mem::ManuallyDrop::drop(&mut self.control);
            }
        }
    }
}
