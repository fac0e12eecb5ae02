//! Observing a runtime: its figures (`stats`, `worker_stats`: one short
//! engine lock, no allocation) and its timeline trace (started here or by
//! `DIST_WORKER_TRACE` at create; written on flush, stop and shutdown).
//!
//! A trace's events are taken out of the engine in one swap under its lock
//! and kept here, so every write is a whole, valid file of all the events
//! since the trace started, formatted off the engine lock.

use super::{lock, Runtime};
use crate::engine::{Stats, WorkerStats};
use crate::log::{self, Level as LogLevel};
use crate::status::{fail, Result, Status};
use crate::trace::{self, Event, Recorded};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that starts a trace at create: the file's path.
pub const TRACE_ENV: &str = "DIST_WORKER_TRACE";

/// DistWorkers of this process created with `DIST_WORKER_TRACE` set (a
/// forked level process inherits the count, so its own level writes
/// beside the host's file, not over it).
static TRACED: AtomicU64 = AtomicU64::new(0);

/// The trace being recorded: where it goes, and what was taken out of the
/// engine so far.
#[derive(Default)]
pub(super) struct Tracing {
    path: Option<PathBuf>,
    recorded: Recorded,
}

impl Tracing {
    /// Adds events taken from the engine (their reason indices shifted).
    fn absorb(&mut self, mut more: Recorded) {
        let base = self.recorded.reasons.len() as u32;
        for e in &mut more.events {
            if let Event::Retired { reason, .. } = e {
                *reason += base;
            }
        }
        if self.recorded.events.is_empty() {
            self.recorded.events = more.events; // the first take: no copy
        } else {
            self.recorded.events.append(&mut more.events);
        }
        self.recorded.reasons.append(&mut more.reasons);
        self.recorded.dropped += more.dropped;
    }
}

/// What a write put in a trace file.
struct Written {
    path: PathBuf,
    events: usize,
    dropped: u64,
}

/// The file a DistWorker created with `DIST_WORKER_TRACE` writes: the path
/// itself for the first one in the process, else the path with
/// `.<pid>-<n>` before its extension.
fn env_trace_path(pid: i32) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(TRACE_ENV).filter(|p| !p.is_empty())?);
    let n = TRACED.fetch_add(1, Ordering::Relaxed);
    if n == 0 {
        return Some(path);
    }
    Some(beside(&path, pid, n))
}

/// `dir/name.<pid>-<n>.ext` for `dir/name.ext`.
fn beside(path: &Path, pid: i32, n: u64) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{pid}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{pid}-{n}"),
    };
    path.with_file_name(name)
}

impl Runtime {
    /// Every figure of the runtime: per-type task counts, latency
    /// percentiles, what the engine holds. One short engine lock and no
    /// allocation: cheap enough to call every millisecond. Any thread,
    /// from a callable too; not in a copy of the process made by fork().
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// Worker `index`'s figures (indices from 0 to `stats().workers`, in
    /// registration order); None past the last one, and before start.
    pub fn worker_stats(&self, index: usize) -> Option<WorkerStats> {
        let engine = self.shared.lock();
        engine.worker_stats(index, crate::clock::ticks())
    }

    /// Whether the pool has started (no child is forked any more).
    fn started(&self) -> bool {
        !self.shared.workers().is_empty()
    }

    /// Ok unless the runtime is used in a forked copy of its process (what
    /// the C API checks before it locks anything).
    pub fn check_process(&self) -> Result<()> {
        self.phase().map(drop)
    }

    /// Starts the env-var trace at create, if `DIST_WORKER_TRACE` is set.
    pub(super) fn trace_from_env(&self) {
        if let Some(path) = env_trace_path(self.creator) {
            if let Err(e) = self.trace_start(&path) {
                log::emit(
                    LogLevel::Warn,
                    Some(self.options.level),
                    &format!("{TRACE_ENV}: {}", e.message),
                );
            }
        }
    }

    /// Starts recording a timeline trace to be written to `path` (on
    /// `trace_flush`, `trace_stop` and at shutdown), keeping at most
    /// `trace::DEFAULT_MAX_EVENTS` events. A trace already being recorded
    /// is written to its own file first.
    pub fn trace_start(&self, path: impl AsRef<Path>) -> Result<()> {
        self.trace_start_with(path, trace::DEFAULT_MAX_EVENTS)
    }

    /// As `trace_start`, keeping at most `max_events` events (further ones
    /// are counted as dropped).
    pub fn trace_start_with(&self, path: impl AsRef<Path>, max_events: usize) -> Result<()> {
        self.accepting()?;
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            return fail(Status::InvalidArgument, "the trace path is empty");
        }
        let earlier = {
            let mut t = lock(&self.tracing);
            let earlier = t.path.is_some().then(|| self.write_trace(&mut t, true));
            t.path = Some(path.to_path_buf());
            let events = trace::buffer(max_events, self.started());
            self.shared
                .lock()
                .trace_start(events, max_events, crate::clock::ticks());
            earlier
        };
        // Logged with the trace lock released: a log callback may call in.
        let earlier = earlier.map_or(Ok(()), |w| self.report(w));
        log::log_line!(
            LogLevel::Info,
            Some(self.options.level),
            "recording a trace of at most {max_events} events for {}",
            path.display()
        );
        earlier
    }

    /// Writes the trace recorded so far to its file (all of it, as a
    /// complete JSON file); recording goes on. BAD_STATE without a trace.
    pub fn trace_flush(&self) -> Result<()> {
        self.accepting()?;
        let written = self.write_trace(&mut lock(&self.tracing), false);
        self.report(written)
    }

    /// Writes the trace to its file and stops recording. BAD_STATE without
    /// a trace.
    pub fn trace_stop(&self) -> Result<()> {
        self.accepting()?;
        let written = self.write_trace(&mut lock(&self.tracing), true);
        self.report(written)
    }

    /// At shutdown: writes the trace being recorded, if any (a failure is
    /// logged; the shutdown's outcome is about the work).
    pub(super) fn trace_finish(&self) {
        let written = {
            let mut t = lock(&self.tracing);
            if t.path.is_none() {
                return;
            }
            self.write_trace(&mut t, true)
        };
        if let Err(e) = self.report(written) {
            log::emit(LogLevel::Warn, Some(self.options.level), &e.message);
        }
    }

    /// Logs what a write put in its file (call it with the trace lock
    /// released); passes a failure on.
    fn report(&self, written: Result<Written>) -> Result<()> {
        let w = written?;
        let level = if w.dropped > 0 {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        log::log_line!(
            level,
            Some(self.options.level),
            "trace of {} events written to {}{}",
            w.events,
            w.path.display(),
            if w.dropped > 0 {
                format!("; {} more were dropped (the trace was full)", w.dropped)
            } else {
                String::new()
            }
        );
        Ok(())
    }

    /// Takes the events out of the engine and writes every event since the
    /// trace started to its file; with `stop`, recording ends.
    fn write_trace(&self, t: &mut Tracing, stop: bool) -> Result<Written> {
        let Some(path) = t.path.clone() else {
            return fail(
                Status::BadState,
                format!(
                    "no trace is being recorded (start one with dist_worker_trace_start or \
                     {TRACE_ENV})"
                ),
            );
        };
        // The buffer recording goes on into, made off the engine lock (at
        // most the cap's room; what was recorded meanwhile is dropped past it).
        let fresh = (!stop).then(|| {
            let left = self.shared.lock().trace_left();
            trace::buffer(left, self.started())
        });
        let (more, labels) = {
            let mut engine = self.shared.lock();
            let more = match fresh {
                Some(fresh) => engine.trace_take(fresh),
                None => engine.trace_stop(),
            };
            (more, engine.worker_labels())
        };
        t.absorb(more);
        let meta = trace::json::Meta {
            scale: crate::clock::Scale::now(),
            pid: self.creator,
            level: self.options.level,
            workers: &labels,
            dropped: t.recorded.dropped,
        };
        let written = std::fs::File::create(&path).and_then(|f| {
            let mut out = std::io::BufWriter::new(f);
            trace::json::write(&mut out, &meta, &t.recorded.events, &t.recorded.reasons)
        });
        let (events, dropped) = (t.recorded.events.len(), t.recorded.dropped);
        if stop {
            *t = Tracing::default();
        }
        if let Err(e) = written {
            return fail(
                Status::Os,
                format!("writing the trace to {}: {e}", path.display()),
            );
        }
        Ok(Written {
            path,
            events,
            dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_traces_go_beside_the_first() {
        assert_eq!(
            beside(Path::new("/tmp/run.json"), 812, 2),
            PathBuf::from("/tmp/run.812-2.json")
        );
        assert_eq!(beside(Path::new("trace"), 7, 1), PathBuf::from("trace.7-1"));
    }
}
