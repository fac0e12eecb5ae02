//! Launching: what the engine decided to run goes into the workers'
//! mailboxes, under the engine lock, in the order decided.

use super::Progress;
use crate::abi::DistCallConfig;
use crate::engine::{token_launch, Engine, Launch};
use crate::log::{self, Level};
use crate::mailbox::state;
use crate::status::{Error, Status};
use crate::worker::Worker;
use std::sync::atomic::Ordering;

impl Progress {
    /// Carries out the engine's pending launches. A group is checked whole
    /// before any member is published: a worker whose mailbox is not IDLE
    /// (a child wrote TASK_READY, or garbage) breaks the protocol, leaves
    /// the pool, and the group goes back to its queue; nothing is lost.
    pub(super) fn launch(&self, engine: &mut Engine) {
        if !engine.has_launches() {
            return;
        }
        let workers = self.workers();
        let mut deaf = false;
        loop {
            let orders = engine.take_launches();
            if orders.is_empty() {
                engine.give_back_launches(orders);
                break;
            }
            for group in orders.chunk_by(|a, b| a.slot == b.slot) {
                if let Some(bad) = group
                    .iter()
                    .find(|o| workers[o.worker as usize].mailbox.state() != state::IDLE)
                {
                    let w = &workers[bad.worker as usize];
                    let cause = Error::new(
                        Status::Protocol,
                        format!(
                            "{w} held state {} in its mailbox while idle; it leaves the pool",
                            w.mailbox.state()
                        ),
                    );
                    engine.refuse_launch(group, bad.worker, cause);
                    continue;
                }
                for o in group {
                    deaf |= self.publish(engine, o);
                    if log::enabled(Level::Debug) {
                        let id = engine.task_of_slot(o.slot);
                        let w = &workers[o.worker as usize];
                        engine.note(
                            Level::Debug,
                            format!("task {id:#x} member {} launched on {w}", o.member),
                        );
                    }
                }
            }
            engine.give_back_launches(orders);
        }
        // Whoever waits for completions sleeps until a worker rings; a worker
        // that never rings (caller-owned) must switch them to timed polls.
        if deaf {
            self.bell.ring();
        }
    }

    /// Writes one member into its worker's mailbox and publishes it; then
    /// the worker is in flight. Returns whether that worker never rings.
    fn publish(&self, engine: &Engine, o: &Launch) -> bool {
        let worker = &self.workers()[o.worker as usize];
        if self.policy.task_timeout.is_some() {
            worker
                .launched_at
                .store(crate::worker::now_ns(), Ordering::Relaxed);
        }
        #[cfg(feature = "mpi")]
        worker
            .launch
            .store((o.slot as u64) << 32 | o.member as u64, Ordering::Relaxed);
        let (callable, config, blob, large) = engine.payload(o.slot, o.member);
        let woke = match large {
            None => launch_member(worker, callable, config, blob, o.token),
            Some(addr) => {
                // SAFETY: the engine reserved blob.len() bytes of the shared
                // heap at `addr` for this member, untouched by anyone else.
                unsafe {
                    std::ptr::copy_nonoverlapping(blob.as_ptr(), addr as *mut u8, blob.len())
                };
                let mb = &worker.mailbox;
                mb.write_task_large(callable, config, addr, blob.len(), token_launch(o.token));
                let woke = mb.publish(state::TASK_READY);
                worker.in_flight.store(o.token, Ordering::Release);
                woke
            }
        };
        self.last_launch_woke.store(woke, Ordering::Relaxed);
        !worker.rings()
    }
}

/// Hands one task member to an idle `worker`: the payload and the launch's
/// sequence number go into the mailbox, TASK_READY is published (release:
/// every payload byte is visible first), and only then is the token stored,
/// so a claimer never sees a token whose launch is not published. Called
/// under the engine lock, which owns idle workers. Returns whether the
/// serving side had to be woken from sleep.
pub(crate) fn launch_member(
    worker: &Worker,
    callable: u64,
    config: &DistCallConfig,
    blob: &[u8],
    token: u64,
) -> bool {
    let mb = &worker.mailbox;
    mb.write_task(callable, config, blob, token_launch(token));
    let woke = mb.publish(state::TASK_READY);
    worker.in_flight.store(token, Ordering::Release);
    woke
}
