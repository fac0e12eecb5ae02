//! The DAG engine through the Rust core: dependencies from tags, groups,
//! heap allocation, scopes, back-pressure, drain and failure propagation.
//! Workers are spawned children unless a test says otherwise; they log when
//! each task starts and ends, and the order is checked against the edges.

mod common;

use common::{Harness, Timeline, Workers};
use dist_worker::abi::*;
use dist_worker::WorkerType::{NextLevel, Sub};
use dist_worker::{Options, Status};
use std::time::Duration;

const IN: i32 = DIST_ARG_INPUT;
const OUT: i32 = DIST_ARG_OUTPUT;
const INOUT: i32 = DIST_ARG_INOUT;
const OUTX: i32 = DIST_ARG_OUTPUT_EXISTING;
const NODEP: i32 = DIST_ARG_NO_DEP;

fn procs(next: usize, sub: usize) -> Workers {
    Workers {
        proc_next: next,
        proc_sub: sub,
        ..Workers::default()
    }
}

fn harness(w: Workers) -> Harness {
    Harness::new(w, Options::default())
}

#[test]
fn read_after_write_waits_for_the_writer() {
    let h = harness(procs(0, 3));
    // Long enough that a task that does not wait starts before it ends,
    // even when the machine is loaded.
    h.task(Sub, 1, &[(0x1000, OUT)], 200_000);
    h.task(Sub, 2, &[(0x1000, IN)], 0);
    h.task(Sub, 3, &[(0x1000, IN)], 0);
    h.task(Sub, 4, &[(0x2000, IN)], 0); // unrelated address: runs at once
    h.rt.drain().unwrap();
    let t = Timeline::of(&h.events());
    t.after(1, 2);
    t.after(1, 3);
    assert!(
        t.first_start[&4] < t.last_end[&1],
        "an independent task waited"
    );
    h.rt.shutdown().unwrap();
}

#[test]
fn write_after_write_and_tags_that_do_not_wait() {
    let h = harness(procs(0, 3));
    h.task(Sub, 1, &[(0x1000, OUT)], 200_000);
    h.task(Sub, 2, &[(0x1000, OUTX)], 1000); // a new writer does not wait
    h.task(Sub, 3, &[(0x1000, IN)], 0); // reads the newest writer
    h.rt.drain().unwrap();
    let t = Timeline::of(&h.events());
    t.after(2, 3);
    assert!(t.first_start[&2] < t.last_end[&1], "OUTPUT_EXISTING waited");
    h.clear_events();
    h.task(Sub, 4, &[(0x3000, OUT)], 200_000);
    h.task(Sub, 5, &[(0x3000, NODEP), (0, IN)], 0);
    h.rt.drain().unwrap();
    let t = Timeline::of(&h.events());
    assert!(
        t.first_start[&5] < t.last_end[&4],
        "NO_DEP or data 0 waited"
    );
    h.rt.shutdown().unwrap();
}

#[test]
fn inout_chain_runs_strictly_in_order() {
    let h = harness(procs(2, 2));
    for i in 0..60u64 {
        let ty = if i % 3 == 0 { NextLevel } else { Sub };
        h.task(ty, i, &[(0x40, INOUT)], (i % 4) * 100);
    }
    h.rt.drain().unwrap();
    let t = Timeline::of(&h.events());
    for i in 1..60 {
        t.after(i - 1, i);
    }
    h.rt.shutdown().unwrap();
}

#[test]
fn diamond_and_fan_out_fan_in() {
    let h = harness(procs(2, 4));
    // Diamond: 1 → {2, 3} → 4, across both types.
    h.task(NextLevel, 1, &[(0xa0, OUT)], 1000);
    h.task(Sub, 2, &[(0xa0, IN), (0xb0, OUT)], 500);
    h.task(NextLevel, 3, &[(0xa0, IN), (0xc0, OUT)], 0);
    h.task(Sub, 4, &[(0xb0, IN), (0xc0, IN)], 0);
    // Fan-out / fan-in: 10 → 16 readers → reducer 30.
    h.task(Sub, 10, &[(0x100, OUT)], 500);
    let mut reduce = Vec::new();
    for i in 0..16u64 {
        h.task(Sub, 11 + i, &[(0x100, IN), (0x200 + 8 * i, OUT)], 100);
        reduce.push((0x200 + 8 * i, IN));
    }
    h.task(NextLevel, 30, &reduce, 0);
    h.rt.drain().unwrap();
    let t = Timeline::of(&h.events());
    t.after(1, 2);
    t.after(1, 3);
    t.after(2, 4);
    t.after(3, 4);
    for i in 0..16 {
        t.after(10, 11 + i);
        t.after(11 + i, 30);
    }
    h.rt.shutdown().unwrap();
}

#[test]
fn groups_of_both_types_are_one_node() {
    let h = harness(Workers {
        proc_next: 2,
        proc_sub: 1,
        thread_sub: 2,
        ..Workers::default()
    });
    // A group whose members all write the same address does not wait on itself.
    let g1 = h
        .submit(NextLevel, 1, &[(0x500, OUT)], &[1, 2000, 0], 2)
        .unwrap();
    let g2 = h
        .submit(Sub, 2, &[(0x500, INOUT)], &[2, 500, 0], 3)
        .unwrap();
    h.task(NextLevel, 3, &[(0x500, IN)], 0);
    h.rt.wait(g1).unwrap();
    h.rt.wait(g2).unwrap();
    h.rt.drain().unwrap();
    let t = Timeline::of(&h.events());
    assert_eq!(t.ran(1), 2, "a group of 2 runs twice");
    assert_eq!(t.ran(2), 3);
    // Every member of the first group ended before any of the second started.
    t.after(1, 2);
    t.after(2, 3);
    // A group larger than its pool is refused, not left waiting.
    let e = h.submit(NextLevel, 9, &[], &[9, 0, 0], 3).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    h.rt.shutdown().unwrap();
}

#[test]
fn heap_outputs_reach_their_consumers() {
    let h = harness(procs(1, 2));
    // An OUTPUT with data 0 gets heap memory; the submitter learns the address.
    let p = h.submit(Sub, 1, &[(0, OUT)], &[1, 500, 0], 1).unwrap();
    let out = h.rt.task_tensor(p, 0, 0).unwrap();
    let (base, len) = h.rt.heap();
    assert!(out.data >= base as u64 && out.data < base as u64 + len as u64);
    assert_eq!(out.data % 64, 0);
    assert_eq!(out.ndims, 1);
    // The producer writes its number there; consumers check it.
    let p2 = h
        .submit(Sub, 2, &[(out.data, INOUT)], &[2, 0, 0, out.data], 1)
        .unwrap();
    for c in 3..6u64 {
        h.submit(
            NextLevel,
            c,
            &[(out.data, IN)],
            &[c, 0, 0, 0, out.data, 2],
            1,
        )
        .unwrap();
    }
    // dist_worker_alloc: memory handed out directly, then produced and consumed.
    let t = h.rt.alloc(&[4, 4], DIST_FLOAT32).unwrap();
    assert_eq!(
        (t.ndims, t.shapes, t.dtype),
        (2, [4, 4, 0, 0, 0], DIST_FLOAT32)
    );
    assert_ne!(t.data, out.data);
    h.submit(Sub, 7, &[(t.data, OUTX)], &[7, 300, 0, t.data], 1)
        .unwrap();
    let c = h
        .submit(NextLevel, 8, &[(t.data, IN)], &[8, 0, 0, 0, t.data, 7], 1)
        .unwrap();
    h.rt.wait(c).unwrap();
    h.rt.wait(p2).unwrap();
    h.rt.drain().unwrap();
    assert_eq!(
        h.rt.stats().engine.heap_live_bytes,
        0,
        "drain reclaimed the root scope"
    );
    assert_eq!(
        h.rt.task_tensor(p, 0, 0).unwrap_err().status,
        Status::InvalidArgument
    );
    h.rt.shutdown().unwrap();
}

#[test]
fn nested_scopes_reclaim_independently() {
    let h = harness(procs(0, 2));
    let outer = h.rt.alloc(&[1024], DIST_UINT8).unwrap();
    h.rt.scope_begin().unwrap();
    let inner = h.rt.alloc(&[4096], DIST_UINT8).unwrap();
    let t = h.task(Sub, 1, &[(inner.data, OUTX), (0, OUT)], 2000);
    h.rt.scope_begin().unwrap();
    h.task(Sub, 2, &[(inner.data, IN)], 0);
    h.rt.scope_end().unwrap();
    let before = h.rt.stats().engine;
    assert_eq!(before.scope_depth, 1);
    h.rt.scope_end().unwrap();
    h.rt.wait(t).unwrap();
    // Wait for every task, then look: only the outer allocation is left.
    while h.rt.stats().engine.unfinished > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = h.rt.stats().engine;
    assert_eq!(
        after.heap_live_bytes, 1024,
        "inner scope memory reclaimed, outer kept"
    );
    assert_eq!(after.map_entries, 1);
    assert!(outer.data != 0);
    // Too deep, and unmatched ends.
    for _ in 0..DIST_MAX_SCOPE_DEPTH {
        h.rt.scope_begin().unwrap();
    }
    assert_eq!(
        h.rt.scope_begin().unwrap_err().status,
        Status::InvalidArgument
    );
    for _ in 0..DIST_MAX_SCOPE_DEPTH {
        h.rt.scope_end().unwrap();
    }
    assert_eq!(h.rt.scope_end().unwrap_err().status, Status::BadState);
    h.rt.drain().unwrap();
    let s = h.rt.stats().engine;
    assert_eq!((s.heap_live_bytes, s.map_entries, s.slots), (0, 0, 0));
    h.rt.shutdown().unwrap();
}

#[test]
fn back_pressure_waits_for_reclamation_then_times_out() {
    let opts = Options {
        heap_ring_size: 4096,
        alloc_timeout: Duration::from_secs(10),
        ..Options::default()
    };
    let h = Harness::new(procs(0, 2), opts);
    // Each task's output takes 1 KiB; four fill the ring. Scoped, so each is
    // reclaimed once its task and consumers finish.
    for round in 0..12u64 {
        h.rt.scope_begin().unwrap();
        let big = |no| {
            let ts = [DistTensor {
                data: 0,
                shapes: [1024, 0, 0, 0, 0],
                ndims: 1,
                dtype: DIST_UINT8,
            }];
            let tags = [OUT];
            let s = [no, 2000, 0];
            let m = [dist_worker::Args {
                tensors: &ts,
                tags: Some(&tags),
                scalars: &s,
            }];
            h.rt.submit(&dist_worker::TaskSpec {
                ty: Sub,
                callable: no,
                config: DistCallConfig::default(),
                members: &m[..],
            })
        };
        big(round).unwrap();
        h.rt.scope_end().unwrap();
    }
    h.rt.drain().unwrap();
    assert_eq!(Timeline::of(&h.events()).starts.len(), 12);
    // Memory held by an open scope cannot come back: the wait times out.
    let opts = Options {
        heap_ring_size: 4096,
        alloc_timeout: Duration::from_millis(100),
        ..Options::default()
    };
    let h2 = Harness::new(procs(0, 1), opts);
    h2.rt.alloc(&[4090], DIST_UINT8).unwrap();
    let e = h2.rt.alloc(&[64], DIST_UINT8).unwrap_err();
    assert_eq!(e.status, Status::ResourceExhausted);
    assert!(e.message.contains("heap ring"), "{}", e.message);
    // Larger than the whole ring: refused at once.
    assert_eq!(
        h2.rt.alloc(&[8192], DIST_UINT8).unwrap_err().status,
        Status::ResourceExhausted
    );
    h2.rt.drain().unwrap();
    h2.rt.alloc(&[4090], DIST_UINT8).unwrap();
    h.rt.shutdown().unwrap();
    h2.rt.shutdown().unwrap();
}

#[test]
fn failures_propagate_to_dependents_only() {
    let h = harness(procs(1, 2));
    let a = h.submit(Sub, 1, &[(0x10, OUT)], &[1, 1000, 42], 1).unwrap();
    let b = h.task(Sub, 2, &[(0x10, IN), (0x20, OUT)], 0);
    let c = h.task(NextLevel, 3, &[(0x20, INOUT)], 0);
    let d = h.task(Sub, 4, &[(0x30, OUT)], 0);
    let ea = h.rt.wait(a).unwrap_err();
    assert_eq!(ea.status, Status::TaskFailed);
    assert!(ea.message.contains("error 42"), "{}", ea.message);
    let eb = h.rt.wait(b).unwrap_err();
    assert_eq!(eb.status, Status::DependencyFailed);
    assert!(
        eb.message.contains(&format!("{a:#x}")),
        "names the failed task: {}",
        eb.message
    );
    let ec = h.rt.wait(c).unwrap_err();
    assert_eq!(ec.status, Status::DependencyFailed);
    assert!(ec.message.contains(&format!("{b:#x}")), "{}", ec.message);
    h.rt.wait(d).unwrap();
    // A task submitted after the failure, reading its output, fails at once.
    let e = h.task(Sub, 5, &[(0x10, IN)], 0);
    assert_eq!(h.rt.wait(e).unwrap_err().status, Status::DependencyFailed);
    let t = Timeline::of(&h.events());
    assert_eq!(
        (t.ran(2), t.ran(3), t.ran(5)),
        (0, 0, 0),
        "dependents never ran"
    );
    // Drain reports the first failure; the engine is usable afterwards.
    let e = h.rt.drain().unwrap_err();
    assert_eq!(e.status, Status::TaskFailed);
    let f = h.task(Sub, 6, &[(0x10, IN)], 0);
    h.rt.wait(f).unwrap();
    h.rt.drain().unwrap();
    h.rt.shutdown().unwrap();
}

#[test]
fn ten_thousand_cycles_leave_nothing_behind() {
    let h = harness(procs(0, 4));
    let rest = h.rt.stats().engine;
    for i in 0..10_000u64 {
        h.rt.scope_begin().unwrap();
        let t = h.rt.alloc(&[16], DIST_INT64).unwrap();
        h.submit(Sub, 3 * i, &[(t.data, OUTX), (0, OUT)], &[3 * i, 0, 0], 1)
            .unwrap();
        h.task(Sub, 3 * i + 1, &[(t.data, IN)], 0);
        h.rt.scope_end().unwrap();
        h.task(Sub, 3 * i + 2, &[(0x99, INOUT)], 0);
        h.rt.drain().unwrap();
    }
    assert_eq!(
        h.rt.stats().engine,
        rest,
        "slots, map entries and heap are as they were"
    );
    let t = Timeline::of(&h.events());
    assert!((0..30_000).all(|n| t.ran(n) == 1));
    h.rt.shutdown().unwrap();
}

#[test]
fn zero_dimensional_tensors_are_one_element() {
    let rt = dist_worker::Runtime::new(dist_worker::Options::default()).unwrap();
    // A 0-d allocation holds one element of its dtype.
    let t = rt.alloc(&[], dist_worker::abi::DIST_INT64).unwrap();
    assert_eq!(t.ndims, 0);
    assert_ne!(t.data, 0);
    let live = rt.stats().engine.heap_live_bytes;
    assert!(
        (8..=64).contains(&live),
        "one 8-byte element, 64-byte aligned: {live}"
    );
    // Dispatch takes a 0-d tensor too; its shapes are ignored.
    rt.add_thread(
        dist_worker::WorkerType::Sub,
        Box::new(|_, v, _| (v.tensors.len() == 1 && v.tensors[0].ndims == 0) as i32 - 1),
    )
    .unwrap();
    let mut scalar = t;
    scalar.shapes = [7, 0, 0, 0, 0];
    let tensors = [scalar];
    let members = [dist_worker::Args {
        tensors: &tensors,
        tags: None,
        scalars: &[],
    }];
    let id = rt
        .submit(&common::spec(dist_worker::WorkerType::Sub, 1, &members))
        .unwrap();
    rt.wait(id).unwrap();
    rt.drain().unwrap();
}
