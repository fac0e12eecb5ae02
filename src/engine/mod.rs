//! The engine: task slots, per-type pools and ready queues, and the rules
//! that move a task from submitted to finished.
//!
//! Owned by: the `Runtime`, behind one mutex. Called from: any submitting
//! thread (`submit`), the dispatcher thread (`complete`, `retire`), and
//! waiting threads (`outcome`, `drain`). It writes mailboxes only to launch
//! a task on an idle worker, which it owns while the worker is idle.

use crate::abi::{DistCallConfig, DistTaskId};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Free,
    Ready,
    Running,
    Done,
}

#[derive(Debug)]
struct Slot {
    gen: u32,
    phase: Phase,
    ty: WorkerType,
    callable: u64,
    config: DistCallConfig,
    /// Members not yet finished.
    remaining: u32,
    /// Encoded blobs of all members, back to back.
    blobs: Vec<u8>,
    /// End offset of each member's blob in `blobs`.
    ends: Vec<u32>,
    /// Set when finished unsuccessfully (first member failure wins).
    failure: Option<Error>,
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

/// Encodes slot index and member into a worker's in-flight token (never 0).
fn token(slot: u32, member: u32) -> u64 {
    (slot as u64 + 1) | ((member as u64) << 32)
}

/// Splits an in-flight token.
pub fn split_token(token: u64) -> (u32, u32) {
    (((token & 0xffff_ffff) - 1) as u32, (token >> 32) as u32)
}

fn task_id(slot: u32, gen: u32) -> DistTaskId {
    ((gen as u64) << 32) | (slot as u64 + 1)
}

/// Slots, pools and the bookkeeping of one DistWorker's tasks.
#[derive(Debug, Default)]
pub struct Engine {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Finished slots kept until the next drain so their status can be read.
    done: Vec<u32>,
    pools: [Pool; 2],
    workers: Option<Arc<[Worker]>>,
    /// Rung after launching, in case the dispatcher sleeps with nothing in flight.
    bell: Option<Doorbell>,
    /// Tasks submitted and not finished.
    unfinished: usize,
    /// First failure since the last drain.
    first_failure: Option<Error>,
    /// Threads blocked in `wait`/`drain` (so completions notify only when needed).
    pub waiters: usize,
}

impl Engine {
    /// An engine with no workers yet.
    pub fn new() -> Engine {
        Engine::default()
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
        self.workers = Some(workers);
    }

    /// Tasks submitted and not yet finished.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Live workers of a type.
    pub fn pool_size(&self, ty: WorkerType) -> usize {
        self.pools[ty.index()].size()
    }

    /// Submits a task; it runs as soon as enough workers of its type are idle.
    pub fn submit<M: MemberArgs + ?Sized>(&mut self, spec: &TaskSpec<'_, M>) -> Result<DistTaskId> {
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
        if let Err(e) = self.encode_members(idx, spec) {
            self.release_slot(idx);
            return Err(e);
        }
        let slot = &mut self.slots[idx as usize];
        slot.ty = spec.ty;
        slot.callable = spec.callable;
        slot.config = spec.config;
        slot.remaining = n;
        slot.failure = None;
        slot.phase = Phase::Ready;
        let id = task_id(idx, slot.gen);
        self.unfinished += 1;
        self.pools[spec.ty.index()].ready.push_back(idx);
        self.pump(spec.ty);
        Ok(id)
    }

    fn encode_members<M: MemberArgs + ?Sized>(
        &mut self,
        idx: u32,
        spec: &TaskSpec<'_, M>,
    ) -> Result<()> {
        let slot = &mut self.slots[idx as usize];
        slot.blobs.clear();
        slot.ends.clear();
        for i in 0..spec.members.count() {
            let args = spec.members.member(i)?;
            blob::validate(&args)
                .map_err(|e| Error::new(e.status, format!("group member {i}: {}", e.message)))?;
            blob::encode(args.tensors, args.scalars, &mut slot.blobs);
            slot.ends.push(slot.blobs.len() as u32);
        }
        Ok(())
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
            phase: Phase::Free,
            ty: WorkerType::NextLevel,
            callable: 0,
            config: DistCallConfig {
                block_dim: 0,
                aicpu_thread_num: 0,
                enable_profiling: false,
                enable_dump_tensor: false,
            },
            remaining: 0,
            blobs: Vec::new(),
            ends: Vec::new(),
            failure: None,
        });
        Ok(self.slots.len() as u32 - 1)
    }

    fn release_slot(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        slot.phase = Phase::Free;
        slot.gen = slot.gen.wrapping_add(1).max(1);
        slot.failure = None;
        self.free.push(idx);
    }

    /// Launches queued tasks of `ty` while enough workers are idle.
    fn pump(&mut self, ty: WorkerType) {
        let workers = match &self.workers {
            Some(w) => w.clone(),
            None => return,
        };
        let mut launched = false;
        loop {
            let pool = &self.pools[ty.index()];
            let Some(&idx) = pool
                .ready
                .front()
                .filter(|&&i| self.slots[i as usize].members() as usize <= pool.idle.len())
            else {
                break;
            };
            let n = self.slots[idx as usize].members() as usize;
            self.pools[ty.index()].ready.pop_front();
            let slot = &mut self.slots[idx as usize];
            slot.phase = Phase::Running;
            for m in 0..n as u32 {
                let w = self.pools[ty.index()].idle.pop().expect("counted above");
                let worker = &workers[w as usize];
                let slot = &self.slots[idx as usize];
                let mb = &worker.mailbox;
                debug_assert_eq!(mb.state(), state::IDLE);
                mb.write_task(slot.callable, &slot.config, slot.blob(m));
                mb.publish(state::TASK_READY);
                worker.in_flight.store(token(idx, m), Ordering::Release);
            }
            launched = true;
        }
        if launched {
            if let Some(bell) = &self.bell {
                bell.ring();
            }
        }
    }

    /// Records that `worker` finished its task member with `error` (0 = ok).
    /// The caller has claimed the completion and stored IDLE.
    pub fn complete(&mut self, worker: usize, token: u64, error: i32) {
        let (idx, _member) = split_token(token);
        let workers = self.workers.clone().expect("started");
        let w = &workers[worker];
        if error != 0 {
            let slot = &self.slots[idx as usize];
            let msg = format!(
                "task {}: {w} returned error {error} from callable {:#x}",
                task_id(idx, slot.gen),
                slot.callable
            );
            self.member_finished(idx, Some(Error::new(Status::TaskFailed, msg)));
        } else {
            self.member_finished(idx, None);
        }
        self.pools[w.ty.index()].idle.push(worker as u32);
        self.pump(w.ty);
    }

    /// Takes `worker` out of its pool for good; its in-flight member (if
    /// `token` is non-zero) fails with `cause`. Tasks that can no longer run
    /// fail with NO_WORKER.
    pub fn retire(&mut self, worker: usize, token: u64, cause: Error) {
        let workers = self.workers.clone().expect("started");
        let ty = workers[worker].ty;
        self.pools[ty.index()].retire(worker as u32);
        if token != 0 {
            let (idx, _) = split_token(token);
            self.member_finished(idx, Some(cause));
        }
        let live = self.pools[ty.index()].size();
        let queued: Vec<u32> = self.pools[ty.index()].ready.iter().copied().collect();
        for idx in queued {
            let n = self.slots[idx as usize].members() as usize;
            if n > live {
                self.pools[ty.index()].ready.retain(|&i| i != idx);
                let id = task_id(idx, self.slots[idx as usize].gen);
                let e = Error::new(
                    Status::NoWorker,
                    format!("task {id} needs {n} {ty} workers; {live} are left"),
                );
                self.slots[idx as usize].remaining = 1;
                self.member_finished(idx, Some(e));
            }
        }
        self.pump(ty);
    }

    fn member_finished(&mut self, idx: u32, failure: Option<Error>) {
        let slot = &mut self.slots[idx as usize];
        if slot.failure.is_none() {
            slot.failure = failure;
        }
        slot.remaining -= 1;
        if slot.remaining > 0 {
            return;
        }
        slot.phase = Phase::Done;
        self.unfinished -= 1;
        if let Some(f) = &slot.failure {
            if self.first_failure.is_none() {
                self.first_failure = Some(f.clone());
            }
        }
        self.done.push(idx);
    }

    /// The outcome of a task: None while it runs; an error for an unknown id.
    pub fn outcome(&self, id: DistTaskId) -> Result<Option<Result<()>>> {
        let idx = (id & 0xffff_ffff).wrapping_sub(1);
        let gen = (id >> 32) as u32;
        let slot = self
            .slots
            .get(idx as usize)
            .filter(|s| s.gen == gen && s.phase != Phase::Free && id & 0xffff_ffff != 0);
        let Some(slot) = slot else {
            return fail(
                Status::InvalidArgument,
                format!("task id {id:#x} is unknown (never issued, or released by a drain)"),
            );
        };
        Ok(match (&slot.phase, &slot.failure) {
            (Phase::Done, None) => Some(Ok(())),
            (Phase::Done, Some(e)) => Some(Err(e.clone())),
            _ => None,
        })
    }

    /// With no task unfinished: releases every finished task and returns the
    /// first failure since the last drain.
    pub fn drain(&mut self) -> Result<()> {
        debug_assert_eq!(self.unfinished, 0);
        while let Some(idx) = self.done.pop() {
            self.release_slot(idx);
        }
        match self.first_failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Slots in use (submitted and not released by a drain).
    pub fn slots_in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}
