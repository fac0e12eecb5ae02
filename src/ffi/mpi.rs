//! Levels on other hosts, over MPI (a library built with the `mpi` feature;
//! the header declares these functions when `DIST_WORKER_MPI` is defined,
//! which the CMake package does for a library built with them).

use super::handle::DistWorker;
use super::level::{CLevel, DistLevelSetupFn, DistOrchFn};
use super::{lookup, null, put};
use crate::abi::{DistStatus, DistWorkerOptions};
use crate::status::{Error, Status};
use std::os::raw::{c_char, c_int, c_void};

/// Initialises MPI for the library: MPI_Init_thread asking for
/// MPI_THREAD_MULTIPLE (MPI_THREAD_SERIALIZED at least is required: the
/// library makes its MPI calls from one thread of its own), errors returned
/// rather than fatal, and a duplicate of MPI_COMM_WORLD for the library's
/// messages, so the program's own never meet them. Unless the environment
/// sets it, OMPI_MCA_async_mpi_finalize is set to 1 first: MPI_Finalize
/// then waits for no other rank (with a rank killed, OpenMPI 4.1 could
/// otherwise wait for it in MPI_Finalize for ever). A program that called
/// MPI_Init_thread itself (with MPI_THREAD_SERIALIZED or more) may call this
/// too: it then only sets the library up. Collective: every rank calls it,
/// once, before any other function below. `*out_rank` and `*out_size` (each
/// may be NULL) get this process's rank and the number of ranks.
///
/// Launched with `mpirun -np N program`, rank 0 drives (it creates a
/// DistWorker and calls dist_worker_add_mpi_levels) and every other rank
/// serves a level (dist_worker_mpi_serve). MPI creates threads of its own
/// in here; forking after it (dist_worker_spawn and friends, in either
/// role) is fine with OpenMPI's shared-memory and TCP transports, as long
/// as the children never call MPI.
///
/// Threads: the process's main thread, before any other thread calls MPI
/// (or reads the environment).
///
/// # Safety
/// `argc`/`argv` NULL or `main`'s own; `out_rank`, `out_size` NULL or writable.
#[cfg(feature = "mpi")]
#[no_mangle]
pub unsafe extern "C" fn dist_worker_mpi_init(
    argc: *mut c_int,
    argv: *mut *mut *mut c_char,
    out_rank: *mut i32,
    out_size: *mut i32,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: per this function's contract.
        let (rank, size) = unsafe { crate::remote::init(argc, argv) }?;
        // SAFETY: NULL (skipped) or writable, per this function's contract.
        unsafe {
            put(out_rank, rank);
            put(out_size, size);
        }
        Ok(())
    })
}

/// Rank 0: registers every other rank r (1..N-1) as a NEXT_LEVEL worker of
/// `outer`, worker index r - 1 (so `dist_worker_dispatch_on` places a task
/// on rank r with index r - 1), in THREAD mode: a pool thread of `outer`
/// runs each task sent to it as an exchange with that rank. Placement,
/// groups, deadlines, failures and figures apply as to any worker.
/// `dist_worker_start` of `outer` then tells every rank to begin and waits
/// up to `start_timeout_ms` for each to be ready: a rank whose setup
/// function failed fails it with DIST_ERR_CHILD_DIED (naming the rank, the
/// code and its message), one not ready in time with DIST_ERR_TIMEOUT.
/// `*out_count` (may be NULL) gets the number of ranks registered (0 when
/// launched alone).
///
/// What travels with a task: its callable, config and scalars, its tensor
/// descriptors, and the bytes of its tensors: INPUT and INOUT (and NO_DEP)
/// bytes go out before it runs, OUTPUT, OUTPUT_EXISTING and INOUT (and
/// NO_DEP) bytes come back after it succeeded, into the caller's memory at
/// the caller's addresses. The rank's orchestration function sees the same
/// descriptors with addresses in its own level's heap. Failures travel up
/// with their path (`L4 task 0x... -> L3 worker 1 (rank 2): task 0x...:
/// SUB worker 0 ... returned error 5 ...`).
///
/// Liveness: the ranks and rank 0 exchange a heartbeat every 100 ms; a rank
/// silent for 500 ms (killed, its host gone) leaves the pool, and its task
/// ends with DIST_ERR_CHILD_DIED. A task given up by `outer` (a task
/// deadline, a shutdown past its deadline) takes its rank out of the pool
/// too, and that rank is told to stop. Shutting `outer` down tells every
/// rank to stop (dist_worker_mpi_serve returns DIST_OK there).
///
/// Once per process; registration rules as for the other add functions
/// (before `outer` starts). Before dist_worker_mpi_init, or on a rank other
/// than 0: DIST_ERR_BAD_STATE.
///
/// Threads: any host thread, before `outer` starts. From `outer`'s start
/// to its shutdown the library's link thread makes MPI calls: the program
/// may make its own only if MPI provides MPI_THREAD_MULTIPLE.
///
/// # Safety
/// `outer` from `dist_worker_create`; `out_count` NULL or writable.
#[cfg(feature = "mpi")]
#[no_mangle]
pub unsafe extern "C" fn dist_worker_add_mpi_levels(
    outer: *mut DistWorker,
    out_count: *mut u32,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `outer` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(outer) }?;
        w.registration_open()?;
        let n = crate::remote::add_mpi_levels(&w)?;
        // SAFETY: NULL (skipped) or writable, per this function's contract.
        unsafe { put(out_count, n) };
        Ok(())
    })
}

/// Ranks 1..N-1: hosts a level and serves rank 0's tasks on it, as
/// dist_worker_spawn_level does in a child: a new DistWorker is created
/// with `options` (NULL = defaults: level 3, a 64 MiB heap, which must hold
/// the tensors of one task), `setup(user, inner)` registers its workers (it
/// may fork: no thread of the new level exists yet), the level starts, and
/// each of rank 0's tasks runs `orch(user, inner, callable, args, config)`
/// on it, after which `inner` is drained. The tensors `orch` sees live in
/// `inner`'s heap (shared with its children): their bytes were received
/// straight into it, and those that go back are sent straight from it.
///
/// Returns DIST_OK when rank 0 shut down, DIST_ERR_SHUT_DOWN when rank 0
/// went silent for 500 ms (it died, or never started its DistWorker within
/// `start_timeout_ms` of `options`), DIST_ERR_TASK_FAILED when `setup`
/// returned non-zero (rank 0's start then fails naming this rank and the
/// code). `inner` and every process under it are shut down before it
/// returns. If rank 0 dies while a task runs here, the task gets 250 ms to
/// end; otherwise the process ends itself (exit code 70), as a spawned
/// level dies with its host.
///
/// Threads: one thread of the process, which `orch` runs on; not on rank 0
/// (DIST_ERR_BAD_STATE), not before dist_worker_mpi_init.
///
/// # Safety
/// `options` NULL or initialised; `setup` and `orch` callable with `user`.
#[cfg(feature = "mpi")]
#[no_mangle]
pub unsafe extern "C" fn dist_worker_mpi_serve(
    options: *const DistWorkerOptions,
    setup: DistLevelSetupFn,
    orch: DistOrchFn,
    user: *mut c_void,
) -> DistStatus {
    boundary!(|| {
        let setup = setup.ok_or_else(|| null("setup"))?;
        let orch = orch.ok_or_else(|| null("orch"))?;
        crate::remote::serving_rank()?;
        // SAFETY: `options` is NULL or points to an initialised DistWorkerOptions.
        let opts = match unsafe { options.as_ref() } {
            Some(o) => crate::runtime::Options::from(o),
            None => crate::runtime::Options::default(),
        };
        // Connected first: rank 0 hears this rank while its setup runs.
        let connection = crate::remote::connect(opts.start_timeout)?;
        let core = match crate::runtime::Runtime::new(opts) {
            Ok(core) => core,
            Err(e) => {
                let told = format!("its level could not be created: {}", e.message);
                connection.setup_failed(-(e.status as i32), &told);
                return Err(e);
            }
        };
        let inner = DistWorker::boxed(core);
        crate::child::clear_message();
        // SAFETY: the caller's setup function, with the new inner worker.
        let code = unsafe { setup(user, inner) };
        // What rank 0 hears: the setup's code and its own words, or why the
        // level could not start.
        let started = if code == 0 {
            // SAFETY: created above, owned here until handed to the level.
            unsafe { &(*inner).core }.start().map_err(|e| {
                let told = format!("its level could not start: {}", e.message);
                (e, -(Status::ChildDied as i32), told)
            })
        } else {
            let said = crate::child::current_message().unwrap_or_default();
            let e = Error::new(
                Status::TaskFailed,
                format!(
                    "the level setup function returned error {code}{}",
                    colon(&said)
                ),
            );
            Err((e, code, said))
        };
        if let Err((e, code, told)) = started {
            connection.setup_failed(code, &told);
            // SAFETY: created above, not shared: shut down once.
            unsafe { super::dist_worker_shutdown(inner) };
            return Err(e);
        }
        let level = CLevel {
            inner,
            orch,
            user,
            number: opts.level,
        };
        connection.serve(Box::new(level))
    })
}

fn colon(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// MPI_Finalize, once every DistWorker driving ranks was shut down (and no
/// dist_worker_mpi_serve runs): DIST_ERR_BAD_STATE before that, or when MPI
/// is not initialised. Collective, like MPI_Finalize: every live rank calls
/// it (a rank that was killed is left out by OpenMPI run with
/// `--enable-recovery`).
///
/// Threads: the thread that called dist_worker_mpi_init.
#[cfg(feature = "mpi")]
#[no_mangle]
pub extern "C" fn dist_worker_mpi_finalize() -> DistStatus {
    boundary!(crate::remote::finalize)
}
