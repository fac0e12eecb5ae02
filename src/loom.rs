//! The atomics of the hand-off between a parent and its serving sides:
//! std's, or loom's when the crate is built for model checking
//! (`RUSTFLAGS="--cfg loom"`). The mailbox words, the in-flight tokens and
//! the fences between them come from here, so loom checks the library's
//! own hand-off code (`progress::loom_model`), not a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};

/// A busy-wait hint (under loom, a point where another thread may run).
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::hint::spin_loop();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Gives the processor to another thread.
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
