//! The dispatcher thread: makes progress while the host does other things,
//! spinning while work is in flight and sleeping on the doorbell otherwise;
//! it steps aside while a host thread waits and polls itself.

use super::Progress;
use crate::doorbell::Sleeper;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Progress {
    /// The dispatcher thread's body: runs until `stop` is set and nothing is
    /// in flight.
    pub fn run_dispatcher(&self) {
        let mut last_event = Instant::now();
        let mut spins = 0u32;
        loop {
            let polling_caller = self.bell.callers() > 0;
            if !polling_caller && self.poll() > 0 {
                last_event = Instant::now();
                continue;
            }
            let busy = self.busy();
            if !busy && self.stop.load(Ordering::Acquire) {
                return;
            }
            // Spin while work is in flight that a pool thread will not hand
            // over itself, reading the clock only now and then.
            if busy && !polling_caller && self.busy_elsewhere() {
                spins = spins.wrapping_add(1);
                if !spins.is_multiple_of(64) {
                    std::hint::spin_loop();
                    continue;
                }
                self.check_deadlines();
                if last_event.elapsed() < self.policy.spin {
                    continue;
                }
            }
            let seq = self.bell.prepare_sleep(Sleeper::Dispatcher);
            let polling_caller = self.bell.callers() > 0;
            if self.stop.load(Ordering::Acquire) || (!polling_caller && self.poll() > 0) {
                self.bell.cancel_sleep(Sleeper::Dispatcher);
                last_event = Instant::now();
                continue;
            }
            // A polling caller rings when it leaves if work that never rings
            // remains; otherwise serving sides ring. The timeout is a safety tick.
            let nap = if !polling_caller && self.deaf_busy() {
                self.policy.poll
            } else {
                self.policy.idle
            };
            self.bell
                .sleep(Sleeper::Dispatcher, seq, Some(self.nap_bound(nap)));
            self.check_deadlines();
            last_event = Instant::now();
        }
    }
}
