//! The timeline trace: fixed-size events the engine appends under its lock
//! while recording is on, and the file they become (`json`: Chrome's Trace
//! Event Format, which ui.perfetto.dev and chrome://tracing open).
//!
//! Recording costs one branch on a plain flag while off. While on, an
//! event is one 48-byte record pushed into a buffer allocated with its full
//! capacity when recording starts: no allocation per task; once the buffer
//! is full, further events are counted as dropped. The file is written off
//! the engine lock: the events are taken out in one swap, then formatted.

pub mod json;

/// Events a trace holds by default before it drops further ones (about
/// 48 MiB of records, touched only as they are written).
pub const DEFAULT_MAX_EVENTS: usize = 1 << 20;

/// One thing that happened, with its times in `clock::ticks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A task member ran on a worker from `start` to `end`.
    Run {
        /// Index of the worker.
        worker: u32,
        /// How it ended: 0, or a `Status` value.
        status: i32,
        /// The task's id.
        task: u64,
        /// Its callable.
        callable: u64,
        /// When it was launched.
        start: u64,
        /// When its completion reached the engine.
        end: u64,
    },
    /// Task `to` reads what task `from` wrote (it waited for it, or would have).
    Flow {
        /// The producer's id.
        from: u64,
        /// The consumer's id.
        to: u64,
    },
    /// The ready queue of a worker type (index) held `depth` tasks from `at` on.
    Ready {
        /// `WorkerType::index` of the queue.
        ty: u8,
        /// Tasks queued (placed ones included).
        depth: u32,
        /// Since when.
        at: u64,
    },
    /// A worker left its pool at `at`; `reason` indexes `Recorded::reasons`.
    Retired {
        /// Index of the worker.
        worker: u32,
        /// The status its task (if any) ended with.
        status: i32,
        /// When.
        at: u64,
        /// Why, in `Recorded::reasons`.
        reason: u32,
    },
}

/// Events taken out of a buffer, with what could not be kept.
#[derive(Debug, Default)]
pub struct Recorded {
    /// In the order they happened.
    pub events: Vec<Event>,
    /// Events that found the buffer full.
    pub dropped: u64,
    /// Texts the events refer to (why workers retired).
    pub reasons: Vec<String>,
}

/// The engine's recording buffer (plain data, under the engine lock).
#[derive(Debug, Default)]
pub struct Buffer {
    on: bool,
    /// Allocated with the capacity left when recording started; never grown.
    events: Vec<Event>,
    dropped: u64,
    reasons: Vec<String>,
    /// Events taken out since recording started (they count against the cap).
    taken: usize,
    max: usize,
}

impl Buffer {
    /// Whether events are being recorded: the one check made while off.
    #[inline]
    pub fn on(&self) -> bool {
        self.on
    }

    /// Starts recording afresh, keeping at most `max` events in all.
    pub fn start(&mut self, max: usize) {
        *self = Buffer {
            on: true,
            events: Vec::with_capacity(max),
            max,
            ..Buffer::default()
        };
    }

    /// Appends an event, or counts it as dropped when the buffer is full.
    /// Never allocates.
    #[inline]
    pub fn push(&mut self, e: Event) {
        if self.events.len() < self.events.capacity() {
            self.events.push(e);
        } else {
            self.dropped += 1;
        }
    }

    /// Records why a worker retired (a rare event: may allocate); returns
    /// its index for `Event::Retired`.
    pub fn reason(&mut self, why: &str) -> u32 {
        self.reasons.push(why.to_string());
        self.reasons.len() as u32 - 1
    }

    /// Events recorded and events dropped since recording started.
    pub fn counts(&self) -> (u64, u64) {
        ((self.taken + self.events.len()) as u64, self.dropped)
    }

    /// Takes what was recorded since the last take; recording goes on into
    /// a buffer with the capacity that is left (one allocation, off the
    /// hot path: only flushes and shutdown take).
    pub fn take(&mut self) -> Recorded {
        self.taken += self.events.len();
        let left = self.max.saturating_sub(self.taken);
        let events = std::mem::replace(&mut self.events, Vec::with_capacity(left));
        Recorded {
            events,
            dropped: std::mem::take(&mut self.dropped),
            reasons: std::mem::take(&mut self.reasons),
        }
    }

    /// Stops recording; returns what was not taken yet.
    pub fn stop(&mut self) -> Recorded {
        let r = Recorded {
            events: std::mem::take(&mut self.events),
            dropped: self.dropped,
            reasons: std::mem::take(&mut self.reasons),
        };
        *self = Buffer::default();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_a_small_fixed_record() {
        assert_eq!(std::mem::size_of::<Event>(), 48);
    }

    #[test]
    fn a_full_buffer_counts_what_it_drops() {
        let mut b = Buffer::default();
        assert!(!b.on());
        b.start(3);
        let flow = Event::Flow { from: 1, to: 2 };
        for _ in 0..2 {
            b.push(flow);
        }
        let first = b.take();
        assert_eq!((first.events.len(), first.dropped), (2, 0));
        for _ in 0..3 {
            b.push(flow);
        }
        assert_eq!(
            b.counts(),
            (3, 2),
            "one more fits the cap of 3, two dropped"
        );
        let rest = b.stop();
        assert_eq!((rest.events.len(), rest.dropped), (1, 2));
        assert!(!b.on());
    }
}
