//! The pool of one worker type: which of its workers are live, which are
//! idle, and the queue of tasks ready to run on them.
//!
//! Owned by the engine (under its lock). Idle workers are a LIFO stack: the
//! worker that finished last is still spinning, so it takes the next task
//! without a wake-up, and the others get to sleep.

use std::collections::VecDeque;

/// One worker type's pool.
#[derive(Debug, Default)]
pub struct Pool {
    /// Indices of live workers of this type.
    pub live: Vec<u32>,
    /// Idle live workers; the most recently finished on top.
    pub idle: Vec<u32>,
    /// Slots of tasks whose producers are done, in submit order.
    pub ready: VecDeque<u32>,
    /// Slots of ready tasks placed on named workers, in submit order: each
    /// waits for its own workers only.
    pub placed: VecDeque<u32>,
}

impl Pool {
    /// Number of live workers.
    pub fn size(&self) -> usize {
        self.live.len()
    }

    /// Removes a worker for good (it died or broke the protocol).
    pub fn retire(&mut self, worker: u32) {
        self.live.retain(|&w| w != worker);
        self.idle.retain(|&w| w != worker);
    }
}
