//! A remote rank's side: its level (created and set up by the caller, as
//! `dist_worker_spawn_level` does in a child) serves rank 0's tasks until
//! rank 0 says SHUTDOWN, or goes silent.
//!
//! One task: its tensors get memory in the inner level's heap (shared, so
//! the level's own children see it), the bytes rank 0 sends are received
//! straight into it, the level runs the task (orchestration function, then
//! a drain), and the RESULT frame goes back followed, on success, by the
//! OUTPUT/INOUT bytes sent straight from that heap. The memory is released
//! once they left. A task whose memory could not be had still takes the
//! bytes rank 0 sent (into a scratch buffer), so the two stay in step, and
//! fails with the reason.

use super::link::{Hooks, Job, Link, Span};
use super::wire::{self, Frame, Kind, Task};
use super::{world, Completion, World};
use crate::blob::TaskView;
use crate::log::{log_line, Level as LogLevel};
use crate::runtime::{Level, Runtime};
use crate::status::{fail, Error, Result, Status};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a task may go on running after rank 0 went silent before the
/// process ends itself (as a spawned level dies with its host).
const ORPHAN_GRACE: Duration = Duration::from_millis(250);

/// What the link thread hands the serving loop.
enum Event {
    Frame(Frame),
    Gone(String),
}

/// Events, and the serving thread to wake for them.
struct Inbox {
    events: Mutex<VecDeque<Event>>,
    any: AtomicBool,
    reader: Thread,
}

impl Inbox {
    fn push(&self, e: Event) {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(e);
        // Under the lock, so a reader emptying the queue never misses it.
        self.any.store(true, Ordering::Release);
        drop(q);
        self.reader.unpark();
    }

    /// The next event, waiting for it while driving `link`.
    fn next(&self, link: &Link) -> Event {
        loop {
            link.drive(&mut || self.any.load(Ordering::Acquire), &mut || false);
            let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = q.pop_front() {
                self.any.store(!q.is_empty(), Ordering::Release);
                return e;
            }
        }
    }
}

/// This process's rank, refusing rank 0 (which drives, not serves).
pub(crate) fn serving_rank() -> Result<i32> {
    let w = world()?;
    must_not_be_rank0(&w)?;
    Ok(w.rank)
}

fn must_not_be_rank0(w: &World) -> Result<()> {
    if w.rank == 0 {
        return fail(
            Status::BadState,
            "this is rank 0, which drives the others (dist_worker_add_mpi_levels); ranks >= 1 serve",
        );
    }
    Ok(())
}

/// A rank's link to rank 0, up before its level is set up: the rank
/// heartbeats from then on, so rank 0 notices a rank that dies in its setup
/// function by its silence.
pub(crate) struct Connection {
    world: World,
    link: Link,
    inbox: Arc<Inbox>,
    /// A task runs here (rank 0 going silent then ends the process).
    busy: Arc<AtomicBool>,
}

/// Connects this rank (not rank 0) to rank 0. Before rank 0's DistWorker
/// starts, the rank waits for it up to `contact_within`.
pub(crate) fn connect(contact_within: Option<Duration>) -> Result<Connection> {
    let w = world()?;
    must_not_be_rank0(&w)?;
    let inbox = Arc::new(Inbox {
        events: Mutex::new(VecDeque::new()),
        any: AtomicBool::new(false),
        reader: std::thread::current(),
    });
    let busy = Arc::new(AtomicBool::new(false));
    let (frames, gone, orphan) = (inbox.clone(), inbox.clone(), busy.clone());
    let hooks = Hooks {
        on_frame: Box::new(move |_, f| frames.push(Event::Frame(f))),
        on_gone: Box::new(move |_, _, why| {
            gone.push(Event::Gone(why.to_string()));
            if orphan.load(Ordering::Acquire) {
                end_if_still_busy(orphan.clone());
            }
        }),
        first: Vec::new(),
        contact: &[Kind::Start],
        contact_by: contact_within.map(|d| Instant::now() + d),
        farewell: None,
    };
    let link = Link::start(w.comm, vec![0], hooks)?;
    Ok(Connection {
        world: w,
        link,
        inbox,
        busy,
    })
}

impl Connection {
    /// Tells rank 0 that this rank's level could not be set up (its start
    /// then fails naming the rank, the code and `message`), and disconnects.
    pub(crate) fn setup_failed(self, code: i32, message: &str) {
        let f = Frame::new(Kind::SetupFailed, 0, code as u32 as u64, 0)
            .with_body(message.as_bytes()[..message.len().min(wire::MESSAGE_MAX)].to_vec());
        // Dropping the link right after: its end waits for the frame to leave.
        self.link.send(0, f);
    }

    /// Serves rank 0's tasks on `level` (created, set up and started) until
    /// rank 0 says SHUTDOWN (Ok) or goes silent (SHUT_DOWN). `level` is
    /// dropped (its inner level shut down) before this returns.
    pub(crate) fn serve(self, mut level: Box<dyn Level>) -> Result<()> {
        let Connection {
            world: w,
            link,
            inbox,
            busy,
        } = self;
        let Some(inner) = level.runtime() else {
            return fail(
                Status::InvalidArgument,
                "a remote level needs an inner DistWorker",
            );
        };
        populate(&inner);
        let host = host_name();
        let ready = Frame::new(
            Kind::Ready,
            0,
            std::process::id() as u64,
            level.number() as u64,
        )
        .with_body(host.into_bytes());
        link.send(0, ready);
        let outcome = loop {
            match inbox.next(&link) {
                Event::Frame(f) if f.kind == Kind::Task => {
                    busy.store(true, Ordering::Release);
                    let r = run_task(&link, &inner, &mut *level, w.rank, f);
                    busy.store(false, Ordering::Release);
                    if let Err(e) = r {
                        break Err(e);
                    }
                }
                Event::Frame(f) if f.kind == Kind::Shutdown => break Ok(()),
                Event::Frame(f) if f.kind == Kind::Start => {}
                Event::Frame(f) => {
                    log_line!(
                        LogLevel::Warn,
                        None,
                        "rank 0 sent an unexpected {:?} frame; ignored",
                        f.kind
                    )
                }
                Event::Gone(why) => {
                    break fail(
                        Status::ShutDown,
                        format!("rank 0 {why}; this rank stops serving"),
                    )
                }
            }
        };
        drop(level);
        drop(link);
        outcome
    }
}

/// Rank 0 went silent while a task runs here: the process ends unless the
/// task is over within `ORPHAN_GRACE` (no level outlives the one above it).
fn end_if_still_busy(busy: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("dist-mpi-orphan".into())
        .spawn(move || {
            std::thread::sleep(ORPHAN_GRACE);
            if busy.load(Ordering::Acquire) {
                crate::log::emit(
                    LogLevel::Error,
                    None,
                    "rank 0 is gone while a task runs here: this process ends",
                );
                // SAFETY: ends the process at once, as a host's death ends
                // its spawned levels; the inner level's children follow
                // through their lifelines.
                unsafe { libc::_exit(70) };
            }
        });
}

/// Faults the inner level's heap in now, once: tasks' bytes are received
/// into it as they come, and a first touch of each page on the way would
/// cost more than the copy itself (the heap ring hands out every part of it
/// in turn). MADV_POPULATE_WRITE changes no byte; a kernel without it (before
/// 5.14) leaves the pages to be faulted in by the first tasks.
fn populate(inner: &Runtime) {
    let (base, len) = inner.heap();
    // SAFETY: the heap is this runtime's own mapping of `len` bytes; the
    // advice only faults its pages in.
    let _ = unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Waits for a job of this thread's to finish; a link that ended it
/// (rank 0 gone) is an error.
fn exchange(link: &Link, job: Job, done: &Completion) -> Result<(i32, Option<String>)> {
    link.run(job, &mut || done.is_ready(), &mut || false);
    done.take()
        .unwrap_or_else(|| fail(Status::ShutDown, "the link stopped"))
}

/// One task from rank 0 (see the module doc). Errors only when the link to
/// rank 0 is lost or the task could not be read (the loop ends then).
fn run_task(
    link: &Link,
    inner: &Runtime,
    level: &mut dyn Level,
    rank: i32,
    f: Frame,
) -> Result<()> {
    let seq = f.seq;
    let result = |code: i32, message: Option<String>, sends: Vec<Span>, chunk: u64| {
        let mut body = message.unwrap_or_default().into_bytes();
        body.truncate(wire::MESSAGE_MAX);
        let done = Completion::new();
        let job = Job {
            rank: 0,
            frame: Some(
                Frame::new(Kind::Result, seq, code as u32 as u64, 0)
                    .with_body(body)
                    .encode(),
            ),
            sends,
            recvs: Vec::new(),
            result_of: None,
            chunk,
            done: done.clone(),
        };
        exchange(link, job, &done).map(drop)
    };
    let task = match Task::decode(&f.body) {
        Ok(t) => t,
        Err(e) => {
            let m = format!("rank {rank} could not read its task: {}", e.message);
            result(
                crate::child::ERROR_BAD_BLOB,
                Some(m.clone()),
                Vec::new(),
                wire::DEFAULT_CHUNK,
            )?;
            return fail(Status::Protocol, m);
        }
    };
    // Memory for every tensor that carries bytes, in a scope of its own
    // (released once the outputs left).
    let scoped = inner.scope_begin();
    let scoped_ok = scoped.is_ok();
    let mut view = task.tensors.clone();
    let mut failure: Option<Error> = scoped.err();
    for (t, &d) in view.iter_mut().zip(&task.dirs) {
        if d == 0 || failure.is_some() {
            continue;
        }
        match inner.alloc(&t.shapes[..t.ndims as usize], t.dtype) {
            Ok(h) => t.data = h.data,
            Err(e) => failure = Some(e),
        }
    }
    let span = |i: usize| Span {
        addr: if failure.is_some() { 0 } else { view[i].data },
        len: crate::blob::tensor_bytes(&task.tensors[i]).unwrap_or(0),
    };
    let recvs = (0..view.len())
        .filter(|&i| task.dirs[i] & wire::OUT != 0)
        .map(span)
        .collect();
    let done = Completion::new();
    let job = Job {
        rank: 0,
        frame: None,
        sends: Vec::new(),
        recvs,
        result_of: None,
        chunk: task.chunk,
        done: done.clone(),
    };
    let received = exchange(link, job, &done);
    let (code, message) = match (failure, received) {
        (_, Err(e)) => {
            if scoped_ok {
                let _ = inner.scope_end();
            }
            return Err(e);
        }
        (Some(e), _) => (
            -(e.status as i32),
            Some(format!(
                "rank {rank} could not hold the task's tensors: {}",
                e.message
            )),
        ),
        (None, Ok(_)) => {
            let args = TaskView {
                tensors: &view,
                scalars: &task.scalars,
            };
            level.run(task.callable, &args, &task.config)
        }
    };
    let sends = if code == 0 {
        (0..view.len())
            .filter(|&i| task.dirs[i] & wire::BACK != 0)
            .map(|i| Span {
                addr: view[i].data,
                len: crate::blob::tensor_bytes(&view[i]).unwrap_or(0),
            })
            .collect()
    } else {
        Vec::new()
    };
    let sent = result(code, message, sends, task.chunk);
    if scoped_ok {
        let _ = inner.scope_end();
    }
    sent
}
