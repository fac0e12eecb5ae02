//! What the engine tells about itself beside deciding: log lines kept
//! until the lock is released, the timeline trace it records, and the
//! names and ids a trace file needs.

use super::slot::{task_id, token_slot};
use super::Engine;
use crate::abi::DistTaskId;
use crate::log::Level;

impl Engine {
    /// Keeps a line to log once the engine lock is released (a line logged
    /// under it could reach a callback that calls back into the runtime).
    pub fn note(&mut self, level: Level, text: String) {
        self.notes.push((level, text));
    }

    /// The lines kept to log; None, without allocating, when there are none.
    pub fn take_notes(&mut self) -> Option<Vec<(Level, String)>> {
        (!self.notes.is_empty()).then(|| std::mem::take(&mut self.notes))
    }

    /// Starts recording a timeline trace of at most `max_events` events
    /// into `events` (from `trace::buffer`) at `now`; afresh: what an
    /// earlier trace recorded is gone.
    pub fn trace_start(&mut self, events: Vec<crate::trace::Event>, max_events: usize, now: u64) {
        self.now = now;
        self.trace.start(events, max_events);
        self.traced_ready = [None; 2];
        self.trace_ready();
    }

    /// Events the trace's cap leaves after those it holds now (the size of
    /// the next buffer `trace_take` needs).
    pub fn trace_left(&self) -> usize {
        self.trace.left()
    }

    /// Takes the trace events recorded since the last take; recording goes
    /// on into `fresh` (from `trace::buffer`).
    pub fn trace_take(&mut self, fresh: Vec<crate::trace::Event>) -> crate::trace::Recorded {
        self.trace.take(fresh)
    }

    /// Stops recording; returns the events not taken yet.
    pub fn trace_stop(&mut self) -> crate::trace::Recorded {
        self.trace.stop()
    }

    /// The id of the task in slot `slot`.
    pub fn task_of_slot(&self, slot: u32) -> DistTaskId {
        task_id(slot, self.slots[slot as usize].gen)
    }

    /// The id of the task an in-flight token runs.
    pub fn task_of_token(&self, token: u64) -> DistTaskId {
        self.task_of_slot(token_slot(token))
    }

    /// The workers' names in messages, by index (for a trace file).
    pub fn worker_labels(&self) -> Vec<String> {
        self.workers.iter().map(|w| w.label.clone()).collect()
    }
}
