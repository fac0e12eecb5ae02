//! A completion of an earlier launch never passes for the current one: a
//! library serving side echoes each launch's sequence number, so a stale or
//! doubled TASK_DONE is a protocol error, not a task that "ran".
//! A reference child cannot echo: for it the parent cannot tell (the
//! documented limit), which the second test shows.

use dist_worker::wire::{state, OwnedMailbox, FEATURE_ECHO};
use dist_worker::Args;
use dist_worker::WorkerType;
use dist_worker::{Options, Runtime, Status};
use std::time::{Duration, Instant};

mod common;
use common::spec;

fn until(mb: &dist_worker::wire::Mailbox, s: u32) {
    let t = Instant::now();
    while mb.state() != s {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "state {s} never came"
        );
        std::thread::yield_now();
    }
}

/// Runs one task properly, then answers the next launch with a second
/// TASK_DONE of the first (without running it). Returns the two outcomes.
fn doubled_completion(echo: bool) -> (dist_worker::Result<()>, dist_worker::Result<()>) {
    let rt = Runtime::new(Options::default()).unwrap();
    let owned = OwnedMailbox::new().unwrap();
    let mb = owned.handle();
    rt.add_process(WorkerType::Sub, mb).unwrap();
    let child = std::thread::spawn(move || {
        if echo {
            mb.announce_features(FEATURE_ECHO);
        }
        until(&mb, state::TASK_READY);
        assert!(mb.complete(0));
        until(&mb, state::TASK_READY); // the second launch
        mb.set_state(state::TASK_DONE); // the first completion, again
    });
    let none = [Args::default()];
    let spec = spec(WorkerType::Sub, 1, &none[..]);
    let first = rt.submit(&spec).unwrap();
    let first = rt.wait(first);
    let second = rt.submit(&spec).unwrap();
    let second = rt.wait(second);
    child.join().unwrap();
    let _ = rt.drain();
    drop(rt);
    drop(owned);
    (first, second)
}

#[test]
fn a_doubled_completion_from_a_library_child_is_a_protocol_error() {
    let (first, second) = doubled_completion(true);
    first.unwrap();
    let e = second.unwrap_err();
    assert_eq!(e.status, Status::Protocol, "{}", e.message);
    assert!(e.message.contains("stale or doubled"), "{}", e.message);
}

#[test]
fn a_reference_child_cannot_be_checked() {
    let (first, second) = doubled_completion(false);
    first.unwrap();
    // The documented limit: without the echo the parent cannot tell.
    second.unwrap();
}
