//! Registering workers and forking children, before the pool starts.
//!
//! Every registration checks the life cycle first (a forked copy, a
//! shut-down or failed worker, a started pool), then its arguments.

use super::{lock, phase, Life, Registration, Runtime, Stage};
use crate::child::{self, Handler, ServeOptions};
use crate::log::{log_line, Level};
use crate::mailbox::{state, Mailbox, OwnedMailbox, SIZE};
use crate::reaper::Spawned;
use crate::status::{fail, Result, Status};
use crate::sys::{self, lifeline};
use crate::worker::{Mode, WorkerType};
use std::sync::{Mutex, MutexGuard};

/// An init function run in a spawned child before it serves (0 = ready).
pub type Init = Box<dyn FnOnce() -> i32 + Send>;

const AFTER_START: &str =
    "workers are registered before the pool starts (first dispatch or dist_worker_start)";

/// Caller-owned mailboxes registered by the live runtimes of this process,
/// with the runtime's id: a mailbox serves one worker of one runtime.
static REGISTERED: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());

/// A function every child this library forks runs first (see
/// `set_child_start`), as a `fn()` address; 0 for none.
static CHILD_START: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets (or, with None, clears) a function that every child the library
/// forks (spawned workers and levels) runs first, before its lifeline,
/// its init or a level's setup: for a language runtime embedded in the
/// host that must put itself right after a fork (CPython's
/// `PyOS_AfterFork_Child`). Process-wide.
pub fn set_child_start(hook: Option<fn()>) {
    let addr = hook.map_or(0, |f| f as usize);
    CHILD_START.store(addr, std::sync::atomic::Ordering::Release);
}

/// In a child just forked: runs the function `set_child_start` named.
fn run_child_start() {
    let addr = CHILD_START.load(std::sync::atomic::Ordering::Acquire);
    if addr != 0 {
        // SAFETY: only `set_child_start` stores a non-zero value, the
        // address of a `fn()`.
        let hook: fn() = unsafe { std::mem::transmute::<usize, fn()>(addr) };
        hook();
    }
}

/// Forgets the mailboxes runtime `id` registered (it is gone).
pub(super) fn forget_mailboxes(id: u64) {
    lock(&REGISTERED).retain(|&(_, owner)| owner != id);
}

impl Runtime {
    /// The registrations, while the pool has not started.
    pub(super) fn setup(&self) -> Result<MutexGuard<'_, Life>> {
        match self.phase()? {
            phase::SETUP => {}
            phase::RUNNING => return fail(Status::BadState, AFTER_START),
            _ => {
                self.accepting()?;
            }
        }
        let life = lock(&self.life);
        match &life.stage {
            Stage::Setup(_) => Ok(life),
            _ => fail(Status::BadState, AFTER_START),
        }
    }

    /// Ok while workers may still be registered (before start); otherwise
    /// the status a registration gets, whatever its arguments.
    pub fn registration_open(&self) -> Result<()> {
        self.setup().map(drop)
    }

    /// Registers a PROCESS worker served by a caller-started child through `mailbox`.
    pub fn add_process(&self, ty: WorkerType, mailbox: Mailbox) -> Result<()> {
        let mut life = self.setup()?;
        let life = &mut *life;
        let Stage::Setup(regs) = &mut life.stage else {
            unreachable!("checked by setup")
        };
        let base = mailbox.as_ptr() as usize;
        if let Some(r) = regs
            .iter()
            .find(|r| (r.mailbox.as_ptr() as usize).abs_diff(base) < SIZE)
        {
            let how = if r.mailbox.as_ptr() as usize == base {
                "is registered already"
            } else {
                "overlaps one registered already"
            };
            return fail(
                Status::InvalidArgument,
                format!(
                    "mailbox {:p} {how} (at {:p}, {} worker): each worker needs its own \
                     4096 bytes",
                    mailbox.as_ptr(),
                    r.mailbox.as_ptr(),
                    r.ty
                ),
            );
        }
        let (heap, heap_len) = self.heap();
        let heap = heap as usize;
        if base < heap + heap_len && base + SIZE > heap {
            return fail(
                Status::InvalidArgument,
                format!(
                    "mailbox {:p} lies in this worker's heap ring, which the engine hands out",
                    mailbox.as_ptr()
                ),
            );
        }
        let mut taken = lock(&REGISTERED);
        if let Some(&(other, _)) = taken
            .iter()
            .find(|&&(b, id)| id != self.id && b.abs_diff(base) < SIZE)
        {
            return fail(
                Status::InvalidArgument,
                format!(
                    "mailbox {:p} overlaps mailbox {:p}, registered with another DistWorker                      of this process: a mailbox serves one worker",
                    mailbox.as_ptr(),
                    other as *const u8
                ),
            );
        }
        let s = mailbox.state();
        if s != state::IDLE {
            return fail(
                Status::InvalidArgument,
                format!(
                    "mailbox {:p} is in state {s}; a new mailbox must be IDLE (zeroed)",
                    mailbox.as_ptr()
                ),
            );
        }
        taken.push((base, self.id));
        regs.push(Registration {
            ty,
            mode: Mode::External(None),
            mailbox,
            handler: None,
            level: None,
        });
        Ok(())
    }

    /// Names the process that serves a caller-owned mailbox registered with
    /// `add_process`, so its death is noticed (the caller still reaps it).
    pub fn set_process_pid(&self, mailbox: Mailbox, pid: i32) -> Result<()> {
        let mut life = self.setup()?;
        let life = &mut *life;
        let Stage::Setup(regs) = &mut life.stage else {
            unreachable!("checked by setup")
        };
        if pid <= 0 {
            return fail(
                Status::InvalidArgument,
                format!("pid {pid} is not a process id"),
            );
        }
        let Some(r) = regs.iter_mut().find(|r| {
            r.mailbox.as_ptr() == mailbox.as_ptr() && matches!(r.mode, Mode::External(_))
        }) else {
            return fail(
                Status::InvalidArgument,
                format!(
                    "mailbox {:p} was not registered with add_process",
                    mailbox.as_ptr()
                ),
            );
        };
        r.mode = Mode::External(Some(pid));
        Ok(())
    }

    /// Registers a THREAD worker: `handler` runs on a pool thread.
    pub fn add_thread(&self, ty: WorkerType, handler: Handler) -> Result<()> {
        let mut life = self.setup()?;
        let life = &mut *life;
        let Stage::Setup(regs) = &mut life.stage else {
            unreachable!("checked by setup")
        };
        let owned = OwnedMailbox::new()?;
        regs.push(Registration {
            ty,
            mode: Mode::Thread,
            mailbox: owned.handle(),
            handler: Some(handler),
            level: None,
        });
        life.owned.push(owned);
        Ok(())
    }

    /// Forks a child that serves `handler` on a library-owned mailbox.
    /// Returns its pid.
    pub fn spawn(&self, ty: WorkerType, handler: Handler) -> Result<i32> {
        self.spawn_with_init(ty, None, handler)
    }

    /// As `spawn`, running `init` in the child first: a non-zero return
    /// means the child cannot serve, and `start` reports it.
    pub fn spawn_with_init(
        &self,
        ty: WorkerType,
        init: Option<Init>,
        handler: Handler,
    ) -> Result<i32> {
        self.fork_worker(ty, None, move || match init.map_or(0, |f| f()) {
            0 => Ok(handler),
            code => Err(code),
        })
    }

    /// Forks a child serving a library-owned mailbox: in the child,
    /// `prepare` builds the handler (or fails with an init code, which
    /// `start` reports), the child announces it, serves until SHUTDOWN,
    /// then drops the handler (a level shuts its own level down there).
    pub(super) fn fork_worker(
        &self,
        ty: WorkerType,
        level: Option<u32>,
        prepare: impl FnOnce() -> std::result::Result<Handler, i32>,
    ) -> Result<i32> {
        let mut guard = self.setup()?;
        let life = &mut *guard;
        let Stage::Setup(regs) = &mut life.stage else {
            unreachable!("checked by setup")
        };
        let owned = OwnedMailbox::new()?;
        let mailbox = owned.handle();
        let parent = sys::getpid();
        let opts = ServeOptions {
            doorbell: Some(self.shared.doorbell()),
            spin: self.options.worker_spin,
            parent: Some(parent),
            ..ServeOptions::default()
        };
        // The child dies with this process, whichever thread forks it.
        let (lifeline, read_end) = lifeline::Lifeline::new()?;
        let pid = sys::fork_child(move || {
            run_child_start();
            if !lifeline::hold(read_end) || sys::getppid() != parent {
                return 1; // the parent died before the lifeline was armed
            }
            child::clear_message();
            let prepared = prepare();
            if prepared.is_err() {
                // Why the init (or a level's setup) failed, if it said so.
                if let Some(why) = child::current_message() {
                    mailbox.set_message(why.as_bytes());
                }
            }
            if !mailbox.announce(prepared.as_ref().err().copied().unwrap_or(0)) {
                return 0; // shut down before start: SHUTDOWN is already there
            }
            let Ok(mut handler) = prepared else {
                return 1;
            };
            let served = child::serve(mailbox, &mut *handler, &opts);
            drop(handler);
            i32::from(served.is_err())
        })?;
        life.owned.push(owned);
        lock(&self.children).push(Spawned { pid, lifeline });
        let rank = regs.iter().filter(|r| r.ty == ty).count();
        regs.push(Registration {
            ty,
            mode: Mode::Spawned(pid),
            mailbox,
            handler: None,
            level,
        });
        drop(guard);
        let who = match level {
            Some(l) => format!("L{l} worker {rank} (child pid {pid}), a level"),
            None => format!("{ty} worker {rank} (child pid {pid})"),
        };
        log_line!(Level::Info, Some(self.options.level), "spawned {who}");
        Ok(pid)
    }
}
