//! Figures: what the engine counts as tasks and workers come and go (plain
//! counters, bumped under the engine lock on paths it already takes), and
//! the snapshots it reports from them. Nothing here allocates.

use super::slot::Phase;
use super::Engine;
use crate::clock::Scale;
use crate::trace::Event;
use crate::worker::WorkerType;

/// Counts that show whether the engine is back to its resting state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Slots in use (tasks known, plus allocations and tasks still alive).
    pub slots: usize,
    /// Tensor-map entries.
    pub map_entries: usize,
    /// Bytes of the heap ring in live allocations.
    pub heap_live_bytes: u64,
    /// Heap ring blocks not yet reclaimed.
    pub heap_blocks: usize,
    /// Open scopes (not counting the root).
    pub scope_depth: usize,
    /// Tasks submitted and not finished.
    pub unfinished: usize,
}

/// One worker type's tasks: totals since create, and where the others are now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeStats {
    /// Tasks accepted (a group counts once).
    pub submitted: u64,
    /// Now: waiting for the tasks they depend on.
    pub pending: u64,
    /// Now: queued for idle workers (placed tasks included).
    pub ready: u64,
    /// Now: on workers.
    pub running: u64,
    /// Finished successfully.
    pub completed: u64,
    /// Finished with a failure, whether they ran or not (a dependency
    /// failed, no worker was left, a deadline passed).
    pub failed: u64,
    /// Workers in the pool now (retired ones excluded).
    pub live_workers: u32,
    /// Of those, the ones running a task.
    pub busy_workers: u32,
}

/// Dispatch-to-completion times of the tasks that ran (from submit to the
/// engine hearing of the last member's end), since create.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Tasks measured.
    pub count: u64,
    /// Median, in ns (upper edge of its histogram bucket, at most 6.25 % wide).
    pub p50_ns: u64,
    /// 99th percentile, in ns.
    pub p99_ns: u64,
    /// 99.9th percentile, in ns.
    pub p999_ns: u64,
    /// Longest, in ns.
    pub max_ns: u64,
}

/// Everything a runtime reports about itself (`Runtime::stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Its level in the hierarchy.
    pub level: u32,
    /// Workers of the started pool (0 before start), retired ones included.
    pub workers: usize,
    /// Per worker type, by `WorkerType::index` (NEXT_LEVEL, SUB).
    pub types: [TypeStats; 2],
    /// Dispatch-to-completion latency.
    pub latency: Latency,
    /// What the engine holds now.
    pub engine: EngineStats,
    /// The most bytes of the heap ring that were live at once.
    pub heap_peak_bytes: u64,
    /// Size of the heap ring.
    pub heap_capacity_bytes: u64,
    /// Trace events recorded since the trace started (0 without one).
    pub trace_events: u64,
    /// Trace events that found the trace buffer full.
    pub trace_dropped: u64,
}

/// Where a worker's callable runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkerMode {
    /// A pool thread of this process.
    #[default]
    Thread,
    /// A child process the library forked.
    Spawned,
    /// A process the caller started (served through a mailbox it registered).
    Process,
    /// An inner level: driven by a pool thread (no pid) or its own process.
    Level,
}

/// What a worker is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkerState {
    /// In its pool, without a task.
    #[default]
    Idle,
    /// Running a task member.
    Busy,
    /// Out of its pool for good (died, hung, broke the protocol).
    Retired,
}

/// One worker's figures (`Runtime::worker_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Index among all workers (registration order).
    pub index: usize,
    /// Its type.
    pub ty: WorkerType,
    /// Registration order within its type: "SUB worker 1".
    pub rank: usize,
    /// Where it runs.
    pub mode: WorkerMode,
    /// Its process, if it has one the library knows.
    pub pid: Option<i32>,
    /// For a level: its level number.
    pub level: Option<u32>,
    /// What it is doing.
    pub state: WorkerState,
    /// Task members it ran to an end (failures included).
    pub tasks_run: u64,
    /// Of those, the ones that failed.
    pub tasks_failed: u64,
    /// Time it spent running them, in ns (the current one included so far).
    pub busy_ns: u64,
}

/// Per-type totals the engine keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TypeCounts {
    pub(super) submitted: u64,
    pub(super) completed: u64,
    pub(super) failed: u64,
    pub(super) running: u64,
    pub(super) unfinished: u64,
}

/// Per-worker totals the engine keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct WorkerCounts {
    pub(super) tasks_run: u64,
    pub(super) tasks_failed: u64,
    /// Ticks spent running task members.
    pub(super) busy: u64,
    /// When its current task member was launched (`clock::ticks`).
    pub(super) since: u64,
}

impl Engine {
    /// What the engine holds now, for checking that nothing is left behind.
    pub fn engine_stats(&self) -> EngineStats {
        EngineStats {
            slots: self.slots.len() - self.free.len(),
            map_entries: self.map.len(),
            heap_live_bytes: self.ring.live_bytes(),
            heap_blocks: self.ring.blocks(),
            scope_depth: self.scopes.depth(),
            unfinished: self.unfinished,
        }
    }

    /// Every figure of the runtime (one pass over the latency histogram;
    /// no allocation).
    pub fn stats(&self) -> Stats {
        let scale = Scale::now();
        let [p50, p99, p999] = self.latency.quantiles([0.5, 0.99, 0.999]);
        let (trace_events, trace_dropped) = self.trace.counts();
        Stats {
            level: self.level,
            workers: self.workers.len(),
            types: WorkerType::ALL.map(|ty| {
                let c = &self.counts[ty.index()];
                let pool = &self.pools[ty.index()];
                let ready = (pool.ready.len() + pool.placed.len()) as u64;
                TypeStats {
                    submitted: c.submitted,
                    pending: c.unfinished.saturating_sub(ready + c.running),
                    ready,
                    running: c.running,
                    completed: c.completed,
                    failed: c.failed,
                    live_workers: pool.live.len() as u32,
                    busy_workers: (pool.live.len() - pool.idle.len()) as u32,
                }
            }),
            latency: Latency {
                count: self.latency.count(),
                p50_ns: scale.ns(p50),
                p99_ns: scale.ns(p99),
                p999_ns: scale.ns(p999),
                max_ns: scale.ns(self.latency.max()),
            },
            engine: self.engine_stats(),
            heap_peak_bytes: self.ring.peak_bytes(),
            heap_capacity_bytes: self.ring.capacity_bytes(),
            trace_events,
            trace_dropped,
        }
    }

    /// Worker `index`'s figures at `now` (`clock::ticks`); None past the
    /// last worker.
    pub fn worker_stats(&self, index: usize, now: u64) -> Option<WorkerStats> {
        let w = self.workers.get(index)?;
        let c = &self.runs[index];
        let state = if self.retired[index] {
            WorkerState::Retired
        } else if self.running[index].is_some() {
            WorkerState::Busy
        } else {
            WorkerState::Idle
        };
        let current = match state {
            WorkerState::Busy => now.saturating_sub(c.since),
            _ => 0,
        };
        Some(WorkerStats {
            index,
            ty: w.ty,
            rank: w.rank,
            mode: w.mode,
            pid: w.pid,
            level: w.level,
            state,
            tasks_run: c.tasks_run,
            tasks_failed: c.tasks_failed,
            busy_ns: Scale::now().ns(c.busy + current),
        })
    }

    /// Task `idx` goes onto workers.
    pub(super) fn set_running(&mut self, idx: u32) {
        let ty = self.slots[idx as usize].ty;
        self.slots[idx as usize].phase = Phase::Running;
        self.counts[ty.index()].running += 1;
    }

    /// Task `idx`, which was in `before`, finished (`failed` or not).
    pub(super) fn count_finished(&mut self, idx: u32, before: Phase, failed: bool) {
        let c = &mut self.counts[self.slots[idx as usize].ty.index()];
        c.unfinished -= 1;
        if before == Phase::Running {
            c.running -= 1;
        }
        if failed {
            c.failed += 1;
        } else {
            c.completed += 1;
        }
    }

    /// The member task `idx` ran on `worker` ended now with `status`: its
    /// worker's totals, the task's latency once its last member ended, and
    /// the trace's slice.
    pub(super) fn count_run(&mut self, worker: usize, idx: u32, status: i32, last: bool) {
        let now = self.now;
        let c = &mut self.runs[worker];
        let start = c.since;
        c.busy += now.saturating_sub(start);
        c.tasks_run += 1;
        if status != 0 {
            c.tasks_failed += 1;
        }
        let slot = &self.slots[idx as usize];
        if last {
            self.latency.record(now.saturating_sub(slot.submitted_at));
        }
        if self.trace.on() {
            let e = Event::Run {
                worker: worker as u32,
                status,
                task: super::task_id(idx, slot.gen),
                callable: slot.callable,
                start,
                end: now,
            };
            self.trace.push(e);
        }
    }

    /// Traces the ready queues whose depth changed since last traced.
    pub(super) fn trace_ready(&mut self) {
        if !self.trace.on() {
            return;
        }
        for ty in WorkerType::ALL {
            let pool = &self.pools[ty.index()];
            let depth = (pool.ready.len() + pool.placed.len()) as u32;
            if self.traced_ready[ty.index()] != Some(depth) {
                self.traced_ready[ty.index()] = Some(depth);
                self.trace.push(Event::Ready {
                    ty: ty.index() as u8,
                    depth,
                    at: self.now,
                });
            }
        }
    }
}
