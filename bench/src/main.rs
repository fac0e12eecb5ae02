//! dist-bench: the dispatch path of dist-worker beside the limits of the
//! machine, in one run.
//!
//! cargo run --release -p dist-bench [-- --json] [--quick]
//!
//! Measures: the floor (two processes spinning on one shared word; a pipe
//! round trip; a futex round trip), the reference protocol (parent polling
//! every 50 µs), this library's dispatch+wait through the C API (hot and
//! sleeping child), throughput through 1/4/16/64 children beside the
//! reference protocol and a pipe-based process pool, and the CPU an idle
//! pool costs.
//!
//! Single measurements, for profiling one path: `TPUT=N` (throughput
//! through N children), `SLEEPSTAT=1` (round trip to a sleeping child),
//! `SPLIT=1` (dispatch and wait timed apart). `DIST_BENCH_OPTS` sets the
//! waiting tunables, e.g. `wait_spin_us=0,worker_spin_us=20`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod capi;
mod floor;
mod report;

use capi::{Pool, Tunables, SLEEP_GAP};
use report::Report;

/// Latency percentiles of a set of round trips, in µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lat {
    pub p50: f64,
    pub p99: f64,
}

impl Lat {
    /// Percentiles of round trips measured in ns.
    pub fn of(mut ns: Vec<u64>) -> Lat {
        ns.sort_unstable();
        Lat {
            p50: ns[ns.len() / 2] as f64 / 1e3,
            p99: ns[ns.len() * 99 / 100] as f64 / 1e3,
        }
    }
}

/// Iteration counts of a run.
struct Cfg {
    rtt_iters: usize,
    /// Round trips after idle (pipe and sleeping child).
    idle_iters: usize,
    tasks: usize,
}

impl Cfg {
    fn new(quick: bool) -> Cfg {
        if quick {
            Cfg {
                rtt_iters: 5_000,
                idle_iters: 100,
                tasks: 20_000,
            }
        } else {
            Cfg {
                rtt_iters: 50_000,
                idle_iters: 500,
                tasks: 200_000,
            }
        }
    }
}

/// Median of five runs: throughput on a shared 2-core machine swings with
/// where the scheduler puts the processes.
fn median(mut run: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..5).map(|_| run()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[2]
}

/// The single measurements the environment can ask for; true if one ran.
fn single_measurement(tunables: &Tunables) -> bool {
    if let Ok(n) = std::env::var("TPUT") {
        let p = Pool::new(n.parse().expect("TPUT: a number of children"), tunables);
        p.throughput(50_000);
        println!("{n} children: {:.0} tasks/s", p.throughput(1_000_000));
        return true;
    }
    if std::env::var("SLEEPSTAT").is_ok() {
        let l = capi::sleeping_rtt(300, tunables);
        let c = floor::pipe_rtt(300, Some(SLEEP_GAP));
        println!(
            "sleeping child p50 {:.1} p99 {:.1}; pipe after idle p50 {:.1}",
            l.p50, l.p99, c.p50
        );
        return true;
    }
    if std::env::var("SPLIT").is_ok() {
        let p = Pool::new(1, tunables);
        p.round_trip();
        for _ in 0..10 {
            std::thread::sleep(SLEEP_GAP);
            println!("{:?}", p.round_trip_split());
        }
        return true;
    }
    false
}

/// The whole benchmark.
fn run(cfg: &Cfg, tunables: &Tunables) -> Report {
    let floor_spin = floor::spin_floor(cfg.rtt_iters);
    let floor_pipe = floor::pipe_rtt(cfg.rtt_iters, None);
    let floor_pipe_after_idle = floor::pipe_rtt(cfg.idle_iters, Some(SLEEP_GAP));
    let futex = floor::futex_rtt(cfg.rtt_iters);
    let reference = floor::reference_rtt(cfg.rtt_iters / 20);
    let hot = capi::hot_rtt(cfg.rtt_iters, tunables);
    let sleeping = capi::sleeping_rtt(cfg.idle_iters, tunables);
    let mut throughput = Vec::new();
    for n in [1usize, 4, 16, 64] {
        let p = Pool::new(n, tunables);
        // Warm up with a batch of the same size: slot tables then stay
        // allocated, as in a host that dispatches such batches repeatedly.
        p.throughput(cfg.tasks);
        throughput.push((n, median(|| p.throughput(cfg.tasks))));
    }
    let reference_pool_4 = median(|| floor::reference_pool(4, cfg.tasks / 20));
    let pipe_pool_4 = median(|| floor::pipe_pool(4, cfg.tasks));
    let idle_cpu_percent_16_children = capi::idle_cost(tunables);
    Report {
        floor_spin,
        floor_pipe,
        floor_pipe_after_idle,
        futex,
        reference,
        hot,
        sleeping,
        throughput,
        reference_pool_4,
        pipe_pool_4,
        idle_cpu_percent_16_children,
    }
}

fn main() {
    let tunables = Tunables::parse(&std::env::var("DIST_BENCH_OPTS").unwrap_or_default())
        .unwrap_or_else(|e| panic!("DIST_BENCH_OPTS: {e}"));
    if single_measurement(&tunables) {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let report = run(&Cfg::new(quick), &tunables);
    if json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunables_parse() {
        assert!(Tunables::parse("").is_ok());
        assert!(Tunables::parse("wait_spin_us=0,worker_spin_us=20").is_ok());
        assert!(Tunables::parse("wait_spin_us=x").is_err());
        assert!(Tunables::parse("spin=1").is_err());
        assert!(Tunables::parse("wait_spin_us").is_err());
    }

    #[test]
    fn percentiles() {
        let l = Lat::of((1..=100).map(|i| i * 1000).collect());
        assert_eq!(l.p50, 51.0);
        assert_eq!(l.p99, 100.0);
    }
}
