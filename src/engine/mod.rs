//! The engine: the DAG of submitted tasks, and the rules that move a task
//! from submitted to consumed.
//!
//! Owned by: the `Runtime`, behind one mutex; every method runs under it.
//! Called from: submitting threads (`submit`, `alloc`, scopes), the
//! dispatcher thread (`complete`, `retire`), waiting threads (`outcome`,
//! `drain`). It writes a mailbox only to launch a task on an idle worker,
//! which it owns while the worker is idle.
//!
//! A task's life: PENDING (producers unfinished) → READY (queued for its
//! type) → RUNNING (on one or, for a group, N workers) → DONE → CONSUMED.
//! It is consumed when nothing can depend on it any more: its scope has
//! ended, it has finished, and every task that looked it up or overwrote
//! its output has been consumed. Consuming removes its tensor-map entries
//! and frees its heap memory. Its id stays waitable until the next drain.

mod ring;
mod scope;
mod tensor_map;

pub use ring::HeapRing;
pub use scope::ScopeStack;
pub use tensor_map::TensorMap;

use crate::abi::{self, DistCallConfig, DistTaskId, DistTensor};
use crate::blob::{self, Args};
use crate::mailbox::{state, Doorbell};
use crate::pool::Pool;
use crate::status::{fail, Error, Result, Status};
use crate::worker::{Worker, WorkerType};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Largest group a task may form (members are launched at once).
pub const MAX_GROUP: u32 = 4096;

/// Most tasks that may be known at once (finished ones count until drain).
pub const MAX_SLOTS: usize = 1 << 24;

/// The arguments of a task's members, read one at a time so a submitter's
/// arrays are never copied into an intermediate collection.
pub trait MemberArgs {
    /// Number of members (at least 1).
    fn count(&self) -> u32;
    /// Member `i`'s arguments.
    fn member(&self, i: u32) -> Result<Args<'_>>;
}

impl MemberArgs for [Args<'_>] {
    fn count(&self) -> u32 {
        self.len() as u32
    }
    fn member(&self, i: u32) -> Result<Args<'_>> {
        Ok(self[i as usize])
    }
}

/// A task as the core receives it.
pub struct TaskSpec<'a, M: MemberArgs + ?Sized = [Args<'a>]> {
    /// Pool that runs it.
    pub ty: WorkerType,
    /// Handle or callable id.
    pub callable: u64,
    /// Launch configuration.
    pub config: DistCallConfig,
    /// One entry per group member.
    pub members: &'a M,
}

/// Counts that show whether the engine is back to its resting state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Slots in use (tasks known, plus allocations and tasks still alive).
    pub slots: usize,
    /// Tensor-map entries.
    pub map_entries: usize,
    /// Bytes of the heap ring in live allocations.
    pub heap_live_bytes: u64,
    /// Heap ring blocks not yet reclaimed.
    pub heap_blocks: usize,
    /// Open scopes (not counting the root).
    pub scope_depth: usize,
    /// Tasks submitted and not finished.
    pub unfinished: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Free,
    Pending,
    Ready,
    Running,
    Done,
}

#[derive(Debug, Default)]
struct Slot {
    gen: u32,
    phase: Phase,
    /// An allocation made by `alloc` (never a task the caller can wait on).
    is_alloc: bool,
    ty: WorkerType,
    callable: u64,
    config: DistCallConfig,
    /// Members not yet finished.
    remaining: u32,
    /// Encoded blobs of all members, back to back.
    blobs: Vec<u8>,
    /// End offset of each member's blob in `blobs`.
    ends: Vec<u32>,
    /// Why it failed (first member failure wins).
    failure: Option<Error>,
    /// Producers not yet finished.
    fanin: u32,
    /// Tasks waiting for this one to finish.
    fanout: Vec<u32>,
    /// Tasks this one keeps alive until it is consumed.
    holds: Vec<u32>,
    /// Reasons it cannot be consumed yet.
    refs: u32,
    /// Addresses it is (or was) the last writer of.
    writes: Vec<u64>,
    /// Heap ring allocations it owns.
    allocs: Vec<ring::Handle>,
    /// A producer that failed (so this task will not run).
    upstream_failed: Option<DistTaskId>,
    /// Its id was released by a drain.
    retired: bool,
}

impl Slot {
    fn members(&self) -> u32 {
        self.ends.len() as u32
    }

    fn blob(&self, member: u32) -> &[u8] {
        let m = member as usize;
        let start = if m == 0 { 0 } else { self.ends[m - 1] as usize };
        &self.blobs[start..self.ends[m] as usize]
    }
}

/// A worker's in-flight token: the slot it runs (low half, plus one so it
/// is never 0) and a launch sequence number (high half), so a poller
/// holding a stale token can never claim a later launch (no ABA).
fn token(slot: u32, launch: u32) -> u64 {
    (slot as u64 + 1) | ((launch as u64) << 32)
}

/// The slot of an in-flight token.
pub fn token_slot(token: u64) -> u32 {
    ((token & 0xffff_ffff) - 1) as u32
}

/// The launch sequence number of an in-flight token (what the mailbox's
/// `launch_seq` word carried).
pub fn token_launch(token: u64) -> u32 {
    (token >> 32) as u32
}

fn task_id(slot: u32, gen: u32) -> DistTaskId {
    ((gen as u64) << 32) | (slot as u64 + 1)
}

/// The DAG, the pools and the shared heap of one DistWorker.
#[derive(Debug)]
pub struct Engine {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Finished tasks and allocations whose ids the next drain releases.
    done: Vec<u32>,
    pools: [Pool; 2],
    workers: Option<Arc<[Worker]>>,
    /// Workers taken out of their pool (dead, hung or broken), by index.
    retired: Vec<bool>,
    /// Rung after launching, in case the dispatcher sleeps with nothing in flight.
    bell: Option<Doorbell>,
    map: TensorMap,
    scopes: ScopeStack,
    ring: HeapRing,
    heap_base: u64,
    /// Tasks submitted and not finished.
    unfinished: usize,
    /// First failure since the last drain.
    first_failure: Option<Error>,
    /// Threads blocked on the engine's condition (waiters, back-pressure).
    pub waiters: usize,
    /// Scratch: slots to release (consumption cascades without recursion).
    releasing: Vec<u32>,
    /// Scratch: tasks that finished as a consequence of another.
    finishing: Vec<(u32, Option<Error>)>,
    /// Scratch: slots whose scope ended.
    ended: Vec<u32>,
    /// Launches so far (the high half of in-flight tokens).
    launches: u32,
    /// Record launch times (task deadlines are on).
    pub track_launches: bool,
    /// Set by shutdown: no task is accepted or launched any more.
    closed: bool,
    /// Per worker: the task its callable waits for from inside (THREAD
    /// workers only), for deadlock detection.
    nested: Vec<Option<DistTaskId>>,
    /// Whether the latest launch had to wake its worker from sleep: a
    /// waiter then sleeps at once instead of spinning, so the woken worker
    /// can have its core.
    pub last_launch_woke: bool,
}

impl Engine {
    /// An engine with no workers yet, allocating from the heap at `heap_base`.
    pub fn new(heap_base: u64, heap_len: u64) -> Engine {
        Engine {
            slots: Vec::new(),
            free: Vec::new(),
            done: Vec::new(),
            pools: Default::default(),
            workers: None,
            retired: Vec::new(),
            bell: None,
            map: TensorMap::default(),
            scopes: ScopeStack::default(),
            ring: HeapRing::new(heap_len),
            heap_base,
            unfinished: 0,
            first_failure: None,
            waiters: 0,
            releasing: Vec::new(),
            finishing: Vec::new(),
            ended: Vec::new(),
            launches: 0,
            nested: Vec::new(),
            closed: false,
            last_launch_woke: false,
            track_launches: false,
        }
    }

    /// Installs the started pool's workers.
    pub fn install(&mut self, workers: Arc<[Worker]>, bell: Doorbell) {
        self.bell = Some(bell);
        for w in workers.iter() {
            let pool = &mut self.pools[w.ty.index()];
            pool.live.push(w.index as u32);
            pool.idle.push(w.index as u32);
        }
        // The first registered worker on top of the stack gets the first task.
        for pool in &mut self.pools {
            pool.idle.reverse();
        }
        self.retired = vec![false; workers.len()];
        self.nested = vec![None; workers.len()];
        self.workers = Some(workers);
    }

    /// Records that the callable on `worker` waits (Some) for a task of its
    /// own runtime, or no longer does (None).
    pub fn set_nested_wait(&mut self, worker: usize, task: Option<DistTaskId>) {
        if let Some(n) = self.nested.get_mut(worker) {
            *n = task;
        }
    }

    /// For a callable on `worker` waiting for unfinished task `id`: why the
    /// wait can never end, if it cannot. It cannot when `id` is the
    /// callable's own task or depends on it, or when every busy worker is a
    /// callable waiting like this for an unfinished task (nothing runs that
    /// could finish one; tasks of idle workers would have been launched).
    pub fn nested_deadlock(&self, worker: usize, id: DistTaskId) -> Option<Error> {
        let workers = self.workers.as_ref()?;
        let waited = (id & 0xffff_ffff).wrapping_sub(1) as u32;
        let own = workers[worker].in_flight.load(Ordering::Acquire);
        if own != 0 {
            let own = token_slot(own);
            if own == waited || self.reaches(own, waited) {
                return Some(Error::new(
                    Status::BadState,
                    format!(
                        "the callable on {} waits for task {id:#x}, which cannot run before \
                         the callable's own task {:#x} finishes (deadlock)",
                        workers[worker],
                        task_id(own, self.slots[own as usize].gen)
                    ),
                ));
            }
        }
        let unfinished = |t: DistTaskId| matches!(self.outcome(t), Ok(None));
        let mut busy = 0;
        for pool in &self.pools {
            for &w in pool.live.iter().filter(|w| !pool.idle.contains(w)) {
                busy += 1;
                if !self.nested[w as usize].is_some_and(unfinished) {
                    return None; // this one can still finish its task
                }
            }
        }
        Some(Error::new(
            Status::BadState,
            format!(
                "the callable on {} waits for task {id:#x}, but all {busy} busy worker(s) \
                 are callables waiting for unfinished tasks of this DistWorker and none is \
                 idle to run them (deadlock); add workers of that type or do not wait from \
                 inside a callable",
                workers[worker]
            ),
        ))
    }

    /// Whether task slot `to` waits, directly or not, for slot `from`.
    fn reaches(&self, from: u32, to: u32) -> bool {
        let mut seen = vec![from];
        let mut next = vec![from];
        while let Some(s) = next.pop() {
            for &c in &self.slots[s as usize].fanout {
                if c == to {
                    return true;
                }
                if !seen.contains(&c) {
                    seen.push(c);
                    next.push(c);
                }
            }
        }
        false
    }

    /// Tasks submitted and not yet finished.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Counts for checking that nothing is left behind.
    pub fn stats(&self) -> Stats {
        Stats {
            slots: self.slots.len() - self.free.len(),
            map_entries: self.map.len(),
            heap_live_bytes: self.ring.live_bytes(),
            heap_blocks: self.ring.blocks(),
            scope_depth: self.scopes.depth(),
            unfinished: self.unfinished,
        }
    }

    /// Submits a task. Returns Ok(None) when the heap ring cannot hold its
    /// outputs now (the caller waits for reclamation and tries again).
    pub fn submit<M: MemberArgs + ?Sized>(
        &mut self,
        spec: &TaskSpec<'_, M>,
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
                let allocs = std::mem::take(&mut self.slots[idx as usize].allocs);
                for h in allocs {
                    self.ring.free(h);
                }
                self.free_slot(idx);
                return other.map(|_| None);
            }
        }
        let slot = &mut self.slots[idx as usize];
        slot.ty = spec.ty;
        slot.callable = spec.callable;
        slot.config = spec.config;
        slot.remaining = n;
        let id = task_id(idx, slot.gen);
        self.link(idx, spec.members);
        let slot = &mut self.slots[idx as usize];
        slot.refs += 2; // its scope, and being unfinished
        self.scopes.add(idx);
        self.unfinished += 1;
        if slot.fanin > 0 {
            slot.phase = Phase::Pending;
        } else if let Some(up) = slot.upstream_failed {
            self.finishing.push((idx, Some(upstream_error(id, up))));
            self.settle();
        } else {
            slot.phase = Phase::Ready;
            self.pools[spec.ty.index()].ready.push_back(idx);
            self.pump(spec.ty);
        }
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
        for i in 0..spec.members.count() {
            let args = spec.members.member(i)?;
            blob::validate(&args)
                .map_err(|e| Error::new(e.status, format!("group member {i}: {}", e.message)))?;
            blob::encode_header(args.tensors.len(), args.scalars.len(), &mut slot.blobs);
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
                    slot.allocs.push(h);
                    t.data = self.heap_base + off;
                }
                blob::encode_tensor(&t, &mut slot.blobs);
            }
            blob::encode_scalars(args.scalars, &mut slot.blobs);
            slot.ends.push(slot.blobs.len() as u32);
        }
        Ok(true)
    }

    /// Adds the task's dependencies (lookups first, so a group whose members
    /// share an address never waits on itself), then records its writes.
    fn link<M: MemberArgs + ?Sized>(&mut self, idx: u32, members: &M) {
        for pass_writes in [false, true] {
            for m in 0..members.count() {
                let args = members.member(m).expect("validated in encode_members");
                for (j, _) in args.tensors.iter().enumerate() {
                    let tag = tag_of(&args, j);
                    let data = blob::tensor_at(self.slots[idx as usize].blob(m), j)
                        .expect("encoded")
                        .data;
                    if data == 0 {
                        continue;
                    }
                    if !pass_writes && (tag == abi::DIST_ARG_INPUT || tag == abi::DIST_ARG_INOUT) {
                        if let Some(p) = self.map.writer(data) {
                            self.depend(idx, p, true);
                        }
                    }
                    if pass_writes
                        && matches!(
                            tag,
                            abi::DIST_ARG_INOUT
                                | abi::DIST_ARG_OUTPUT
                                | abi::DIST_ARG_OUTPUT_EXISTING
                        )
                    {
                        match self.map.set_writer(data, idx) {
                            Some(p) if p == idx => {}
                            prev => {
                                self.slots[idx as usize].writes.push(data);
                                if let Some(p) = prev {
                                    // Keep the overwritten producer (and its memory) alive.
                                    self.depend(idx, p, false);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Makes `c` hold `p` until `c` is consumed; with `wait`, `c` also runs
    /// only after `p` finishes (and fails if `p` failed).
    fn depend(&mut self, c: u32, p: u32, wait: bool) {
        if c == p {
            return;
        }
        if !self.slots[c as usize].holds.contains(&p) {
            self.slots[c as usize].holds.push(p);
            self.slots[p as usize].refs += 1;
        }
        // `c` is linked in one go, so an edge to it is the newest in `p`'s fanout.
        if wait && self.slots[p as usize].fanout.last() != Some(&c) {
            self.wait_on(c, p);
        }
    }

    fn wait_on(&mut self, c: u32, p: u32) {
        let ps = &self.slots[p as usize];
        if ps.phase == Phase::Done {
            if ps.failure.is_some() {
                let up = task_id(p, ps.gen);
                self.slots[c as usize].upstream_failed.get_or_insert(up);
            }
            return;
        }
        self.slots[p as usize].fanout.push(c);
        self.slots[c as usize].fanin += 1;
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
        self.slots.push(Slot {
            gen: 1,
            ..Slot::default()
        });
        Ok(self.slots.len() as u32 - 1)
    }

    /// Returns a slot to the free list; its old id becomes unknown.
    fn free_slot(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.phase = Phase::Free;
        s.gen = s.gen.wrapping_add(1).max(1);
        s.is_alloc = false;
        s.failure = None;
        s.upstream_failed = None;
        s.retired = false;
        s.fanin = 0;
        s.refs = 0;
        s.blobs.clear();
        s.ends.clear();
        s.fanout.clear();
        s.holds.clear();
        s.writes.clear();
        s.allocs.clear();
        self.free.push(idx);
    }

    /// Launches queued tasks of `ty` while enough workers are idle.
    fn pump(&mut self, ty: WorkerType) {
        let Some(workers) = self.workers.clone().filter(|_| !self.closed) else {
            return;
        };
        // Whoever waits for completions sleeps until a worker rings; a worker
        // that never rings (caller-owned) must switch them to timed polls.
        let mut launched_deaf = false;
        loop {
            let pool = &self.pools[ty.index()];
            let Some(&idx) = pool
                .ready
                .front()
                .filter(|&&i| self.slots[i as usize].members() as usize <= pool.idle.len())
            else {
                break;
            };
            // The workers about to be used must be IDLE: a mailbox that holds
            // anything else (a child wrote TASK_READY, or garbage) breaks the
            // protocol, and that worker leaves the pool before any task is lost.
            let n = self.slots[idx as usize].members() as usize;
            let top = &pool.idle[pool.idle.len() - n..];
            if let Some(&bad) = top
                .iter()
                .find(|&&w| workers[w as usize].mailbox.state() != state::IDLE)
            {
                let w = &workers[bad as usize];
                let e = Error::new(
                    Status::Protocol,
                    format!(
                        "{w} held state {} in its mailbox while idle; it leaves the pool",
                        w.mailbox.state()
                    ),
                );
                if self.first_failure.is_none() {
                    self.first_failure = Some(e.clone());
                }
                self.retire(bad as usize, 0, e);
                return; // retire launched what it could
            }
            self.pools[ty.index()].ready.pop_front();
            let slot = &mut self.slots[idx as usize];
            slot.phase = Phase::Running;
            for m in 0..slot.members() {
                let w = self.pools[ty.index()].idle.pop().expect("counted above");
                let worker = &workers[w as usize];
                let slot = &self.slots[idx as usize];
                let mb = &worker.mailbox;
                // Never 0, so a fresh mailbox's done_seq matches no launch.
                self.launches = self.launches.wrapping_add(1).max(1);
                mb.write_task(slot.callable, &slot.config, slot.blob(m), self.launches);
                self.last_launch_woke = mb.publish(state::TASK_READY);
                launched_deaf |= !worker.rings();
                if self.track_launches {
                    worker
                        .launched_at
                        .store(crate::worker::now_ns(), Ordering::Relaxed);
                }
                worker
                    .in_flight
                    .store(token(idx, self.launches), Ordering::Release);
            }
        }
        if launched_deaf {
            if let Some(bell) = &self.bell {
                bell.ring();
            }
        }
    }

    /// Records that `worker` finished its task member with `error` (0 = ok).
    /// The caller has claimed the completion and stored IDLE.
    pub fn complete(&mut self, worker: usize, token: u64, error: i32, message: Option<String>) {
        let idx = token_slot(token);
        let workers = self.workers.clone().expect("started");
        let w = &workers[worker];
        let failure = (error != 0).then(|| {
            let slot = &self.slots[idx as usize];
            Error::new(
                Status::TaskFailed,
                format!(
                    "task {:#x}: {w} returned error {error} from callable {:#x}{}",
                    task_id(idx, slot.gen),
                    slot.callable,
                    message.map_or(String::new(), |m| format!(": {m}"))
                ),
            )
        });
        if !self.retired[worker] {
            self.pools[w.ty.index()].idle.push(worker as u32);
        }
        self.member_finished(idx, failure);
        self.pump(w.ty);
    }

    /// Shutdown: from now on no task is accepted (SHUT_DOWN) or launched.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Finishes every task that has not started (pending or queued) with
    /// `cause`, as when a shutdown deadline passes.
    pub fn abort_unstarted(&mut self, cause: &Error) {
        for pool in &mut self.pools {
            for idx in pool.ready.drain(..) {
                self.finishing.push((idx, Some(cause.clone())));
            }
        }
        for (idx, slot) in self.slots.iter().enumerate() {
            if slot.phase == Phase::Pending {
                self.finishing.push((idx as u32, Some(cause.clone())));
            }
        }
        self.settle();
    }

    /// Whether `worker` was taken out of its pool.
    pub fn is_retired(&self, worker: usize) -> bool {
        self.retired.get(worker).copied().unwrap_or(false)
    }

    /// Takes `worker` out of its pool for good; its in-flight member (if
    /// `token` is non-zero) fails with `cause`. Queued tasks that can no
    /// longer run fail with NO_WORKER.
    pub fn retire(&mut self, worker: usize, token: u64, cause: Error) {
        let workers = self.workers.clone().expect("started");
        let ty = workers[worker].ty;
        self.retired[worker] = true;
        self.pools[ty.index()].retire(worker as u32);
        if token != 0 {
            let idx = token_slot(token);
            self.member_finished(idx, Some(cause));
        }
        let live = self.pools[ty.index()].size();
        let mut i = 0;
        while i < self.pools[ty.index()].ready.len() {
            let idx = self.pools[ty.index()].ready[i];
            let n = self.slots[idx as usize].members() as usize;
            if n <= live {
                i += 1;
                continue;
            }
            self.pools[ty.index()].ready.remove(i);
            let id = task_id(idx, self.slots[idx as usize].gen);
            let e = Error::new(
                Status::NoWorker,
                format!("task {id:#x} needs {n} {ty} workers; {live} are left"),
            );
            self.finishing.push((idx, Some(e)));
        }
        self.settle();
        self.pump(ty);
    }

    fn member_finished(&mut self, idx: u32, failure: Option<Error>) {
        let slot = &mut self.slots[idx as usize];
        if slot.failure.is_none() {
            slot.failure = failure;
        }
        slot.remaining -= 1;
        if slot.remaining == 0 {
            let f = slot.failure.take();
            self.finishing.push((idx, f));
            self.settle();
        }
    }

    /// Finishes every task in `finishing`, and the dependents that become
    /// ready or fail in consequence.
    fn settle(&mut self) {
        let mut ready_types = [false; 2];
        while let Some((idx, failure)) = self.finishing.pop() {
            if self.slots[idx as usize].phase == Phase::Done {
                continue; // finished already (aborted together with a producer)
            }
            let id = task_id(idx, self.slots[idx as usize].gen);
            let slot = &mut self.slots[idx as usize];
            slot.phase = Phase::Done;
            let failed = failure.is_some();
            if let Some(f) = &failure {
                if self.first_failure.is_none() {
                    self.first_failure = Some(f.clone());
                }
            }
            slot.failure = failure;
            self.unfinished -= 1;
            self.done.push(idx);
            let mut fanout = std::mem::take(&mut self.slots[idx as usize].fanout);
            for &c in &fanout {
                let cs = &mut self.slots[c as usize];
                if cs.phase == Phase::Done {
                    continue;
                }
                if failed {
                    cs.upstream_failed.get_or_insert(id);
                }
                cs.fanin -= 1;
                if cs.fanin > 0 {
                    continue;
                }
                let cid = task_id(c, cs.gen);
                match cs.upstream_failed {
                    Some(up) => self.finishing.push((c, Some(upstream_error(cid, up)))),
                    None => {
                        cs.phase = Phase::Ready;
                        ready_types[cs.ty.index()] = true;
                        self.pools[cs.ty.index()].ready.push_back(c);
                    }
                }
            }
            fanout.clear();
            self.slots[idx as usize].fanout = fanout;
            self.release(idx);
        }
        for ty in WorkerType::ALL {
            if ready_types[ty.index()] {
                self.pump(ty);
            }
        }
    }

    /// Drops one reference; consumes slots whose last reference went.
    fn release(&mut self, idx: u32) {
        self.releasing.push(idx);
        while let Some(i) = self.releasing.pop() {
            let s = &mut self.slots[i as usize];
            s.refs -= 1;
            if s.refs > 0 {
                continue;
            }
            // Consumed: nothing can depend on it any more.
            for &addr in &s.writes {
                self.map.remove_if(addr, i);
            }
            for &h in &s.allocs {
                self.ring.free(h);
            }
            s.writes.clear();
            s.allocs.clear();
            self.releasing.append(&mut s.holds);
            if s.retired {
                self.free_slot(i);
            }
        }
    }

    /// The outcome of a task: None while it runs; an error for an unknown id.
    pub fn outcome(&self, id: DistTaskId) -> Result<Option<Result<()>>> {
        let slot = self.known(id)?;
        Ok(match (&slot.phase, &slot.failure) {
            (Phase::Done, None) => Some(Ok(())),
            (Phase::Done, Some(e)) => Some(Err(e.clone())),
            _ => None,
        })
    }

    fn known(&self, id: DistTaskId) -> Result<&Slot> {
        let idx = (id & 0xffff_ffff).wrapping_sub(1);
        let gen = (id >> 32) as u32;
        self.slots
            .get(idx as usize)
            .filter(|s| s.gen == gen && s.phase != Phase::Free && !s.retired && !s.is_alloc)
            .ok_or_else(|| {
                Error::new(
                    Status::InvalidArgument,
                    format!("task id {id:#x} is unknown (never issued, or released by a drain)"),
                )
            })
    }

    /// The tensor descriptor a task's member was dispatched with (for
    /// OUTPUT tensors submitted with `data == 0`, the allocated address).
    pub fn task_tensor(&self, id: DistTaskId, member: u32, index: u32) -> Result<DistTensor> {
        let slot = self.known(id)?;
        if member >= slot.members() {
            return fail(
                Status::InvalidArgument,
                format!(
                    "task {id:#x} has {} member(s); {member} is out of range",
                    slot.members()
                ),
            );
        }
        blob::tensor_at(slot.blob(member), index as usize).ok_or_else(|| {
            Error::new(
                Status::InvalidArgument,
                format!("task {id:#x} member {member} has no tensor {index}"),
            )
        })
    }

    /// Allocates a tensor from the heap ring, owned by the current scope.
    /// Ok(None) when the ring cannot hold it now.
    pub fn alloc(&mut self, shape: &[u32], dtype: u8) -> Result<Option<DistTensor>> {
        let mut t = DistTensor {
            data: 0,
            shapes: [0; 5],
            ndims: shape.len() as u32,
            dtype,
        };
        t.shapes[..shape.len()].copy_from_slice(shape);
        blob::check_tensor(&t)?;
        let size = blob::tensor_bytes(&t).unwrap_or(u64::MAX);
        let Some((h, off)) = self.ring.alloc_tensor(size)? else {
            return Ok(None);
        };
        t.data = self.heap_base + off;
        let idx = self.alloc_slot()?;
        let s = &mut self.slots[idx as usize];
        s.is_alloc = true;
        s.phase = Phase::Done;
        s.refs = 1;
        s.allocs.push(h);
        s.writes.push(t.data);
        self.scopes.add(idx);
        self.done.push(idx);
        if let Some(p) = self.map.set_writer(t.data, idx) {
            self.depend(idx, p, false);
        }
        Ok(Some(t))
    }

    /// Opens a nested scope.
    pub fn scope_begin(&mut self) -> Result<()> {
        self.scopes.begin()
    }

    /// Closes the innermost scope, releasing its tasks' scope references.
    pub fn scope_end(&mut self) -> Result<()> {
        let mut ended = std::mem::take(&mut self.ended);
        let r = self.scopes.end(|i| ended.push(i));
        self.release_all(&mut ended);
        self.ended = ended;
        r
    }

    fn release_all(&mut self, slots: &mut Vec<u32>) {
        for &i in slots.iter() {
            self.release(i);
        }
        slots.clear();
    }

    /// With no task unfinished: ends the root scope, releases every finished
    /// task's id, and returns the first failure since the last drain.
    pub fn drain(&mut self) -> Result<()> {
        debug_assert_eq!(self.unfinished, 0);
        let mut ended = std::mem::take(&mut self.ended);
        self.scopes.end_root(|i| ended.push(i));
        self.release_all(&mut ended);
        self.ended = ended;
        while let Some(idx) = self.done.pop() {
            let s = &mut self.slots[idx as usize];
            s.retired = true;
            if s.refs == 0 {
                self.free_slot(idx);
            }
        }
        match self.first_failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The tag of tensor `j` (INPUT when the submitter gave no tags).
fn tag_of(args: &Args<'_>, j: usize) -> abi::DistTensorArgType {
    args.tags.map_or(abi::DIST_ARG_INPUT, |t| t[j])
}

fn upstream_error(id: DistTaskId, up: DistTaskId) -> Error {
    Error::new(
        Status::DependencyFailed,
        format!("task {id:#x} did not run: task {up:#x}, which it depends on, failed"),
    )
}
