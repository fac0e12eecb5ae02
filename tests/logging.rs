//! Log lines: a child's death and a shutdown reach the log callback with
//! pids and reasons; `DIST_WORKER_LOG` sets what reaches stderr (checked
//! in a copy of this test program run with the variable set).
//!
//! The callback is process-wide, so one test here installs it; the others
//! run the program again as a child process.

use dist_worker::abi::{DistStatus, DIST_ERR_BAD_STATE, DIST_ERR_INVALID_ARGUMENT, DIST_OK};
use dist_worker::ffi::{dist_worker_set_log_callback, dist_worker_set_log_level};
use dist_worker::{Args, Handler, Options, Runtime, WorkerType};
use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

mod common;
use common::spec;

static LINES: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
/// The runtime the callback reads figures from (it may call the library).
static RUNTIME: Mutex<Option<Weak<Runtime>>> = Mutex::new(None);
/// Figures the callback read.
static READ_FROM_CALLBACK: AtomicI32 = AtomicI32::new(0);
/// What replacing the callback from inside it returned (-1: not tried yet).
static FROM_INSIDE: AtomicI32 = AtomicI32::new(-1);

unsafe extern "C" fn collect(user: *mut c_void, level: i32, message: *const c_char) {
    assert_eq!(user as usize, 0x5eed, "the user pointer comes back");
    // SAFETY: the library passes a NUL-terminated line valid for the call.
    let line = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    if FROM_INSIDE.load(Ordering::SeqCst) == -1 {
        // SAFETY: any arguments; refused from here.
        let s = unsafe { dist_worker_set_log_callback(None, std::ptr::null_mut()) };
        FROM_INSIDE.store(s, Ordering::SeqCst);
    }
    if let Some(rt) = RUNTIME.lock().unwrap().as_ref().and_then(Weak::upgrade) {
        // Lines come with no lock of the runtime held: this cannot deadlock.
        rt.stats();
        READ_FROM_CALLBACK.fetch_add(1, Ordering::SeqCst);
    }
    LINES.lock().unwrap().push((level, line));
}

/// A SUB child that kills itself when a task's first scalar is 9.
fn suicidal() -> Handler {
    Box::new(|_, v, _| {
        if v.scalars.first() == Some(&9) {
            // SAFETY: the child kills itself mid-task.
            unsafe { libc::raise(libc::SIGKILL) };
        }
        0
    })
}

/// Spawns two children, kills the first with a task and the second from
/// outside while it is idle, runs a task, shuts down. Returns the pids.
fn life_with_two_deaths() -> (i32, i32) {
    let rt = Arc::new(Runtime::new(Options::default()).unwrap());
    *RUNTIME.lock().unwrap() = Some(Arc::downgrade(&rt));
    let a = rt.spawn(WorkerType::Sub, suicidal()).unwrap();
    let b = rt.spawn(WorkerType::Sub, suicidal()).unwrap();
    rt.add_thread(WorkerType::Sub, suicidal()).unwrap();
    let die = [9u64];
    let id = rt
        .submit_on(&spec(WorkerType::Sub, 1, &[Args::scalars(&die)]), &[0])
        .unwrap();
    assert!(rt.wait(id).is_err());
    // SAFETY: killing our own child.
    unsafe { libc::kill(b, libc::SIGKILL) };
    let t0 = Instant::now();
    while rt.stats().types[WorkerType::Sub.index()].live_workers > 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "death never noticed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let none = [Args::default()];
    rt.wait(rt.submit(&spec(WorkerType::Sub, 2, &none)).unwrap())
        .unwrap();
    let _ = rt.drain();
    rt.close().unwrap();
    *RUNTIME.lock().unwrap() = None;
    (a, b)
}

fn assert_has(lines: &[(i32, String)], level: i32, words: &[&str]) {
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == level && words.iter().all(|w| m.contains(w))),
        "no level-{level} line with {words:?} in {lines:#?}"
    );
}

#[test]
fn deaths_and_shutdowns_reach_the_callback_with_pids_and_reasons() {
    assert_eq!(dist_worker_set_log_level(5), DIST_ERR_INVALID_ARGUMENT);
    assert_eq!(dist_worker_set_log_level(3), DIST_OK); // info
                                                       // SAFETY: `collect` may be called from any thread, with any user.
    let s: DistStatus =
        unsafe { dist_worker_set_log_callback(Some(collect), 0x5eed as *mut c_void) };
    assert_eq!(s, DIST_OK);
    let (a, b) = life_with_two_deaths();
    // SAFETY: back to stderr; no callback in progress afterwards.
    assert_eq!(
        unsafe { dist_worker_set_log_callback(None, std::ptr::null_mut()) },
        DIST_OK
    );
    assert_eq!(FROM_INSIDE.load(Ordering::SeqCst), DIST_ERR_BAD_STATE);
    assert!(
        READ_FROM_CALLBACK.load(Ordering::SeqCst) > 0,
        "the callback called in"
    );
    let me = format!("dist-worker[{}] L3 ", std::process::id());
    let lines: Vec<(i32, String)> = LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, m)| m.starts_with(&me))
        .cloned()
        .collect();
    let (warn, info) = (2, 3);
    assert_has(
        &lines,
        info,
        &["info: spawned SUB worker 0", &format!("(child pid {a})")],
    );
    assert_has(
        &lines,
        info,
        &["spawned SUB worker 1", &format!("(child pid {b})")],
    );
    assert_has(
        &lines,
        info,
        &["started with 3 SUB and 0 NEXT_LEVEL workers (2 spawned children, 1 thread)"],
    );
    for pid in [a, b] {
        assert_has(
            &lines,
            warn,
            &[
                "warn: SUB worker",
                &format!("(child pid {pid}) killed by signal 9; it leaves the pool"),
            ],
        );
    }
    assert_has(&lines, info, &["info: shut down in", " ms"]);
    // Nothing per task at info level.
    assert!(
        !lines.iter().any(|(_, m)| m.contains("launched on")),
        "{lines:#?}"
    );
    assert_eq!(dist_worker_set_log_level(2), DIST_OK);
}

/// Runs `child_with_the_environment` in a copy of this program with
/// DIST_WORKER_LOG set to `value`; returns its stderr lines of this library.
fn stderr_with(value: &str) -> (u32, Vec<String>) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_with_the_environment",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DIST_WORKER_LOG", value)
        .env("DIST_WORKER_LOG_TEST_CHILD", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed: {err}");
    let pid = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.split("child pid ")
                .nth(1)
                .and_then(|p| p.trim().parse().ok())
        })
        .expect("the child prints its pid");
    let lines = err
        .lines()
        .filter(|l| l.starts_with("dist-worker["))
        .map(str::to_string)
        .collect();
    (pid, lines)
}

/// Only acts in the copy `stderr_with` runs.
#[test]
fn child_with_the_environment() {
    if std::env::var_os("DIST_WORKER_LOG_TEST_CHILD").is_none() {
        return;
    }
    println!("\nchild pid {}", std::process::id());
    life_with_two_deaths();
}

#[test]
fn the_environment_sets_the_level() {
    let (pid, info) = stderr_with("info");
    let me = format!("dist-worker[{pid}] L3 ");
    assert!(info.iter().all(|l| l.starts_with(&me)), "{info:#?}");
    assert!(
        info.iter()
            .any(|l| l.contains(" info: spawned SUB worker 0")),
        "{info:#?}"
    );
    assert!(
        info.iter()
            .any(|l| l.contains(" warn: SUB worker") && l.contains("killed by signal 9")),
        "{info:#?}"
    );
    assert!(
        info.iter().any(|l| l.contains(" info: shut down in")),
        "{info:#?}"
    );
    assert!(!info.iter().any(|l| l.contains(" debug: ")), "{info:#?}");

    let (_, debug) = stderr_with("DEBUG");
    assert!(
        debug
            .iter()
            .any(|l| l.contains(" debug: task 0x") && l.contains("launched on SUB worker")),
        "{debug:#?}"
    );
    assert!(
        debug
            .iter()
            .any(|l| l.contains(" debug: task 0x") && l.contains("ended on")),
        "{debug:#?}"
    );

    let (_, warn) = stderr_with("warn");
    assert!(
        warn.iter().any(|l| l.contains("killed by signal 9")),
        "{warn:#?}"
    );
    assert!(!warn.iter().any(|l| l.contains(" info: ")), "{warn:#?}");

    let (_, error) = stderr_with("error");
    assert!(error.is_empty(), "nothing failed beyond repair: {error:#?}");
    let (_, off) = stderr_with("off");
    assert!(off.is_empty(), "{off:#?}");

    // An unknown value says so and keeps the default (warn).
    let (_, bad) = stderr_with("loud");
    assert!(
        bad.iter()
            .any(|l| l.contains("DIST_WORKER_LOG=\"loud\" is not a level")),
        "{bad:#?}"
    );
    assert!(
        bad.iter().any(|l| l.contains("killed by signal 9")),
        "{bad:#?}"
    );
    assert!(!bad.iter().any(|l| l.contains(" info: ")), "{bad:#?}");
}
