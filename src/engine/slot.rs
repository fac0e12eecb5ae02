//! A task slot: one task (or allocation) from submit to consumption, and
//! the ids and in-flight tokens derived from its index.

use std::num::NonZeroU64;

use smallvec::SmallVec;

use crate::abi::{DistCallConfig, DistTaskId};
use crate::status::Error;
use crate::worker::WorkerType;

use super::ring;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Phase {
    #[default]
    Free,
    Pending,
    Ready,
    Running,
    Done,
}

/// The longest blob kept inside its slot: the header and one scalar (a
/// task without tensors) need no heap block of their own.
const INLINE_BLOB: usize = 16;

/// A task or allocation, kept small: a dispatched, undrained no-op task
/// costs its slot and nothing on the heap. What few tasks use lives in
/// `Cold`, allocated the first time a slot needs it and kept when the slot
/// is reused (so the steady state allocates nothing).
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) gen: u32,
    pub(super) phase: Phase,
    /// An allocation made by `alloc` (never a task the caller can wait on).
    pub(super) is_alloc: bool,
    pub(super) ty: WorkerType,
    /// Its id was released by a drain.
    pub(super) retired: bool,
    /// Members not yet finished.
    pub(super) remaining: u16,
    /// Members (1 for a plain task; a group's size).
    members: u16,
    /// Producers not yet finished.
    pub(super) fanin: u32,
    /// Reasons it cannot be consumed yet.
    pub(super) refs: u32,
    pub(super) callable: u64,
    pub(super) config: DistCallConfig,
    /// When it was submitted (`clock::ticks`), for its latency.
    pub(super) submitted_at: u64,
    /// Encoded blobs of all members, back to back.
    blobs: SmallVec<[u8; INLINE_BLOB]>,
    /// Tasks waiting for this one to finish.
    pub(super) fanout: Vec<u32>,
    /// Tasks this one keeps alive until it is consumed.
    pub(super) holds: Vec<u32>,
    /// Addresses it is (or was) the last writer of.
    pub(super) writes: Vec<u64>,
    /// Why it failed (first member failure wins).
    pub(super) failure: Option<Box<Error>>,
    /// A producer that failed (so this task will not run).
    upstream_failed: Option<NonZeroU64>,
    cold: Option<Box<Cold>>,
}

/// The parts of a slot few tasks use.
#[derive(Debug, Default)]
pub(super) struct Cold {
    /// End offset of each member's blob (groups only).
    ends: Vec<u32>,
    /// Heap ring allocations it owns.
    pub(super) allocs: Vec<ring::Handle>,
    /// The workers its members run on, when it was placed (else empty).
    pub(super) place: Vec<u32>,
    /// Members whose blob is too long for a mailbox: (member, heap address
    /// reserved for it).
    pub(super) large: Vec<(u32, u64)>,
}

impl Slot {
    /// A free slot of generation 1 (ids are never 0).
    pub(super) fn new() -> Slot {
        Slot {
            gen: 1,
            ..Slot::default()
        }
    }

    pub(super) fn members(&self) -> u32 {
        self.members as u32
    }

    pub(super) fn blob(&self, member: u32) -> &[u8] {
        if self.members <= 1 {
            return &self.blobs;
        }
        let ends = &self.cold.as_ref().expect("a group keeps its ends").ends;
        let m = member as usize;
        let start = if m == 0 { 0 } else { ends[m - 1] as usize };
        &self.blobs[start..ends[m] as usize]
    }

    /// Where the next member's blob is encoded.
    pub(super) fn blob_out(&mut self) -> &mut SmallVec<[u8; INLINE_BLOB]> {
        &mut self.blobs
    }

    /// Length of the member blob just encoded after `blob_out`.
    pub(super) fn last_blob_len(&self) -> usize {
        let start = match &self.cold {
            Some(c) => c.ends.last().copied().unwrap_or(0) as usize,
            None => 0,
        };
        self.blobs.len() - start
    }

    /// Ends the member blob just encoded; a member of a group (more than
    /// one member) records where it ends.
    pub(super) fn end_member(&mut self, group: bool) {
        self.members += 1;
        if group {
            let len = self.blobs.len() as u32;
            self.cold_mut().ends.push(len);
        }
    }

    pub(super) fn cold_mut(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Box::default)
    }

    pub(super) fn allocs(&self) -> &[ring::Handle] {
        self.cold.as_ref().map_or(&[], |c| &c.allocs)
    }

    pub(super) fn place(&self) -> &[u32] {
        self.cold.as_ref().map_or(&[], |c| &c.place)
    }

    pub(super) fn large(&self) -> &[(u32, u64)] {
        self.cold.as_ref().map_or(&[], |c| &c.large)
    }

    /// Takes its heap allocations (leaving it none).
    pub(super) fn take_allocs(&mut self) -> Vec<ring::Handle> {
        self.cold
            .as_mut()
            .map(|c| std::mem::take(&mut c.allocs))
            .unwrap_or_default()
    }

    /// Forgets its heap allocations (freed by the caller).
    pub(super) fn clear_allocs(&mut self) {
        if let Some(c) = &mut self.cold {
            c.allocs.clear();
        }
    }

    pub(super) fn upstream_failed(&self) -> Option<DistTaskId> {
        self.upstream_failed.map(NonZeroU64::get)
    }

    /// Records the first failed producer (task ids are never 0).
    pub(super) fn set_upstream_failed(&mut self, up: DistTaskId) {
        if self.upstream_failed.is_none() {
            self.upstream_failed = NonZeroU64::new(up);
        }
    }

    /// Empties it for reuse, keeping its buffers.
    pub(super) fn clear(&mut self) {
        self.is_alloc = false;
        self.failure = None;
        self.upstream_failed = None;
        self.retired = false;
        self.fanin = 0;
        self.refs = 0;
        self.members = 0;
        self.blobs.clear();
        self.fanout.clear();
        self.holds.clear();
        self.writes.clear();
        if let Some(c) = &mut self.cold {
            c.ends.clear();
            c.allocs.clear();
            c.place.clear();
            c.large.clear();
        }
    }
}

/// A worker's in-flight token: the slot it runs (low half, plus one so it
/// is never 0) and a launch sequence number (high half), so a poller
/// holding a stale token can never claim a later launch (no ABA).
pub(super) fn token(slot: u32, launch: u32) -> u64 {
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

/// The slot a task id names (its low half, less one; u32::MAX for an id
/// whose low half is 0, which names no slot).
pub fn task_slot(id: DistTaskId) -> u32 {
    ((id & 0xffff_ffff) as u32).wrapping_sub(1)
}

pub(super) fn task_id(slot: u32, gen: u32) -> DistTaskId {
    ((gen as u64) << 32) | (slot as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An undrained no-op task costs its slot (plus a few bytes of lists):
    /// the slot must stay within the budget of 192 bytes a task.
    #[test]
    fn a_slot_stays_small() {
        let size = std::mem::size_of::<Slot>();
        assert!(size <= 168, "Slot is {size} bytes");
    }

    #[test]
    fn a_group_keeps_each_members_blob() {
        let mut s = Slot::new();
        for m in 0..3u8 {
            s.blob_out().extend_from_slice(&[m; 40]);
            assert_eq!(s.last_blob_len(), 40);
            s.end_member(true);
        }
        assert_eq!(s.members(), 3);
        assert_eq!(s.blob(1), &[1u8; 40][..]);
        s.clear();
        s.blob_out().extend_from_slice(&[7; 8]);
        assert_eq!(s.last_blob_len(), 8);
        s.end_member(false);
        assert_eq!((s.members(), s.blob(0)), (1, &[7u8; 8][..]));
    }
}
