//! Retiring a worker: it leaves its pool for good (dead, hung, broken);
//! its member fails, tasks placed on it end, and queued tasks that can no
//! longer find enough workers fail with NO_WORKER.

use super::slot::{task_id, token_slot};
use super::Engine;
use crate::log::Level;
use crate::status::{Error, Status};

impl Engine {
    /// Whether `worker` was taken out of its pool.
    pub fn is_retired(&self, worker: usize) -> bool {
        self.retired.get(worker).copied().unwrap_or(false)
    }

    /// Takes `worker` out of its pool for good at `now`; its in-flight
    /// member (if `token` is non-zero) fails with `cause`. Queued tasks
    /// that can no longer run fail with NO_WORKER.
    pub fn retire(&mut self, worker: usize, token: u64, cause: Error, now: u64) {
        self.now = now;
        let ty = self.workers[worker].ty;
        self.retired[worker] = true;
        self.running[worker] = None;
        self.pools[ty.index()].retire(worker as u32);
        self.note(Level::Warn, cause.message.clone());
        if self.trace.on() {
            let reason = self.trace.reason(&cause.message);
            self.trace.push(crate::trace::Event::Retired {
                worker: worker as u32,
                status: cause.status as i32,
                at: now,
                reason,
            });
        }
        self.drop_placed_on(worker as u32, &cause);
        if token != 0 {
            let idx = token_slot(token);
            self.member_finished(worker, idx, Some(cause));
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
        self.trace_ready();
    }
}
