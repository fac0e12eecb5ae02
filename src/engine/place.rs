//! Placement: a task whose members must run on named workers (the chip
//! that holds their data). A placed task waits in its type's `placed` list
//! for its own workers only; unplaced tasks keep flowing to the others, and
//! an idle worker goes to a placed task that names it first. A placed task
//! is never moved: if a named worker leaves its pool, the task ends.

use super::slot::{task_id, Phase};
use super::{Engine, MemberArgs, TaskSpec};
use crate::abi::DistTaskId;
use crate::status::{fail, Error, Result, Status};
use crate::worker::WorkerType;

impl Engine {
    /// Submits a task whose member `i` runs on worker `indices[i]` of the
    /// task's type (its registration order within the type). Indices must
    /// be in range and distinct (INVALID_ARGUMENT), one per member; a named
    /// worker that has left its pool gives NO_WORKER. Empty: anywhere.
    /// `now` is the time of the submit (`clock::ticks`).
    pub fn submit_placed<M: MemberArgs + ?Sized>(
        &mut self,
        spec: &TaskSpec<'_, M>,
        indices: &[u32],
        now: u64,
    ) -> Result<Option<DistTaskId>> {
        self.now = now;
        if indices.is_empty() {
            return self.submit_on(spec, &[]);
        }
        let place = self.placement(spec.ty, spec.members.count(), indices)?;
        self.submit_on(spec, &place)
    }

    /// Global worker indices for a placement, checked.
    fn placement(&self, ty: WorkerType, members: u32, indices: &[u32]) -> Result<Vec<u32>> {
        if indices.len() != members as usize {
            return fail(
                Status::InvalidArgument,
                format!(
                    "{} worker indices for a task of {members} member(s)",
                    indices.len()
                ),
            );
        }
        let of_type = &self.by_type[ty.index()];
        let mut place = Vec::with_capacity(indices.len());
        for (m, &i) in indices.iter().enumerate() {
            let Some(&w) = of_type.get(i as usize) else {
                return fail(
                    Status::InvalidArgument,
                    format!(
                        "member {m}: {ty} worker {i} does not exist ({} {ty} worker(s), from 0)",
                        of_type.len()
                    ),
                );
            };
            if indices[..m].contains(&i) {
                return fail(
                    Status::InvalidArgument,
                    format!("member {m}: {ty} worker {i} is named twice"),
                );
            }
            if self.retired[w as usize] {
                return fail(
                    Status::NoWorker,
                    format!(
                        "member {m}: {} has left its pool; a placed task is never moved",
                        self.workers[w as usize].label
                    ),
                );
            }
            place.push(w);
        }
        Ok(place)
    }

    /// Queues a task whose producers are done: placed or not.
    pub(super) fn make_ready(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        slot.phase = Phase::Ready;
        let pool = &mut self.pools[slot.ty.index()];
        if slot.place().is_empty() {
            pool.ready.push_back(idx);
        } else {
            pool.placed.push_back(idx);
        }
    }

    /// Launches the placed tasks of `ty` whose workers are all idle, in
    /// submit order.
    pub(super) fn pump_placed(&mut self, ty: WorkerType) {
        let mut i = 0;
        while i < self.pools[ty.index()].placed.len() {
            let idx = self.pools[ty.index()].placed[i];
            let pool = &self.pools[ty.index()];
            let slot = &self.slots[idx as usize];
            if !slot.place().iter().all(|w| pool.idle.contains(w)) {
                i += 1;
                continue;
            }
            self.pools[ty.index()].placed.remove(i);
            self.set_running(idx);
            for member in 0..self.slots[idx as usize].members() {
                let w = self.slots[idx as usize].place()[member as usize];
                let idle = &mut self.pools[ty.index()].idle;
                let at = idle.iter().position(|&x| x == w).expect("checked idle");
                idle.remove(at);
                self.assign(idx, member, w);
            }
        }
    }

    /// `worker` left its pool: the queued tasks placed on it end (they are
    /// never moved to another worker).
    pub(super) fn drop_placed_on(&mut self, worker: u32, cause: &Error) {
        let ty = self.workers[worker as usize].ty;
        let mut i = 0;
        while i < self.pools[ty.index()].placed.len() {
            let idx = self.pools[ty.index()].placed[i];
            if !self.slots[idx as usize].place().contains(&worker) {
                i += 1;
                continue;
            }
            self.pools[ty.index()].placed.remove(i);
            let id = task_id(idx, self.slots[idx as usize].gen);
            let e = Error::new(
                Status::ChildDied,
                format!(
                    "task {id:#x} was placed on {}, which left its pool: {}",
                    self.workers[worker as usize].label, cause.message
                ),
            );
            self.finishing.push((idx, Some(e)));
        }
    }
}
