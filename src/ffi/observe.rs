//! Observing a DistWorker: its figures and its timeline trace.

use super::handle::DistWorker;
use super::{arg, lookup, null};
use crate::abi::{
    DistStatus, DistTypeStats, DistWorkerInfo, DistWorkerStats, DIST_WORKER_INFO_V1_SIZE,
    DIST_WORKER_MODE_LEVEL, DIST_WORKER_MODE_PROCESS, DIST_WORKER_MODE_SPAWNED,
    DIST_WORKER_MODE_THREAD, DIST_WORKER_STATE_BUSY, DIST_WORKER_STATE_IDLE,
    DIST_WORKER_STATE_RETIRED, DIST_WORKER_STATS_V1_SIZE,
};
use crate::engine::{Stats, TypeStats, WorkerMode, WorkerState, WorkerStats};
use crate::status::{fail, Result, Status};
use std::os::raw::c_char;

/// Fills `*out` with the worker's figures: per worker type (indexed by
/// DistWorkerType) the tasks submitted, pending, ready, running, completed
/// and failed and the live and busy workers; the dispatch-to-completion
/// latency (p50, p99, p99.9, max in ns, from a fixed-bucket histogram since
/// create); the engine's slots, map entries and heap bytes (live, peak,
/// capacity); `worker_count` for `dist_worker_worker_info`. Set
/// `out->size = sizeof(DistWorkerStats)` first: only the fields that fit in
/// `size` are written, and `size` becomes the bytes written; a size below
/// DIST_WORKER_STATS_V1_SIZE is DIST_ERR_INVALID_ARGUMENT (nothing is
/// written). Takes the engine lock once, briefly, and allocates nothing:
/// cheap enough to call every millisecond.
///
/// Threads: any, concurrently with any call; from a callable too.
/// Concurrently with shutdown: the figures as they stand (shutdown frees the
/// worker only after this returns); after a failed start, the figures too.
/// In a forked copy: DIST_ERR_BAD_STATE.
///
/// # Safety
/// `worker` from `dist_worker_create`; `out` writable for `out->size` bytes
/// (its `size` field readable).
#[no_mangle]
pub unsafe extern "C" fn dist_worker_stats(
    worker: *mut DistWorker,
    out: *mut DistWorkerStats,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        // SAFETY: `out` is NULL (refused) or has a readable `size` field.
        let size = unsafe { versioned_size(out, DIST_WORKER_STATS_V1_SIZE, "DistWorkerStats") }?;
        w.check_process()?;
        let mut c = to_c_stats(&w.stats());
        // SAFETY: `out` is writable for `size` bytes (the caller's contract).
        unsafe { write_prefix(out, &mut c, size) };
        Ok(())
    })
}

/// Fills `*out` with worker `index`'s figures (0 <= index <
/// DistWorkerStats.worker_count, in registration order): its type and rank
/// within the type, its mode, its pid (0 for a pool thread), its state
/// (idle, busy, retired), the task members it ran and failed, and the time
/// it spent busy in ns. Versioned like `dist_worker_stats`: set `out->size
/// = sizeof(DistWorkerInfo)` first (at least DIST_WORKER_INFO_V1_SIZE). An
/// index out of range (every index before start) is
/// DIST_ERR_INVALID_ARGUMENT. One short engine lock, no allocation.
///
/// Threads: as `dist_worker_stats`.
///
/// # Safety
/// `worker` from `dist_worker_create`; `out` writable for `out->size` bytes
/// (its `size` field readable).
#[no_mangle]
pub unsafe extern "C" fn dist_worker_worker_info(
    worker: *mut DistWorker,
    index: u32,
    out: *mut DistWorkerInfo,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        // SAFETY: `out` is NULL (refused) or has a readable `size` field.
        let size = unsafe { versioned_size(out, DIST_WORKER_INFO_V1_SIZE, "DistWorkerInfo") }?;
        w.check_process()?;
        let Some(info) = w.worker_stats(index as usize) else {
            let n = w.stats().workers;
            return fail(
                Status::InvalidArgument,
                format!(
                    "worker index {index} is out of range: the pool has {n} worker(s) \
                     (none before start)"
                ),
            );
        };
        let mut c = to_c_info(&info);
        // SAFETY: `out` is writable for `size` bytes (the caller's contract).
        unsafe { write_prefix(out, &mut c, size) };
        Ok(())
    })
}

/// Starts recording a timeline trace of this worker, written to `path` as a
/// Chrome / Perfetto JSON trace (open it in ui.perfetto.dev) by
/// `dist_worker_trace_flush`, `dist_worker_trace_stop` and shutdown: one
/// track per worker, one slice per task run (callable, task id, status),
/// arrows from each task to the tasks that depend on it, a counter of each
/// ready queue. `DIST_WORKER_TRACE=<path>` in the environment does the
/// same at create. A trace already being recorded is written to its own
/// file first. Recording keeps at most 1,048,576 events (about three per
/// task) in memory allocated here; later ones are counted as dropped
/// (DistWorkerStats.trace_dropped). An empty `path` is
/// DIST_ERR_INVALID_ARGUMENT; the file is first opened when written.
///
/// Threads: any, concurrently with any call; from a callable too.
/// Concurrently with shutdown: DIST_ERR_SHUT_DOWN (the shutdown writes the
/// trace being recorded). In a forked copy: DIST_ERR_BAD_STATE.
///
/// # Safety
/// `worker` from `dist_worker_create`; `path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_trace_start(
    worker: *mut DistWorker,
    path: *const c_char,
) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        let w = unsafe { lookup(worker) }?;
        if path.is_null() {
            return Err(null("path"));
        }
        // SAFETY: non-NULL and NUL-terminated (the caller's contract).
        let bytes = unsafe { std::ffi::CStr::from_ptr(path) }.to_bytes();
        let path = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(bytes);
        w.trace_start(path)
    })
}

/// Writes the trace recorded so far to its file, as a complete JSON file
/// (rewritten with every event since the trace started); recording goes
/// on. DIST_ERR_BAD_STATE when no trace is being recorded; DIST_ERR_OS when
/// the file cannot be written (the message names it).
///
/// Threads: as `dist_worker_trace_start`.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_trace_flush(worker: *mut DistWorker) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?.trace_flush()
    })
}

/// Writes the trace to its file, as `dist_worker_trace_flush` does, and
/// stops recording (its memory is freed). DIST_ERR_BAD_STATE when no trace
/// is being recorded.
///
/// Threads: as `dist_worker_trace_start`.
///
/// # Safety
/// `worker` from `dist_worker_create`.
#[no_mangle]
pub unsafe extern "C" fn dist_worker_trace_stop(worker: *mut DistWorker) -> DistStatus {
    boundary!(|| {
        // SAFETY: `worker` is NULL (refused inside) or a live DistWorker from
        // dist_worker_create: the `# Safety` contract of this function.
        unsafe { lookup(worker) }?.trace_stop()
    })
}

/// Reads the `size` a caller set in a versioned struct (its first field)
/// and checks it against the first version's size.
///
/// # Safety
/// A non-NULL `out` must have a readable u32 at its start.
unsafe fn versioned_size<T>(out: *mut T, v1: u32, name: &str) -> Result<u32> {
    // SAFETY: `out` is NULL (refused) or readable for its `size` field.
    let size = *unsafe { arg(out as *const u32, "out") }?;
    if size < v1 {
        return fail(
            Status::InvalidArgument,
            format!(
                "out->size is {size}: set it to sizeof({name}) (the first version has {v1} \
                 bytes)"
            ),
        );
    }
    Ok(size)
}

/// Writes the first `size` bytes of `value` (all of it, at most) to `out`,
/// after setting its `size` field (its first u32) to the bytes written. A
/// struct grows only by fields appended at its end, so an older caller's
/// smaller struct gets the fields it knows.
///
/// # Safety
/// `out` writable for `size` bytes; `T` a `repr(C)` struct of integers
/// whose first field is a u32 (built from zeroed memory, so no byte of it is
/// uninitialised).
unsafe fn write_prefix<T>(out: *mut T, value: &mut T, size: u32) {
    let n = (size as usize).min(std::mem::size_of::<T>());
    let bytes = value as *mut T as *mut u8;
    // SAFETY: `value` starts with a u32 `size` field.
    unsafe { (bytes as *mut u32).write(n as u32) };
    // SAFETY: `value` holds size_of::<T>() initialised bytes, `out` is
    // writable for at least `n` of them, and they do not overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes, out as *mut u8, n) };
}

fn to_c_type(t: &TypeStats) -> DistTypeStats {
    DistTypeStats {
        submitted: t.submitted,
        pending: t.pending,
        ready: t.ready,
        running: t.running,
        completed: t.completed,
        failed: t.failed,
        live_workers: t.live_workers,
        busy_workers: t.busy_workers,
    }
}

/// The C view of the figures, built on zeroed memory.
fn to_c_stats(s: &Stats) -> DistWorkerStats {
    // SAFETY: DistWorkerStats holds only integers: all-zero bytes are a
    // value, and its padding (if any) stays zero through the field writes.
    let mut c: DistWorkerStats = unsafe { std::mem::zeroed() };
    c.worker_count = s.workers as u32;
    c.types = s.types.map(|t| to_c_type(&t));
    c.latency_count = s.latency.count;
    c.latency_p50_ns = s.latency.p50_ns;
    c.latency_p99_ns = s.latency.p99_ns;
    c.latency_p999_ns = s.latency.p999_ns;
    c.latency_max_ns = s.latency.max_ns;
    c.slots = s.engine.slots as u64;
    c.map_entries = s.engine.map_entries as u64;
    c.heap_live_bytes = s.engine.heap_live_bytes;
    c.heap_peak_bytes = s.heap_peak_bytes;
    c.heap_capacity_bytes = s.heap_capacity_bytes;
    c.scope_depth = s.engine.scope_depth as u32;
    c.level = s.level;
    c.trace_events = s.trace_events;
    c.trace_dropped = s.trace_dropped;
    c
}

/// The C view of one worker's figures, built on zeroed memory.
fn to_c_info(w: &WorkerStats) -> DistWorkerInfo {
    // SAFETY: DistWorkerInfo holds only integers (see `to_c_stats`).
    let mut c: DistWorkerInfo = unsafe { std::mem::zeroed() };
    c.index = w.index as u32;
    c.worker_type = w.ty as i32;
    c.rank = w.rank as u32;
    c.mode = match w.mode {
        WorkerMode::Thread => DIST_WORKER_MODE_THREAD,
        WorkerMode::Spawned => DIST_WORKER_MODE_SPAWNED,
        WorkerMode::Process => DIST_WORKER_MODE_PROCESS,
        WorkerMode::Level => DIST_WORKER_MODE_LEVEL,
    };
    c.state = match w.state {
        WorkerState::Idle => DIST_WORKER_STATE_IDLE,
        WorkerState::Busy => DIST_WORKER_STATE_BUSY,
        WorkerState::Retired => DIST_WORKER_STATE_RETIRED,
    };
    c.pid = w.pid.unwrap_or(0);
    c.level = w.level.unwrap_or(0);
    c.tasks_run = w.tasks_run;
    c.tasks_failed = w.tasks_failed;
    c.busy_ns = w.busy_ns;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_versions_are_the_sizes_of_the_structs() {
        assert_eq!(
            std::mem::size_of::<DistWorkerStats>(),
            DIST_WORKER_STATS_V1_SIZE as usize
        );
        assert_eq!(
            std::mem::size_of::<DistWorkerInfo>(),
            DIST_WORKER_INFO_V1_SIZE as usize
        );
    }

    #[test]
    fn a_smaller_size_gets_only_the_prefix() {
        let mut value = DistWorkerInfo {
            tasks_run: 7,
            busy_ns: 9,
            ..DistWorkerInfo::default()
        };
        let mut out = DistWorkerInfo {
            busy_ns: 1234,
            ..DistWorkerInfo::default()
        };
        // An older caller whose struct ended before busy_ns.
        let older = std::mem::offset_of!(DistWorkerInfo, busy_ns) as u32;
        // SAFETY: `out` is writable for all its bytes.
        unsafe { write_prefix(&mut out, &mut value, older) };
        assert_eq!((out.size, out.tasks_run, out.busy_ns), (older, 7, 1234));
        // A newer caller's larger struct gets all of this version's fields.
        // SAFETY: as above; only size_of bytes are written.
        unsafe { write_prefix(&mut out, &mut value, 4096) };
        assert_eq!(
            (out.size as usize, out.busy_ns),
            (std::mem::size_of::<DistWorkerInfo>(), 9)
        );
    }
}
