//! The link: the state of every exchange with the peers, and the thread
//! that keeps it going. Other threads hand it jobs (a frame, bytes to send,
//! bytes to receive) and wait for a `Completion`; a step posts nonblocking
//! operations, tests them, receives the control frames that arrived, sends
//! a heartbeat to every peer every `HEARTBEAT`, and declares a peer gone
//! after `SILENCE` without a message from it. Every MPI call is made under
//! the link's lock, one thread at a time (MPI_THREAD_SERIALIZED is enough).
//!
//! Who steps: a thread with a job (`Link::run`) queues it without waking
//! the link thread and steps the link itself, posting the job in its first
//! step, for its first `HOT` (so a hot exchange costs no hand-off between
//! threads and no wake-up), then sleeps until woken and leaves the stepping
//! to the link thread, which always runs (heartbeats, silence, frames
//! nobody waits for).
//!
//! Waiting: while any operation is outstanding, and for 2 ms after anything
//! but a heartbeat happened, the loop yields between looks (a hot exchange
//! is never behind a sleep); otherwise it sleeps, 50 µs growing to 1 ms
//! while an exchange is under way (a rank 0 waiting for a task's result)
//! and to 4 ms when there is none (a rank waiting for work); a thread that
//! stops driving, and an abandon, wake it at once.

use super::mpi::{Comm, Request};
use super::wire::{self, Frame, Kind, TAG_CTRL, TAG_DATA};
use super::{Completion, HEARTBEAT, SILENCE};
use crate::log::{log_line, Level as LogLevel};
use crate::status::{Error, Result, Status};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the loop stays hot after anything happened.
const HOT: Duration = Duration::from_millis(2);
const MIN_NAP: Duration = Duration::from_micros(50);
const MAX_NAP: Duration = Duration::from_millis(1);
const MAX_IDLE_NAP: Duration = Duration::from_millis(4);
/// A loop that did not come round for this long was descheduled itself:
/// its peers' silence meanwhile is not held against them.
const STALL: Duration = Duration::from_millis(200);
/// How long a stop waits for its farewell frames to leave.
const FAREWELL: Duration = Duration::from_millis(500);

/// Bytes at an address: sent from, or received into (address 0: received
/// and dropped, for a task whose memory could not be had).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    /// Where.
    pub addr: u64,
    /// How many bytes.
    pub len: u64,
}

/// One exchange with a peer.
pub(crate) struct Job {
    /// The peer.
    pub rank: i32,
    /// A frame to send first.
    pub frame: Option<Vec<u8>>,
    /// Bytes sent after it, in order, in chunks.
    pub sends: Vec<Span>,
    /// Bytes received, in order, in chunks: at once, or, with `result_of`,
    /// once the peer's RESULT frame for that task said 0.
    pub recvs: Vec<Span>,
    /// Wait for the peer's RESULT frame of this task.
    pub result_of: Option<u64>,
    /// Bytes per data message.
    pub chunk: u64,
    /// Finished when every operation is done (or the peer is gone).
    pub done: Arc<Completion>,
}

/// Hears that a peer is gone: (rank, status its task ends with, why).
pub(crate) type OnGone = Box<dyn FnMut(i32, Status, &str) + Send>;

/// What the side using the link wants to hear.
pub(crate) struct Hooks {
    /// A frame other than a heartbeat or an awaited RESULT.
    pub on_frame: Box<dyn FnMut(i32, Frame) + Send>,
    /// A peer is gone (with why); called before its job is finished.
    pub on_gone: OnGone,
    /// Frames sent as the thread starts.
    pub first: Vec<(i32, Frame)>,
    /// The frame kinds after any of which a peer's silence counts.
    pub contact: &'static [Kind],
    /// Peers not heard from (`contact`) by then are gone.
    pub contact_by: Option<Instant>,
    /// Sent to every live peer when the link stops (rank 0: SHUTDOWN).
    pub farewell: Option<Kind>,
}

enum Command {
    Job(Job),
    /// A control frame for a peer.
    Send(i32, Frame),
    /// Give a peer up (it leaves for good) and tell it to stop.
    Abandon(i32, String),
}

struct Shared {
    commands: Mutex<Vec<Command>>,
    stop: AtomicBool,
    /// Every MPI call is made under this lock.
    state: Mutex<State>,
    /// Threads stepping the link while they wait (the link thread then
    /// only naps between its own steps).
    drivers: AtomicUsize,
}

/// A running link thread. Dropping it stops the thread (after the farewell).
pub(crate) struct Link {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Starts the link thread over `comm` with `peers`.
    pub(crate) fn start(comm: Comm, peers: Vec<i32>, hooks: Hooks) -> Result<Link> {
        let shared = Arc::new(Shared {
            commands: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            state: Mutex::new(State::new(comm, &peers, hooks)),
            drivers: AtomicUsize::new(0),
        });
        let s = shared.clone();
        super::LINKS.fetch_add(1, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name("dist-mpi-link".into())
            .spawn(move || {
                run(&s);
                super::LINKS.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(|e| {
                super::LINKS.fetch_sub(1, Ordering::SeqCst);
                Error::new(Status::Os, format!("starting the MPI link thread: {e}"))
            })?;
        Ok(Link {
            shared,
            thread: Some(thread),
        })
    }

    fn command(&self, c: Command) {
        self.queue(c);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    fn queue(&self, c: Command) {
        self.shared
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(c);
    }

    /// Runs `job` on this thread: it is posted by this thread's first step
    /// (the link thread is not woken for it: a wake-up costs more than the
    /// whole exchange), then waited for as `drive` does.
    pub(crate) fn run(
        &self,
        job: Job,
        done: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
    ) -> bool {
        self.queue(Command::Job(job));
        self.drive(done, give_up)
    }

    /// Sends a control frame to `rank` (it leaves even if the link is
    /// dropped right after).
    pub(crate) fn send(&self, rank: i32, frame: Frame) {
        self.command(Command::Send(rank, frame));
    }

    /// Gives `rank` up for good: its job ends, it is told to stop.
    pub(crate) fn abandon(&self, rank: i32, why: String) {
        self.command(Command::Abandon(rank, why));
    }

    /// Waits until `done()`: steps the link on this thread for `HOT`
    /// (yielding between steps), then sleeps until woken (by whoever
    /// finishes what it waits for), looking every 20 ms at most. Returns
    /// false as soon as `give_up()` says so.
    pub(crate) fn drive(
        &self,
        done: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
    ) -> bool {
        let start = Instant::now();
        let mut driving = true;
        self.shared.drivers.fetch_add(1, Ordering::AcqRel);
        let mut looks = 0u32;
        let finished = loop {
            if done() {
                break true;
            }
            looks += 1;
            if looks < 16 {
                std::hint::spin_loop();
                continue;
            }
            if give_up() {
                break false;
            }
            if driving && start.elapsed() >= HOT {
                driving = false;
                self.shared.drivers.fetch_sub(1, Ordering::AcqRel);
                if let Some(t) = &self.thread {
                    t.thread().unpark();
                }
            }
            if driving {
                if let Ok(mut st) = self.shared.state.try_lock() {
                    st.step(&self.shared);
                }
                if done() {
                    break true;
                }
                std::thread::yield_now();
            } else {
                std::thread::park_timeout(Duration::from_millis(20));
            }
        };
        if driving {
            self.shared.drivers.fetch_sub(1, Ordering::AcqRel);
        }
        finished
    }
}

/// The link thread: steps the link, yielding between steps while it is hot
/// and no other thread drives it, napping otherwise; at the end, the
/// farewell.
fn run(shared: &Shared) {
    let mut last_activity = Instant::now();
    let mut nap = MIN_NAP;
    while !shared.stop.load(Ordering::Acquire) {
        let (active, idle) = match shared.state.try_lock() {
            Ok(mut st) => (st.step(shared), st.peers.iter().all(|p| p.active.is_none())),
            Err(_) => (false, false),
        };
        let now = Instant::now();
        if active {
            last_activity = now;
            nap = MIN_NAP;
        }
        if shared.drivers.load(Ordering::Acquire) > 0 {
            std::thread::park_timeout(MAX_NAP);
        } else if now.duration_since(last_activity) < HOT {
            std::thread::yield_now();
        } else {
            std::thread::park_timeout(nap);
            nap = (nap * 2).min(if idle { MAX_IDLE_NAP } else { MAX_NAP });
        }
    }
    let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    // Frames asked for just before the stop still leave.
    let commands = std::mem::take(&mut *shared.commands.lock().unwrap_or_else(|p| p.into_inner()));
    for c in commands {
        if let Command::Send(rank, f) = c {
            st.send_frame(rank, f.encode());
        }
    }
    st.finish();
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// An exchange under way.
struct Active {
    job: Job,
    /// The frame's send and its bytes, kept until it completed.
    frame: Option<(Request, Vec<u8>)>,
    sends: Vec<Request>,
    recvs: Vec<Request>,
    /// The peer's RESULT, once it came.
    result: Option<(i32, Option<String>)>,
    /// Where dropped bytes land.
    scratch: Vec<u8>,
}

struct Peer {
    rank: i32,
    contacted: bool,
    last_heard: Instant,
    gone: Option<String>,
    heartbeat: Option<(Request, Vec<u8>)>,
    active: Option<Active>,
}

struct State {
    comm: Comm,
    peers: Vec<Peer>,
    hooks: Hooks,
    /// Frames sent and not yet completed.
    outbox: Vec<(i32, Request, Vec<u8>)>,
    /// When the last step ran (a longer gap than `STALL` was ours).
    last_step: Instant,
    next_heartbeat: Instant,
}

impl State {
    fn new(comm: Comm, ranks: &[i32], hooks: Hooks) -> State {
        let now = Instant::now();
        State {
            comm,
            peers: ranks
                .iter()
                .map(|&rank| Peer {
                    rank,
                    contacted: false,
                    last_heard: now,
                    gone: None,
                    heartbeat: None,
                    active: None,
                })
                .collect(),
            hooks,
            outbox: Vec::new(),
            last_step: now,
            next_heartbeat: now,
        }
    }

    fn peer(&mut self, rank: i32) -> Option<usize> {
        self.peers.iter().position(|p| p.rank == rank)
    }

    /// One step: the frames of the start, commands, frames that arrived,
    /// operations that completed, heartbeats due, silent peers. Returns
    /// whether anything but a heartbeat happened or operations are
    /// outstanding (then the link stays hot).
    fn step(&mut self, shared: &Shared) -> bool {
        let now = Instant::now();
        for (rank, f) in std::mem::take(&mut self.hooks.first) {
            self.send_frame(rank, f.encode());
        }
        if now.duration_since(self.last_step) > STALL {
            for p in &mut self.peers {
                p.last_heard = now;
            }
        }
        self.last_step = now;
        let mut active = false;
        let commands =
            std::mem::take(&mut *shared.commands.lock().unwrap_or_else(|p| p.into_inner()));
        for c in commands {
            active = true;
            match c {
                Command::Job(j) => self.start_job(j),
                Command::Send(rank, f) => self.send_frame(rank, f.encode()),
                Command::Abandon(rank, why) => {
                    if let Some(i) = self.peer(rank) {
                        self.gone(i, Status::ChildDied, &why);
                        self.send_frame(rank, Frame::new(Kind::Shutdown, 0, 0, 0).encode());
                    }
                }
            }
        }
        active |= self.receive_frames();
        active |= self.progress();
        if now >= self.next_heartbeat {
            self.heartbeats();
            self.next_heartbeat = now + HEARTBEAT;
        }
        self.check_silence(now);
        active || self.busy()
    }

    /// Whether operations are outstanding (the loop stays hot).
    fn busy(&self) -> bool {
        !self.outbox.is_empty()
            || self.peers.iter().any(|p| {
                p.active.as_ref().is_some_and(|a| {
                    a.frame.is_some() || !a.sends.is_empty() || !a.recvs.is_empty()
                })
            })
    }

    fn send_frame(&mut self, rank: i32, bytes: Vec<u8>) {
        // SAFETY: the bytes are kept in the outbox until the send completed.
        match unsafe { self.comm.isend(bytes.as_ptr(), bytes.len(), rank, TAG_CTRL) } {
            Ok(r) => self.outbox.push((rank, r, bytes)),
            Err(e) => {
                if let Some(i) = self.peer(rank) {
                    self.gone(
                        i,
                        Status::ChildDied,
                        &format!("could not be sent a frame: {}", e.message),
                    );
                }
            }
        }
    }

    fn start_job(&mut self, job: Job) {
        let Some(i) = self.peer(job.rank) else {
            let e = Error::new(
                Status::InvalidArgument,
                format!("rank {} is no peer", job.rank),
            );
            job.done.finish(Err(e));
            return;
        };
        if let Some(why) = &self.peers[i].gone {
            job.done
                .finish(Err(Error::new(Status::ChildDied, why.clone())));
            return;
        }
        if self.peers[i].active.is_some() {
            let e = Error::new(Status::BadState, "an exchange with this rank is under way");
            job.done.finish(Err(e));
            return;
        }
        let mut a = Active {
            frame: None,
            sends: Vec::new(),
            recvs: Vec::new(),
            result: None,
            scratch: Vec::new(),
            job,
        };
        let posted = self.post(&mut a);
        self.peers[i].active = Some(a);
        if let Err(e) = posted {
            self.gone(
                i,
                Status::ChildDied,
                &format!("could not be sent a task: {}", e.message),
            );
        }
    }

    /// Posts a job's frame, its sends, and (without `result_of`) its receives.
    fn post(&mut self, a: &mut Active) -> Result<()> {
        let (rank, chunk) = (a.job.rank, a.job.chunk);
        if let Some(bytes) = a.job.frame.take() {
            // SAFETY: the bytes live in `a.frame` until the send completed.
            let r = unsafe { self.comm.isend(bytes.as_ptr(), bytes.len(), rank, TAG_CTRL) }?;
            a.frame = Some((r, bytes));
        }
        for s in &a.job.sends {
            for (off, n) in wire::chunks(s.len, chunk) {
                // SAFETY: the job's owner keeps the span valid and unchanged
                // until the job is finished (the contract of `Job`).
                let r = unsafe {
                    self.comm
                        .isend((s.addr + off) as *const u8, n as usize, rank, TAG_DATA)
                }?;
                a.sends.push(r);
            }
        }
        if a.job.result_of.is_none() {
            post_recvs(&self.comm, a)?;
        }
        Ok(())
    }

    /// Receives every control frame that has arrived. Returns whether any did.
    fn receive_frames(&mut self) -> bool {
        let mut any = false;
        loop {
            let matched = match self.comm.improbe(TAG_CTRL) {
                Ok(Some(m)) => m,
                Ok(None) => return any,
                Err(e) => {
                    self.all_gone(&e.message);
                    return any;
                }
            };
            let source = matched.source;
            let frame = self.comm.mrecv(matched).and_then(Frame::decode);
            let Some(i) = self.peer(source) else { continue };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    self.gone(
                        i,
                        Status::Protocol,
                        &format!("broke the protocol: {}", e.message),
                    );
                    continue;
                }
            };
            let p = &mut self.peers[i];
            if p.gone.is_some() {
                continue;
            }
            p.last_heard = Instant::now();
            if self.hooks.contact.contains(&frame.kind) {
                p.contacted = true;
            }
            any |= frame.kind != Kind::Heartbeat;
            match frame.kind {
                Kind::Heartbeat => {}
                Kind::Result => self.result(i, frame),
                _ => (self.hooks.on_frame)(source, frame),
            }
        }
    }

    fn result(&mut self, i: usize, f: Frame) {
        let awaited = self.peers[i]
            .active
            .as_ref()
            .is_some_and(|a| a.job.result_of == Some(f.seq) && a.result.is_none());
        if !awaited {
            self.gone(
                i,
                Status::Protocol,
                &format!("sent a result for task {} that was not awaited", f.seq),
            );
            return;
        }
        let code = f.a as u32 as i32;
        let message = (!f.body.is_empty()).then(|| String::from_utf8_lossy(&f.body).into_owned());
        if code == crate::child::ERROR_BAD_BLOB {
            // It could not read the task, so it never took the bytes that
            // followed: the exchange cannot go on.
            let why = format!(
                "could not read a task: {}",
                message.as_deref().unwrap_or("no reason given")
            );
            self.gone(i, Status::Protocol, &why);
            return;
        }
        let a = self.peers[i].active.as_mut().expect("checked");
        a.result = Some((code, message));
        if code == 0 {
            if let Err(e) = post_recvs(&self.comm, a) {
                self.gone(
                    i,
                    Status::ChildDied,
                    &format!("could not be received from: {}", e.message),
                );
            }
        }
    }

    /// Tests outstanding operations; finishes completed jobs. Returns
    /// whether anything completed.
    fn progress(&mut self) -> bool {
        let mut any = false;
        let mut failed = Vec::new();
        for (i, p) in self.peers.iter_mut().enumerate() {
            if let Some((r, _)) = &mut p.heartbeat {
                match r.test() {
                    Ok(true) => p.heartbeat = None,
                    Ok(false) => {}
                    Err(e) => failed.push((i, e.message)),
                }
            }
            let Some(a) = &mut p.active else { continue };
            let mut error = None;
            if let Some((r, _)) = &mut a.frame {
                match r.test() {
                    Ok(true) => a.frame = None,
                    Ok(false) => {}
                    Err(e) => error = Some(e.message),
                }
            }
            any |= test_all(&mut a.sends, &mut error);
            any |= test_all(&mut a.recvs, &mut error);
            if let Some(e) = error {
                failed.push((i, e));
                continue;
            }
            let settled = a.frame.is_none() && a.sends.is_empty() && a.recvs.is_empty();
            if settled && (a.job.result_of.is_none() || a.result.is_some()) {
                let a = p.active.take().expect("checked");
                a.job.done.finish(Ok(a.result.unwrap_or((0, None))));
                any = true;
            }
        }
        for (i, e) in failed {
            self.gone(i, Status::ChildDied, &format!("MPI failed: {e}"));
        }
        let mut failed = Vec::new();
        self.outbox.retain_mut(|(rank, r, _)| match r.test() {
            Ok(done) => !done,
            Err(e) => {
                failed.push((*rank, e.message));
                false
            }
        });
        for (rank, e) in failed {
            if let Some(i) = self.peer(rank) {
                self.gone(
                    i,
                    Status::ChildDied,
                    &format!("could not be sent a frame: {e}"),
                );
            }
        }
        any
    }

    fn heartbeats(&mut self) {
        let beat = Frame::new(Kind::Heartbeat, 0, 0, 0).encode();
        let mut failed = Vec::new();
        for (i, p) in self.peers.iter_mut().enumerate() {
            if p.gone.is_some() || p.heartbeat.is_some() {
                continue;
            }
            let bytes = beat.clone();
            // SAFETY: the bytes are kept beside the request until it completed.
            match unsafe {
                self.comm
                    .isend(bytes.as_ptr(), bytes.len(), p.rank, TAG_CTRL)
            } {
                Ok(r) => p.heartbeat = Some((r, bytes)),
                Err(e) => failed.push((i, e.message)),
            }
        }
        for (i, e) in failed {
            self.gone(
                i,
                Status::ChildDied,
                &format!("could not be sent a heartbeat: {e}"),
            );
        }
    }

    fn check_silence(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            let p = &self.peers[i];
            if p.gone.is_some() {
                continue;
            }
            if p.contacted {
                let quiet = now.duration_since(p.last_heard);
                if quiet > SILENCE {
                    let why = format!(
                        "went silent: no message for {} ms (the process was killed, or its \
                         host or network is gone)",
                        quiet.as_millis()
                    );
                    self.gone(i, Status::ChildDied, &why);
                }
            } else if self.hooks.contact_by.is_some_and(|d| now >= d) {
                self.gone(i, Status::ChildDied, "was not heard from in time");
            }
        }
    }

    fn all_gone(&mut self, why: &str) {
        log_line!(LogLevel::Error, None, "the MPI link failed: {why}");
        for i in 0..self.peers.len() {
            self.gone(i, Status::ChildDied, &format!("is out of reach: {why}"));
        }
    }

    /// Takes peer `i` out for good: the side hears of it first, then its
    /// job ends with CHILD_DIED; its operations are given up.
    fn gone(&mut self, i: usize, status: Status, why: &str) {
        let p = &mut self.peers[i];
        if p.gone.is_some() {
            return;
        }
        p.gone = Some(why.to_string());
        let rank = p.rank;
        if let Some((r, bytes)) = p.heartbeat.take() {
            r.abandon(false);
            std::mem::forget(bytes); // MPI may still read them
        }
        let active = p.active.take();
        (self.hooks.on_gone)(rank, status, why);
        if let Some(a) = active {
            give_up(a, Error::new(status, format!("rank {rank} {why}")));
        }
    }

    /// The end: the farewell to live peers, frames still leaving waited
    /// for up to `FAREWELL`, then everything outstanding is given up.
    fn finish(&mut self) {
        // A link stopped before its first step still sends its first frames
        // (a SETUP_FAILED, the SHUTDOWN of ranks never started).
        for (rank, f) in std::mem::take(&mut self.hooks.first) {
            self.send_frame(rank, f.encode());
        }
        if let Some(kind) = self.hooks.farewell {
            let live: Vec<i32> = self
                .peers
                .iter()
                .filter(|p| p.gone.is_none())
                .map(|p| p.rank)
                .collect();
            for rank in live {
                self.send_frame(rank, Frame::new(kind, 0, 0, 0).encode());
            }
        }
        let by = Instant::now() + FAREWELL;
        while !self.outbox.is_empty() && Instant::now() < by {
            self.progress();
            std::thread::yield_now();
        }
        for (_, r, bytes) in self.outbox.drain(..) {
            r.abandon(false);
            std::mem::forget(bytes); // MPI may still read them
        }
        for p in &mut self.peers {
            if let Some((r, bytes)) = p.heartbeat.take() {
                r.abandon(false);
                std::mem::forget(bytes);
            }
            if let Some(a) = p.active.take() {
                give_up(a, Error::new(Status::ShutDown, "the MPI link stopped"));
            }
        }
    }
}

/// Tests `reqs`, keeping the incomplete ones; the first error goes to
/// `error`. Returns whether any completed.
fn test_all(reqs: &mut Vec<Request>, error: &mut Option<String>) -> bool {
    let mut any = false;
    reqs.retain_mut(|r| match r.test() {
        Ok(done) => {
            any |= done;
            !done
        }
        Err(e) => {
            error.get_or_insert(e.message);
            false
        }
    });
    any
}

/// Posts a job's receives, in order, in chunks.
fn post_recvs(comm: &Comm, a: &mut Active) -> Result<()> {
    let (rank, chunk) = (a.job.rank, a.job.chunk);
    // Every chunk without a destination lands in the one scratch buffer:
    // sized for the largest before the first receive is posted, since
    // growing it later would move it under receives still pending.
    let largest = a
        .job
        .recvs
        .iter()
        .filter(|s| s.addr == 0)
        .flat_map(|s| wire::chunks(s.len, chunk))
        .map(|(_, n)| n as usize)
        .max()
        .unwrap_or(0);
    if a.scratch.len() < largest {
        a.scratch.resize(largest, 0);
    }
    for s in &a.job.recvs {
        for (off, n) in wire::chunks(s.len, chunk) {
            let at = if s.addr == 0 {
                a.scratch.as_mut_ptr()
            } else {
                (s.addr + off) as *mut u8
            };
            // SAFETY: the job's owner keeps the span writable and untouched
            // until the job is finished (the contract of `Job`); the
            // scratch buffer lives in `a` until then, and receives into it
            // are only ever dropped.
            let r = unsafe { comm.irecv(at, n as usize, rank, TAG_DATA) }?;
            a.recvs.push(r);
        }
    }
    Ok(())
}

/// Ends an exchange whose peer is gone: receives are cancelled and given
/// a moment to settle (so nothing lands in the caller's memory after its
/// job ended), sends are freed, then the waiter hears `why`.
fn give_up(mut a: Active, why: Error) {
    for r in a.recvs.drain(..) {
        r.abandon(true);
    }
    for r in a.sends.drain(..) {
        r.abandon(false);
    }
    if let Some((r, bytes)) = a.frame.take() {
        r.abandon(false);
        std::mem::forget(bytes); // MPI may still read them
    }
    std::mem::forget(std::mem::take(&mut a.scratch));
    a.job.done.finish(Err(why));
}
