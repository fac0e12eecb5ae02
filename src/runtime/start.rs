//! Starting the pool: the readiness handshake with spawned children, then
//! the library's threads (pool threads, the dispatcher, the reaper).

use super::{lock, phase, Life, Registration, Runtime, Stage, POOL_THREAD};
use crate::child::{self, Handler, ServeOptions};
use crate::log::{log_line, Level as LogLevel};
use crate::mailbox::state;
use crate::reaper::{self, Watched};
use crate::status::{fail, Error, Result, Status};
use crate::sys;
use crate::worker::{Mode, Worker, WorkerType};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

impl Runtime {
    /// Starts the pool threads and the dispatcher. Idempotent.
    pub fn start(&self) -> Result<()> {
        if self.accepting()? == phase::RUNNING {
            return Ok(());
        }
        let started = self.start_once();
        match &started {
            Ok(true) => log_line!(
                LogLevel::Info,
                Some(self.options.level),
                "started with {}",
                describe(self.shared.workers())
            ),
            Err(e) => log_line!(
                LogLevel::Warn,
                Some(self.options.level),
                "start failed: {}",
                e.message
            ),
            Ok(false) => {}
        }
        started.map(drop)
    }

    /// Starts the pool unless another call did: true if this one did.
    fn start_once(&self) -> Result<bool> {
        let mut life = lock(&self.life);
        let regs = match &mut life.stage {
            Stage::Setup(regs) => std::mem::take(regs),
            Stage::Running(_) => return Ok(false),
            Stage::Closed => return self.accepting().map(|_| false),
        };
        if let Err(e) = self.await_children(&regs) {
            let mailboxes: Vec<_> = regs.iter().map(|r| r.mailbox).collect();
            return Err(self.fail_start(&mut life, &mailboxes, e));
        }
        let mut handlers = Vec::new();
        let mut ranks = [0usize; 2];
        let workers: Arc<[Worker]> = regs
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                if let Some(h) = r.handler {
                    handlers.push((index, h));
                }
                let rank = ranks[r.ty.index()];
                ranks[r.ty.index()] += 1;
                Worker {
                    ty: r.ty,
                    mode: r.mode,
                    mailbox: r.mailbox,
                    in_flight: crate::loom::AtomicU64::new(0),
                    index,
                    rank,
                    level: r.level,
                    launched_at: AtomicU64::new(0),
                    launch: AtomicU64::new(0),
                }
            })
            .collect();
        self.shared.install(workers.clone());
        // Levels on other hosts: their readiness handshake, once their
        // workers can be named and retired, before any pool thread runs.
        #[cfg(feature = "mpi")]
        {
            let deadline = self.options.start_timeout.map(|t| Instant::now() + t);
            let hooks = std::mem::take(&mut life.start_hooks);
            if let Err(e) = hooks.into_iter().try_for_each(|hook| hook(deadline)) {
                let mailboxes: Vec<_> = workers.iter().map(|w| w.mailbox).collect();
                return Err(self.fail_start(&mut life, &mailboxes, e));
            }
        }
        let mut threads = Vec::new();
        let result = self.start_threads(&mut life, &workers, handlers, &mut threads);
        life.stage = Stage::Running(threads);
        // A shutdown that began meanwhile (CLOSING) waits for this lock and
        // stops the threads; a pool that could not start all of its
        // threads takes no work (FAILED) and is stopped by shutdown.
        let next = if result.is_ok() {
            phase::RUNNING
        } else {
            phase::FAILED
        };
        let _ =
            self.phase
                .compare_exchange(phase::SETUP, next, Ordering::AcqRel, Ordering::Acquire);
        result.map(|()| true)
    }

    /// A start that failed before any thread ran: every mailbox gets
    /// SHUTDOWN, every spawned child is killed and reaped, and from now on
    /// every call but shutdown is SHUT_DOWN. Returns `e`.
    fn fail_start(
        &self,
        life: &mut Life,
        mailboxes: &[crate::mailbox::Mailbox],
        e: Error,
    ) -> Error {
        for m in mailboxes {
            m.shut_down();
        }
        life.stage = Stage::Closed;
        let _ = self.phase.compare_exchange(
            phase::SETUP,
            phase::FAILED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        for c in lock(&self.children).drain(..) {
            let _ = sys::kill_and_reap(c.pid);
        }
        e
    }

    /// Waits for every spawned child to announce it is ready (then answers
    /// IDLE), and reports the first one whose init failed or that died first.
    fn await_children(&self, regs: &[Registration]) -> Result<()> {
        let deadline = self.options.start_timeout.map(|t| Instant::now() + t);
        for (index, r) in regs.iter().enumerate() {
            let Mode::Spawned(pid) = r.mode else { continue };
            let who = format!("{} worker {index} (child pid {pid})", r.ty);
            loop {
                match r.mailbox.state() {
                    state::CHILD_READY => {
                        r.mailbox.set_state(state::IDLE);
                        break;
                    }
                    state::INIT_FAILED => {
                        let code = r.mailbox.error();
                        let what = if r.level.is_some() {
                            "its level setup function"
                        } else {
                            "its init function"
                        };
                        let why = r
                            .mailbox
                            .message()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default();
                        return fail(
                            Status::ChildDied,
                            format!("{who}: {what} failed with error {code}{why}"),
                        );
                    }
                    _ => {}
                }
                if let Ok(Some(how)) = sys::wait_child(pid, false) {
                    lock(&self.children).retain(|c| c.pid != pid);
                    return fail(
                        Status::ChildDied,
                        format!("{who} {how} before it was ready"),
                    );
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let ms = self.options.start_timeout.unwrap_or_default().as_millis();
                    return fail(
                        Status::Timeout,
                        format!("{who} did not become ready within start_timeout_ms ({ms} ms)"),
                    );
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        Ok(())
    }

    fn start_threads(
        &self,
        life: &mut Life,
        workers: &Arc<[Worker]>,
        handlers: Vec<(usize, Handler)>,
        threads: &mut Vec<JoinHandle<()>>,
    ) -> Result<()> {
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::new(Status::Os, format!("starting a pool thread: {e}")))
        };
        let key = self.id;
        for (index, mut handler) in handlers {
            let mailbox = workers[index].mailbox;
            let opts = ServeOptions {
                doorbell: Some(self.shared.doorbell()),
                spin: self.options.worker_spin,
                ..ServeOptions::default()
            };
            let n = life.next_thread;
            life.next_thread += 1;
            let shared = self.shared.clone();
            threads.push(spawn(
                format!("dist-worker-{n}"),
                Box::new(move || {
                    POOL_THREAD.with(|c| c.set(Some((key, index))));
                    // The thread that ran a task hands its completion to the
                    // engine (and launches what became ready) itself: no
                    // other thread wakes or spins for it.
                    let _ = child::serve_then(mailbox, &mut *handler, &opts, &mut || {
                        shared.claim_own(index);
                    });
                }),
            )?);
        }
        let shared = self.shared.clone();
        threads.push(spawn(
            "dist-dispatch".into(),
            Box::new(move || shared.run_dispatcher()),
        )?);
        // Processes are watched through pidfds; where pidfd_open fails the
        // reaper looks at them every few milliseconds instead.
        let watched: Vec<Watched> = workers
            .iter()
            .filter_map(|w| {
                let (pid, reap) = match w.mode {
                    Mode::Spawned(pid) => (pid, true),
                    Mode::External(Some(pid)) => (pid, false),
                    _ => return None,
                };
                Some(Watched {
                    worker: w.index,
                    pid,
                    pidfd: sys::pidfd_open(pid).ok(),
                    reap,
                })
            })
            .collect();
        if !watched.is_empty() {
            let stop = Arc::new(sys::eventfd()?);
            let (shared, stop_thread) = (self.shared.clone(), stop.clone());
            let children = self.children.clone();
            let handle = spawn(
                "dist-reaper".into(),
                Box::new(move || reaper::run(&shared, &children, watched, &stop_thread)),
            )?;
            life.reaper = Some((handle, stop));
        }
        Ok(())
    }
}

/// "4 SUB and 1 NEXT_LEVEL workers (2 spawned children, 2 threads, 1 level)".
fn describe(workers: &[Worker]) -> String {
    let of_type = |ty| workers.iter().filter(|w| w.ty == ty).count();
    let (next, sub) = (of_type(WorkerType::NextLevel), of_type(WorkerType::Sub));
    let mut modes = Vec::new();
    let mut count = |n: usize, one: &str, many: &str| {
        if n > 0 {
            modes.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    };
    let levels = workers.iter().filter(|w| w.level.is_some()).count();
    let plain = |f: fn(&Mode) -> bool| {
        workers
            .iter()
            .filter(|w| w.level.is_none() && f(&w.mode))
            .count()
    };
    count(
        plain(|m| matches!(m, Mode::Spawned(_))),
        "spawned child",
        "spawned children",
    );
    count(plain(|m| matches!(m, Mode::Thread)), "thread", "threads");
    count(
        plain(|m| matches!(m, Mode::External(_))),
        "caller-owned process",
        "caller-owned processes",
    );
    count(levels, "level", "levels");
    let modes = if modes.is_empty() {
        String::new()
    } else {
        format!(" ({})", modes.join(", "))
    };
    format!("{sub} SUB and {next} NEXT_LEVEL workers{modes}")
}
