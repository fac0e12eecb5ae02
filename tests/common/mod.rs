//! A test harness over the Rust core: a runtime with THREAD and spawned
//! PROCESS workers whose callable appends start and end events to a log in
//! shared memory, so the order in which tasks really ran can be checked
//! against the dependencies they were submitted with.
//!
//! Scalars of a harness task: [task number, sleep µs, error to return,
//! optional: address to write `task number` to, optional: address to read
//! and check against scalar 5].
//!
//! Also the small helpers several test files share (`spec`).

#![allow(dead_code)]

use dist_worker::abi::{DistCallConfig, DistTaskId, DistTensor, DistTensorArgType};
use dist_worker::os::SharedMap;
use dist_worker::Handler;
use dist_worker::TaskSpec;
use dist_worker::WorkerType;
use dist_worker::{Args, TaskView};
use dist_worker::{Options, Result, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};

/// A task of `ty` running `callable` with the default config.
pub fn spec<'a>(ty: WorkerType, callable: u64, members: &'a [Args<'a>]) -> TaskSpec<'a> {
    TaskSpec {
        ty,
        callable,
        config: DistCallConfig::default(),
        members,
    }
}

/// Checks a level test's failure message ends with the leaf's own words:
/// SUB worker 0, a child, failed callable 5 with "disk full".
pub fn assert_failed_at_the_bottom(m: &str) {
    assert!(m.contains("SUB worker 0 (child pid"), "{m}");
    assert!(
        m.ends_with("returned error 5 from callable 0x5: disk full"),
        "{m}"
    );
}

/// Events the log can hold.
const LOG_CAP: usize = 1 << 21;

pub struct Harness {
    pub rt: Runtime,
    log: SharedMap,
}

/// Worker counts per mode and type.
#[derive(Clone, Copy, Default)]
pub struct Workers {
    pub thread_next: usize,
    pub thread_sub: usize,
    pub proc_next: usize,
    pub proc_sub: usize,
}

fn log_slot(base: usize, i: usize) -> &'static AtomicU64 {
    // SAFETY: `base` is a live shared mapping of 8 * (LOG_CAP + 1) bytes.
    unsafe { &*((base + 8 * i) as *const AtomicU64) }
}

fn append(base: usize, event: u64) {
    let i = log_slot(base, 0).fetch_add(1, Ordering::AcqRel) as usize;
    assert!(i < LOG_CAP, "test log full");
    log_slot(base, 1 + i).store(event, Ordering::Release);
}

/// The callable every harness worker serves.
fn callable(base: usize, v: &TaskView<'_>) -> i32 {
    let s = v.scalars;
    let no = s[0];
    append(base, no << 1);
    if s[1] > 0 {
        std::thread::sleep(std::time::Duration::from_micros(s[1]));
    }
    let mut err = s[2] as i32;
    if s.len() > 4 && s[4] != 0 {
        // Check a value a producer wrote into shared memory.
        // SAFETY: the address is in the runtime's shared heap.
        let got = unsafe { (s[4] as *const u64).read_volatile() };
        if got != s[5] {
            err = 1000;
        }
    }
    if s.len() > 3 && s[3] != 0 {
        // SAFETY: as above.
        unsafe { (s[3] as *mut u64).write_volatile(no) };
    }
    append(base, (no << 1) | 1);
    err
}

impl Harness {
    pub fn new(w: Workers, options: Options) -> Harness {
        let log = SharedMap::new(8 * (LOG_CAP + 1)).unwrap();
        let rt = Runtime::new(options).unwrap();
        let base = log.as_ptr() as usize;
        let handler = move || -> Handler { Box::new(move |_, v, _| callable(base, v)) };
        for _ in 0..w.proc_next {
            rt.spawn(WorkerType::NextLevel, handler()).unwrap();
        }
        for _ in 0..w.proc_sub {
            rt.spawn(WorkerType::Sub, handler()).unwrap();
        }
        for _ in 0..w.thread_next {
            rt.add_thread(WorkerType::NextLevel, handler()).unwrap();
        }
        for _ in 0..w.thread_sub {
            rt.add_thread(WorkerType::Sub, handler()).unwrap();
        }
        Harness { rt, log }
    }

    /// Submits task `no` with tensors (address, tag) and behaviour scalars.
    pub fn submit(
        &self,
        ty: WorkerType,
        no: u64,
        tensors: &[(u64, DistTensorArgType)],
        scalars: &[u64],
        group: usize,
    ) -> Result<DistTaskId> {
        let ts: Vec<DistTensor> = tensors
            .iter()
            .map(|&(data, _)| DistTensor {
                data,
                shapes: [8, 0, 0, 0, 0],
                ndims: 1,
                dtype: 7,
            })
            .collect();
        let tags: Vec<DistTensorArgType> = tensors.iter().map(|t| t.1).collect();
        let mut s = vec![no, 0, 0];
        for (i, v) in scalars.iter().enumerate() {
            if i < 3 {
                s[i] = *v;
            } else {
                s.push(*v);
            }
        }
        s[0] = no;
        let member = Args {
            tensors: &ts,
            tags: Some(&tags),
            scalars: &s,
        };
        let members = vec![member; group.max(1)];
        self.rt.submit(&TaskSpec {
            ty,
            callable: no,
            config: DistCallConfig::default(),
            members: &members[..],
        })
    }

    /// Shorthand: task `no` with tensors, sleeping `sleep_us`, succeeding.
    pub fn task(
        &self,
        ty: WorkerType,
        no: u64,
        tensors: &[(u64, DistTensorArgType)],
        sleep_us: u64,
    ) -> DistTaskId {
        self.submit(ty, no, tensors, &[no, sleep_us, 0], 1).unwrap()
    }

    /// The events so far: (task number, is_end), in the order they happened.
    pub fn events(&self) -> Vec<(u64, bool)> {
        let base = self.log.as_ptr() as usize;
        let n = log_slot(base, 0).load(Ordering::Acquire) as usize;
        (0..n)
            .map(|i| {
                let e = log_slot(base, 1 + i).load(Ordering::Acquire);
                (e >> 1, e & 1 == 1)
            })
            .collect()
    }

    /// Forgets the events so far.
    pub fn clear_events(&self) {
        log_slot(self.log.as_ptr() as usize, 0).store(0, Ordering::Release);
    }
}

/// Position of each task's first start and last end in `events`, and how
/// many times it started.
pub struct Timeline {
    pub first_start: std::collections::HashMap<u64, usize>,
    pub last_end: std::collections::HashMap<u64, usize>,
    pub starts: std::collections::HashMap<u64, usize>,
}

impl Timeline {
    pub fn of(events: &[(u64, bool)]) -> Timeline {
        let mut t = Timeline {
            first_start: Default::default(),
            last_end: Default::default(),
            starts: Default::default(),
        };
        for (i, &(no, end)) in events.iter().enumerate() {
            if end {
                t.last_end.insert(no, i);
            } else {
                t.first_start.entry(no).or_insert(i);
                *t.starts.entry(no).or_default() += 1;
            }
        }
        t
    }

    /// Asserts `consumer` started only after `producer` ended.
    pub fn after(&self, producer: u64, consumer: u64) {
        let e = self
            .last_end
            .get(&producer)
            .unwrap_or_else(|| panic!("task {producer} never ended"));
        let s = self
            .first_start
            .get(&consumer)
            .unwrap_or_else(|| panic!("task {consumer} never started"));
        assert!(
            e < s,
            "task {consumer} started before task {producer} ended"
        );
    }

    pub fn ran(&self, no: u64) -> usize {
        self.starts.get(&no).copied().unwrap_or(0)
    }
}

/// xorshift64*: a seeded generator, so a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Mostly small values, sometimes anything.
    pub fn int(&mut self) -> i64 {
        match self.below(4) {
            0 => self.next() as i64,
            1 => -(self.below(4) as i64),
            _ => self.below(12) as i64,
        }
    }
}

/// Aborts the test process (with `what`) unless dropped within `limit`: a
/// test that would hang fails instead. Dropping it ends its thread, so it
/// never fires during the tests that run after its own.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    pub fn new(limit: std::time::Duration, what: &'static str) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("{what}: hung for {limit:?}");
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take()); // disconnects: the thread ends
    }
}
