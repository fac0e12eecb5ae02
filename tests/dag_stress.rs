//! Concurrency under load: random DAGs of chains, diamonds, fan-ins and
//! groups across both worker types, round after round with a drain between
//! rounds. Every task must run exactly once (each group member once), after
//! all its producers, or not at all when a producer failed; and drain must
//! report the first failure. The reference engine crashed or hung in 2 of 8
//! runs of the lighter load.

mod common;

use common::{Harness, Rng, Timeline, Workers};
use dist_worker::abi::*;
use dist_worker::WorkerType;
use dist_worker::{Options, Status};
use std::collections::HashMap;

struct Planned {
    no: u64,
    group: u64,
    producers: Vec<u64>,
    fails: bool,
}

fn run(workers: Workers, rounds: u64, per_round: u64, seed: u64) {
    let h = Harness::new(workers, Options::default());
    let pools = [
        workers.proc_next + workers.thread_next,
        workers.proc_sub + workers.thread_sub,
    ];
    let mut rng = Rng(seed);
    let tags = [
        DIST_ARG_INPUT,
        DIST_ARG_OUTPUT,
        DIST_ARG_INOUT,
        DIST_ARG_OUTPUT_EXISTING,
        DIST_ARG_NO_DEP,
    ];
    let rest = h.rt.stats().engine;
    for round in 0..rounds {
        let mut writer: HashMap<u64, u64> = HashMap::new();
        let mut plan = Vec::new();
        let mut ids = Vec::new();
        for i in 0..per_round {
            let no = round * per_round + i;
            let ty = if rng.below(2) == 0 {
                WorkerType::NextLevel
            } else {
                WorkerType::Sub
            };
            let pool = pools[ty.index()] as u64;
            let group = if rng.below(8) == 0 {
                1 + rng.below(pool.min(3))
            } else {
                1
            };
            // A few addresses per round, so chains, diamonds and fan-ins form.
            let n = rng.below(4);
            let mut tensors = Vec::new();
            for _ in 0..n {
                let addr = 0x1000 + 64 * rng.below(6);
                let tag = tags[rng.below(5) as usize];
                if !tensors.iter().any(|&(a, _)| a == addr) {
                    tensors.push((addr, tag));
                }
            }
            let mut producers = Vec::new();
            for &(a, tag) in &tensors {
                if tag == DIST_ARG_INPUT || tag == DIST_ARG_INOUT {
                    if let Some(&p) = writer.get(&a) {
                        producers.push(p);
                    }
                }
            }
            for &(a, tag) in &tensors {
                if matches!(
                    tag,
                    DIST_ARG_INOUT | DIST_ARG_OUTPUT | DIST_ARG_OUTPUT_EXISTING
                ) {
                    writer.insert(a, no);
                }
            }
            let fails = rng.below(50) == 0;
            let sleep = if rng.below(4) == 0 { rng.below(200) } else { 0 };
            let id = h
                .submit(
                    ty,
                    no,
                    &tensors,
                    &[no, sleep, fails as u64 * 9],
                    group as usize,
                )
                .unwrap();
            ids.push(id);
            plan.push(Planned {
                no,
                group,
                producers,
                fails,
            });
        }
        // Expected outcomes, in submit order (producers come first).
        let mut outcome: HashMap<u64, Option<Status>> = HashMap::new();
        let mut first_failure = None;
        for p in &plan {
            let dep_failed = p.producers.iter().any(|q| outcome[q].is_some());
            let o = if dep_failed {
                Some(Status::DependencyFailed)
            } else if p.fails {
                Some(Status::TaskFailed)
            } else {
                None
            };
            if o == Some(Status::TaskFailed) && first_failure.is_none() {
                first_failure = Some(p.no);
            }
            outcome.insert(p.no, o);
        }
        for (p, &id) in plan.iter().zip(&ids) {
            let got = h.rt.wait(id).err().map(|e| e.status);
            assert_eq!(
                got, outcome[&p.no],
                "round {round}: status of task {}",
                p.no
            );
        }
        let drained = h.rt.drain();
        let t = Timeline::of(&h.events());
        for p in &plan {
            let ran = t.ran(p.no) as u64;
            match outcome[&p.no] {
                Some(Status::DependencyFailed) => {
                    assert_eq!(ran, 0, "task {} ran despite a failed producer", p.no)
                }
                _ => assert_eq!(
                    ran, p.group,
                    "task {} ran {ran} times, group {}",
                    p.no, p.group
                ),
            }
            if ran > 0 {
                for &q in &p.producers {
                    t.after(q, p.no);
                }
            }
        }
        match (drained, first_failure) {
            (Ok(()), None) => {}
            (Err(e), Some(_)) => {
                assert_eq!(e.status, Status::TaskFailed, "round {round}: {}", e.message)
            }
            (r, f) => panic!("round {round}: drain gave {r:?}, expected first failure {f:?}"),
        }
        // Ids are released by the drain.
        assert_eq!(
            h.rt.wait(ids[0]).unwrap_err().status,
            Status::InvalidArgument
        );
        h.clear_events();
    }
    assert_eq!(
        h.rt.stats().engine,
        rest,
        "nothing left behind after {rounds} rounds"
    );
    h.rt.shutdown().unwrap();
}

#[test]
fn four_process_workers_200_rounds_of_64() {
    let w = Workers {
        proc_next: 2,
        proc_sub: 2,
        ..Workers::default()
    };
    run(w, 200, 64, 0x5eed_0001);
}

#[test]
fn sixteen_workers_1000_rounds_mixed_modes() {
    let w = Workers {
        proc_next: 6,
        proc_sub: 6,
        thread_next: 2,
        thread_sub: 2,
    };
    run(w, 1000, 64, 0x5eed_0002);
}
