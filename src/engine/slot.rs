//! A task slot: one task (or allocation) from submit to consumption, and
//! the ids and in-flight tokens derived from its index.

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

#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) gen: u32,
    pub(super) phase: Phase,
    /// An allocation made by `alloc` (never a task the caller can wait on).
    pub(super) is_alloc: bool,
    pub(super) ty: WorkerType,
    pub(super) callable: u64,
    pub(super) config: DistCallConfig,
    /// Members not yet finished.
    pub(super) remaining: u32,
    /// When it was submitted (`clock::ticks`), for its latency.
    pub(super) submitted_at: u64,
    /// Encoded blobs of all members, back to back.
    pub(super) blobs: Vec<u8>,
    /// End offset of each member's blob in `blobs`.
    pub(super) ends: Vec<u32>,
    /// Why it failed (first member failure wins).
    pub(super) failure: Option<Error>,
    /// Producers not yet finished.
    pub(super) fanin: u32,
    /// Tasks waiting for this one to finish.
    pub(super) fanout: Vec<u32>,
    /// Tasks this one keeps alive until it is consumed.
    pub(super) holds: Vec<u32>,
    /// Reasons it cannot be consumed yet.
    pub(super) refs: u32,
    /// Addresses it is (or was) the last writer of.
    pub(super) writes: Vec<u64>,
    /// Heap ring allocations it owns.
    pub(super) allocs: Vec<ring::Handle>,
    /// The workers its members run on, when it was placed (else empty).
    pub(super) place: Vec<u32>,
    /// Members whose blob is too long for a mailbox: (member, heap address
    /// reserved for it).
    pub(super) large: Vec<(u32, u64)>,
    /// A producer that failed (so this task will not run).
    pub(super) upstream_failed: Option<DistTaskId>,
    /// Its id was released by a drain.
    pub(super) retired: bool,
}

impl Slot {
    pub(super) fn members(&self) -> u32 {
        self.ends.len() as u32
    }

    pub(super) fn blob(&self, member: u32) -> &[u8] {
        let m = member as usize;
        let start = if m == 0 { 0 } else { self.ends[m - 1] as usize };
        &self.blobs[start..self.ends[m] as usize]
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

pub(super) fn task_id(slot: u32, gen: u32) -> DistTaskId {
    ((gen as u64) << 32) | (slot as u64 + 1)
}
