//! Shutdown: one deadline for everything.
//!
//! With `shutdown_timeout` T, shutdown returns within T plus
//! `SHUTDOWN_GRACE`, however many workers misbehave:
//! 1. dispatched work may finish until T; past it, busy children are
//!    killed, busy workers leave their pools (their tasks end with TIMEOUT)
//!    and tasks that never started fail;
//! 2. threads blocked in `wait` or `drain` see their outcomes and leave;
//! 3. SHUTDOWN goes to every mailbox; pool threads and children have until
//!    T + grace to leave; children still alive then are killed and reaped,
//!    and threads still in a callable are left running (their memory is
//!    never unmapped; the thread exits as soon as its callable returns).

use super::{lock, phase, Runtime, Stage, SHUTDOWN_GRACE};
use crate::log::{log_line, Level as LogLevel};
use crate::status::{Error, Result, Status};
use crate::sys;
use crate::worker::Mode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Runtime {
    /// Shuts the runtime down (see the module doc); later calls return Ok.
    /// Threads blocked in `wait` or `drain` return before it does.
    pub fn close(&self) -> Result<()> {
        self.close_within(None)
    }

    /// As `close`, with its deadline no later than `until` (an outer level
    /// closing an inner one at its own deadline).
    pub fn close_within(&self, until: Option<Instant>) -> Result<()> {
        if self.is_forked_copy() {
            return Ok(()); // nothing here is this copy's to stop
        }
        let begun = Instant::now();
        // The deadline starts now, even if a start holds the life cycle.
        let own = self.options.shutdown_timeout.map(|t| Instant::now() + t);
        let deadline = match (own, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let exit_by = deadline.map(|d| d + SHUTDOWN_GRACE);
        self.phase.store(phase::CLOSING, Ordering::Release);
        let (stage, reaper) = {
            let mut life = lock(&self.life);
            life.close_by = exit_by;
            (
                std::mem::replace(&mut life.stage, Stage::Closed),
                life.reaper.take(),
            )
        };
        let passed = |by: Option<Instant>| by.is_some_and(|d| Instant::now() >= d);
        let mut outcome = Ok(());
        // What the closing log line reports beyond the time it took.
        let mut report = Report::default();
        match stage {
            Stage::Closed => return Ok(()),
            Stage::Setup(regs) => {
                for r in regs {
                    r.mailbox.shut_down();
                }
            }
            Stage::Running(mut threads) => {
                // Closed in the same critical section that sees the work
                // done: no submit can slip in after it.
                let finished = self
                    .shared
                    .wait_for_until(deadline, |e| (e.unfinished() == 0).then(|| e.close()));
                let overdue = finished.is_none().then(|| self.end_overdue_work());
                if let Some(e) = &overdue {
                    log_line!(LogLevel::Warn, Some(self.options.level), "{}", e.message);
                    report.overdue = true;
                }
                if overdue.is_some() {
                    // A pool thread driving an inner level may be stuck in
                    // it: close the inner levels by the same deadline.
                    let levels = std::mem::take(&mut lock(&self.life).levels);
                    for inner in levels {
                        let _ = inner.close_within(deadline);
                    }
                }
                // Waiters see their tasks' outcomes before the ids go.
                self.shared.wake_waiters();
                // Other threads' waits and drains come first: a drain in
                // progress reports the first failure, not this shutdown.
                while (self.waiting.load(Ordering::SeqCst) > 0
                    || self.draining.load(Ordering::SeqCst) > 0)
                    && !passed(exit_by)
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let first = self.shared.lock().drain();
                outcome = match overdue {
                    Some(e) => Err(e),
                    None => first,
                };
                // Stop watching before children exit on SHUTDOWN.
                if let Some((handle, stop)) = reaper {
                    sys::eventfd_signal(&stop);
                    let _ = handle.join();
                }
                self.shared.stop();
                // The dispatcher (last) exits now that nothing is in flight;
                // pool threads exit unless a callable never returns.
                let dispatcher = threads.pop();
                let mut stuck = 0;
                for t in threads {
                    while !t.is_finished() && !passed(exit_by) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if t.is_finished() {
                        let _ = t.join();
                    } else {
                        stuck += 1;
                    }
                }
                if let Some(d) = dispatcher {
                    let _ = d.join();
                }
                report.stuck = stuck;
                if stuck > 0 {
                    // A stuck thread may still touch its mailbox, the doorbell
                    // or the heap: never unmap them.
                    let mut life = lock(&self.life);
                    std::mem::forget(std::mem::take(&mut life.owned));
                    life.left_threads = true;
                    let e = Error::new(
                        Status::Timeout,
                        format!(
                            "{stuck} pool thread(s) still ran a callable at the shutdown \
                             deadline and were left running (each exits when its callable \
                             returns)"
                        ),
                    );
                    outcome = outcome.and(Err(e));
                }
            }
        }
        let (reaped, killed) = self.reap_children(exit_by);
        if !killed.is_empty() {
            let e = Error::new(
                Status::Timeout,
                format!("children {killed:?} ignored SHUTDOWN past the deadline and were killed"),
            );
            outcome = outcome.and(Err(e));
        }
        self.trace_finish();
        report.reaped = reaped;
        report.killed = killed;
        report.log(self.options.level, begun.elapsed());
        outcome
    }

    /// Reaps the children this runtime forked as they exit; those still
    /// alive at `exit_by` are killed and reaped. Returns how many it
    /// reaped and the pids of those it killed.
    fn reap_children(&self, exit_by: Option<Instant>) -> (usize, Vec<i32>) {
        let mut left = std::mem::take(&mut *lock(&self.children));
        let reaped = left.len();
        let mut killed = Vec::new();
        loop {
            // A child's lifeline closes (dropped) only once it is reaped.
            left.retain(|c| matches!(sys::wait_child(c.pid, false), Ok(None)));
            if left.is_empty() {
                return (reaped, killed);
            }
            if exit_by.is_some_and(|d| Instant::now() >= d) {
                for c in left {
                    let _ = sys::kill_and_reap(c.pid);
                    killed.push(c.pid);
                }
                return (reaped, killed);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The shutdown deadline passed with work unfinished: kills the children
    /// still running tasks, takes every busy worker out of its pool (its
    /// task fails with TIMEOUT) and fails the tasks that never started.
    fn end_overdue_work(&self) -> Error {
        // First nothing new may start: closed, and what waits fails.
        let mut engine = self.shared.lock();
        engine.close();
        engine.abort_unstarted(&Error::new(
            Status::Timeout,
            "the shutdown deadline passed before this task could run",
        ));
        drop(engine);
        let busy: Vec<usize> = self.shared.busy_workers().map(|w| w.index).collect();
        let workers = self.shared.workers();
        let mut ended = Vec::new();
        for &i in &busy {
            let w = &workers[i];
            ended.push(w.to_string());
            let cause = Error::new(
                Status::Timeout,
                format!("{w} was still running this task at the shutdown deadline"),
            );
            // Retired first, so the task ends with TIMEOUT, not CHILD_DIED.
            self.shared.retire_worker(i, cause);
            if let Mode::Spawned(pid) = w.mode {
                sys::kill_child(pid);
            }
        }
        self.shared.wake_waiters();
        Error::new(
            Status::Timeout,
            format!(
                "the shutdown deadline passed with work unfinished; ended: {}",
                ended.join(", ")
            ),
        )
    }
}

/// What a shutdown did, for its closing log line.
#[derive(Default)]
struct Report {
    /// Children reaped (the killed ones included).
    reaped: usize,
    /// Children killed past the deadline plus grace.
    killed: Vec<i32>,
    /// Pool threads left running in a callable.
    stuck: usize,
    /// The deadline passed with work unfinished.
    overdue: bool,
}

impl Report {
    /// "shut down in 12.3 ms: 4 children reaped" (warn when it had to kill
    /// or leave something behind, info otherwise).
    fn log(&self, level: u32, took: Duration) {
        let mut what = Vec::new();
        if self.overdue {
            what.push("the deadline passed with work unfinished".to_string());
        }
        match self.reaped {
            0 => {}
            1 => what.push("1 child reaped".to_string()),
            n => what.push(format!("{n} children reaped")),
        }
        if !self.killed.is_empty() {
            what.push(format!(
                "children {:?} ignored SHUTDOWN and were killed",
                self.killed
            ));
        }
        if self.stuck > 0 {
            what.push(format!(
                "{} pool thread(s) left running in a callable",
                self.stuck
            ));
        }
        let bad = self.overdue || !self.killed.is_empty() || self.stuck > 0;
        let at = if bad { LogLevel::Warn } else { LogLevel::Info };
        let ms = took.as_secs_f64() * 1e3;
        if what.is_empty() {
            log_line!(at, Some(level), "shut down in {ms:.1} ms");
        } else {
            log_line!(
                at,
                Some(level),
                "shut down in {ms:.1} ms: {}",
                what.join("; ")
            );
        }
    }
}
