//! The unified mailbox: 4096 bytes of shared memory between a parent and
//! the worker that serves it (a child process, or a pool thread).
//!
//! The wire layout and protocol are fixed (docs/protocol.md);
//! this module is the only code that touches mailbox bytes. The parent owns
//! the mailbox while it is IDLE or TASK_DONE, the serving side while it is
//! TASK_READY.
//!
//! Extensions live in the reserved bytes 32..64, which reference children
//! leave zero and ignore:
//! - offset 32, `u32 waiter`: 1 while the serving side sleeps on the state
//!   word with a futex; the parent wakes it after publishing TASK_READY or
//!   SHUTDOWN. A reference child never sets it, so it is never woken (it polls).
//! - offset 36, `u32 message_len`: bytes of an error message the serving
//!   side left at the start of the blob area with a failed TASK_DONE.
//! - offset 40, `u32 launch_seq`: written by the parent with each task.
//! - offset 44, `u32 done_seq`: the serving side copies `launch_seq` here
//!   before it stores TASK_DONE, so the parent can tell a completion of
//!   this launch from a stale or doubled one.
//! - offset 48, `u32 features`: set by a library serving loop when it
//!   starts (`FEATURE_ECHO`: it fills `done_seq`). A reference child leaves
//!   it zero, and its completions cannot be told apart.

use crate::abi::{self, DistCallConfig};
use crate::loom::{fence, AtomicU32, AtomicU64};
#[cfg(not(loom))]
use crate::sys;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod owned;

/// Mailbox size in bytes.
pub const SIZE: usize = abi::DIST_MAILBOX_SIZE as usize;

#[cfg(loom)]
use owned::LoomWords;
pub use owned::OwnedMailbox;

/// Offset of the args blob.
pub const OFF_ARGS: usize = abi::DIST_MAILBOX_OFF_ARGS as usize;
/// Capacity of the args blob.
pub const ARGS_CAPACITY: usize = abi::DIST_MAILBOX_ARGS_CAPACITY as usize;
/// Offset of the `waiter` extension word.
pub const OFF_WAITER: usize = 32;
/// Offset of the `message_len` extension word: bytes of an error message a
/// library child left at the start of the blob area with its TASK_DONE.
pub const OFF_MESSAGE_LEN: usize = 36;
/// Longest error message a child can return.
pub const MESSAGE_CAPACITY: usize = 2048;
/// Offset of the `launch_seq` extension word (parent → serving side).
pub const OFF_LAUNCH_SEQ: usize = 40;
/// Offset of the `done_seq` extension word (serving side → parent).
pub const OFF_DONE_SEQ: usize = 44;
/// Offset of the `features` extension word (set by a library serving loop).
pub const OFF_FEATURES: usize = 48;
/// `features` bit: the serving side echoes `launch_seq` into `done_seq`.
pub const FEATURE_ECHO: u32 = 1;
/// `features` bit: the serving side reads blobs from the heap (`OFF_LARGE`).
pub const FEATURE_LARGE_ARGS: u32 = 2;
/// Offset of the `large` extension word: 1 when the blob area holds the
/// address (u64) and length (u64) of a blob in the parent's shared heap.
pub const OFF_LARGE: usize = 52;

/// State word values.
pub mod state {
    /// No task.
    pub const IDLE: u32 = 0;
    /// Task published by the parent.
    pub const TASK_READY: u32 = 1;
    /// Task finished; error valid.
    pub const TASK_DONE: u32 = 2;
    /// Serving side must exit.
    pub const SHUTDOWN: u32 = 3;
    /// Extension, written by a spawned child before it serves: its init
    /// function failed (the error field holds the code).
    pub const INIT_FAILED: u32 = 4;
    /// Extension, written by a spawned child before it serves: it is ready.
    /// The parent answers with IDLE when the pool starts.
    pub const CHILD_READY: u32 = 5;
}

/// The config defaults of the wire contract: block_dim 24, aicpu_thread_num 3, flags off.
impl Default for DistCallConfig {
    fn default() -> Self {
        DistCallConfig {
            block_dim: 24,
            aicpu_thread_num: 3,
            enable_profiling: false,
            enable_dump_tensor: false,
        }
    }
}

/// A handle to one mailbox's memory. It does not own the memory: whoever
/// created it keeps the 4096 bytes mapped while any handle is used.
#[derive(Clone, Copy, Debug)]
pub struct Mailbox {
    base: NonNull<u8>,
}

// SAFETY: all shared fields are accessed through atomics; the payload bytes
// are handed over with release/acquire on the state word.
unsafe impl Send for Mailbox {}
// SAFETY: as above.
unsafe impl Sync for Mailbox {}

impl Mailbox {
    /// Wraps raw mailbox memory.
    ///
    /// # Safety
    /// `base` must be 8-byte aligned and point to `SIZE` bytes that stay
    /// mapped and writable for as long as the handle (or a copy) is used.
    pub unsafe fn from_raw(base: NonNull<u8>) -> Mailbox {
        debug_assert_eq!(base.as_ptr() as usize % 8, 0);
        Mailbox { base }
    }

    /// Base address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    #[cfg(not(loom))]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: off is a fixed, 4-aligned offset below SIZE; the memory is
        // valid per `from_raw`'s contract and only accessed atomically.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU32) }
    }

    #[cfg(not(loom))]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        // SAFETY: as in `u32_at`; off is 8-aligned and the base is too.
        unsafe { &*(self.base.as_ptr().add(off) as *const AtomicU64) }
    }

    #[cfg(not(loom))]
    fn bytes(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    #[cfg(loom)]
    fn words(&self) -> &LoomWords {
        // SAFETY: under loom every handle comes from an `OwnedMailbox`,
        // whose `LoomWords` outlive it.
        unsafe { &*(self.base.as_ptr() as *const LoomWords) }
    }

    #[cfg(loom)]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        &self.words().u32s[off / 4]
    }

    #[cfg(loom)]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert_eq!(off, abi::DIST_MAILBOX_OFF_CALLABLE as usize);
        &self.words().callable
    }

    #[cfg(loom)]
    fn bytes(&self) -> *mut u8 {
        self.words().bytes.get().cast()
    }

    /// The error field as stored (an int32's bits).
    fn error_word(&self) -> &AtomicU32 {
        self.u32_at(abi::DIST_MAILBOX_OFF_ERROR as usize)
    }

    /// Wakes a serving side asleep on the state word.
    fn wake_state(&self) {
        #[cfg(not(loom))]
        sys::futex_wake(self.state_word(), 1);
    }

    /// Sleeps while the state word holds `s`, at most `nap`.
    fn sleep_on_state(&self, s: u32, nap: Duration) {
        #[cfg(not(loom))]
        sys::futex_wait(self.state_word(), s, Some(nap));
        #[cfg(loom)]
        {
            let _ = (s, nap);
            crate::loom::yield_now();
        }
    }

    /// The state word (also the futex the serving side sleeps on).
    pub fn state_word(&self) -> &AtomicU32 {
        self.u32_at(abi::DIST_MAILBOX_OFF_STATE as usize)
    }

    /// Current state, acquire: payload written before it is visible.
    pub fn state(&self) -> u32 {
        self.state_word().load(Ordering::Acquire)
    }

    /// Stores a state with release ordering (no wake-up).
    pub fn set_state(&self, s: u32) {
        self.state_word().store(s, Ordering::Release);
    }

    /// Parent side, after claiming a completion: TASK_DONE becomes IDLE
    /// (a compare-and-swap, so a SHUTDOWN written meanwhile stays).
    pub fn hand_back(&self) {
        let _ = self.state_word().compare_exchange(
            state::TASK_DONE,
            state::IDLE,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// The error field.
    pub fn error(&self) -> i32 {
        self.error_word().load(Ordering::Relaxed) as i32
    }

    /// Parent side: writes callable, config (field by field), blob and the
    /// launch's sequence number. Only valid while the parent owns the mailbox.
    pub fn write_task(&self, callable: u64, config: &DistCallConfig, blob: &[u8], seq: u32) {
        assert!(blob.len() <= ARGS_CAPACITY, "blob checked at submit");
        self.u32_at(OFF_MESSAGE_LEN).store(0, Ordering::Relaxed);
        self.u32_at(OFF_LAUNCH_SEQ).store(seq, Ordering::Relaxed);
        self.u32_at(OFF_LARGE).store(0, Ordering::Relaxed);
        self.u64_at(abi::DIST_MAILBOX_OFF_CALLABLE as usize)
            .store(callable, Ordering::Relaxed);
        let words = [
            (abi::DIST_MAILBOX_OFF_BLOCK_DIM, config.block_dim),
            (
                abi::DIST_MAILBOX_OFF_AICPU_THREAD_NUM,
                config.aicpu_thread_num,
            ),
            (
                abi::DIST_MAILBOX_OFF_ENABLE_PROFILING,
                config.enable_profiling as i32,
            ),
            (
                abi::DIST_MAILBOX_OFF_ENABLE_DUMP_TENSOR,
                config.enable_dump_tensor as i32,
            ),
        ];
        for (off, v) in words {
            self.u32_at(off as usize).store(v as u32, Ordering::Relaxed);
        }
        // SAFETY: the parent owns the mailbox now (IDLE); the blob region is
        // OFF_ARGS..SIZE and blob.len() <= ARGS_CAPACITY.
        unsafe {
            std::ptr::copy_nonoverlapping(blob.as_ptr(), self.bytes().add(OFF_ARGS), blob.len());
        }
    }

    /// Parent side: publishes `s` (TASK_READY) and wakes a
    /// serving side that sleeps on the state word. Returns whether it had to
    /// wake one (so the task will take a wake-up, not a spin, to start).
    pub fn publish(&self, s: u32) -> bool {
        self.state_word().store(s, Ordering::Release);
        // Pairs with the fence in `wait_for_work`: either the sleeper sees
        // the new state, or we see its waiter flag.
        fence(Ordering::SeqCst);
        let asleep = self.u32_at(OFF_WAITER).load(Ordering::Relaxed) != 0;
        if asleep {
            self.wake_state();
        }
        asleep
    }

    /// Parent side: publishes SHUTDOWN, whatever the mailbox holds (an
    /// exchange, so it is ordered after any completion stored before it),
    /// and wakes a sleeping serving side.
    pub fn shut_down(&self) {
        self.state_word().swap(state::SHUTDOWN, Ordering::AcqRel);
        fence(Ordering::SeqCst);
        if self.u32_at(OFF_WAITER).load(Ordering::Relaxed) != 0 {
            self.wake_state();
        }
    }

    /// Serving side: the callable of the published task.
    pub fn callable(&self) -> u64 {
        self.u64_at(abi::DIST_MAILBOX_OFF_CALLABLE as usize)
            .load(Ordering::Relaxed)
    }

    /// Serving side: the config of the published task.
    pub fn config(&self) -> DistCallConfig {
        let get = |off: u32| self.u32_at(off as usize).load(Ordering::Relaxed) as i32;
        DistCallConfig {
            block_dim: get(abi::DIST_MAILBOX_OFF_BLOCK_DIM),
            aicpu_thread_num: get(abi::DIST_MAILBOX_OFF_AICPU_THREAD_NUM),
            enable_profiling: get(abi::DIST_MAILBOX_OFF_ENABLE_PROFILING) != 0,
            enable_dump_tensor: get(abi::DIST_MAILBOX_OFF_ENABLE_DUMP_TENSOR) != 0,
        }
    }

    /// Serving side: the args blob, 8-byte aligned.
    ///
    /// Valid while the serving side owns the mailbox (TASK_READY).
    pub fn blob(&self) -> &[u8] {
        // SAFETY: OFF_ARGS..SIZE lies inside the mailbox; the parent does not
        // write it while the state is TASK_READY.
        let area = unsafe { std::slice::from_raw_parts(self.bytes().add(OFF_ARGS), ARGS_CAPACITY) };
        if self.u32_at(OFF_LARGE).load(Ordering::Relaxed) != 1 {
            return area;
        }
        let word = |i: usize| u64::from_le_bytes(area[i..i + 8].try_into().expect("8 bytes"));
        let (addr, len) = (word(0), word(8));
        if addr == 0
            || addr % 8 != 0
            || len > crate::blob::ARGS_LIMIT as u64
            || !crate::sys::is_mapped(addr, len as usize)
        {
            // Decodes as a bad blob. Unmapped: a process started apart
            // from the host does not map its heap ring.
            return &area[..0];
        }
        // SAFETY: the parent wrote the blob at `addr` in its MAP_SHARED heap,
        // which this serving side maps at the same address (it was forked
        // after the heap was made, or is a thread; checked mapped above),
        // before TASK_READY.
        unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) }
    }

    /// Parent side: as `write_task`, for a blob already in the shared heap
    /// at `addr` (`len` bytes): the blob area gets its address and length.
    pub fn write_task_large(
        &self,
        callable: u64,
        config: &DistCallConfig,
        addr: u64,
        len: usize,
        seq: u32,
    ) {
        let mut descriptor = [0u8; 16];
        descriptor[..8].copy_from_slice(&addr.to_le_bytes());
        descriptor[8..].copy_from_slice(&(len as u64).to_le_bytes());
        self.write_task(callable, config, &descriptor, seq);
        self.u32_at(OFF_LARGE).store(1, Ordering::Relaxed);
    }

    /// Whether the serving side announced that it reads large blobs.
    pub fn speaks_large_args(&self) -> bool {
        self.u32_at(OFF_FEATURES).load(Ordering::Acquire) & FEATURE_LARGE_ARGS != 0
    }

    /// Serving side, before `complete`: leaves an error message (cut to
    /// `MESSAGE_CAPACITY` bytes) in the blob area, which the task no longer needs.
    pub fn set_message(&self, message: &[u8]) {
        let n = message.len().min(MESSAGE_CAPACITY);
        // SAFETY: the serving side owns the mailbox (TASK_READY, or before
        // it announces itself); the blob area holds at least
        // MESSAGE_CAPACITY bytes.
        unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), self.bytes().add(OFF_ARGS), n) };
        self.u32_at(OFF_MESSAGE_LEN)
            .store(n as u32, Ordering::Relaxed);
    }

    /// Parent side, at TASK_DONE: the message a library child left, if any.
    /// Reference children never write it, and `write_task` clears it.
    pub fn message(&self) -> Option<String> {
        // A longer length (a foreign child's) is cut to the capacity.
        let n =
            (self.u32_at(OFF_MESSAGE_LEN).load(Ordering::Relaxed) as usize).min(MESSAGE_CAPACITY);
        if n == 0 {
            return None;
        }
        // SAFETY: the parent owns the mailbox at TASK_DONE; n is in bounds.
        let bytes = unsafe { std::slice::from_raw_parts(self.bytes().add(OFF_ARGS), n) };
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Serving side, before its loop: announces readiness (`error == 0`) or
    /// a failed init (its code).
    ///
    /// Returns false, and leaves the state alone, when the parent wrote
    /// SHUTDOWN first (it shut down before start): the child should leave.
    pub fn announce(&self, error: i32) -> bool {
        let s = if error == 0 {
            state::CHILD_READY
        } else {
            self.error_word().store(error as u32, Ordering::Relaxed);
            state::INIT_FAILED
        };
        self.state_word()
            .compare_exchange(state::IDLE, s, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Serving side, at TASK_READY: the sequence number of the launch it is
    /// about to run (echoed by `complete`).
    pub fn launch_seq(&self) -> u32 {
        self.u32_at(OFF_LAUNCH_SEQ).load(Ordering::Relaxed)
    }

    /// Serving side: reports a finished task, echoing `seq`, the launch
    /// sequence read when the task was taken (`launch_seq`): read at
    /// completion it could already be the next launch's, had a stray
    /// TASK_DONE let the parent move on. Returns false, and leaves the state
    /// alone, when the parent wrote something else meanwhile (SHUTDOWN at a
    /// deadline): a late completion never erases it.
    pub fn complete(&self, error: i32, seq: u32) -> bool {
        self.error_word().store(error as u32, Ordering::Relaxed);
        self.u32_at(OFF_DONE_SEQ).store(seq, Ordering::Relaxed);
        #[cfg(loom)]
        if crate::progress::loom_model::bugs::plain_complete() {
            self.state_word().store(state::TASK_DONE, Ordering::Release);
            return true;
        }
        self.state_word()
            .compare_exchange(
                state::TASK_READY,
                state::TASK_DONE,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Serving side, before it serves: says which extensions it speaks.
    pub fn announce_features(&self, features: u32) {
        self.u32_at(OFF_FEATURES)
            .fetch_or(features, Ordering::Release);
    }

    /// The `done_seq` word (for messages).
    pub fn done_seq(&self) -> u32 {
        self.u32_at(OFF_DONE_SEQ).load(Ordering::Relaxed)
    }

    /// Parent side, at TASK_DONE: whether the completion is provably of the
    /// launch numbered `seq` (`Some(false)`: it is not), or cannot be told
    /// (None: the serving side does not echo, like a reference child).
    pub fn completes_launch(&self, seq: u32) -> Option<bool> {
        if self.u32_at(OFF_FEATURES).load(Ordering::Acquire) & FEATURE_ECHO == 0 {
            return None;
        }
        Some(self.u32_at(OFF_DONE_SEQ).load(Ordering::Relaxed) == seq)
    }

    /// Serving side: waits until the state is neither IDLE nor TASK_DONE.
    /// Spins for `spin` (yielding the processor between looks after the
    /// first microseconds, so a sibling with work gets the core), then sleeps
    /// on the state word for at most `nap` at a time. Returns the state
    /// seen, or None when `keep_going` says stop after a nap.
    pub fn wait_for_work(
        &self,
        spin: Duration,
        nap: Duration,
        keep_going: impl Fn() -> bool,
    ) -> Option<u32> {
        let idle = |s: u32| matches!(s, state::IDLE | state::TASK_DONE | state::CHILD_READY);
        let start = std::time::Instant::now();
        while !spin.is_zero() {
            for _ in 0..64 {
                let s = self.state();
                if !idle(s) {
                    return Some(s);
                }
                crate::loom::spin_loop();
            }
            let waited = start.elapsed();
            if waited >= spin {
                break;
            }
            if waited >= PURE_SPIN {
                crate::loom::yield_now();
            }
        }
        let waiter = self.u32_at(OFF_WAITER);
        loop {
            waiter.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let s = self.state();
            if !idle(s) {
                waiter.store(0, Ordering::Relaxed);
                return Some(s);
            }
            self.sleep_on_state(s, nap);
            waiter.store(0, Ordering::Relaxed);
            let s = self.state();
            if !idle(s) {
                return Some(s);
            }
            if !keep_going() {
                return None;
            }
        }
    }
}

/// How long a serving side spins without yielding: about a host's turnaround
/// between two tasks, so a hot worker never pays a yield, while a worker that
/// shares its core with the party it waits for lets it run soon.
const PURE_SPIN: Duration = Duration::from_nanos(PURE_SPIN_NS);
const PURE_SPIN_NS: u64 = 1000;

#[cfg(test)]
mod tests;
