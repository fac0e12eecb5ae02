//! Finishing: a member's end, the tasks that become ready or fail in
//! consequence, consumption (map entries and heap memory released), the
//! outcomes waiters read, and drain.

use super::slot::{task_id, task_slot, Phase, Slot};
use super::Engine;
use crate::abi::DistTaskId;
use crate::status::{Error, Result, Status};
use crate::worker::WorkerType;

impl Engine {
    /// Member of task `idx` on `worker` ended (now) with `failure`.
    pub(super) fn member_finished(&mut self, worker: usize, idx: u32, failure: Option<Error>) {
        let status = failure.as_ref().map_or(0, |f| f.status as i32);
        let last = self.slots[idx as usize].remaining == 1;
        self.count_run(worker, idx, status, last);
        let slot = &mut self.slots[idx as usize];
        if slot.failure.is_none() {
            slot.failure = failure.map(Box::new);
        }
        slot.remaining -= 1;
        if slot.remaining == 0 {
            let f = slot.failure.take().map(|b| *b);
            self.finishing.push((idx, f));
            self.settle();
        }
    }

    /// Finishes every task in `finishing`, and the dependents that become
    /// ready or fail in consequence.
    pub(super) fn settle(&mut self) {
        let mut ready_types = [false; 2];
        while let Some((idx, failure)) = self.finishing.pop() {
            if self.slots[idx as usize].phase == Phase::Done {
                continue; // finished already (aborted together with a producer)
            }
            let id = task_id(idx, self.slots[idx as usize].gen);
            let failed = failure.is_some();
            let before = self.slots[idx as usize].phase;
            self.count_finished(idx, before, failed);
            let slot = &mut self.slots[idx as usize];
            slot.phase = Phase::Done;
            if let Some(f) = &failure {
                if self.first_failure.is_none() {
                    self.first_failure = Some(f.clone());
                }
            }
            slot.failure = failure.map(Box::new);
            self.unfinished -= 1;
            self.done.push(idx);
            let mut fanout = std::mem::take(&mut self.slots[idx as usize].fanout);
            for &c in &fanout {
                let cs = &mut self.slots[c as usize];
                if cs.phase == Phase::Done {
                    continue;
                }
                if failed {
                    cs.set_upstream_failed(id);
                }
                cs.fanin -= 1;
                if cs.fanin > 0 {
                    continue;
                }
                let cid = task_id(c, cs.gen);
                match cs.upstream_failed() {
                    Some(up) => self.finishing.push((c, Some(upstream_error(cid, up)))),
                    None => {
                        ready_types[cs.ty.index()] = true;
                        self.make_ready(c);
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
    pub(super) fn release(&mut self, idx: u32) {
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
            for &h in s.allocs() {
                self.ring.free(h);
            }
            s.writes.clear();
            s.clear_allocs();
            self.releasing.append(&mut s.holds);
            if s.retired {
                self.free_slot(i);
            }
        }
    }

    pub(super) fn release_all(&mut self, slots: &mut Vec<u32>) {
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

    /// The outcome of a task: None while it runs; an error for an unknown id.
    pub fn outcome(&self, id: DistTaskId) -> Result<Option<Result<()>>> {
        let slot = self.known(id)?;
        Ok(match (&slot.phase, &slot.failure) {
            (Phase::Done, None) => Some(Ok(())),
            (Phase::Done, Some(e)) => Some(Err((**e).clone())),
            _ => None,
        })
    }

    pub(super) fn known(&self, id: DistTaskId) -> Result<&Slot> {
        let idx = task_slot(id);
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
}

pub(super) fn upstream_error(id: DistTaskId, up: DistTaskId) -> Error {
    Error::new(
        Status::DependencyFailed,
        format!("task {id:#x} did not run: task {up:#x}, which it depends on, failed"),
    )
}
