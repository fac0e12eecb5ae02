//! Launch orders: what the engine decided to run, handed to `progress`,
//! which writes them into mailboxes; and a refused launch taken back.

use super::slot::Phase;
use super::Engine;
use crate::abi::DistCallConfig;
use crate::status::Error;

/// A task member the engine put on an idle worker: `progress` writes it
/// into the worker's mailbox and publishes it. Consecutive orders of one
/// slot are the members of one group, launched together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The task's slot.
    pub slot: u32,
    /// The group member.
    pub member: u32,
    /// The worker it runs on.
    pub worker: u32,
    /// The in-flight token of this launch (slot and launch sequence).
    pub token: u64,
}

impl Engine {
    /// Puts member `member` of task `idx` on idle worker `w` (taken off its
    /// idle stack by the caller): an order for progress to carry out.
    pub(super) fn assign(&mut self, idx: u32, member: u32, w: u32) {
        self.running[w as usize] = Some(idx);
        self.runs[w as usize].since = self.now;
        // Never 0, so a fresh mailbox's done_seq matches no launch.
        self.launches = self.launches.wrapping_add(1).max(1);
        self.launches_out.push(Launch {
            slot: idx,
            member,
            worker: w,
            token: super::token(idx, self.launches),
        });
    }

    /// Whether launches were decided and not yet taken.
    pub fn has_launches(&self) -> bool {
        !self.launches_out.is_empty()
    }

    /// The launches decided since the last call, to carry out in order.
    /// Hand the vector back with `give_back_launches` (no allocation).
    pub fn take_launches(&mut self) -> Vec<Launch> {
        let spare = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.launches_out, spare)
    }

    /// Returns the vector `take_launches` gave out, emptied.
    pub fn give_back_launches(&mut self, mut v: Vec<Launch>) {
        v.clear();
        if self.spare.capacity() < v.capacity() {
            self.spare = v;
        }
    }

    /// What a launch carries: callable, config and the member's blob.
    /// And, for a blob too long for a mailbox, the heap address reserved
    /// for it (progress copies it there).
    pub fn payload(&self, slot: u32, member: u32) -> (u64, &DistCallConfig, &[u8], Option<u64>) {
        let s = &self.slots[slot as usize];
        let large = s.large().iter().find(|l| l.0 == member).map(|l| l.1);
        (s.callable, &s.config, s.blob(member), large)
    }

    /// A group's workers could not all take it: `bad`'s mailbox was not
    /// IDLE. The task goes back to the head of its queue, the other
    /// workers back to idle, and `bad` leaves its pool with `cause`.
    pub fn refuse_launch(&mut self, group: &[Launch], bad: u32, cause: Error) {
        let slot = group[0].slot;
        let ty = self.slots[slot as usize].ty;
        for o in group.iter().rev() {
            self.running[o.worker as usize] = None;
            if o.worker != bad {
                self.pools[ty.index()].idle.push(o.worker);
            }
        }
        self.slots[slot as usize].phase = Phase::Ready;
        self.counts[ty.index()].running -= 1;
        if self.slots[slot as usize].place().is_empty() {
            self.pools[ty.index()].ready.push_front(slot);
        } else {
            self.pools[ty.index()].placed.push_front(slot);
        }
        if self.first_failure.is_none() {
            self.first_failure = Some(cause.clone());
        }
        self.retire(bad as usize, 0, cause, self.now);
    }
}
