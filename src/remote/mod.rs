//! Levels on other hosts, over MPI (feature `mpi`).
//!
//! Launched with `mpirun -np N program`, rank 0 is the top level; each rank
//! r >= 1 hosts a level (`serve`) and rank 0 drives it as a NEXT_LEVEL
//! worker (`level`), so placement, groups, failures, deadlines and figures
//! apply as to any worker. One link thread per process (`link`) makes every
//! MPI call: nonblocking sends and receives tested in a loop, heartbeats
//! every 100 ms both ways, and a peer silent for 500 ms is gone. What
//! travels is in `wire`; the MPI calls themselves in `mpi`.
//!
//! - `mpi`: the raw MPI calls (all of this module's `unsafe` that touches MPI);
//! - `wire`: frames, task bodies, directions and chunks;
//! - `link`: the link thread;
//! - `level`: rank 0's side, a `Level` whose run is an exchange with a rank;
//! - `serve`: a remote rank's side, its serving loop over an inner level.

mod level;
mod link;
mod mpi;
mod serve;
pub(crate) mod wire;

pub(crate) use level::add_mpi_levels;
pub(crate) use serve::{connect, serving_rank};

use crate::status::{fail, Result, Status};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

/// How often each side tells the other it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// A peer silent this long is gone (killed, or its host is).
pub const SILENCE: Duration = Duration::from_millis(500);

/// The process's MPI state, from `init` on.
#[derive(Clone, Copy)]
pub(crate) struct World {
    /// The library's own communicator (a duplicate of MPI_COMM_WORLD).
    pub comm: mpi::Comm,
    /// This process's rank.
    pub rank: i32,
    /// The number of ranks.
    pub size: i32,
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);
/// OpenMPI's switch for an MPI_Finalize that does not wait for the other ranks.
const ASYNC_FINALIZE: &str = "OMPI_MCA_async_mpi_finalize";
/// Link threads running (a DistWorker driving ranks, or a serving loop):
/// MPI is not finalized under them.
static LINKS: AtomicUsize = AtomicUsize::new(0);
/// Whether rank 0's ranks are registered with a DistWorker already.
static DRIVEN: AtomicBool = AtomicBool::new(false);
/// DistWorkers that drive ranks and were not shut down yet (started or
/// not: shutting one down still tells its ranks to stop, over MPI).
static DRIVERS: AtomicUsize = AtomicUsize::new(0);

fn world_lock() -> std::sync::MutexGuard<'static, Option<World>> {
    WORLD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Initialises MPI (unless the program did), with errors returned and a
/// communicator of the library's own. Returns (rank, size).
///
/// # Safety
/// `argc`/`argv` NULL or the program's own, as MPI_Init_thread wants.
pub(crate) unsafe fn init(
    argc: *mut std::os::raw::c_int,
    argv: *mut *mut *mut std::os::raw::c_char,
) -> Result<(i32, i32)> {
    let mut world = world_lock();
    if let Some(w) = *world {
        return Ok((w.rank, w.size));
    }
    match mpi::state() {
        (_, true) => {
            return fail(
                Status::BadState,
                "MPI was finalized already in this process",
            )
        }
        (true, false) => mpi::check_thread_level()?,
        (false, false) => {
            // OpenMPI's MPI_Finalize waits for every rank by default, and
            // with a rank killed under --enable-recovery it can wait for
            // the dead one for ever; the ranks here end on their own
            // (SHUTDOWN, or silence), so none waits for the others.
            if std::env::var_os(ASYNC_FINALIZE).is_none() {
                std::env::set_var(ASYNC_FINALIZE, "1");
            }
            // SAFETY: per this function's contract.
            unsafe { mpi::init_thread(argc, argv) }?;
        }
    }
    let comm = mpi::world_dup()?;
    let (rank, size) = comm.rank_size()?;
    *world = Some(World { comm, rank, size });
    Ok((rank, size))
}

/// The MPI state, or BAD_STATE before `init`.
pub(crate) fn world() -> Result<World> {
    world_lock().ok_or_else(|| {
        crate::status::Error::new(
            Status::BadState,
            "MPI is not initialised: call dist_worker_mpi_init first",
        )
    })
}

/// MPI_Finalize, once no link thread runs.
pub(crate) fn finalize() -> Result<()> {
    let mut world = world_lock();
    if LINKS.load(Ordering::SeqCst) > 0 || DRIVERS.load(Ordering::SeqCst) > 0 {
        return fail(
            Status::BadState,
            "a DistWorker driving MPI ranks (or a serving loop) still runs: shut it down first",
        );
    }
    if mpi::state() != (true, false) {
        return fail(
            Status::BadState,
            "MPI is not initialised, or finalized already",
        );
    }
    *world = None;
    mpi::finalize()
}

/// One outstanding exchange's outcome: the remote error code and message,
/// or why it could not complete.
pub(crate) type Outcome = Result<(i32, Option<String>)>;

/// Where a thread waits for the link thread to finish a job.
pub(crate) struct Completion {
    ready: AtomicBool,
    slot: Mutex<(bool, Option<Outcome>)>,
    waiter: Thread,
}

impl Completion {
    /// A completion the calling thread will wait on.
    pub(crate) fn new() -> Arc<Completion> {
        Arc::new(Completion {
            ready: AtomicBool::new(false),
            slot: Mutex::new((false, None)),
            waiter: std::thread::current(),
        })
    }

    /// Finishes it (the first outcome wins) and wakes the waiter.
    pub(crate) fn finish(&self, outcome: Outcome) {
        {
            let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.0 {
                return;
            }
            *s = (true, Some(outcome));
        }
        self.ready.store(true, Ordering::Release);
        self.waiter.unpark();
    }

    /// Whether it finished.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The outcome, once (after `is_ready`).
    pub(crate) fn take(&self) -> Option<Outcome> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).1.take()
    }
}
