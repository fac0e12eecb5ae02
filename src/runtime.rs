//! `Runtime`: one level of the hierarchy, as a safe Rust object.
//!
//! Lifecycle: created → workers registered (and children forked) → started
//! (pool threads and the dispatcher thread exist from here on) → shut down.
//! No thread of the library exists before start, so forking is safe until
//! then. Every method takes `&self` and may be called from any thread;
//! `shutdown` consumes the runtime.

use crate::abi::{DistTaskId, DistTensor};
use crate::child::{self, Handler, ServeOptions};
use crate::dispatcher::{Progress, WaitPolicy};
use crate::engine::{Engine, MemberArgs, Stats, TaskSpec};
use crate::mailbox::{state, Doorbell, Mailbox, OwnedMailbox};
use crate::reaper::{self, Watched};
use crate::status::{fail, Error, Result, Status};
use crate::sys::{self, SharedMap};
use crate::worker::{Mode, Worker, WorkerType};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default size of the shared heap ring.
pub const DEFAULT_HEAP_RING_SIZE: usize = 64 << 20;

/// How long shutdown waits for threads told to stop, even past its deadline.
const JOIN_GRACE: Duration = Duration::from_millis(500);

/// Default longest wait of a shutdown for work and workers to finish.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Default longest wait of an allocation for heap ring space.
pub const DEFAULT_ALLOC_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a runtime.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Level in the hierarchy (3 = host).
    pub level: u32,
    /// Bytes of the MAP_SHARED heap ring.
    pub heap_ring_size: usize,
    /// How long a submit or alloc waits for heap ring space before failing
    /// with RESOURCE_EXHAUSTED.
    pub alloc_timeout: Duration,
    /// How long shutdown waits for dispatched work and for workers to exit
    /// before it kills children and gives up on threads (None: no limit).
    pub shutdown_timeout: Option<Duration>,
    /// How library-run workers (spawned children, pool threads) spin for
    /// the next task before sleeping on their mailbox.
    pub worker_spin: Duration,
    /// How the dispatcher and waiting host threads wait for completions.
    pub wait: WaitPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            level: 3,
            heap_ring_size: DEFAULT_HEAP_RING_SIZE,
            alloc_timeout: DEFAULT_ALLOC_TIMEOUT,
            shutdown_timeout: Some(DEFAULT_SHUTDOWN_TIMEOUT),
            worker_spin: ServeOptions::default().spin,
            wait: WaitPolicy::default(),
        }
    }
}

/// An init function run in a spawned child before it serves (0 = ready).
pub type Init = Box<dyn FnOnce() -> i32 + Send>;

/// A worker registered before start.
struct Registration {
    ty: WorkerType,
    mode: Mode,
    mailbox: Mailbox,
    /// THREAD mode: the callable its pool thread serves.
    handler: Option<Handler>,
}

enum Life {
    Setup(Vec<Registration>),
    Running(Vec<JoinHandle<()>>),
    Closed,
}

/// One level of the hierarchy: pools of workers and the engine that feeds them.
pub struct Runtime {
    shared: Arc<Progress>,
    life: Mutex<Life>,
    started: AtomicBool,
    closing: AtomicBool,
    options: Options,
    /// Pids of the children this runtime forked.
    children: Arc<Mutex<Vec<i32>>>,
    /// The reaper thread and the eventfd that stops it.
    reaper: Mutex<Option<(JoinHandle<()>, Arc<std::os::fd::OwnedFd>)>>,
    /// Mailboxes the library owns (spawned children and pool threads).
    owned: Mutex<Vec<OwnedMailbox>>,
    /// Not unmapped if a pool thread that may still use it was left running.
    heap: std::mem::ManuallyDrop<SharedMap>,
    /// Holds the doorbell words; shared with children forked later.
    control: std::mem::ManuallyDrop<SharedMap>,
    /// A pool thread stuck in a callable was left running at shutdown.
    left_threads: bool,
    next_thread: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock is caught at the boundary; the state it
    // protects stays consistent between engine steps, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    /// Creates a runtime and maps its shared heap ring.
    pub fn new(options: Options) -> Result<Runtime> {
        if options.heap_ring_size == 0 {
            return fail(
                Status::InvalidArgument,
                "heap_ring_size must be at least 1 byte",
            );
        }
        let heap = SharedMap::new(options.heap_ring_size)?;
        let control = SharedMap::new(4096)?;
        let mut engine = Engine::new(heap.as_ptr() as u64, heap.len() as u64);
        engine.track_launches = options.wait.task_timeout.is_some();
        // SAFETY: the control page is 4096 bytes, page aligned, and outlives
        // every copy of the doorbell (the runtime joins its threads and reaps
        // its children before dropping it; children keep their own mapping).
        let bell = unsafe { Doorbell::from_raw(NonNull::new(control.as_ptr()).expect("mapped")) };
        Ok(Runtime {
            shared: Arc::new(Progress::new(engine, bell, options.wait)),
            life: Mutex::new(Life::Setup(Vec::new())),
            started: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            options,
            children: Arc::new(Mutex::new(Vec::new())),
            reaper: Mutex::new(None),
            owned: Mutex::new(Vec::new()),
            heap: std::mem::ManuallyDrop::new(heap),
            control: std::mem::ManuallyDrop::new(control),
            left_threads: false,
            next_thread: AtomicU64::new(0),
        })
    }

    /// The options it was created with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Base address and length of the shared heap ring.
    pub fn heap(&self) -> (*mut u8, usize) {
        (self.heap.as_ptr(), self.heap.len())
    }

    fn register(&self, reg: Registration) -> Result<()> {
        match &mut *lock(&self.life) {
            Life::Setup(regs) => {
                regs.push(reg);
                Ok(())
            }
            _ => fail(
                Status::BadState,
                "workers are registered before the pool starts (first dispatch or dist_worker_start)",
            ),
        }
    }

    fn ensure_setup(&self) -> Result<()> {
        match &*lock(&self.life) {
            Life::Setup(_) => Ok(()),
            _ => fail(
                Status::BadState,
                "workers are registered before the pool starts (first dispatch or dist_worker_start)",
            ),
        }
    }

    /// Registers a PROCESS worker served by a caller-started child through `mailbox`.
    pub fn add_process(&self, ty: WorkerType, mailbox: Mailbox) -> Result<()> {
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
        self.register(Registration {
            ty,
            mode: Mode::External(None),
            mailbox,
            handler: None,
        })
    }

    /// Names the process that serves a caller-owned mailbox registered with
    /// `add_process`, so its death is noticed (the caller still reaps it).
    pub fn set_process_pid(&self, mailbox: Mailbox, pid: i32) -> Result<()> {
        if pid <= 0 {
            return fail(
                Status::InvalidArgument,
                format!("pid {pid} is not a process id"),
            );
        }
        let mut life = lock(&self.life);
        let Life::Setup(regs) = &mut *life else {
            return fail(Status::BadState, "a pid is named before the pool starts");
        };
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
        self.ensure_setup()?;
        let owned = OwnedMailbox::new()?;
        let mailbox = owned.handle();
        lock(&self.owned).push(owned);
        self.register(Registration {
            ty,
            mode: Mode::Thread,
            mailbox,
            handler: Some(handler),
        })
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
        let mut life = lock(&self.life);
        let Life::Setup(regs) = &mut *life else {
            return fail(
                Status::BadState,
                "children are spawned before the pool starts: forking once threads exist is unsafe",
            );
        };
        let owned = OwnedMailbox::new()?;
        let mailbox = owned.handle();
        let opts = ServeOptions {
            doorbell: Some(self.shared.bell),
            spin: self.options.worker_spin,
            ..ServeOptions::default()
        };
        let mut handler = handler;
        let parent = sys::getpid();
        let opts = ServeOptions {
            parent: Some(parent),
            ..opts
        };
        // The death signal follows the forking thread: only the main thread's
        // death is the process's. Otherwise the parent check alone applies.
        let main_thread = sys::is_main_thread();
        let pid = sys::fork_child(move || {
            if main_thread {
                sys::kill_me_with_parent();
            }
            if sys::getppid() != parent {
                return 1; // the parent died before the signal was armed
            }
            let status = init.map_or(0, |f| f());
            mailbox.announce(status);
            if status != 0 {
                return 1;
            }
            match child::serve(mailbox, &mut *handler, &opts) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        })?;
        lock(&self.owned).push(owned);
        lock(&self.children).push(pid);
        regs.push(Registration {
            ty,
            mode: Mode::Spawned(pid),
            mailbox,
            handler: None,
        });
        Ok(pid)
    }

    /// Starts the pool threads and the dispatcher. Idempotent.
    pub fn start(&self) -> Result<()> {
        if self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut life = lock(&self.life);
        let regs = match &mut *life {
            Life::Setup(regs) => std::mem::take(regs),
            Life::Running(_) => return Ok(()),
            Life::Closed => return fail(Status::ShutDown, "the worker is shut down"),
        };
        if let Err(e) = self.await_children(&regs) {
            drop(life);
            for r in &regs {
                r.mailbox.publish(state::SHUTDOWN);
            }
            *lock(&self.life) = Life::Closed;
            self.closing.store(true, Ordering::Release);
            for pid in lock(&self.children).drain(..) {
                // SAFETY: ending a child this runtime forked; it is reaped next.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = sys::wait_child(pid, true);
            }
            return Err(e);
        }
        let mut handlers = Vec::new();
        let workers: Arc<[Worker]> = regs
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                if let Some(h) = r.handler {
                    handlers.push((index, h));
                }
                Worker {
                    ty: r.ty,
                    mode: r.mode,
                    mailbox: r.mailbox,
                    in_flight: AtomicU64::new(0),
                    index,
                    launched_at: AtomicU64::new(0),
                }
            })
            .collect();
        let _ = self.shared.workers.set(workers.clone());
        self.shared
            .lock()
            .install(workers.clone(), self.shared.bell);
        let mut threads = Vec::new();
        let result = self.start_threads(&workers, handlers, &mut threads);
        *life = Life::Running(threads);
        self.started.store(true, Ordering::Release);
        result
    }

    /// Waits for every spawned child to announce it is ready (then answers
    /// IDLE), and reports the first one whose init failed or that died first.
    fn await_children(&self, regs: &[Registration]) -> Result<()> {
        let deadline = Instant::now()
            + self
                .options
                .shutdown_timeout
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
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
                        return fail(
                            Status::ChildDied,
                            format!("{who}: its init function failed with error {code}"),
                        );
                    }
                    _ => {}
                }
                if let Ok(Some(how)) = sys::wait_child(pid, false) {
                    lock(&self.children).retain(|&p| p != pid);
                    return fail(
                        Status::ChildDied,
                        format!("{who} {how} before it was ready"),
                    );
                }
                if Instant::now() >= deadline {
                    return fail(
                        Status::Timeout,
                        format!("{who} did not become ready in time"),
                    );
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        Ok(())
    }

    fn start_threads(
        &self,
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
        for (index, mut handler) in handlers {
            let mailbox = workers[index].mailbox;
            let opts = ServeOptions {
                doorbell: Some(self.shared.bell),
                spin: self.options.worker_spin,
                ..ServeOptions::default()
            };
            let n = self.next_thread.fetch_add(1, Ordering::Relaxed);
            threads.push(spawn(
                format!("dist-worker-{n}"),
                Box::new(move || {
                    let _ = child::serve(mailbox, &mut *handler, &opts);
                }),
            )?);
        }
        let shared = self.shared.clone();
        threads.push(spawn(
            "dist-dispatch".into(),
            Box::new(move || shared.run_dispatcher()),
        )?);
        // Children this runtime forked are watched through pidfds (kernels
        // without pidfd_open go without: a dead child is then not noticed).
        let watched: Vec<Watched> = workers
            .iter()
            .filter_map(|w| {
                let (pid, reap) = match w.mode {
                    Mode::Spawned(pid) => (pid, true),
                    Mode::External(Some(pid)) => (pid, false),
                    _ => return None,
                };
                let pidfd = sys::pidfd_open(pid).ok()?;
                Some(Watched {
                    worker: w.index,
                    pid,
                    pidfd,
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
            *lock(&self.reaper) = Some((handle, stop));
        }
        Ok(())
    }

    /// Submits a task (starting the pool on first use). Returns its id.
    /// Waits for heap ring space up to the allocation deadline when its
    /// OUTPUT tensors need memory.
    pub fn submit<M: MemberArgs + ?Sized>(&self, spec: &TaskSpec<'_, M>) -> Result<DistTaskId> {
        if self.closing.load(Ordering::Acquire) {
            return fail(
                Status::ShutDown,
                "the worker is shutting down and takes no new work",
            );
        }
        self.start()?;
        self.with_backpressure(|e| e.submit(spec))
    }

    /// Allocates a tensor from the shared heap ring, owned by the current scope.
    pub fn alloc(&self, shape: &[u32], dtype: u8) -> Result<DistTensor> {
        self.with_backpressure(|e| e.alloc(shape, dtype))
    }

    /// Runs `attempt` until it gets heap ring space (Some) or the
    /// allocation deadline passes. The engine lock is released while
    /// waiting, so completions, scope ends and drains can free space.
    fn with_backpressure<T>(
        &self,
        mut attempt: impl FnMut(&mut Engine) -> Result<Option<T>>,
    ) -> Result<T> {
        let mut engine = self.shared.lock();
        let mut deadline = None;
        loop {
            if let Some(v) = attempt(&mut engine)? {
                return Ok(v);
            }
            let timeout = self.options.alloc_timeout;
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let now = Instant::now();
            if now >= deadline {
                let st = engine.stats();
                return fail(
                    Status::ResourceExhausted,
                    format!(
                        "the heap ring stayed full for {timeout:?} ({} bytes live in {} blocks); \
                         end scopes or drain to release memory",
                        st.heap_live_bytes, st.heap_blocks
                    ),
                );
            }
            engine.waiters += 1;
            engine = self
                .shared
                .finished
                .wait_timeout(engine, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            engine.waiters -= 1;
        }
    }

    /// Opens a nested scope.
    pub fn scope_begin(&self) -> Result<()> {
        self.shared.lock().scope_begin()
    }

    /// Closes the innermost scope; memory nothing depends on any more is reclaimed.
    pub fn scope_end(&self) -> Result<()> {
        let mut engine = self.shared.lock();
        engine.scope_end()?;
        self.notify(&engine);
        Ok(())
    }

    /// The tensor a task member was dispatched with (the allocated address
    /// of an OUTPUT submitted with `data == 0`).
    pub fn task_tensor(&self, id: DistTaskId, member: u32, index: u32) -> Result<DistTensor> {
        self.shared.lock().task_tensor(id, member, index)
    }

    /// Counts for checking that nothing is left behind.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    fn notify(&self, engine: &Engine) {
        self.shared.notify(engine);
    }

    /// Blocks until `engine` satisfies `done`.
    fn wait_until<T>(&self, done: impl FnMut(&mut Engine) -> Option<T>) -> T {
        self.shared.wait_for(done)
    }

    /// Waits for one task; returns its outcome.
    pub fn wait(&self, id: DistTaskId) -> Result<()> {
        self.wait_until(|e| match e.outcome(id) {
            Err(err) => Some(Err(err)),
            Ok(Some(r)) => Some(r),
            Ok(None) => None,
        })
    }

    /// Waits for every submitted task; returns the first failure since the
    /// last drain and releases every finished task's id.
    pub fn drain(&self) -> Result<()> {
        let r = self.wait_until(|e| (e.unfinished() == 0).then(|| e.drain()));
        self.notify(&self.shared.lock());
        r
    }

    /// Finishes dispatched work, stops every worker, joins threads and reaps
    /// children. Returns the first failure not reported by a drain.
    pub fn shutdown(mut self) -> Result<()> {
        self.close()
    }

    fn close(&mut self) -> Result<()> {
        self.closing.store(true, Ordering::Release);
        let life = std::mem::replace(&mut *lock(&self.life), Life::Closed);
        let mut outcome = Ok(());
        match life {
            Life::Closed => return Ok(()),
            Life::Setup(regs) => {
                for r in regs {
                    r.mailbox.publish(state::SHUTDOWN);
                }
            }
            Life::Running(threads) => {
                let deadline = self.options.shutdown_timeout.map(|t| Instant::now() + t);
                let drained = self
                    .shared
                    .wait_for_until(deadline, |e| (e.unfinished() == 0).then(|| e.drain()));
                outcome = match drained {
                    Some(r) => r,
                    None => Err(self.end_overdue_work()),
                };
                // Stop watching before children exit on SHUTDOWN.
                if let Some((handle, stop)) = lock(&self.reaper).take() {
                    sys::eventfd_signal(&stop);
                    let _ = handle.join();
                }
                for w in self.shared.workers.get().into_iter().flat_map(|w| w.iter()) {
                    w.mailbox.publish(state::SHUTDOWN);
                }
                self.shared.stop.store(true, Ordering::Release);
                self.shared.bell.wake(crate::mailbox::Sleeper::Dispatcher);
                // The dispatcher (last) always exits now; pool threads exit
                // unless a callable never returns. Give them a short grace
                // even when the deadline has passed.
                let grace = Instant::now() + JOIN_GRACE;
                let join_by = deadline.map(|d| d.max(grace));
                let mut threads = threads;
                let dispatcher = threads.pop();
                let mut stuck = 0;
                for t in threads {
                    while !t.is_finished() && join_by.is_none_or(|d| Instant::now() < d) {
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
                if stuck > 0 {
                    // A stuck thread may still touch its mailbox, the doorbell
                    // or the heap: never unmap them.
                    std::mem::forget(std::mem::take(&mut *lock(&self.owned)));
                    self.left_threads = true;
                    let e = Error::new(
                        Status::Timeout,
                        format!(
                            "{stuck} pool thread(s) still ran a callable at the shutdown \
                             deadline and were left running"
                        ),
                    );
                    outcome = outcome.and(Err(e));
                }
            }
        }
        let mut killed = Vec::new();
        for pid in lock(&self.children).drain(..) {
            let deadline = self.options.shutdown_timeout.map(|t| Instant::now() + t);
            loop {
                match sys::wait_child(pid, deadline.is_none()) {
                    Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => {
                        // SAFETY: killing a child this runtime forked and has not reaped.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        let _ = sys::wait_child(pid, true);
                        killed.push(pid);
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                    _ => break,
                }
            }
        }
        if !killed.is_empty() {
            let e = Error::new(
                Status::Timeout,
                format!("children {killed:?} ignored SHUTDOWN past the deadline and were killed"),
            );
            outcome = outcome.and(Err(e));
        }
        outcome
    }

    /// The shutdown deadline passed with work unfinished: kills the children
    /// still running tasks, takes every busy worker out of its pool (its
    /// task fails with TIMEOUT) and fails the tasks that never started.
    fn end_overdue_work(&self) -> Error {
        let mut ended = Vec::new();
        for w in self.shared.busy_workers() {
            if let Mode::Spawned(pid) = w.mode {
                // SAFETY: killing a child this runtime forked.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            ended.push(w.to_string());
        }
        for w in self
            .shared
            .busy_workers()
            .map(|w| w.index)
            .collect::<Vec<_>>()
        {
            let cause = Error::new(
                Status::Timeout,
                format!(
                    "{} was still running this task at the shutdown deadline",
                    self.shared.workers.get().expect("started")[w]
                ),
            );
            self.shared.retire_worker(w, cause);
        }
        let mut engine = self.shared.lock();
        engine.abort_unstarted(&Error::new(
            Status::Timeout,
            "the shutdown deadline passed before this task could run",
        ));
        let _ = engine.drain();
        Error::new(
            Status::Timeout,
            format!(
                "the shutdown deadline passed with work unfinished; ended: {}",
                ended.join(", ")
            ),
        )
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.close();
        if !self.left_threads {
            // SAFETY: dropped once, here; no thread of ours uses them any more.
            unsafe {
                std::mem::ManuallyDrop::drop(&mut self.heap);
                std::mem::ManuallyDrop::drop(&mut self.control);
            }
        }
    }
}
