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

mod deps;
mod finish;
mod memory;
mod ring;
mod scope;
mod slot;
mod spec;
mod tensor_map;

pub use ring::HeapRing;
pub use scope::ScopeStack;
pub use spec::{MemberArgs, Stats, TaskSpec};
pub use tensor_map::TensorMap;

use finish::upstream_error;
use slot::{task_id, token, Phase, Slot};
pub use slot::{token_launch, token_slot};

use crate::abi::{self, DistTaskId};
use crate::blob::{self, Args};
use crate::doorbell::Doorbell;
use crate::mailbox::state;
use crate::pool::Pool;
use crate::status::{fail, Error, Result, Status};
use crate::worker::{Worker, WorkerType};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
}

/// The tag of tensor `j` (INPUT when the submitter gave no tags).
fn tag_of(args: &Args<'_>, j: usize) -> abi::DistTensorArgType {
    args.tags.map_or(abi::DIST_ARG_INPUT, |t| t[j])
}
