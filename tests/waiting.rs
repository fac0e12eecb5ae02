//! Waiting without losing a wake-up: a serving side that goes to sleep
//! while the parent publishes, a dispatcher with workers that never ring,
//! and host threads that wait while the dispatcher sleeps.

use dist_worker::abi::DistCallConfig;
use dist_worker::wire::{state, OwnedMailbox};
use dist_worker::Args;
use dist_worker::WorkerType;
use dist_worker::{wire, ServeOptions};
use dist_worker::{Options, Runtime};
use std::time::{Duration, Instant};

mod common;
use common::{spec, Watchdog};

/// A round that takes this long lost its wake-up (the sleeper naps 60 s).
const LOST: Duration = Duration::from_secs(10);

#[test]
fn a_million_publishes_racing_a_serving_side_going_to_sleep() {
    let owned = OwnedMailbox::new().unwrap();
    let mb = owned.handle();
    // No spin at all: the serving side goes to sleep right after every task,
    // so each publish races its announcement of sleep.
    let opts = ServeOptions {
        spin: Duration::ZERO,
        nap: Duration::from_secs(60),
        ..ServeOptions::default()
    };
    let server = std::thread::spawn(move || wire::serve(mb, &mut |c, _, _| c as i32 & 1, &opts));
    let blob = {
        let mut v = Vec::new();
        dist_worker::wire::encode(&[], &[], &mut v);
        v
    };
    let cfg = DistCallConfig::default();
    let mut slowest = Duration::ZERO;
    for i in 0..1_000_000u64 {
        // Vary the moment of publishing across the serving side's way into sleep.
        for _ in 0..(i * 7919) % 1500 {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        mb.write_task(i, &cfg, &blob, i as u32);
        mb.publish(state::TASK_READY);
        while mb.state() != state::TASK_DONE {
            assert!(t.elapsed() < LOST, "round {i}: the wake-up was lost");
            std::hint::spin_loop();
        }
        assert_eq!(mb.error(), (i & 1) as i32);
        mb.set_state(state::IDLE);
        slowest = slowest.max(t.elapsed());
    }
    mb.shut_down();
    server.join().unwrap().unwrap();
    assert!(slowest < LOST);
}

#[test]
fn workers_that_never_ring_still_complete_promptly() {
    // A caller-owned mailbox served without a doorbell, as by a reference child.
    let rt = Runtime::new(Options::default()).unwrap();
    let owned = OwnedMailbox::new().unwrap();
    let mb = owned.handle();
    let server =
        std::thread::spawn(move || wire::serve(mb, &mut |_, _, _| 0, &ServeOptions::default()));
    rt.add_process(WorkerType::Sub, mb).unwrap();
    let none = [Args::default()];
    // Host thread waiting: it polls, then naps briefly (the worker never rings).
    for _ in 0..2000 {
        let id = rt.submit(&spec(WorkerType::Sub, 1, &none)).unwrap();
        rt.wait(id).unwrap();
    }
    // Nobody waiting: the dispatcher alone must notice the completions.
    for _ in 0..100 {
        rt.submit(&spec(WorkerType::Sub, 1, &none)).unwrap();
    }
    let t = Instant::now();
    while rt.stats().engine.unfinished > 0 {
        assert!(
            t.elapsed() < LOST,
            "the dispatcher never noticed a deaf worker's completion"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    rt.drain().unwrap();
    rt.shutdown().unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn completions_reach_a_sleeping_dispatcher_and_sleeping_waiters() {
    let rt = Runtime::new(Options::default()).unwrap();
    rt.spawn(
        WorkerType::Sub,
        Box::new(|_, v, _| {
            if let Some(&us) = v.scalars.first() {
                std::thread::sleep(Duration::from_micros(us));
            }
            0
        }),
    )
    .unwrap();
    for round in 0..300u64 {
        // Tasks long enough that the waiter sleeps on the doorbell, and gaps
        // long enough that the child and the dispatcher sleep too.
        let s = [round % 3 * 300];
        let a = [Args::scalars(&s)];
        let id = rt.submit(&spec(WorkerType::Sub, 1, &a)).unwrap();
        if round % 2 == 0 {
            rt.wait(id).unwrap();
        } else {
            let t = Instant::now();
            while rt.stats().engine.unfinished > 0 {
                assert!(
                    t.elapsed() < LOST,
                    "round {round}: completion never noticed"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        if round % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    rt.drain().unwrap();
    rt.shutdown().unwrap();
}

#[test]
fn a_wait_racing_the_dispatcher_never_misses_the_completion() {
    // The dispatcher may hand a completion to the engine at any moment
    // around the waiter's first look; the waiter must notice it either way.
    let watchdog = Watchdog::new(Duration::from_secs(60), "a wait missed its completion");
    let rt = Runtime::new(Options::default()).unwrap();
    for _ in 0..2 {
        rt.spawn(WorkerType::Sub, Box::new(|_, _, _| 0)).unwrap();
    }
    let none = [Args::default()];
    for i in 0..200_000u64 {
        let id = rt.submit(&spec(WorkerType::Sub, 1, &none)).unwrap();
        for _ in 0..(i * 7919) % 3000 {
            std::hint::spin_loop();
        }
        rt.wait(id).unwrap();
        if i % 10_000 == 0 {
            rt.drain().unwrap();
        }
    }
    rt.drain().unwrap();
    rt.shutdown().unwrap();
    drop(watchdog);
}
