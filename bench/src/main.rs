//! dist-bench: the dispatch path of dist-worker beside the limits of the
//! machine, in one run.
//!
//! cargo run --release -p dist-bench [-- [--quick] [--json] [--help]]
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
mod scale;
mod svg;

use capi::{Pool, Tunables, SLEEP_GAP};
use report::Report;

const USAGE: &str = "\
dist-bench: dist-worker's dispatch path, through its C API, beside the
limits of the machine, in one run.

Usage: dist-bench [--quick] [--json] [--svg FILE]
       cargo run --release -p dist-bench -- [--quick] [--json] [--svg FILE]

Measures round trips (one task: dispatch + wait) to a hot and to a sleeping
child beside two processes spinning on one shared word, a pipe (also after
the child idled 3 ms), a futex wait/wake and the reference protocol (the
parent polls every 50 us); throughput of no-op tasks through 1, 4, 16 and
64 children beside the reference protocol and a pipe-based process pool
(median of 5 runs); and the CPU an idle pool of 16 children costs.

Options:
  --quick      fewer iterations: a short run
  --json       print the results as one JSON object instead of the table
  --svg FILE   also write a picture of the run to FILE: the latency
               distribution of every round trip, and each pool's throughput
  -h, --help   print this text and exit

Environment:
  TPUT=N       only throughput through N children (1,000,000 tasks)
  SLEEPSTAT=1  only round trips to a sleeping child, beside a pipe after idle
  SPLIT=1      only dispatch and wait timed apart, ten times (ns)
  SCALE=1      only the engine at scale: 1,000,000-task batches through 2
               THREAD workers and an INOUT chain, bytes per undrained task,
               4 submitting threads, and 4 children beside 2 busy processes
  LEVELS=1     only the cost of a level: L4 -> L3 -> child round trips
               beside direct L3 -> child ones, and tasks/s through two levels
  DIST_BENCH_OPTS=key=value,...
               waiting tunables of every pool: worker_spin_us,
               dispatcher_spin_us, wait_spin_us, poll_interval_us
               (e.g. wait_spin_us=0,worker_spin_us=20)
TPUT, SLEEPSTAT and SPLIT act when set, whatever their value; the first set
one runs instead of the whole benchmark, and --quick and --json do not
apply to it.
";

/// Latency percentiles of a set of round trips, in µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lat {
    pub p50: f64,
    pub p99: f64,
    /// The distribution: the value at each of `Lat::PERCENTILES`.
    pub dist: [f64; 9],
}

impl Lat {
    /// Where the distribution is sampled, in percent.
    pub const PERCENTILES: [f64; 9] = [1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 100.0];

    /// Percentiles of round trips measured in ns.
    pub fn of(mut ns: Vec<u64>) -> Lat {
        ns.sort_unstable();
        let at = |pct: f64| {
            let i = ((ns.len() as f64 * pct / 100.0) as usize).min(ns.len() - 1);
            ns[i] as f64 / 1e3
        };
        Lat {
            p50: at(50.0),
            p99: at(99.0),
            dist: Lat::PERCENTILES.map(at),
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

/// What the command line asks for.
struct Args {
    json: bool,
    quick: bool,
    /// Where to write the SVG picture of the run.
    svg: Option<String>,
}

/// Why the command line does not ask for a run.
#[derive(Debug, PartialEq)]
enum NoRun {
    /// `-h` or `--help`.
    Help,
    /// An argument that is not understood.
    Unknown(String),
}

/// Parses the arguments after the program name.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, NoRun> {
    let mut a = Args {
        json: false,
        quick: false,
        svg: None,
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--svg" => a.svg = Some(args.next().ok_or(NoRun::Unknown(arg))?),
            "--quick" => a.quick = true,
            "-h" | "--help" => return Err(NoRun::Help),
            _ => return Err(NoRun::Unknown(arg)),
        }
    }
    Ok(a)
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
    if std::env::var("LEVELS").is_ok() {
        let direct = Pool::new(1, tunables);
        let two = capi::two_levels(tunables);
        // Each path in a block of its own, so its workers stay hot.
        let block = |rt: &dyn Fn() -> u64, drain: &dyn Fn()| {
            for _ in 0..1000 {
                rt();
            }
            let mut v = Vec::with_capacity(20_000);
            for i in 0..20_000 {
                v.push(rt());
                if i % 4096 == 4095 {
                    drain();
                }
            }
            drain();
            v
        };
        let d = block(&|| direct.round_trip(), &|| direct.drain());
        let l = block(&|| two.round_trip(), &|| two.drain());
        let (d, l) = (Lat::of(d), Lat::of(l));
        println!(
            "direct L3 -> child p50 {:.3} us p99 {:.3}; L4 -> L3 -> child p50 {:.3} us p99 {:.3}",
            d.p50, d.p99, l.p50, l.p99
        );
        println!(
            "a level costs {:.3} us at p50 (target: L4 -> L3 -> child <= 2 x direct + 1 us = {:.3})",
            l.p50 - d.p50,
            2.0 * d.p50 + 1.0
        );
        // Three parties (L4's waiter, L3, its child) on this many cores:
        // with fewer cores than parties, two of them share one.
        if let Some(y) = floor::one_core_yield_floor(20_000) {
            println!(
                "floor: two processes sharing one core, yielding between looks: p50 {:.3} us \
                 ({} cores here)",
                y.p50,
                std::thread::available_parallelism().map_or(1, |c| c.get())
            );
        }
        two.throughput(20_000);
        println!(
            "tasks/s through two levels: {:.0} (direct, 1 child: {:.0})",
            median(|| two.throughput(100_000)),
            median(|| direct.throughput(100_000))
        );
        return true;
    }
    if std::env::var("SCALE").is_ok() {
        scale::measure(1_000_000, 3, tunables).print();
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
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(NoRun::Help) => {
            print!("{USAGE}");
            return;
        }
        Err(NoRun::Unknown(arg)) => {
            eprint!("dist-bench: unknown argument `{arg}`\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let tunables = match Tunables::parse(&std::env::var("DIST_BENCH_OPTS").unwrap_or_default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dist-bench: DIST_BENCH_OPTS: {e}");
            std::process::exit(2);
        }
    };
    if single_measurement(&tunables) {
        return;
    }
    let report = run(&Cfg::new(args.quick), &tunables);
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, svg::render(&report)) {
            eprintln!("dist-bench: writing {path}: {e}");
            std::process::exit(1);
        }
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print_table();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, NoRun> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_are_understood() {
        let a = parse(&["--quick", "--json"]).unwrap();
        assert!(a.quick && a.json);
        let a = parse(&[]).unwrap();
        assert!(!a.quick && !a.json);
        assert_eq!(parse(&["--help"]).err(), Some(NoRun::Help));
        assert_eq!(parse(&["--quick", "-h"]).err(), Some(NoRun::Help));
        assert_eq!(
            parse(&["--fast"]).err(),
            Some(NoRun::Unknown("--fast".into()))
        );
        assert_eq!(
            parse(&["quick"]).err(),
            Some(NoRun::Unknown("quick".into()))
        );
    }

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
