//! The engine at scale: a million no-op tasks through THREAD workers and
//! through an INOUT chain, the memory an undrained task holds, several
//! submitting threads, and throughput beside busy foreign processes.

use crate::capi::{self, Pool, Tunables};
use crate::floor;
use serde::Serialize;

/// What `measure` finds. Rates in tasks/s.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Scale {
    /// Tasks per batch.
    pub tasks: usize,
    /// Independent no-op tasks through 2 THREAD workers.
    pub independent_2_threads: f64,
    /// A chain (every task INOUT on one address) through 2 spawned children.
    pub inout_chain_2_children: f64,
    /// Resident bytes per dispatched, undrained task.
    pub bytes_per_undrained_task: f64,
    /// One submitting thread, 4 children.
    pub one_submitter_4_children: f64,
    /// Four submitting threads at once, 4 children.
    pub four_submitters_4_children: f64,
    /// 4 children while 2 foreign processes spin.
    pub loaded_4_children: f64,
    /// The pipelined pipe pool (4 children) while 2 foreign processes spin.
    pub loaded_pipe_pool_4: f64,
}

/// Runs every measurement with batches of `tasks`; rates are medians of
/// `runs` batches.
pub fn measure(tasks: usize, runs: usize, tunables: &Tunables) -> Scale {
    let median = |f: &dyn Fn() -> f64| {
        let mut v: Vec<f64> = (0..runs).map(|_| f()).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // A fresh host for the memory figure, before any batch grew its tables.
    let bytes_per_undrained_task = capi::threads(2, tunables).bytes_per_undrained_task(tasks);
    let threads = capi::threads(2, tunables);
    threads.throughput(tasks / 10);
    let independent_2_threads = median(&|| threads.throughput(tasks));
    drop(threads);
    let two = Pool::new(2, tunables);
    two.chain_throughput(tasks / 10);
    let inout_chain_2_children = median(&|| two.chain_throughput(tasks));
    drop(two);
    let four = Pool::new(4, tunables);
    four.throughput(tasks / 10);
    let one_submitter_4_children = median(&|| four.concurrent_throughput(1, tasks));
    let four_submitters_4_children = median(&|| four.concurrent_throughput(4, tasks));
    let (loaded_4_children, loaded_pipe_pool_4) = floor::with_busy_processes(2, || {
        let a = median(&|| four.throughput(tasks / 5));
        let b = median(&|| floor::pipe_pool(4, tasks / 5));
        (a, b)
    });
    Scale {
        tasks,
        independent_2_threads,
        inout_chain_2_children,
        bytes_per_undrained_task,
        one_submitter_4_children,
        four_submitters_4_children,
        loaded_4_children,
        loaded_pipe_pool_4,
    }
}

impl Scale {
    /// The text table, each figure beside its target.
    pub fn print(&self) {
        println!(
            "at scale ({} tasks a batch; median of runs)           figure   target",
            self.tasks
        );
        let row = |name: &str, v: String, target: &str| println!("{name:<52} {v:>10}   {target}");
        row(
            "independent no-op tasks, 2 THREAD workers",
            format!("{:.0}", self.independent_2_threads),
            ">= 2 M tasks/s",
        );
        row(
            "INOUT chain, 2 spawned children",
            format!("{:.0}", self.inout_chain_2_children),
            ">= 1 M tasks/s",
        );
        row(
            "bytes per dispatched, undrained task",
            format!("{:.0}", self.bytes_per_undrained_task),
            "<= 192",
        );
        row(
            "4 submitting threads / 1, 4 children",
            format!(
                "{:.2}x",
                self.four_submitters_4_children / self.one_submitter_4_children
            ),
            ">= 1.0x",
        );
        row(
            "4 children / pipelined pipe pool, 2 busy processes beside",
            format!("{:.2}x", self.loaded_4_children / self.loaded_pipe_pool_4),
            ">= 2x",
        );
    }
}
