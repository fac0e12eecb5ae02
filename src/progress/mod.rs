//! Progress: everything that touches memory shared with the serving sides.
//!
//! `Progress` owns the engine lock and carries out what the engine decides:
//! it writes launches into mailboxes and publishes them (`launch`), claims
//! completions and hands them to the engine (`claim`), ends overdue tasks
//! (`deadlines`), and lets threads wait for completions (`wait`) while the
//! dispatcher thread (`dispatcher`) serves them otherwise. The runtime and
//! the reaper only go through its methods.
//!
//! Every lock of the engine is a [`Locked`] guard: when it is released, the
//! launches the engine decided meanwhile are carried out first, under the
//! same lock, so no decision is ever left undone.

pub(crate) mod claim;
mod deadlines;
mod dispatcher;
pub(crate) mod launch;
#[cfg(loom)]
pub(crate) mod loom_model;
mod wait;

pub use wait::WaitPolicy;

use crate::doorbell::{Doorbell, Sleeper};
use crate::engine::{Engine, WorkerInfo, WorkerMode};
use crate::worker::{Mode, Worker, WorkerType};
use once_cell::sync::OnceCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The engine, the workers and the doorbell of one runtime.
pub struct Progress {
    /// All DAG state, under one lock (always taken through `lock`).
    engine: Mutex<Engine>,
    /// Signalled when tasks finish or memory is released, if anyone waits.
    finished: Condvar,
    /// Threads blocked on `finished`.
    blocked: AtomicUsize,
    /// The started pool's workers.
    workers: OnceCell<Arc<[Worker]>>,
    /// Rung by serving sides when the dispatcher or a waiter sleeps.
    bell: Doorbell,
    /// Set at shutdown, once nothing is unfinished.
    stop: AtomicBool,
    /// Bumped after every batch of completions handed to the engine.
    epoch: AtomicU64,
    /// Whether the latest launch had to wake its worker from sleep: a
    /// waiter then sleeps at once instead of spinning, so the woken worker
    /// can have its core.
    last_launch_woke: AtomicBool,
    policy: WaitPolicy,
}

/// The engine, locked. Derefs to the engine; on release it first carries
/// out the launches the engine decided while it was held.
pub struct Locked<'a> {
    progress: &'a Progress,
    guard: Option<MutexGuard<'a, Engine>>,
}

impl Deref for Locked<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(mut engine) = self.guard.take() {
            self.progress.launch(&mut engine);
            // Lines are logged once the lock is released: a log callback
            // may call back into the runtime.
            let notes = engine.take_notes();
            let level = engine.level();
            drop(engine);
            for (l, text) in notes.into_iter().flatten() {
                crate::log::emit(l, Some(level), &text);
            }
        }
    }
}

impl Progress {
    /// Progress over `engine`, with `bell` in memory children share.
    pub fn new(engine: Engine, bell: Doorbell, policy: WaitPolicy) -> Progress {
        Progress {
            engine: Mutex::new(engine),
            finished: Condvar::new(),
            blocked: AtomicUsize::new(0),
            workers: OnceCell::new(),
            bell,
            stop: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            last_launch_woke: AtomicBool::new(false),
            policy,
        }
    }

    /// Locks the engine.
    pub fn lock(&self) -> Locked<'_> {
        // A panic under the lock was caught at the boundary; the engine is
        // consistent between its steps, so keep going.
        let guard = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        Locked {
            progress: self,
            guard: Some(guard),
        }
    }

    /// Installs the started pool's workers (once).
    pub fn install(&self, workers: Arc<[Worker]>) {
        let info = workers.iter().map(|w| WorkerInfo {
            ty: w.ty,
            label: w.to_string(),
            is_level: w.level.is_some(),
            rank: w.rank,
            mode: match w.mode {
                _ if w.level.is_some() => WorkerMode::Level,
                Mode::Thread => WorkerMode::Thread,
                Mode::Spawned(_) => WorkerMode::Spawned,
                Mode::External(_) => WorkerMode::Process,
                #[cfg(feature = "mpi")]
                Mode::Remote(_) => WorkerMode::Level,
            },
            pid: w.pid(),
            level: w.level,
        });
        self.lock().install(info);
        let _ = self.workers.set(workers);
    }

    /// The started pool's workers (none before start).
    pub fn workers(&self) -> &[Worker] {
        self.workers.get().map_or(&[], |w| &w[..])
    }

    /// The first worker of type `ty` (or of `place`, global indices, when
    /// given) that cannot take a blob longer than a mailbox: a caller-owned
    /// child that did not announce it reads blobs from the heap.
    pub fn cannot_take_large_args(&self, ty: WorkerType, place: &[u32]) -> Option<&Worker> {
        self.workers()
            .iter()
            .filter(|w| w.ty == ty && (place.is_empty() || place.contains(&(w.rank as u32))))
            .find(|w| w.mailbox_only())
    }

    /// The doorbell serving sides ring (it lives in shared memory).
    pub fn doorbell(&self) -> Doorbell {
        self.bell
    }

    /// Wakes threads blocked on the engine's condition, if any.
    pub fn notify(&self) {
        if self.blocked.load(Ordering::SeqCst) > 0 {
            self.finished.notify_all();
        }
    }

    /// Releases the engine and blocks until it changes (a task finished,
    /// memory was released) or `timeout` passes; then locks it again.
    pub fn wait_released<'a>(&'a self, mut locked: Locked<'a>, timeout: Duration) -> Locked<'a> {
        let mut guard = locked.guard.take().expect("held until dropped");
        self.launch(&mut guard);
        self.blocked.fetch_add(1, Ordering::SeqCst);
        let guard = self
            .finished
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        self.blocked.fetch_sub(1, Ordering::SeqCst);
        Locked {
            progress: self,
            guard: Some(guard),
        }
    }

    /// Wakes every thread waiting for the engine (in wait, drain or an
    /// allocation), whatever it waits for.
    pub fn wake_waiters(&self) {
        drop(self.lock());
        self.finished.notify_all();
        self.epoch.fetch_add(1, Ordering::Release);
        self.bell.wake(Sleeper::Caller);
    }

    /// Shutdown, once nothing is in flight: SHUTDOWN to every mailbox, and
    /// the dispatcher leaves its loop.
    pub fn stop(&self) {
        for w in self.workers() {
            w.mailbox.shut_down();
        }
        self.stop.store(true, Ordering::Release);
        self.bell.wake(Sleeper::Dispatcher);
    }
}
