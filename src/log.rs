//! Logging: the runtime's rare events (children spawned and dead, workers
//! retired, deadlines, protocol violations, start and shutdown) as lines
//! on stderr, or through a process-wide callback.
//!
//! `DIST_WORKER_LOG=error|warn|info|debug|off` sets the level (default
//! warn), read once, at the first line or level check; `set_level`
//! overrides it. A line reads
//! `dist-worker[812] L3 warn: SUB worker 1 (child pid 813) killed by signal 9; it leaves the pool`.
//!
//! Whether a level is on is one relaxed atomic load, so per-task lines at
//! debug level cost nothing below it. Lines are never emitted under the
//! engine lock (the engine keeps them as notes until it is released), so a
//! callback may call back into the runtime.

use crate::status::{fail, Result, Status};
use std::cell::Cell;
use std::ffi::CString;
use std::io::Write;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::RwLock;

/// How much a line matters; the C values of `DIST_LOG_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed that the runtime cannot work around.
    Error = 1,
    /// A worker was lost, a deadline passed, a peer broke the protocol.
    Warn = 2,
    /// The life cycle: children spawned, start, shutdown, traces written.
    Info = 3,
    /// Per task: launches and completions.
    Debug = 4,
}

impl Level {
    /// Its name in lines and in `DIST_WORKER_LOG`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Nothing is logged at this level.
pub const OFF: u8 = 0;
/// The level when `DIST_WORKER_LOG` is unset.
pub const DEFAULT: Level = Level::Warn;
/// The environment variable that sets the level.
pub const ENV: &str = "DIST_WORKER_LOG";

/// The most verbose level on (0: none); `UNSET` until first read.
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = u8::MAX;

/// A callback's signature: `(user, level, line)`, the line NUL-terminated
/// and valid for the call.
pub type LogFn = unsafe extern "C" fn(user: *mut c_void, level: i32, message: *const c_char);

/// The callback lines go to instead of stderr.
struct Sink {
    f: LogFn,
    user: *mut c_void,
}

// SAFETY: the C API documents that the callback and its user pointer are
// called from any thread of the process.
unsafe impl Send for Sink {}
// SAFETY: as above; the sink is only read to call it.
unsafe impl Sync for Sink {}

/// Held for reading while a line goes to the callback, so replacing the
/// callback waits for calls in progress.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

thread_local! {
    /// Set while this thread runs the callback: lines it logs meanwhile go
    /// to stderr, and it may not replace the callback (that would wait for
    /// itself).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Parses a level name as `DIST_WORKER_LOG` takes it (case-insensitive:
/// error, warn or warning, info, debug, off or none, or 0 to 4).
pub fn parse(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    Some(match s.as_str() {
        "off" | "none" | "0" => OFF,
        "error" | "1" => Level::Error as u8,
        "warn" | "warning" | "2" => Level::Warn as u8,
        "info" | "3" => Level::Info as u8,
        "debug" | "4" => Level::Debug as u8,
        _ => return None,
    })
}

/// Whether lines of `level` are logged: one relaxed load.
#[inline]
pub fn enabled(level: Level) -> bool {
    let on = LEVEL.load(Ordering::Relaxed);
    if on == UNSET {
        return from_env() >= level as u8;
    }
    level as u8 <= on
}

/// Reads `DIST_WORKER_LOG` once; an unknown value keeps the default, and
/// says so.
#[cold]
fn from_env() -> u8 {
    let value = std::env::var(ENV).ok();
    let parsed = value.as_deref().map(parse);
    let level = match parsed {
        Some(Some(l)) => l,
        _ => DEFAULT as u8,
    };
    match LEVEL.compare_exchange(UNSET, level, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {
            if let (Some(v), Some(None)) = (&value, parsed) {
                emit(
                    Level::Warn,
                    None,
                    &format!(
                        "{ENV}={v:?} is not a level (error, warn, info, debug or off); \
                         logging at {}",
                        DEFAULT.name()
                    ),
                );
            }
            level
        }
        Err(set) => set, // another thread, or set_level, came first
    }
}

/// Sets the level (0 = off .. 4 = debug), overriding `DIST_WORKER_LOG`.
pub fn set_level(level: i32) -> Result<()> {
    if !(OFF as i32..=Level::Debug as i32).contains(&level) {
        return fail(
            Status::InvalidArgument,
            format!("log level {level} is out of range 0..4 (0 = off, 1 = error .. 4 = debug)"),
        );
    }
    LEVEL.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// Sends lines to `f(user, level, line)` from now on; None: back to stderr.
/// Returns once no thread is inside the callback it replaces. Refused
/// (BAD_STATE) from inside the callback.
pub fn set_callback(f: Option<LogFn>, user: *mut c_void) -> Result<()> {
    if IN_CALLBACK.with(Cell::get) {
        return fail(
            Status::BadState,
            "called from inside the log callback: replacing it there would wait for itself",
        );
    }
    let mut sink = SINK.write().unwrap_or_else(|p| p.into_inner());
    *sink = f.map(|f| Sink { f, user });
    Ok(())
}

/// Logs `text` at `level`, naming the runtime's level when given. Call it
/// only where `enabled(level)` holds or the cost does not matter (the
/// `log_line!` macro checks first); never under the engine lock.
pub fn emit(level: Level, runtime_level: Option<u32>, text: &str) {
    if !enabled(level) {
        return;
    }
    let pid = crate::sys::getpid();
    let line = match runtime_level {
        Some(l) => format!("dist-worker[{pid}] L{l} {}: {text}", level.name()),
        None => format!("dist-worker[{pid}] {}: {text}", level.name()),
    };
    if !IN_CALLBACK.with(Cell::get) {
        // Not blocking: a writer holding it (or one copied mid-call into a
        // forked process) sends this line to stderr instead.
        if let Ok(sink) = SINK.try_read() {
            if let Some(s) = sink.as_ref() {
                let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
                IN_CALLBACK.with(|f| f.set(true));
                // SAFETY: the caller's callback, with its user pointer and
                // a NUL-terminated line valid for the call.
                unsafe { (s.f)(s.user, level as i32, c.as_ptr()) };
                IN_CALLBACK.with(|f| f.set(false));
                return;
            }
        }
    }
    // One write, so lines of several threads do not interleave.
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// Logs a formatted line at a level, formatting it only when that level is
/// on: `log_line!(Level::Info, Some(3), "spawned {}", who)`.
macro_rules! log_line {
    ($level:expr, $runtime_level:expr, $($fmt:tt)+) => {
        if $crate::log::enabled($level) {
            $crate::log::emit($level, $runtime_level, &format!($($fmt)+));
        }
    };
}
pub(crate) use log_line;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_parse() {
        assert_eq!(parse("error"), Some(1));
        assert_eq!(parse("WARN"), Some(2));
        assert_eq!(parse(" warning "), Some(2));
        assert_eq!(parse("info"), Some(3));
        assert_eq!(parse("Debug"), Some(4));
        assert_eq!(parse("off"), Some(0));
        assert_eq!(parse("none"), Some(0));
        assert_eq!(parse("3"), Some(3));
        assert_eq!(parse("5"), None);
        assert_eq!(parse("verbose"), None);
        assert_eq!(parse(""), None);
        for l in [Level::Error, Level::Warn, Level::Info, Level::Debug] {
            assert_eq!(parse(l.name()), Some(l as u8));
        }
    }

    #[test]
    fn levels_out_of_range_are_refused() {
        assert_eq!(set_level(5).unwrap_err().status, Status::InvalidArgument);
        assert_eq!(set_level(-1).unwrap_err().status, Status::InvalidArgument);
    }
}
