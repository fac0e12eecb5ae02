//! The clock of the figures and the trace: `ticks()` is read on the hot
//! path (once per submit and once per batch of completions), so it is the
//! CPU's time-stamp counter where the kernel itself keeps time with it
//! (x86_64 with the `tsc` clocksource: invariant and synchronised across
//! cores; about 10 ns a read, where the monotonic clock takes 40-50 ns in a
//! VM), and nanoseconds of the monotonic clock elsewhere. Ticks become
//! nanoseconds only off the hot path (`Scale`), at the rate measured since
//! the clock started.

use once_cell::sync::Lazy;
use std::time::Instant;

/// Where ticks start, and what they count.
struct Start {
    at: Instant,
    ticks: u64,
    tsc: bool,
}

static START: Lazy<Start> = Lazy::new(|| {
    let tsc = tsc_keeps_time();
    Start {
        at: Instant::now(),
        ticks: if tsc { read_tsc() } else { 0 },
        tsc,
    }
});

/// Whether the kernel keeps time with the TSC (so it is invariant and
/// synchronised across cores).
fn tsc_keeps_time() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|s| s.trim() == "tsc")
}

#[cfg(target_arch = "x86_64")]
fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no preconditions; every x86_64 CPU has it.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn read_tsc() -> u64 {
    unreachable!("the TSC is used on x86_64 only")
}

/// Starts the clock (reads the clocksource once), off the hot path.
pub fn init() {
    Lazy::force(&START);
}

/// Now, in ticks: only differences and `to_ns` mean anything.
#[inline]
pub fn ticks() -> u64 {
    let s = &*START;
    if s.tsc {
        read_tsc()
    } else {
        s.at.elapsed().as_nanos() as u64
    }
}

/// Nanoseconds per tick, as measured since the clock started.
fn ns_per_tick() -> f64 {
    let s = &*START;
    if !s.tsc {
        return 1.0;
    }
    let ns = s.at.elapsed().as_nanos() as f64;
    let ticks = read_tsc().saturating_sub(s.ticks) as f64;
    if ticks <= 0.0 {
        return 1.0;
    }
    ns / ticks
}

/// Converts tick values to nanoseconds with one rate (for many at once).
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    ns_per_tick: f64,
    origin: u64,
}

impl Scale {
    /// The rate now.
    pub fn now() -> Scale {
        Scale {
            ns_per_tick: ns_per_tick(),
            origin: START.ticks,
        }
    }

    /// Ticks that are nanoseconds from 0 (for tests of what converts).
    #[cfg(test)]
    pub fn identity() -> Scale {
        Scale {
            ns_per_tick: 1.0,
            origin: 0,
        }
    }

    /// A duration in ticks, in nanoseconds.
    pub fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick) as u64
    }

    /// A time read from `ticks()`, in nanoseconds since the clock started.
    pub fn since_start_ns(&self, ticks: u64) -> u64 {
        self.ns(ticks.saturating_sub(self.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_measure_time() {
        init();
        let (t0, i0) = (ticks(), Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t1, i1) = (ticks(), Instant::now());
        let s = Scale::now();
        let ns = s.ns(t1 - t0) as f64;
        let real = (i1 - i0).as_nanos() as f64;
        assert!(
            (ns - real).abs() < real * 0.05 + 100_000.0,
            "{ns} vs {real}"
        );
        assert!(s.since_start_ns(t1) >= s.since_start_ns(t0));
    }
}
