//! The dispatcher: one thread that notices completions on every worker's
//! mailbox (PROCESS and THREAD alike) and hands them to the engine.
//!
//! Owned by: the `Runtime`, started with the pool, stopped at shutdown.
//! It reads only in-flight mailboxes, without the engine lock, and takes the
//! lock once per batch of completions. While work is in flight it spins for
//! a short window, then sleeps on the doorbell that library-run workers
//! ring; the sleep is a short timed wait whenever a caller-owned child (which
//! never rings) has work in flight.

use crate::engine::Engine;
use crate::mailbox::{state, Doorbell};
use crate::status::Error;
use crate::status::Status;
use crate::worker::Worker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How the dispatcher waits for completions.
#[derive(Clone, Copy, Debug)]
pub struct WaitPolicy {
    /// Spin this long after the last event before sleeping.
    pub spin: Duration,
    /// Sleep at most this long while a non-ringing worker has work in flight.
    pub poll: Duration,
    /// Sleep at most this long otherwise (a liveness tick).
    pub idle: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            spin: Duration::from_micros(50),
            poll: Duration::from_micros(50),
            idle: Duration::from_millis(100),
        }
    }
}

/// What a poll found on one worker.
#[derive(Clone, Copy, Debug)]
enum Claim {
    /// TASK_DONE with this error code.
    Done(i32),
    /// A state the protocol does not allow while a task is in flight.
    Broken(u32),
}

/// Everything the dispatcher needs, borrowed from the runtime.
pub struct Context<'a> {
    /// The engine and the condition its waiters sleep on.
    pub engine: &'a Mutex<Engine>,
    /// Signalled when tasks finish.
    pub finished: &'a Condvar,
    /// The started pool's workers.
    pub workers: &'a [Worker],
    /// Rung by library-run workers and by launches.
    pub bell: Doorbell,
    /// Set at shutdown, once nothing is unfinished.
    pub stop: &'a AtomicBool,
}

/// Scans in-flight mailboxes once; hands completions to the engine.
/// Returns how many it handled. `claims` is scratch space, reused.
fn poll(cx: &Context<'_>, claims: &mut Vec<(usize, u64, Claim)>) -> usize {
    claims.clear();
    for w in cx.workers {
        let tok = w.in_flight.load(Ordering::Acquire);
        if tok == 0 {
            continue;
        }
        let claim = match w.mailbox.state() {
            // IDLE while in flight is a child's store caught half-way: a
            // reference child written in Python (struct.pack_into) zeroes
            // the word before writing TASK_DONE. Look again later.
            state::TASK_READY | state::IDLE => continue,
            state::TASK_DONE => Claim::Done(w.mailbox.error()),
            other => Claim::Broken(other),
        };
        if w.in_flight
            .compare_exchange(tok, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        if let Claim::Done(_) = claim {
            w.mailbox.set_state(state::IDLE);
        }
        claims.push((w.index, tok, claim));
    }
    if claims.is_empty() {
        return 0;
    }
    let mut engine = cx.engine.lock().unwrap_or_else(|p| p.into_inner());
    for &(w, tok, claim) in claims.iter() {
        match claim {
            Claim::Done(error) => engine.complete(w, tok, error),
            Claim::Broken(s) => {
                let e = Error::new(
                    Status::Protocol,
                    format!(
                        "{} left its mailbox in state {s} while running a task; \
                         the worker leaves the pool",
                        cx.workers[w]
                    ),
                );
                engine.retire(w, tok, e);
            }
        }
    }
    if engine.waiters > 0 {
        cx.finished.notify_all();
    }
    claims.len()
}

/// The dispatcher thread's body: runs until `stop` is set and nothing is in flight.
pub fn run(cx: Context<'_>, policy: WaitPolicy) {
    let mut claims = Vec::with_capacity(cx.workers.len());
    let mut last_event = Instant::now();
    loop {
        if poll(&cx, &mut claims) > 0 {
            last_event = Instant::now();
            continue;
        }
        let in_flight = |w: &&Worker| w.in_flight.load(Ordering::Acquire) != 0;
        let busy = cx.workers.iter().any(|w| in_flight(&w));
        if !busy && cx.stop.load(Ordering::Acquire) {
            return;
        }
        if busy && last_event.elapsed() < policy.spin {
            std::hint::spin_loop();
            continue;
        }
        let seq = cx.bell.prepare_sleep();
        if poll(&cx, &mut claims) > 0 || cx.stop.load(Ordering::Acquire) {
            cx.bell.cancel_sleep();
            last_event = Instant::now();
            continue;
        }
        let deaf = cx.workers.iter().filter(in_flight).any(|w| !w.rings());
        cx.bell
            .sleep(seq, Some(if deaf { policy.poll } else { policy.idle }));
        last_event = Instant::now();
    }
}
