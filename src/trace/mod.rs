//! The timeline trace: fixed-size events the engine appends under its lock
//! while recording is on, and the file they become (`json`: Chrome's Trace
//! Event Format, which ui.perfetto.dev and chrome://tracing open).
//!
//! Recording costs one branch on a plain flag while off. While on, an
//! event is one 48-byte record pushed into a buffer allocated with its full
//! capacity before it is handed to the engine, and written once page by
//! page when the pool starts (so recording takes neither an allocation nor
//! a page fault, and no page of it is shared with a child forked earlier);
//! once the cap is reached, further events are counted as dropped. The
//! file is written off the engine lock: the events are taken out in one
//! swap for a buffer made ready beforehand, then formatted.

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

/// An empty event buffer of `capacity` events, allocated here (never
/// grown later). With `touch`, every page of it is written once now, so
/// recording into it takes no page fault; do it only once no child will be
/// forked any more (a page written before a fork is copied at the next
/// write after it), and off the engine lock.
pub fn buffer(capacity: usize, touch: bool) -> Vec<Event> {
    let mut v = Vec::with_capacity(capacity);
    if touch {
        prefault(&mut v);
    }
    v
}

/// Writes each page of `v`'s free capacity once.
fn prefault(v: &mut Vec<Event>) {
    const EVENTS_PER_PAGE: usize = 4096 / std::mem::size_of::<Event>();
    let blank = Event::Flow { from: 0, to: 0 };
    for e in v.spare_capacity_mut().iter_mut().step_by(EVENTS_PER_PAGE) {
        e.write(blank);
    }
}

/// The engine's recording buffer (plain data, under the engine lock).
#[derive(Debug, Default)]
pub struct Buffer {
    on: bool,
    /// Allocated before it was handed over (`buffer`); never grown.
    events: Vec<Event>,
    /// Events `events` may hold: its capacity, or less when the cap is near.
    room: usize,
    /// Events that found the buffer full since the last take.
    dropped: u64,
    reasons: Vec<String>,
    /// Events taken out since recording started (they count against the cap).
    taken: usize,
    /// Events dropped before the last take.
    dropped_before: u64,
    max: usize,
}

impl Buffer {
    /// Whether events are being recorded: the one check made while off.
    #[inline]
    pub fn on(&self) -> bool {
        self.on
    }

    /// Starts recording afresh into `events` (from `buffer`), keeping at
    /// most `max` events in all.
    pub fn start(&mut self, events: Vec<Event>, max: usize) {
        *self = Buffer {
            on: true,
            room: events.capacity().min(max),
            events,
            max,
            ..Buffer::default()
        };
    }

    /// Touches the pages of the buffer not written yet (when the pool
    /// starts: no fork follows).
    pub fn prefault(&mut self) {
        prefault(&mut self.events);
    }

    /// Appends an event, or counts it as dropped when the buffer is full.
    /// Never allocates.
    #[inline]
    pub fn push(&mut self, e: Event) {
        if self.events.len() < self.room {
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
        (
            (self.taken + self.events.len()) as u64,
            self.dropped_before + self.dropped,
        )
    }

    /// Events the cap leaves for the next buffer after what is held now.
    pub fn left(&self) -> usize {
        self.max.saturating_sub(self.taken + self.events.len())
    }

    /// Takes what was recorded since the last take and goes on recording
    /// into `fresh` (from `buffer`, made off the lock): a swap.
    pub fn take(&mut self, fresh: Vec<Event>) -> Recorded {
        self.taken += self.events.len();
        self.room = fresh.capacity().min(self.max.saturating_sub(self.taken));
        let events = std::mem::replace(&mut self.events, fresh);
        self.dropped_before += self.dropped;
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
        b.start(buffer(3, true), 3);
        let flow = Event::Flow { from: 1, to: 2 };
        for _ in 0..2 {
            b.push(flow);
        }
        assert_eq!(b.left(), 1);
        let first = b.take(buffer(8, false));
        assert_eq!((first.events.len(), first.dropped), (2, 0));
        for _ in 0..3 {
            b.push(flow);
        }
        assert_eq!(
            b.counts(),
            (3, 2),
            "one more fits the cap of 3, two dropped"
        );
        let second = b.take(buffer(0, false));
        assert_eq!((second.events.len(), second.dropped), (1, 2));
        b.push(flow);
        assert_eq!(b.counts(), (3, 3), "drops are counted since the start");
        let rest = b.stop();
        assert_eq!((rest.events.len(), rest.dropped), (0, 1));
        assert!(!b.on());
    }
}
