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
        assert!(mb.complete(0, mb.launch_seq()));
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

/// A callable of the library's own serving loop that stores TASK_DONE for
/// its task early (echoing the launch correctly) and returns only once the
/// parent has launched the next task: the loop's own TASK_DONE then echoes
/// the launch it took, not the next one, so the next task cannot pass for
/// run.
#[test]
fn an_early_completion_from_inside_a_callable_is_a_protocol_error() {
    let rt = Runtime::new(Options::default()).unwrap();
    let owned = OwnedMailbox::new().unwrap();
    let mb = owned.handle();
    rt.add_process(WorkerType::Sub, mb).unwrap();
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = runs.clone();
    let server = std::thread::spawn(move || {
        let mut handler = |callable: u64, _: &dist_worker::TaskView<'_>, _: &_| {
            if callable == 71 {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return 0;
            }
            // Callable 70: the stray completion, then wait for the next launch.
            let seq = mb.launch_seq();
            // SAFETY: offset 44 (done_seq) of the live 4096-byte mailbox,
            // written by the serving side while it owns the mailbox.
            unsafe { (mb.as_ptr().add(44) as *mut u32).write_volatile(seq) };
            mb.set_state(state::TASK_DONE);
            let t = Instant::now();
            while !(mb.state() == state::TASK_READY && mb.launch_seq() != seq) {
                assert!(t.elapsed() < Duration::from_secs(10), "no next launch");
                std::thread::yield_now();
            }
            0
        };
        dist_worker::wire::serve(mb, &mut handler, &Default::default())
    });
    let none = [Args::default()];
    let first = rt.submit(&spec(WorkerType::Sub, 70, &none)).unwrap();
    rt.wait(first).unwrap();
    let second = rt.submit(&spec(WorkerType::Sub, 71, &none)).unwrap();
    let e = rt.wait(second).unwrap_err();
    assert_eq!(e.status, Status::Protocol, "{}", e.message);
    assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 0);
    let _ = rt.drain();
    rt.shutdown().ok();
    let _ = server.join();
    drop(owned);
}
