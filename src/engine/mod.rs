//! The engine: the DAG of submitted tasks, and the rules that move a task
//! from submitted to consumed.
//!
//! Plain data: no atomics, no shared memory. It decides, and `progress`
//! carries out: a task it puts on idle workers becomes `Launch` orders that
//! `progress` writes into the workers' mailboxes, under the same lock.
//! Owned by `progress::Progress`, behind one mutex; every method runs under
//! it. Called from submitting threads (`submit`, `alloc`, scopes), whoever
//! claims completions (`complete`, `retire`) and waiting threads
//! (`outcome`, `drain`).
//!
//! A task's life: PENDING (producers unfinished) → READY (queued for its
//! type) → RUNNING (on one or, for a group, N workers) → DONE → CONSUMED.
//! It is consumed when nothing can depend on it any more: its scope has
//! ended, it has finished, and every task that looked it up or overwrote
//! its output has been consumed. Consuming removes its tensor-map entries
//! and frees its heap memory. Its id stays waitable until the next drain.

mod deps;
mod finish;
mod histogram;
mod launch;
mod memory;
mod observe;
mod place;
mod retire;
mod ring;
mod scope;
mod slot;
mod spec;
mod stats;
mod tensor_map;

pub use launch::Launch;
pub use ring::HeapRing;
pub use scope::ScopeStack;
pub use spec::{MemberArgs, TaskSpec};
pub use stats::{EngineStats, Latency, Stats, TypeStats, WorkerMode, WorkerState, WorkerStats};
pub use tensor_map::TensorMap;

use finish::upstream_error;
use histogram::Histogram;
#[cfg(feature = "mpi")]
pub use slot::task_slot;
use slot::{task_id, token, Phase, Slot};
pub use slot::{token_launch, token_slot};
use stats::{TypeCounts, WorkerCounts};

use crate::abi::{self, DistTaskId};
use crate::blob::{self, Args};
use crate::log::Level;
use crate::mailbox::ARGS_CAPACITY;
use crate::pool::Pool;
use crate::status::{fail, Error, Result, Status};
use crate::worker::WorkerType;

/// Largest group a task may form (members are launched at once).
pub const MAX_GROUP: u32 = 4096;

/// Most tasks that may be known at once (finished ones count until drain).
pub const MAX_SLOTS: usize = 1 << 24;

/// The DAG, the pools and the shared heap of one DistWorker.
#[derive(Debug)]
pub struct Engine {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Finished tasks and allocations whose ids the next drain releases.
    done: Vec<u32>,
    pools: [Pool; 2],
    workers: Vec<WorkerInfo>,
    /// Workers are installed (the pool started).
    started: bool,
    /// Its level in the hierarchy (messages of level workers name it).
    level: u32,
    /// Per type, its workers' global indices in registration order (a
    /// placement names workers by their position here).
    by_type: [Vec<u32>; 2],
    /// Workers taken out of their pool (dead, hung or broken), by index.
    retired: Vec<bool>,
    map: TensorMap,
    scopes: ScopeStack,
    ring: HeapRing,
    heap_base: u64,
    /// Tasks submitted and not finished.
    unfinished: usize,
    /// First failure since the last drain.
    first_failure: Option<Error>,
    /// Scratch: slots to release (consumption cascades without recursion).
    releasing: Vec<u32>,
    /// Scratch: tasks that finished as a consequence of another.
    finishing: Vec<(u32, Option<Error>)>,
    /// Scratch: slots whose scope ended.
    ended: Vec<u32>,
    /// Launches so far (the high half of in-flight tokens).
    launches: u32,
    /// Set by shutdown: no task is accepted or launched any more.
    closed: bool,
    /// Per worker: the task its callable waits for from inside (THREAD
    /// workers only), for deadlock detection.
    nested: Vec<Option<DistTaskId>>,
    /// Per worker: the slot of the task member it runs.
    running: Vec<Option<u32>>,
    /// Launches decided and not yet carried out (see `take_launches`).
    launches_out: Vec<Launch>,
    /// An empty vector with capacity, swapped in by `take_launches`.
    spare: Vec<Launch>,
    /// The time of the event being handled (`clock::ticks`), given by
    /// whoever reports it: launches decided now started now.
    now: u64,
    /// Per type: tasks submitted, finished, running, unfinished.
    counts: [TypeCounts; 2],
    /// Per worker: members run, failed, time busy, since when busy.
    runs: Vec<WorkerCounts>,
    /// Dispatch-to-completion times of the tasks that ran, in ticks.
    latency: Histogram,
    /// The timeline trace, while one is recorded.
    trace: crate::trace::Buffer,
    /// The ready-queue depths last traced, per type.
    traced_ready: [Option<u32>; 2],
    /// What happened that should be logged once the lock is released
    /// (workers that left their pools; per-task lines at debug level).
    notes: Vec<(Level, String)>,
}

/// What the engine knows of a worker: its type, its name in messages and
/// what its figures report.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// Its type.
    pub ty: WorkerType,
    /// How messages name it ("SUB worker 1 (child pid 812)").
    pub label: String,
    /// Whether it is a level (its failures carry the path down the tree).
    pub is_level: bool,
    /// Registration order within its type.
    pub rank: usize,
    /// Where it runs.
    pub mode: WorkerMode,
    /// Its process, if the library knows it.
    pub pid: Option<i32>,
    /// For a level: its number.
    pub level: Option<u32>,
}

impl Engine {
    /// An engine with no workers yet, allocating from the heap at `heap_base`.
    pub fn new(level: u32, heap_base: u64, heap_len: u64) -> Engine {
        Engine {
            level,
            slots: Vec::new(),
            free: Vec::new(),
            done: Vec::new(),
            pools: Default::default(),
            workers: Vec::new(),
            started: false,
            by_type: Default::default(),
            retired: Vec::new(),
            map: TensorMap::default(),
            scopes: ScopeStack::default(),
            ring: HeapRing::new(heap_len),
            heap_base,
            unfinished: 0,
            first_failure: None,
            releasing: Vec::new(),
            finishing: Vec::new(),
            ended: Vec::new(),
            launches: 0,
            nested: Vec::new(),
            closed: false,
            running: Vec::new(),
            launches_out: Vec::new(),
            spare: Vec::new(),
            now: 0,
            counts: Default::default(),
            runs: Vec::new(),
            latency: Histogram::default(),
            trace: Default::default(),
            traced_ready: [None; 2],
            notes: Vec::new(),
        }
    }

    /// Installs the started pool's workers, in index order.
    pub fn install(&mut self, workers: impl IntoIterator<Item = WorkerInfo>) {
        self.workers = workers.into_iter().collect();
        for (index, w) in self.workers.iter().enumerate() {
            let pool = &mut self.pools[w.ty.index()];
            pool.live.push(index as u32);
            pool.idle.push(index as u32);
        }
        // The first registered worker on top of the stack gets the first task.
        for pool in &mut self.pools {
            pool.idle.reverse();
        }
        for (index, w) in self.workers.iter().enumerate() {
            self.by_type[w.ty.index()].push(index as u32);
        }
        let n = self.workers.len();
        self.retired = vec![false; n];
        self.nested = vec![None; n];
        self.running = vec![None; n];
        self.runs = vec![WorkerCounts::default(); n];
        self.started = true;
        if self.trace.on() {
            // No child is forked after this: the trace's pages may be
            // written now, once, instead of one fault at a time later.
            self.trace.prefault();
        }
    }

    /// Its level in the hierarchy.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Tasks submitted and not yet finished.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Submits a task whose member `i` runs on the worker `place[i]`
    /// (global worker indices, checked by `placement`; empty: anywhere).
    /// Returns Ok(None) when the heap ring cannot hold its outputs now (the
    /// caller waits for reclamation and tries again).
    fn submit_on<M: MemberArgs + ?Sized>(
        &mut self,
        spec: &TaskSpec<'_, M>,
        place: &[u32],
    ) -> Result<Option<DistTaskId>> {
        if self.closed {
            return fail(
                Status::ShutDown,
                "the worker is shutting down and takes no new work",
            );
        }
        let n = spec.members.count();
        let live = self.pools[spec.ty.index()].size();
        if live == 0 {
            return fail(
                Status::NoWorker,
                format!("no live {} worker to run the task", spec.ty),
            );
        }
        if n as usize > live {
            return fail(
                Status::InvalidArgument,
                format!(
                    "a group of {n} needs {n} {} workers at once; the pool has {live}",
                    spec.ty
                ),
            );
        }
        let idx = self.alloc_slot()?;
        match self.encode_members(idx, spec) {
            Ok(true) => {}
            other => {
                let allocs = self.slots[idx as usize].take_allocs();
                for h in allocs {
                    self.ring.free(h);
                }
                self.free_slot(idx);
                return other.map(|_| None);
            }
        }
        let slot = &mut self.slots[idx as usize];
        if !place.is_empty() {
            slot.cold_mut().place.extend_from_slice(place);
        }
        slot.ty = spec.ty;
        slot.callable = spec.callable;
        slot.config = spec.config;
        slot.remaining = n as u16;
        slot.submitted_at = self.now;
        let id = task_id(idx, slot.gen);
        self.link(idx, spec.members);
        let slot = &mut self.slots[idx as usize];
        slot.refs += 2; // its scope, and being unfinished
        self.scopes.add(idx);
        self.unfinished += 1;
        let counts = &mut self.counts[spec.ty.index()];
        counts.submitted += 1;
        counts.unfinished += 1;
        if slot.fanin > 0 {
            slot.phase = Phase::Pending;
        } else if let Some(up) = slot.upstream_failed() {
            self.finishing.push((idx, Some(upstream_error(id, up))));
            self.settle();
        } else {
            self.make_ready(idx);
            self.pump(spec.ty);
        }
        self.trace_ready();
        Ok(Some(id))
    }

    /// Validates and encodes every member into the slot, allocating heap
    /// memory for OUTPUT tensors with `data == 0`. Ok(false): ring full.
    fn encode_members<M: MemberArgs + ?Sized>(
        &mut self,
        idx: u32,
        spec: &TaskSpec<'_, M>,
    ) -> Result<bool> {
        let slot = &mut self.slots[idx as usize];
        let group = spec.members.count() > 1;
        for i in 0..spec.members.count() {
            let args = spec.members.member(i)?;
            blob::validate(&args)
                .map_err(|e| Error::new(e.status, format!("group member {i}: {}", e.message)))?;
            blob::encode_header(args.tensors.len(), args.scalars.len(), slot.blob_out());
            for (j, t) in args.tensors.iter().enumerate() {
                let mut t = *t;
                if t.data == 0 && tag_of(&args, j) == abi::DIST_ARG_OUTPUT {
                    let size = blob::tensor_bytes(&t).unwrap_or(u64::MAX);
                    let got = self.ring.alloc_tensor(size).map_err(|e| {
                        Error::new(e.status, format!("member {i} tensor {j}: {}", e.message))
                    })?;
                    let Some((h, off)) = got else {
                        return Ok(false);
                    };
                    slot.cold_mut().allocs.push(h);
                    t.data = self.heap_base + off;
                }
                blob::encode_tensor(&t, slot.blob_out());
            }
            blob::encode_scalars(args.scalars, slot.blob_out());
            let len = slot.last_blob_len();
            if len > ARGS_CAPACITY {
                // Too long for a mailbox: it travels through the heap ring.
                let Some((h, off)) = self.ring.alloc_tensor(len as u64)? else {
                    return Ok(false);
                };
                let cold = slot.cold_mut();
                cold.allocs.push(h);
                cold.large.push((i, self.heap_base + off));
            }
            slot.end_member(group);
        }
        Ok(true)
    }

    fn alloc_slot(&mut self) -> Result<u32> {
        if let Some(i) = self.free.pop() {
            return Ok(i);
        }
        if self.slots.len() >= MAX_SLOTS {
            return fail(
                Status::ResourceExhausted,
                format!("{MAX_SLOTS} tasks are known at once; drain to release finished ones"),
            );
        }
        self.slots.push(Slot::new());
        Ok(self.slots.len() as u32 - 1)
    }

    /// Returns a slot to the free list; its old id becomes unknown.
    fn free_slot(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.phase = Phase::Free;
        s.gen = s.gen.wrapping_add(1).max(1);
        s.clear();
        self.free.push(idx);
    }

    /// Puts queued tasks of `ty` on idle workers while enough are idle
    /// (orders for `progress`, see `Launch`).
    fn pump(&mut self, ty: WorkerType) {
        if !self.started || self.closed {
            return;
        }
        self.pump_placed(ty);
        loop {
            let pool = &self.pools[ty.index()];
            let Some(&idx) = pool
                .ready
                .front()
                .filter(|&&i| self.slots[i as usize].members() as usize <= pool.idle.len())
            else {
                break;
            };
            self.pools[ty.index()].ready.pop_front();
            self.set_running(idx);
            for member in 0..self.slots[idx as usize].members() {
                let w = self.pools[ty.index()].idle.pop().expect("counted above");
                self.assign(idx, member, w);
            }
        }
    }

    /// Records that `worker` finished its task member with `error` (0 = ok)
    /// at `now`. The caller has claimed the completion and stored IDLE.
    pub fn complete(
        &mut self,
        worker: usize,
        token: u64,
        error: i32,
        message: Option<String>,
        now: u64,
    ) {
        self.now = now;
        let idx = token_slot(token);
        let ty = self.workers[worker].ty;
        self.running[worker] = None;
        let failure = (error != 0).then(|| {
            let slot = &self.slots[idx as usize];
            let id = task_id(idx, slot.gen);
            let w = &self.workers[worker];
            let message = match (w.is_level, message) {
                // A level's failure carries the path down the tree.
                (true, Some(m)) => format!("L{} task {id:#x} -> {}: {m}", self.level, w.label),
                (_, m) => format!(
                    "task {id:#x}: {} returned error {error} from callable {:#x}{}",
                    w.label,
                    slot.callable,
                    m.map_or(String::new(), |m| format!(": {m}"))
                ),
            };
            Error::new(Status::TaskFailed, message)
        });
        if !self.retired[worker] {
            self.pools[ty.index()].idle.push(worker as u32);
        }
        self.member_finished(worker, idx, failure);
        self.pump(ty);
        self.trace_ready();
    }

    /// Shutdown: from now on no task is accepted (SHUT_DOWN) or launched.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Finishes every task that has not started (pending or queued) with
    /// `cause`, as when a shutdown deadline passes.
    pub fn abort_unstarted(&mut self, cause: &Error) {
        for pool in &mut self.pools {
            for idx in pool.ready.drain(..).chain(pool.placed.drain(..)) {
                self.finishing.push((idx, Some(cause.clone())));
            }
        }
        for (idx, slot) in self.slots.iter().enumerate() {
            if slot.phase == Phase::Pending {
                self.finishing.push((idx as u32, Some(cause.clone())));
            }
        }
        self.settle();
        self.trace_ready();
    }
}

/// The tag of tensor `j` (INPUT when the submitter gave no tags).
fn tag_of(args: &Args<'_>, j: usize) -> abi::DistTensorArgType {
    args.tags.map_or(abi::DIST_ARG_INPUT, |t| t[j])
}
