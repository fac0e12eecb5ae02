//! Progress: noticing completions on every worker's mailbox (PROCESS and
//! THREAD alike) and handing them to the engine.
//!
//! Two kinds of thread make progress, never spinning at the same time:
//! - the dispatcher thread (started with the pool, stopped at shutdown),
//!   which serves completions while the host does other things;
//! - a host thread blocked in `wait` or `drain`, which polls the mailboxes
//!   itself for a short window, so a hot round trip costs no wake-up at all.
//!   While one does, serving sides stop ringing and the dispatcher sleeps.
//!
//! Polling reads in-flight mailboxes without the engine lock; a completion
//! is claimed by swapping the worker's token to 0, and a batch of them is
//! handed to the engine under its lock.

use crate::doorbell::{Doorbell, Sleeper};
use crate::engine::{token_launch, Engine};
use crate::mailbox::state;
use crate::status::{Error, Status};
use crate::worker::Worker;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the dispatcher and waiting host threads wait for completions.
#[derive(Clone, Copy, Debug)]
pub struct WaitPolicy {
    /// Dispatcher: spin this long after the last event before sleeping.
    pub spin: Duration,
    /// Dispatcher: sleep at most this long while a worker that never rings
    /// (a caller-owned child) has work in flight.
    pub poll: Duration,
    /// Dispatcher: sleep at most this long otherwise (a liveness tick).
    pub idle: Duration,
    /// Host thread in wait/drain: poll this long before sleeping.
    pub caller_spin: Duration,
    /// A task running longer fails with TIMEOUT and its worker leaves the
    /// pool (a spawned child is killed). None: no deadline.
    pub task_timeout: Option<Duration>,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            spin: Duration::from_micros(50),
            poll: Duration::from_micros(50),
            idle: Duration::from_millis(500),
            caller_spin: Duration::from_micros(5),
            task_timeout: None,
        }
    }
}

/// What a poll found on one worker.
#[derive(Clone, Debug)]
enum Claim {
    /// TASK_DONE with this error code (and, on failure, the child's message).
    Done(i32, Option<String>),
    /// A state the protocol does not allow while a task is in flight.
    Broken(u32),
    /// TASK_DONE that echoes another launch: stale or written twice.
    Stale,
}

/// Everything that makes progress: the engine, the workers, the doorbell.
pub struct Progress {
    /// The engine (all DAG state), under one lock.
    pub engine: Mutex<Engine>,
    /// Signalled when tasks finish or memory is released, if anyone waits.
    pub finished: Condvar,
    /// The started pool's workers.
    pub workers: once_cell::sync::OnceCell<Arc<[Worker]>>,
    /// Rung by serving sides when the dispatcher sleeps.
    pub bell: Doorbell,
    /// Set at shutdown, once nothing is unfinished.
    pub stop: AtomicBool,
    /// Bumped after every batch of completions handed to the engine.
    epoch: AtomicU64,
    policy: WaitPolicy,
}

fn lock(m: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    // A panic under the lock was caught at the boundary; the engine is
    // consistent between its steps, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress {
    /// Progress over `engine`, with `bell` in memory children share.
    pub fn new(engine: Engine, bell: Doorbell, policy: WaitPolicy) -> Progress {
        Progress {
            engine: Mutex::new(engine),
            finished: Condvar::new(),
            workers: once_cell::sync::OnceCell::new(),
            bell,
            stop: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            policy,
        }
    }

    /// Locks the engine.
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        lock(&self.engine)
    }

    /// Wakes threads blocked on the engine's condition, if any.
    pub fn notify(&self, engine: &Engine) {
        if engine.waiters > 0 {
            self.finished.notify_all();
        }
    }

    fn workers(&self) -> &[Worker] {
        self.workers.get().map_or(&[], |w| &w[..])
    }

    /// Scans in-flight mailboxes once and hands completions to the engine,
    /// taking the engine lock at the first one and keeping it for the rest
    /// of the scan. Returns how many it handled. Any thread may call it.
    pub fn poll(&self) -> usize {
        let mut engine: Option<MutexGuard<'_, Engine>> = None;
        let mut handled = 0;
        for w in self.workers() {
            let tok = w.in_flight.load(Ordering::Acquire);
            if tok == 0 {
                continue;
            }
            let claim = match w.mailbox.state() {
                // IDLE while in flight is a child's store caught half-way: a
                // reference child written in Python (struct.pack_into) zeroes
                // the word before writing TASK_DONE. Look again later.
                state::TASK_READY | state::IDLE => continue,
                state::TASK_DONE => match w.mailbox.completes_launch(token_launch(tok)) {
                    Some(false) => Claim::Stale,
                    _ => Claim::Done(w.mailbox.error(), None),
                },
                other => Claim::Broken(other),
            };
            if w.in_flight
                .compare_exchange(tok, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let claim = match claim {
                Claim::Done(error, _) => {
                    // Read before IDLE hands the mailbox back.
                    let message = if error != 0 {
                        w.mailbox.message()
                    } else {
                        None
                    };
                    w.mailbox.set_state(state::IDLE);
                    Claim::Done(error, message)
                }
                broken => broken,
            };
            let e = engine.get_or_insert_with(|| self.lock());
            match claim {
                Claim::Done(error, message) => e.complete(w.index, tok, error, message),
                Claim::Broken(s) => {
                    let err = Error::new(
                        Status::Protocol,
                        format!(
                            "{w} left its mailbox in state {s} while running a task; \
                             the worker leaves the pool"
                        ),
                    );
                    e.retire(w.index, tok, err);
                }
                Claim::Stale => {
                    let err = Error::new(
                        Status::Protocol,
                        format!(
                            "{w} stored TASK_DONE for launch {} while launch {} ran \
                             (a stale or doubled completion); the worker leaves the pool",
                            w.mailbox.done_seq(),
                            token_launch(tok)
                        ),
                    );
                    e.retire(w.index, tok, err);
                }
            }
            handled += 1;
        }
        if let Some(e) = engine {
            self.epoch.fetch_add(1, Ordering::Release);
            self.notify(&e);
            drop(e);
            // A host thread asleep in wait/drain was not rung for these (the
            // worker saw them claimed): wake it to look.
            self.bell.wake_callers_if_asleep();
        }
        handled
    }

    /// Wakes every thread waiting for the engine (in wait, drain or an
    /// allocation), whatever it waits for.
    pub fn wake_waiters(&self) {
        drop(self.lock());
        self.finished.notify_all();
        self.epoch.fetch_add(1, Ordering::Release);
        self.bell.wake(Sleeper::Caller);
    }

    /// Takes the worker of a child that died out of its pool; its task (if
    /// any) fails with CHILD_DIED.
    pub fn child_died(&self, worker: usize, how: &str) {
        let w = &self.workers()[worker];
        self.retire_worker(
            worker,
            Error::new(Status::ChildDied, format!("{w} {how}; it leaves the pool")),
        );
    }

    /// Takes a worker out of its pool for good; its task (if any) fails
    /// with `cause`. Waiters and the dispatcher are woken.
    pub fn retire_worker(&self, worker: usize, cause: Error) {
        let w = &self.workers()[worker];
        let mut engine = self.lock();
        if engine.is_retired(worker) {
            return;
        }
        // Under the lock no launch can race this; a poller that already
        // claimed a completion finds the worker retired and leaves it out.
        let tok = w.in_flight.swap(0, Ordering::AcqRel);
        engine.retire(worker, tok, cause);
        self.epoch.fetch_add(1, Ordering::Release);
        self.notify(&engine);
        drop(engine);
        self.bell.wake(Sleeper::Caller);
        self.bell.wake(Sleeper::Dispatcher);
    }

    /// Ends tasks past their deadline: each fails with TIMEOUT and its
    /// worker leaves the pool (a spawned child is killed; the reaper reaps it).
    pub fn check_deadlines(&self) {
        let Some(limit) = self.policy.task_timeout else {
            return;
        };
        let limit_ns = limit.as_nanos() as u64;
        let now = crate::worker::now_ns();
        for w in self.busy_workers() {
            if now.saturating_sub(w.launched_at.load(Ordering::Relaxed)) < limit_ns {
                continue;
            }
            let engine = self.lock();
            // Re-check under the lock: the worker may have finished and
            // started another task since.
            let overdue = w.in_flight.load(Ordering::Acquire) != 0
                && crate::worker::now_ns().saturating_sub(w.launched_at.load(Ordering::Relaxed))
                    >= limit_ns
                && !engine.is_retired(w.index);
            drop(engine);
            if !overdue {
                continue;
            }
            // Retired first, so the task ends with TIMEOUT, not CHILD_DIED.
            self.retire_worker(
                w.index,
                Error::new(
                    Status::Timeout,
                    format!("{w} ran its task past the {limit:?} deadline; it leaves the pool"),
                ),
            );
            if let crate::worker::Mode::Spawned(pid) = w.mode {
                crate::sys::kill_child(pid);
            }
        }
    }

    /// Longest sleep that still notices an overdue task in time.
    fn nap_bound(&self, nap: Duration) -> Duration {
        match self.policy.task_timeout {
            Some(t) if self.busy() => nap.min((t / 4).max(Duration::from_millis(1))),
            _ => nap,
        }
    }

    /// The workers with a task in flight.
    pub fn busy_workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers()
            .iter()
            .filter(|w| w.in_flight.load(Ordering::Acquire) != 0)
    }

    fn busy(&self) -> bool {
        self.workers()
            .iter()
            .any(|w| w.in_flight.load(Ordering::Acquire) != 0)
    }

    fn deaf_busy(&self) -> bool {
        self.workers()
            .iter()
            .any(|w| !w.rings() && w.in_flight.load(Ordering::Acquire) != 0)
    }

    /// The dispatcher thread's body: runs until `stop` is set and nothing is
    /// in flight.
    pub fn run_dispatcher(&self) {
        let mut last_event = Instant::now();
        let mut spins = 0u32;
        loop {
            let polling_caller = self.bell.callers() > 0;
            if !polling_caller && self.poll() > 0 {
                last_event = Instant::now();
                continue;
            }
            let busy = self.busy();
            if !busy && self.stop.load(Ordering::Acquire) {
                return;
            }
            // Spin while work is in flight, reading the clock only now and then.
            if busy && !polling_caller {
                spins = spins.wrapping_add(1);
                if !spins.is_multiple_of(64) {
                    std::hint::spin_loop();
                    continue;
                }
                self.check_deadlines();
                if last_event.elapsed() < self.policy.spin {
                    continue;
                }
            }
            let seq = self.bell.prepare_sleep(Sleeper::Dispatcher);
            let polling_caller = self.bell.callers() > 0;
            if self.stop.load(Ordering::Acquire) || (!polling_caller && self.poll() > 0) {
                self.bell.cancel_sleep(Sleeper::Dispatcher);
                last_event = Instant::now();
                continue;
            }
            // A polling caller rings when it leaves if work that never rings
            // remains; otherwise serving sides ring. The timeout is a safety tick.
            let nap = if !polling_caller && self.deaf_busy() {
                self.policy.poll
            } else {
                self.policy.idle
            };
            self.bell
                .sleep(Sleeper::Dispatcher, seq, Some(self.nap_bound(nap)));
            self.check_deadlines();
            last_event = Instant::now();
        }
    }

    /// Blocks until `done` gives a value. While it waits, this thread makes
    /// progress itself and the dispatcher steps aside: it polls the
    /// mailboxes for a short window (a hot worker answers within it), then
    /// sleeps on the doorbell, which serving sides ring when they finish.
    pub fn wait_for<T>(&self, done: impl FnMut(&mut Engine) -> Option<T>) -> T {
        self.wait_for_until(None, done).expect("no deadline")
    }

    /// As `wait_for`, but gives up (None) once `deadline` passes.
    pub fn wait_for_until<T>(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut Engine) -> Option<T>,
    ) -> Option<T> {
        let passed = || deadline.is_some_and(|d| Instant::now() >= d);
        let (spin, mut seen) = {
            let mut engine = self.lock();
            // Read under the lock: every completion handed over after this
            // check moves the epoch past `seen`, so none goes unnoticed.
            let seen = self.epoch.load(Ordering::Acquire);
            if let Some(v) = done(&mut engine) {
                return Some(v);
            }
            // A worker just woken from sleep takes a wake-up to start; it
            // may be placed on this core, so sleep at once and let it run.
            let spin = if engine.last_launch_woke {
                Duration::ZERO
            } else {
                self.policy.caller_spin
            };
            (spin, seen)
        };
        if self.workers.get().is_none() {
            return self.wait_on_condition(deadline, done);
        }
        let mut check = |this: &Self| {
            this.poll();
            let now = this.epoch.load(Ordering::Acquire);
            if now == seen {
                return None;
            }
            seen = now;
            done(&mut this.lock())
        };
        self.bell.caller_enter();
        let start = Instant::now();
        let found = loop {
            if let Some(v) = check(self) {
                break Some(v);
            }
            if passed() {
                break None;
            }
            if start.elapsed() >= spin {
                let seq = self.bell.prepare_sleep(Sleeper::Caller);
                if let Some(v) = check(self) {
                    self.bell.cancel_sleep(Sleeper::Caller);
                    break Some(v);
                }
                let mut nap = if self.deaf_busy() {
                    self.policy.poll
                } else {
                    self.policy.idle
                };
                if let Some(d) = deadline {
                    nap = nap.min(d.saturating_duration_since(Instant::now()));
                }
                self.bell
                    .sleep(Sleeper::Caller, seq, Some(self.nap_bound(nap)));
                self.check_deadlines();
            } else {
                std::hint::spin_loop();
            }
        };
        if self.bell.caller_leave() {
            // Completions stored while we polled did not ring the dispatcher:
            // take them now, and hand work that never rings back to it.
            self.poll();
            if self.deaf_busy() {
                self.bell.wake(Sleeper::Dispatcher);
            }
        }
        found
    }

    /// Blocks on the engine's condition until `done` gives a value or the
    /// deadline passes.
    fn wait_on_condition<T>(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&mut Engine) -> Option<T>,
    ) -> Option<T> {
        let mut engine = self.lock();
        loop {
            if let Some(v) = done(&mut engine) {
                return Some(v);
            }
            let timeout = match deadline {
                Some(d) if Instant::now() >= d => return None,
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            engine.waiters += 1;
            engine = self
                .finished
                .wait_timeout(engine, timeout)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            engine.waiters -= 1;
        }
    }
}
