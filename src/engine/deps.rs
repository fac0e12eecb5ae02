//! Dependencies: edges from the tensor map at submit time, and the
//! questions asked of the graph (does one task wait for another; can a
//! callable's nested wait ever end).

use super::slot::{task_id, task_slot, Phase};
use super::{tag_of, Engine, MemberArgs};
use crate::abi::{self, DistTaskId};
use crate::blob;
use crate::status::{Error, Status};

impl Engine {
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
        let label = &self.workers.get(worker)?.label;
        let waited = task_slot(id);
        if let Some(own) = self.running[worker] {
            if own == waited || self.reaches(own, waited) {
                return Some(Error::new(
                    Status::BadState,
                    format!(
                        "the callable on {} waits for task {id:#x}, which cannot run before \
                         the callable's own task {:#x} finishes (deadlock)",
                        label,
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
                label
            ),
        ))
    }

    /// Whether task slot `to` waits, directly or not, for slot `from`.
    pub(super) fn reaches(&self, from: u32, to: u32) -> bool {
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

    /// Adds the task's dependencies (lookups first, so a group whose members
    /// share an address never waits on itself), then records its writes.
    pub(super) fn link<M: MemberArgs + ?Sized>(&mut self, idx: u32, members: &M) {
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
    pub(super) fn depend(&mut self, c: u32, p: u32, wait: bool) {
        if c == p {
            return;
        }
        if !self.slots[c as usize].holds.contains(&p) {
            self.slots[c as usize].holds.push(p);
            self.slots[p as usize].refs += 1;
            if wait && self.trace.on() && !self.slots[p as usize].is_alloc {
                let from = task_id(p, self.slots[p as usize].gen);
                let to = task_id(c, self.slots[c as usize].gen);
                self.trace.push(crate::trace::Event::Flow { from, to });
            }
        }
        // `c` is linked in one go, so an edge to it is the newest in `p`'s fanout.
        if wait && self.slots[p as usize].fanout.last() != Some(&c) {
            self.wait_on(c, p);
        }
    }

    pub(super) fn wait_on(&mut self, c: u32, p: u32) {
        let ps = &self.slots[p as usize];
        if ps.phase == Phase::Done {
            if ps.failure.is_some() {
                let up = task_id(p, ps.gen);
                self.slots[c as usize].set_upstream_failed(up);
            }
            return;
        }
        self.slots[p as usize].fanout.push(c);
        self.slots[c as usize].fanin += 1;
    }
}
