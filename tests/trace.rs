//! The timeline trace, parsed back: a valid Chrome / Perfetto JSON trace
//! with one slice per task on the track of the worker that ran it, flow
//! arrows from producers to their dependents, ready-queue counters and the
//! instant a killed child left its pool; flushes, stops, a full buffer, and
//! `DIST_WORKER_TRACE` at create (checked in a copy of this program).

use dist_worker::abi::{DistTaskId, DistTensor, DIST_ARG_INPUT, DIST_ARG_OUTPUT};
use dist_worker::os::SharedMap;
use dist_worker::{Args, Handler, Options, Runtime, Status, WorkerType};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;
use common::spec;

const NEXT: WorkerType = WorkerType::NextLevel;
const SUB: WorkerType = WorkerType::Sub;

/// A file in the target directory, removed first.
fn trace_file(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let p = dir.join(format!("{name}.{}.json", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Where each task number's callable ran: its pid, in memory children share.
struct RanWhere(SharedMap);

impl RanWhere {
    fn new() -> RanWhere {
        RanWhere(SharedMap::new(8 * 256).unwrap())
    }
    fn slot(base: usize, no: u64) -> &'static AtomicU64 {
        // SAFETY: a live shared mapping of 256 u64 slots; `no` < 256.
        unsafe { &*((base + 8 * no as usize) as *const AtomicU64) }
    }
    /// Scalars: [task number, what]; what 1: fail with 3, 9: kill the child.
    fn handler(&self) -> Handler {
        let base = self.0.as_ptr() as usize;
        Box::new(move |_, v, _| {
            let no = v.scalars[0];
            // SAFETY: getpid has no preconditions.
            Self::slot(base, no).store(unsafe { libc::getpid() } as u64, Ordering::SeqCst);
            match v.scalars.get(1) {
                Some(1) => 3,
                Some(9) => {
                    // SAFETY: the child kills itself mid-task.
                    unsafe { libc::raise(libc::SIGKILL) };
                    0
                }
                _ => {
                    std::thread::sleep(std::time::Duration::from_micros(300));
                    0
                }
            }
        })
    }
    fn pid(&self, no: u64) -> u64 {
        Self::slot(self.0.as_ptr() as usize, no).load(Ordering::SeqCst)
    }
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn events(trace: &Value) -> &Vec<Value> {
    assert_eq!(trace["displayTimeUnit"], "ns");
    trace["traceEvents"].as_array().expect("traceEvents")
}

fn of_phase<'a>(ev: &'a [Value], ph: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["ph"] == ph).collect()
}

fn id_of(e: &Value, key: &str) -> DistTaskId {
    let s = e["args"][key].as_str().unwrap();
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// A member reading and writing `tensors` as `tags` say.
fn member<'a>(
    tensors: &'a [DistTensor],
    tags: &'a [dist_worker::abi::DistTensorArgType],
    scalars: &'a [u64],
) -> Args<'a> {
    Args {
        tensors,
        tags: Some(tags),
        scalars,
    }
}

/// Whether `ts` lies in slice `x`.
fn inside(ts: f64, x: &Value) -> bool {
    let (start, dur) = (x["ts"].as_f64().unwrap(), x["dur"].as_f64().unwrap());
    ts >= start && ts <= start + dur
}

#[test]
fn a_trace_has_slices_on_worker_tracks_flows_and_counters() {
    let ran = RanWhere::new();
    let rt = Runtime::new(Options::default()).unwrap();
    let c0 = rt.spawn(SUB, ran.handler()).unwrap();
    let c1 = rt.spawn(SUB, ran.handler()).unwrap();
    rt.add_thread(NEXT, ran.handler()).unwrap();
    let path = trace_file("dag");
    rt.trace_start(&path).unwrap();
    assert_eq!(
        rt.trace_start("").unwrap_err().status,
        Status::InvalidArgument
    );

    // a -> b, a -> c (on NEXT_LEVEL), b + c -> d; 20 independent tasks; one failure.
    let t = |data| DistTensor {
        data,
        shapes: [1, 0, 0, 0, 0],
        ndims: 1,
        dtype: 0,
    };
    let (x, y, z) = ([t(0x10)], [t(0x10), t(0x20)], [t(0x10), t(0x30)]);
    let w = [t(0x20), t(0x30)];
    let (o, io, ii) = (
        [DIST_ARG_OUTPUT],
        [DIST_ARG_INPUT, DIST_ARG_OUTPUT],
        [DIST_ARG_INPUT, DIST_ARG_INPUT],
    );
    let mut ids: HashMap<DistTaskId, u64> = HashMap::new();
    let a = rt.submit(&spec(SUB, 0xa, &[member(&x, &o, &[0])])).unwrap();
    let b = rt
        .submit(&spec(SUB, 0xb, &[member(&y, &io, &[1])]))
        .unwrap();
    let c = rt
        .submit(&spec(NEXT, 0xc, &[member(&z, &io, &[2])]))
        .unwrap();
    let d = rt
        .submit(&spec(SUB, 0xd, &[member(&w, &ii, &[3])]))
        .unwrap();
    for (no, id) in [a, b, c, d].into_iter().enumerate() {
        ids.insert(id, no as u64);
    }
    let numbers: Vec<[u64; 2]> = (4..24).map(|n| [n, 0]).collect();
    for s in &numbers {
        ids.insert(rt.submit(&spec(SUB, 7, &[Args::scalars(s)])).unwrap(), s[0]);
    }
    let failing = [24u64, 1];
    let f = rt
        .submit(&spec(SUB, 8, &[Args::scalars(&failing)]))
        .unwrap();
    ids.insert(f, 24);
    let _ = rt.drain();
    // A killed child: its slice ends with CHILD_DIED and it leaves the pool.
    let die = [25u64, 9];
    let k = rt
        .submit_on(&spec(SUB, 9, &[Args::scalars(&die)]), &[1])
        .unwrap();
    ids.insert(k, 25);
    assert_eq!(rt.wait(k).unwrap_err().status, Status::ChildDied);
    let _ = rt.drain();
    assert!(rt.stats().trace_events > 0);
    rt.shutdown().unwrap();

    let trace = read(&path);
    let ev = events(&trace);
    let host = std::process::id() as u64;
    assert!(ev.iter().all(|e| e["pid"] == host), "one process: the host");
    // Worker tracks, named as messages name the workers.
    let mut tracks: HashMap<u64, String> = HashMap::new();
    for m in of_phase(ev, "M")
        .into_iter()
        .filter(|m| m["name"] == "thread_name")
    {
        tracks.insert(
            m["tid"].as_u64().unwrap(),
            m["args"]["name"].as_str().unwrap().into(),
        );
    }
    assert_eq!(tracks.len(), 3, "{tracks:?}");
    assert!(tracks
        .values()
        .any(|n| n == &format!("SUB worker 0 (child pid {c0})")));
    assert!(tracks
        .values()
        .any(|n| n == &format!("SUB worker 1 (child pid {c1})")));
    assert!(tracks.values().any(|n| n == "NEXT_LEVEL worker 0 (thread)"));
    // One slice per task, on the track of the worker that ran it.
    let slices = of_phase(ev, "X");
    assert_eq!(slices.len(), ids.len(), "{slices:#?}");
    let mut slice_of: HashMap<DistTaskId, &Value> = HashMap::new();
    for x in &slices {
        let id = id_of(x, "task");
        let no = *ids
            .get(&id)
            .unwrap_or_else(|| panic!("unknown task {id:#x}"));
        assert!(
            slice_of.insert(id, x).is_none(),
            "task {id:#x} has two slices"
        );
        let track = &tracks[&x["tid"].as_u64().unwrap()];
        let pid = ran.pid(no);
        if pid == host {
            assert_eq!(track, "NEXT_LEVEL worker 0 (thread)", "task {no}");
        } else {
            assert!(
                track.ends_with(&format!("(child pid {pid})")),
                "task {no} on {track}"
            );
        }
        let status = match no {
            24 => "DIST_ERR_TASK_FAILED",
            25 => "DIST_ERR_CHILD_DIED",
            _ => "DIST_OK",
        };
        assert_eq!(x["args"]["status"], status, "task {no}");
        assert!(x["dur"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(slice_of[&c]["args"]["callable"], "0xc");
    // Flows: a -> b, a -> c, b -> d, c -> d, each from inside the producer's
    // slice to inside the consumer's.
    let starts: HashMap<u64, &Value> = of_phase(ev, "s")
        .into_iter()
        .map(|s| (s["id"].as_u64().unwrap(), s))
        .collect();
    let mut edges = Vec::new();
    for fin in of_phase(ev, "f") {
        let s = starts[&fin["id"].as_u64().unwrap()];
        let (from, to) = (id_of(s, "from"), id_of(s, "to"));
        let (px, cx) = (slice_of[&from], slice_of[&to]);
        assert_eq!(s["tid"], px["tid"]);
        assert!(inside(s["ts"].as_f64().unwrap(), px));
        assert_eq!(fin["tid"], cx["tid"]);
        assert!(inside(fin["ts"].as_f64().unwrap(), cx));
        assert_eq!(fin["bp"], "e");
        edges.push((from, to));
    }
    edges.sort();
    let mut want = vec![(a, b), (a, c), (b, d), (c, d)];
    want.sort();
    assert_eq!(edges, want);
    // Ready-queue counters, and the death.
    let counters = of_phase(ev, "C");
    assert!(counters
        .iter()
        .any(|c| c["name"] == "ready SUB" && c["args"]["tasks"].as_u64().unwrap() > 0));
    assert!(counters.iter().any(|c| c["name"] == "ready NEXT_LEVEL"));
    let died = of_phase(ev, "i");
    assert_eq!(died.len(), 1, "{died:#?}");
    assert_eq!(
        tracks[&died[0]["tid"].as_u64().unwrap()],
        format!("SUB worker 1 (child pid {c1})")
    );
    let reason = died[0]["args"]["reason"].as_str().unwrap();
    assert!(reason.contains("killed by signal 9"), "{reason}");
    assert_eq!(trace["otherData"]["dropped_events"], 0);
}

#[test]
fn flush_writes_a_whole_file_and_stop_ends_recording() {
    let ran = RanWhere::new();
    let rt = Runtime::new(Options::default()).unwrap();
    rt.add_thread(SUB, ran.handler()).unwrap();
    assert_eq!(rt.trace_flush().unwrap_err().status, Status::BadState);
    let path = trace_file("flush");
    rt.trace_start(&path).unwrap();
    let run = |n: u64| {
        for i in 0..n {
            let s = [i, 0];
            rt.submit(&spec(SUB, 1, &[Args::scalars(&s)])).unwrap();
        }
        rt.drain().unwrap();
    };
    run(5);
    rt.trace_flush().unwrap();
    assert_eq!(of_phase(events(&read(&path)), "X").len(), 5);
    run(3);
    rt.trace_flush().unwrap();
    assert_eq!(
        of_phase(events(&read(&path)), "X").len(),
        8,
        "everything since the start"
    );
    rt.trace_stop().unwrap();
    assert_eq!(of_phase(events(&read(&path)), "X").len(), 8);
    assert_eq!(rt.stats().trace_events, 0, "not recording");
    run(2);
    assert_eq!(rt.trace_stop().unwrap_err().status, Status::BadState);
    // A full buffer counts what it drops, and the file says so.
    let small = trace_file("small");
    rt.trace_start_with(&small, 10).unwrap();
    run(20);
    let s = rt.stats();
    assert_eq!(s.trace_events, 10);
    assert!(s.trace_dropped > 0);
    rt.shutdown().unwrap();
    let trace = read(&small);
    let ev = events(&trace);
    assert_eq!(ev.iter().filter(|e| e["ph"] != "M").count(), 10);
    assert_eq!(trace["otherData"]["dropped_events"], s.trace_dropped);
    // Unwritable: the flush says why.
    let rt = Runtime::new(Options::default()).unwrap();
    rt.trace_start("/nonexistent-dir/trace.json").unwrap();
    let e = rt.trace_flush().unwrap_err();
    assert_eq!(e.status, Status::Os);
    assert!(
        e.message.contains("/nonexistent-dir/trace.json"),
        "{}",
        e.message
    );
    rt.trace_stop().unwrap_err();
    rt.shutdown().unwrap();
}

/// Only acts in the copy `the_environment_starts_a_trace_at_create` runs:
/// two DistWorkers, the second one's trace beside the first's.
#[test]
fn child_traced_by_the_environment() {
    if std::env::var_os("DIST_WORKER_TRACE_TEST_CHILD").is_none() {
        return;
    }
    println!("\nchild pid {}", std::process::id());
    for tasks in [4, 6] {
        let ran = RanWhere::new();
        let rt = Runtime::new(Options::default()).unwrap();
        rt.spawn(SUB, ran.handler()).unwrap();
        for i in 0..tasks {
            let s = [i, 0];
            rt.submit(&spec(SUB, 1, &[Args::scalars(&s)])).unwrap();
        }
        rt.drain().unwrap();
        rt.shutdown().unwrap();
    }
}

#[test]
fn the_environment_starts_a_trace_at_create() {
    let path = trace_file("env");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_traced_by_the_environment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DIST_WORKER_TRACE", &path)
        .env("DIST_WORKER_TRACE_TEST_CHILD", "1")
        .env("DIST_WORKER_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.split("child pid ")
                .nth(1)
                .and_then(|p| p.trim().parse().ok())
        })
        .expect("the child prints its pid");
    let written = format!("events written to {}", path.display());
    assert!(err.contains(&written), "the info line says where: {err}");
    let first = read(&path);
    assert_eq!(of_phase(events(&first), "X").len(), 4);
    let beside = path.with_file_name(format!(
        "{}.{pid}-1.json",
        path.file_stem().unwrap().to_string_lossy()
    ));
    let second = read(&beside);
    assert_eq!(of_phase(events(&second), "X").len(), 6);
    let _ = std::fs::remove_file(beside);
}
