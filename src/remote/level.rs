//! Rank 0's side: every rank r >= 1 is a NEXT_LEVEL worker of the DistWorker
//! that `add_mpi_levels` was given, in rank order. A task on it is an
//! exchange run by its pool thread: the task frame and the bytes of its
//! INPUT/INOUT tensors go out straight from the caller's memory, the
//! rank's RESULT comes back, and on success the bytes of its OUTPUT/INOUT
//! tensors land straight in the caller's memory. A rank that goes silent
//! leaves the pool (its task ends with CHILD_DIED); at shutdown every rank
//! is told to stop.

use super::link::{Hooks, Job, Link, Span};
use super::wire::{self, Frame, Kind, Task};
use super::{world, Completion, World, DRIVEN, DRIVERS};
use crate::abi::{DistCallConfig, DIST_ARG_INPUT};
use crate::blob::{self, TaskView};
use crate::log::{log_line, Level as LogLevel};
use crate::runtime::{Level, Outcome, RemoteWorker, Runtime};
use crate::status::{fail, Error, Result, Status};
use once_cell::sync::OnceCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What rank 0 knows of a rank before its level serves.
#[derive(Clone, Debug)]
enum Peer {
    Waiting,
    Ready { pid: u64, level: u64, host: String },
    SetupFailed(i32, String),
    Gone(String),
}

/// The ranks driven by one DistWorker, and their link.
struct Root {
    world: World,
    ranks: Vec<i32>,
    link: OnceCell<Link>,
    peers: Arc<Mutex<Vec<Peer>>>,
    workers: Arc<Mutex<Vec<RemoteWorker>>>,
    chunk: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers every rank r >= 1 as a NEXT_LEVEL worker of `outer` (worker
/// index r - 1), before start; `outer`'s start waits for each to be ready.
/// Returns how many.
pub(crate) fn add_mpi_levels(outer: &Runtime) -> Result<u32> {
    let world = world()?;
    if world.rank != 0 {
        return fail(
            Status::BadState,
            format!(
                "this is rank {}: only rank 0 drives the other ranks (ranks >= 1 call \
                 dist_worker_mpi_serve)",
                world.rank
            ),
        );
    }
    outer.registration_open()?;
    if DRIVEN.swap(true, Ordering::AcqRel) {
        return fail(
            Status::BadState,
            "the MPI ranks are driven by a DistWorker already (once per process)",
        );
    }
    let ranks: Vec<i32> = (1..world.size).collect();
    let chunk = std::env::var("DIST_WORKER_MPI_CHUNK")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&c| c > 0 && c <= i32::MAX as u64)
        .unwrap_or(wire::DEFAULT_CHUNK);
    DRIVERS.fetch_add(1, Ordering::SeqCst);
    let root = Arc::new(Root {
        world,
        ranks: ranks.clone(),
        link: OnceCell::new(),
        peers: Arc::new(Mutex::new(vec![Peer::Waiting; ranks.len()])),
        workers: Arc::new(Mutex::new(Vec::new())),
        chunk,
    });
    let number = outer.options().level.saturating_sub(1);
    for &rank in &ranks {
        outer.add_remote_level(rank as u32, number, |worker| {
            lock(&root.workers).push(worker.clone());
            Box::new(RemoteLevel {
                root: root.clone(),
                rank,
                number,
                worker,
                seq: 0,
            })
        })?;
    }
    if !ranks.is_empty() {
        let r = root.clone();
        outer.on_start(Box::new(move |deadline| r.start(deadline)))?;
    }
    Ok(ranks.len() as u32)
}

impl Root {
    /// Starts the link (START to every rank) and waits for every rank's
    /// READY until `deadline`.
    fn start(&self, deadline: Option<Instant>) -> Result<()> {
        let (peers, workers) = (self.peers.clone(), self.workers.clone());
        let on_frame = move |rank: i32, f: Frame| {
            let mut p = lock(&peers);
            let Some(slot) = p.get_mut(rank as usize - 1) else {
                return;
            };
            let text = String::from_utf8_lossy(&f.body).into_owned();
            match f.kind {
                Kind::Ready => {
                    *slot = Peer::Ready {
                        pid: f.a,
                        level: f.b,
                        host: text,
                    }
                }
                Kind::SetupFailed => *slot = Peer::SetupFailed(f.a as u32 as i32, text),
                other => log_line!(
                    LogLevel::Warn,
                    None,
                    "rank {rank} sent an unexpected {other:?} frame; ignored"
                ),
            }
        };
        let gone_peers = self.peers.clone();
        let on_gone = move |rank: i32, status: Status, why: &str| {
            let i = rank as usize - 1;
            if let Some(slot) = lock(&gone_peers).get_mut(i) {
                if matches!(slot, Peer::Waiting) {
                    *slot = Peer::Gone(why.to_string());
                }
            }
            let w = lock(&workers).get(i).cloned();
            if let Some(w) = w {
                let cause = Error::new(status, format!("{} {why}; it leaves the pool", w.label()));
                w.retire(cause);
            }
        };
        let hooks = Hooks {
            on_frame: Box::new(on_frame),
            on_gone: Box::new(on_gone),
            first: self
                .ranks
                .iter()
                .map(|&r| (r, Frame::new(Kind::Start, 0, 0, 0)))
                .collect(),
            // A rank heartbeats from the moment it calls
            // dist_worker_mpi_serve, before its setup runs: one that dies
            // in setup is noticed by its silence, not by the start timeout.
            contact: &[Kind::Heartbeat, Kind::Ready, Kind::SetupFailed],
            contact_by: None,
            farewell: Some(Kind::Shutdown),
        };
        let link = Link::start(self.world.comm, self.ranks.clone(), hooks)?;
        let _ = self.link.set(link);
        loop {
            let snapshot = lock(&self.peers).clone();
            let label = |i: usize| {
                lock(&self.workers)
                    .get(i)
                    .map_or_else(|| format!("rank {}", i + 1), RemoteWorker::label)
            };
            let mut waiting = None;
            for (i, p) in snapshot.iter().enumerate() {
                match p {
                    Peer::Waiting => {
                        waiting.get_or_insert(i);
                    }
                    Peer::Ready { .. } => {}
                    Peer::SetupFailed(code, m) => {
                        let why = if m.is_empty() {
                            String::new()
                        } else {
                            format!(": {m}")
                        };
                        return fail(
                            Status::ChildDied,
                            format!(
                                "{}: its level setup function failed with error {code}{why}",
                                label(i)
                            ),
                        );
                    }
                    Peer::Gone(why) => {
                        return fail(
                            Status::ChildDied,
                            format!("{} {why} before it was ready", label(i)),
                        )
                    }
                }
            }
            let Some(i) = waiting else { break };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return fail(
                    Status::Timeout,
                    format!(
                        "{} did not become ready within start_timeout_ms (is it running \
                         dist_worker_mpi_serve?)",
                        label(i)
                    ),
                );
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        for (i, p) in lock(&self.peers).iter().enumerate() {
            if let Peer::Ready { pid, level, host } = p {
                log_line!(
                    LogLevel::Info,
                    None,
                    "rank {} ready: level {level}, pid {pid} on host {host}",
                    i + 1
                );
            }
        }
        Ok(())
    }
}

impl Drop for Root {
    /// The DistWorker that drove the ranks is gone (shut down): its ranks
    /// are told to stop, then MPI may be finalized.
    fn drop(&mut self) {
        self.stop_ranks();
        DRIVERS.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Root {
    fn stop_ranks(&mut self) {
        if self.link.take().is_some() {
            return; // its farewell told every live rank to stop
        }
        // Never started: tell the ranks to stop all the same.
        let hooks = Hooks {
            on_frame: Box::new(|_, _| {}),
            on_gone: Box::new(|_, _, _| {}),
            first: self
                .ranks
                .iter()
                .map(|&r| (r, Frame::new(Kind::Shutdown, 0, 0, 0)))
                .collect(),
            contact: &[Kind::Ready],
            contact_by: None,
            farewell: None,
        };
        drop(Link::start(self.world.comm, self.ranks.clone(), hooks));
    }
}

/// One rank, as a level of the DistWorker on rank 0.
struct RemoteLevel {
    root: Arc<Root>,
    rank: i32,
    number: u32,
    worker: RemoteWorker,
    /// Tasks sent to it.
    seq: u64,
}

impl Level for RemoteLevel {
    fn number(&self) -> u32 {
        self.number
    }

    fn run(&mut self, callable: u64, args: &TaskView<'_>, config: &DistCallConfig) -> Outcome {
        match self.exchange(callable, args, config) {
            Ok(outcome) => outcome,
            Err(e) => (-(e.status as i32), Some(e.message)),
        }
    }
}

impl RemoteLevel {
    fn exchange(
        &mut self,
        callable: u64,
        args: &TaskView<'_>,
        config: &DistCallConfig,
    ) -> Result<Outcome> {
        let Some(link) = self.root.link.get() else {
            return fail(Status::BadState, "the MPI link is not running");
        };
        let tags = self.worker.tags();
        let (mut dirs, mut sends, mut recvs) = (Vec::new(), Vec::new(), Vec::new());
        for (i, t) in args.tensors.iter().enumerate() {
            let d = wire::direction(tags.get(i).copied().unwrap_or(DIST_ARG_INPUT), t.data);
            let len = blob::tensor_bytes(t).ok_or_else(|| {
                Error::new(
                    Status::InvalidArgument,
                    format!("tensor {i}: its size overflows"),
                )
            })?;
            let span = Span { addr: t.data, len };
            if d & wire::OUT != 0 {
                sends.push(span);
            }
            if d & wire::BACK != 0 {
                recvs.push(span);
            }
            dirs.push(d);
        }
        self.seq += 1;
        let task = Task {
            callable,
            config: *config,
            tensors: args.tensors.to_vec(),
            dirs,
            scalars: args.scalars.to_vec(),
            chunk: self.root.chunk,
        };
        let done = Completion::new();
        let job = Job {
            rank: self.rank,
            frame: Some(
                Frame::new(Kind::Task, self.seq, 0, 0)
                    .with_body(task.encode())
                    .encode(),
            ),
            sends,
            recvs,
            result_of: Some(self.seq),
            chunk: self.root.chunk,
            done: done.clone(),
        };
        let (mut seen, mut why) = (false, None);
        let finished = link.run(job, &mut || done.is_ready(), &mut || {
            why = self.worker.given_up(&mut seen);
            why.is_some()
        });
        let outcome = match finished.then(|| done.take()).flatten() {
            Some(o) => o,
            None => {
                // The pool gave the task up: the rank leaves for good (told
                // to stop), and its operations are settled before the
                // caller's memory is given back.
                let why = why.unwrap_or("given up");
                link.abandon(self.rank, why.to_string());
                link.drive(&mut || done.is_ready(), &mut || false);
                return fail(Status::Timeout, format!("rank {}: {why}", self.rank));
            }
        };
        outcome
    }
}
