//! Model check of the hand-off between the engine, the dispatcher and a
//! serving side, with `loom` exploring every interleaving.
//!
//! The model mirrors, step for step and with the same orderings:
//! - `Engine::pump`: under the engine lock, write the payload, publish
//!   TASK_READY (release), then store the in-flight token (release);
//! - `child::serve`: acquire-load TASK_READY, read the payload, write the
//!   error, store TASK_DONE (release);
//! - `dispatcher::poll`: acquire-load the token, acquire-load the state,
//!   claim with a CAS of the token to 0, read the error, store IDLE, then
//!   complete under the engine lock (worker idle again, next task launched).
//!   Tokens are unique per launch, as the engine's are (a launch sequence
//!   number), so a stale token never claims a later task;
//! - `Runtime::drain` / `close`: wait under the lock for no unfinished task,
//!   then publish SHUTDOWN.
//!
//! Checked in every interleaving: each task runs once with its own payload,
//! each completion is claimed once (even with two pollers racing), a drain
//! never returns before the last completion, and no late completion
//! overwrites SHUTDOWN.

use loom::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

const IDLE: u32 = 0;
const TASK_READY: u32 = 1;
const TASK_DONE: u32 = 2;
const SHUTDOWN: u32 = 3;

struct Mailbox {
    state: AtomicU32,
    error: AtomicI32,
    payload: AtomicU64,
}

struct Engine {
    /// Tasks not yet launched (payloads), in order.
    queued: Vec<u64>,
    idle: bool,
    unfinished: usize,
    completed: Vec<(u64, i32)>,
}

struct World {
    mb: Mailbox,
    token: AtomicU64,
    engine: Mutex<Engine>,
    /// Tasks the serving side ran: payloads in order.
    ran: Mutex<Vec<u64>>,
}

/// `Engine::pump`, for the single worker of the model.
fn pump(w: &World, e: &mut Engine) {
    if !e.idle || e.queued.is_empty() {
        return;
    }
    let p = e.queued.remove(0);
    e.idle = false;
    w.mb.payload.store(p, Ordering::Relaxed);
    w.mb.state.store(TASK_READY, Ordering::Release);
    w.token.store(p, Ordering::Release);
}

/// `dispatcher::poll` for one worker; returns whether it handled a completion.
fn poll(w: &World) -> bool {
    let tok = w.token.load(Ordering::Acquire);
    if tok == 0 {
        return false;
    }
    match w.mb.state.load(Ordering::Acquire) {
        TASK_DONE => {}
        // READY: not done yet. IDLE: another poller claimed this completion
        // after our token load (or a child's torn store). Look again later.
        TASK_READY | IDLE => return false,
        s => panic!("dispatcher saw state {s} with a task in flight"),
    }
    if w.token
        .compare_exchange(tok, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    let err = w.mb.error.load(Ordering::Relaxed);
    w.mb.state.store(IDLE, Ordering::Release);
    let mut e = w.engine.lock().unwrap();
    e.completed.push((tok, err));
    e.unfinished -= 1;
    e.idle = true;
    pump(w, &mut e);
    true
}

/// `child::serve`: runs tasks until SHUTDOWN, looking at most `steps` times.
fn serve(w: &World, steps: usize) {
    for _ in 0..steps {
        match w.mb.state.load(Ordering::Acquire) {
            TASK_READY => {
                let p = w.mb.payload.load(Ordering::Relaxed);
                w.ran.lock().unwrap().push(p);
                w.mb.error.store(p as i32 * 10, Ordering::Relaxed);
                w.mb.state.store(TASK_DONE, Ordering::Release);
            }
            SHUTDOWN => return,
            _ => {}
        }
    }
}

fn world(tasks: &[u64]) -> Arc<World> {
    Arc::new(World {
        mb: Mailbox {
            state: AtomicU32::new(IDLE),
            error: AtomicI32::new(0),
            payload: AtomicU64::new(0),
        },
        token: AtomicU64::new(0),
        engine: Mutex::new(Engine {
            queued: Vec::new(),
            idle: true,
            unfinished: 0,
            completed: Vec::new(),
        }),
        ran: Mutex::new(Vec::new()),
    })
    .tap(|w| {
        let mut e = w.engine.lock().unwrap();
        for &t in tasks {
            e.queued.push(t);
            e.unfinished += 1;
        }
    })
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl<T> Tap for T {}

/// Runs `tasks` through one worker with `pollers` dispatcher threads while
/// a drainer waits to shut down. Every side takes a bounded number of steps
/// (loom cannot model a side that spins until another makes progress), so
/// an execution may end with work left; safety is checked in every
/// execution, completeness in those where the work got done.
fn check(tasks: &'static [u64], pollers: usize, steps: usize) {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(move || {
        let w = world(tasks);
        {
            let mut e = w.engine.lock().unwrap();
            pump(&w, &mut e);
        }
        let child = {
            let w = w.clone();
            thread::spawn(move || serve(&w, steps))
        };
        let polling: Vec<_> = (0..pollers)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || {
                    for _ in 0..steps {
                        poll(&w);
                    }
                })
            })
            .collect();
        // Drain, then shut down: SHUTDOWN is written once nothing is
        // unfinished, under the same lock completions take.
        let mut shut = false;
        for _ in 0..steps {
            let e = w.engine.lock().unwrap();
            if e.unfinished == 0 {
                w.mb.state.store(SHUTDOWN, Ordering::Release);
                shut = true;
                break;
            }
        }
        child.join().unwrap();
        for p in polling {
            p.join().unwrap();
        }
        let e = w.engine.lock().unwrap();
        let ran = w.ran.lock().unwrap().clone();
        // Safety, in every execution.
        assert!(ran.len() <= tasks.len(), "a task ran twice: {ran:?}");
        assert_eq!(
            &ran[..],
            &tasks[..ran.len()],
            "tasks ran once each, in order, with their payload"
        );
        let mut done = e.completed.clone();
        done.sort();
        for &(t, err) in &done {
            assert_eq!(err, t as i32 * 10, "a completion read another task's error");
        }
        done.dedup();
        assert_eq!(
            done.len(),
            e.completed.len(),
            "a completion was claimed twice"
        );
        assert_eq!(e.unfinished, tasks.len() - done.len());
        if shut {
            assert_eq!(
                done.len(),
                tasks.len(),
                "drain returned before the last completion"
            );
            assert_eq!(
                w.mb.state.load(Ordering::Acquire),
                SHUTDOWN,
                "SHUTDOWN overwritten"
            );
        }
    });
}

#[test]
fn one_task_one_poller() {
    check(&[1], 1, 3);
}

#[test]
fn two_tasks_back_to_back() {
    check(&[1, 2], 1, 4);
}

#[test]
fn two_pollers_race_for_each_completion() {
    check(&[1, 2], 2, 3);
}
