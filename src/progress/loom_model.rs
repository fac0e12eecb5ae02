//! Model check, with loom, of the library's own hand-off code: the real
//! `launch_member` (parent publishes a task), `child::run_task` (serving
//! side runs it and completes with a compare-and-swap), `claim` (a poller
//! takes the completion) and `Mailbox::publish(SHUTDOWN)`, over a real
//! `Worker` whose mailbox words and token are loom atomics (`crate::loom`).
//! Only the engine is a stand-in: a queue under a loom mutex, as the real
//! engine is under its lock.
//!
//! Checked in every interleaving: each task runs once with its own payload,
//! each completion is claimed once (even with two pollers racing), a
//! completion carries its own task's error, a shutdown that follows the
//! last completion is never overwritten, and a drain never finishes early.
//! Deliberate bugs, switched on in the real code by `bugs`, must be caught.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test --release --lib loom -- --test-threads=1`.

/// Switches that put known bugs back into the real code, for the checks
/// that prove the model catches them. Off unless a test turns one on.
pub(crate) mod bugs {
    use std::sync::atomic::{AtomicBool, Ordering};

    static PLAIN_CLAIM: AtomicBool = AtomicBool::new(false);
    static IDLE_AFTER_COMPLETE: AtomicBool = AtomicBool::new(false);
    static PLAIN_COMPLETE: AtomicBool = AtomicBool::new(false);

    /// `claim` takes the token with a plain store instead of a CAS.
    pub(crate) fn plain_claim() -> bool {
        PLAIN_CLAIM.load(Ordering::Relaxed)
    }

    /// `claim` leaves IDLE to be stored after the engine heard of it.
    pub(crate) fn idle_after_complete() -> bool {
        IDLE_AFTER_COMPLETE.load(Ordering::Relaxed)
    }

    /// `Mailbox::complete` stores TASK_DONE without checking for SHUTDOWN.
    pub(crate) fn plain_complete() -> bool {
        PLAIN_COMPLETE.load(Ordering::Relaxed)
    }

    /// Which bug a test puts back.
    #[cfg(test)]
    #[derive(Clone, Copy)]
    pub(crate) enum Bug {
        PlainClaim,
        IdleAfterComplete,
        PlainComplete,
    }

    /// Puts `bug` back until dropped.
    #[cfg(test)]
    pub(crate) struct Injected(&'static AtomicBool);

    #[cfg(test)]
    impl Injected {
        pub(crate) fn new(bug: Bug) -> Injected {
            let flag = match bug {
                Bug::PlainClaim => &PLAIN_CLAIM,
                Bug::IdleAfterComplete => &IDLE_AFTER_COMPLETE,
                Bug::PlainComplete => &PLAIN_COMPLETE,
            };
            flag.store(true, Ordering::Relaxed);
            Injected(flag)
        }
    }

    #[cfg(test)]
    impl Drop for Injected {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bugs::{Bug, Injected};
    use crate::abi::DistCallConfig;
    use crate::blob;
    use crate::mailbox::{state, OwnedMailbox, FEATURE_ECHO};
    use crate::progress::claim::{claim, Claim};
    use crate::progress::launch::launch_member;
    use crate::worker::{Mode, Worker, WorkerType};
    use loom::sync::{Arc, Mutex};
    use loom::thread;
    use std::sync::atomic::Ordering;

    /// The engine's part, reduced to one worker and a queue.
    struct Engine {
        queued: Vec<u64>,
        idle: bool,
        unfinished: usize,
        completed: Vec<(u64, i32)>,
    }

    struct World {
        worker: Worker,
        _memory: OwnedMailbox,
        engine: Mutex<Engine>,
        ran: Mutex<Vec<u64>>,
    }

    /// The engine's pump: the next task goes to the idle worker, through
    /// the real launch. The token's low half is the payload, its high half
    /// the launch sequence (the payload again: unique, never 0).
    fn pump(w: &World, e: &mut Engine) {
        if !e.idle || e.queued.is_empty() {
            return;
        }
        let p = e.queued.remove(0);
        e.idle = false;
        let mut empty = Vec::new();
        blob::encode(&[], &[], &mut empty);
        launch_member(
            &w.worker,
            p,
            &DistCallConfig::default(),
            &empty,
            p | (p << 32),
        );
    }

    /// `Progress::poll` for one worker: the real claim, then the engine.
    fn poll(w: &World) {
        let Some((tok, found)) = claim(&w.worker) else {
            return;
        };
        let Claim::Done(error, _) = found else {
            panic!("claimed {found:?} with a task in flight");
        };
        let mut e = w.engine.lock().unwrap();
        e.completed.push((tok & 0xffff_ffff, error));
        e.unfinished -= 1;
        e.idle = true;
        if super::bugs::idle_after_complete() {
            drop(e);
            w.worker.mailbox.set_state(state::IDLE);
            e = w.engine.lock().unwrap();
        }
        pump(w, &mut e);
    }

    /// The serving side: the real `run_task` on each TASK_READY seen, in at
    /// most `steps` looks (loom cannot model an unbounded wait).
    fn serve(w: &World, steps: usize) {
        let mb = w.worker.mailbox;
        mb.announce_features(FEATURE_ECHO);
        for _ in 0..steps {
            match mb.state() {
                state::TASK_READY => {
                    let mut handler =
                        |callable: u64, _: &blob::TaskView<'_>, _: &DistCallConfig| {
                            w.ran.lock().unwrap().push(callable);
                            callable as i32 * 10
                        };
                    if !crate::child::run_task(mb, &mut handler) {
                        return; // SHUTDOWN came first
                    }
                }
                state::SHUTDOWN => return,
                _ => thread::yield_now(),
            }
        }
    }

    fn world(tasks: &[u64]) -> Arc<World> {
        let memory = OwnedMailbox::new().unwrap();
        let worker = Worker {
            ty: WorkerType::Sub,
            mode: Mode::Thread,
            mailbox: memory.handle(),
            in_flight: crate::loom::AtomicU64::new(0),
            index: 0,
            rank: 0,
            level: None,
            launched_at: std::sync::atomic::AtomicU64::new(0),
            launch: std::sync::atomic::AtomicU64::new(0),
        };
        Arc::new(World {
            worker,
            _memory: memory,
            engine: Mutex::new(Engine {
                queued: tasks.to_vec(),
                idle: true,
                unfinished: tasks.len(),
                completed: Vec::new(),
            }),
            ran: Mutex::new(Vec::new()),
        })
    }

    /// How the main thread ends the run.
    #[derive(Clone, Copy, PartialEq)]
    enum End {
        /// Drain (wait for no unfinished task), then publish SHUTDOWN.
        Drain,
        /// A deadline: retire the busy worker (its token taken under the
        /// lock) and publish SHUTDOWN at once, as shutdown does when work
        /// is overdue.
        Deadline,
    }

    /// Runs `tasks` through one worker with `pollers` claiming threads while
    /// the main thread ends the run as `end` says. Every side takes a
    /// bounded number of steps, so an execution may end with work left:
    /// safety is checked in every execution, completeness where the drain
    /// finished.
    fn check(tasks: &'static [u64], pollers: usize, steps: usize, end: End, bound: usize) {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(bound);
        model.check(move || {
            let w = world(tasks);
            pump(&w, &mut w.engine.lock().unwrap());
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
            // Drain, then shut down: SHUTDOWN is published once nothing is
            // unfinished, under the lock completions take.
            let mut shut = false;
            if end == End::Drain {
                for _ in 0..steps {
                    let e = w.engine.lock().unwrap();
                    if e.unfinished == 0 {
                        w.worker.mailbox.shut_down();
                        shut = true;
                        break;
                    }
                    drop(e);
                    thread::yield_now();
                }
            } else {
                let mut e = w.engine.lock().unwrap();
                if w.worker.in_flight.swap(0, Ordering::AcqRel) != 0 {
                    e.unfinished -= 1; // ended with TIMEOUT
                    e.idle = true;
                }
                e.queued.clear();
                w.worker.mailbox.shut_down();
            }
            child.join().unwrap();
            for p in polling {
                p.join().unwrap();
            }
            let e = w.engine.lock().unwrap();
            let ran = w.ran.lock().unwrap().clone();
            // The last value of the state word, read with a read-modify-write:
            // loom may hand a plain load an older value than the C++ model
            // allows after a store follows a compare-and-swap (loom issues
            // 282 and 389), and an RMW always reads the latest.
            let last_state = w.worker.mailbox.state_word().fetch_add(0, Ordering::SeqCst);
            if end == End::Deadline {
                assert_eq!(
                    last_state,
                    state::SHUTDOWN,
                    "SHUTDOWN overwritten after a deadline"
                );
                return;
            }
            assert!(ran.len() <= tasks.len(), "a task ran twice: {ran:?}");
            assert_eq!(
                &ran[..],
                &tasks[..ran.len()],
                "tasks ran once each, in order"
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
                    "drain finished before the last completion"
                );
                assert_eq!(last_state, state::SHUTDOWN, "SHUTDOWN overwritten");
            }
            assert_eq!(
                w.worker.in_flight.load(Ordering::Acquire) == 0,
                e.idle,
                "a worker is idle exactly when no token is in flight"
            );
        });
    }

    #[test]
    fn loom_one_task_one_poller() {
        check(&[1], 1, 3, End::Drain, 3);
    }

    #[test]
    fn loom_a_shutdown_at_the_deadline_is_never_overwritten() {
        check(&[1], 1, 3, End::Deadline, 3);
    }

    #[test]
    fn loom_two_tasks_back_to_back() {
        check(&[1, 2], 1, 4, End::Drain, 2);
    }

    #[test]
    fn loom_two_pollers_race_for_a_completion() {
        check(&[1], 2, 3, End::Drain, 2);
    }

    #[test]
    #[should_panic(expected = "claimed twice")]
    fn loom_catches_a_plain_store_instead_of_the_claim() {
        let _bug = Injected::new(Bug::PlainClaim);
        check(&[1], 2, 3, End::Drain, 2);
    }

    #[test]
    #[should_panic]
    fn loom_catches_idle_stored_after_completing() {
        let _bug = Injected::new(Bug::IdleAfterComplete);
        check(&[1], 1, 3, End::Drain, 3);
    }

    #[test]
    #[should_panic]
    fn loom_catches_a_completion_that_overwrites_shutdown() {
        let _bug = Injected::new(Bug::PlainComplete);
        check(&[1], 1, 3, End::Deadline, 3);
    }
}
