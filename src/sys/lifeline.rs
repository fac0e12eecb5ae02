//! Lifelines: what ties a spawned child to its host process, and how a
//! runtime tells that it is a copy made by `fork()`.
//!
//! Each spawned child gets a pipe. The host keeps the write end
//! (close-on-exec) and nobody else does: every fork of the host closes its
//! copies of all write ends at once, in a `pthread_atfork` child handler.
//! So the write end closes exactly when the host process dies (exits,
//! crashes or is killed), whichever of its threads spawned the child. The
//! child keeps the read end with `O_ASYNC` and SIGKILL as its I/O signal:
//! the hang-up kills it at once, even in the middle of a callable. A
//! parent-death signal cannot do this: it follows the thread that forked,
//! not the process.
//!
//! The same handler counts forks: a runtime remembers the count it was
//! created under, and a different count means it runs in a copy of its
//! process, where it must touch nothing it shares with the original. Copies
//! that skip the handlers (`_Fork`, a raw `clone`) are told by a page the
//! kernel wipes in every copy (`MADV_WIPEONFORK`, Linux 4.14): it holds the
//! pid of the process that marked it, and reads 0 in a copy.

use crate::status::{Error, Result};
use std::cell::UnsafeCell;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

/// The write ends this process holds, behind a lock a fork respects.
struct Registry {
    locked: AtomicBool,
    fds: UnsafeCell<Vec<RawFd>>,
}

// SAFETY: `fds` is only accessed with `locked` held (see `with_fds` and the
// fork handlers), which makes every access exclusive.
unsafe impl Sync for Registry {}

static REGISTRY: Registry = Registry {
    locked: AtomicBool::new(false),
    fds: UnsafeCell::new(Vec::new()),
};

/// Forks of this process's ancestors and of itself seen so far (bumped in
/// every child of a fork, before it returns from `fork`).
static FORKS: AtomicU64 = AtomicU64::new(0);

fn lock() {
    while REGISTRY
        .locked
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

fn unlock() {
    REGISTRY.locked.store(false, Ordering::Release);
}

fn with_fds<T>(f: impl FnOnce(&mut Vec<RawFd>) -> T) -> T {
    lock();
    // SAFETY: the lock is held, so this is the only reference to the vector.
    let r = f(unsafe { &mut *REGISTRY.fds.get() });
    unlock();
    r
}

extern "C" fn before_fork() {
    // Held across the fork, so the child's copy of the registry is whole.
    lock();
}

extern "C" fn after_fork_in_parent() {
    unlock();
}

extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `before_fork` took the lock in the forking thread, the only
    // thread of this new process, so the vector is ours alone.
    let fds = unsafe { &mut *REGISTRY.fds.get() };
    for &fd in fds.iter() {
        // SAFETY: closing this process's copy of a write end it must not keep.
        unsafe { libc::close(fd) };
    }
    fds.clear();
    unlock();
}

/// Installs the fork handlers (once per process). Runtimes call it when
/// they are created, so every later fork is counted.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: registering three `extern "C"` functions that live as long
        // as the library; they only touch the registry and the counter.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
    });
}

/// The fork count of this process: it differs from the value a runtime
/// saw at creation exactly when the runtime runs in a forked copy.
pub fn fork_generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// One word on a page the kernel zeroes in every copy of the process made
/// by fork, `_Fork` or clone without shared memory (MADV_WIPEONFORK).
/// 0 also where the kernel cannot wipe (then only the fork count tells).
struct Mark(*mut AtomicU64);

// SAFETY: the word is only accessed atomically.
unsafe impl Sync for Mark {}
// SAFETY: as above; the page lives as long as the process.
unsafe impl Send for Mark {}

fn mark_word() -> Option<&'static AtomicU64> {
    static MARK: once_cell::sync::OnceCell<Option<Mark>> = once_cell::sync::OnceCell::new();
    let mark = MARK.get_or_init(|| {
        // SAFETY: a fresh private anonymous page, never unmapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: madvise on the page just mapped.
        if unsafe { libc::madvise(p, 4096, libc::MADV_WIPEONFORK) } != 0 {
            // SAFETY: unmapping the page just mapped, which nobody uses.
            unsafe { libc::munmap(p, 4096) };
            return None;
        }
        Some(Mark(p as *mut AtomicU64))
    });
    // SAFETY: the page is mapped for the life of the process and holds an
    // aligned u64 at its start.
    mark.as_ref().map(|m| unsafe { &*m.0 })
}

/// Marks this process as the owner of what it creates now; returns the mark
/// (its pid, or 0 where the kernel cannot wipe a page on fork).
pub fn process_mark() -> u64 {
    match mark_word() {
        Some(w) => {
            let pid = crate::sys::getpid() as u64;
            w.store(pid, Ordering::Relaxed);
            pid
        }
        None => 0,
    }
}

/// Whether the mark `made` (from `process_mark`) was made in another
/// process: this one is a copy. One load; false where pages cannot be wiped.
pub fn marked_elsewhere(made: u64) -> bool {
    made != 0 && mark_word().is_some_and(|w| w.load(Ordering::Relaxed) != made)
}

/// `fcntl` command choosing the signal of an `O_ASYNC` descriptor (Linux;
/// the libc crate exports it for some targets only).
const F_SETSIG: libc::c_int = 10;

/// The host's end of one child's lifeline: closing it (on drop, or by the
/// host's death) kills the child.
#[derive(Debug)]
pub struct Lifeline {
    write: RawFd,
    /// The fork generation it was made in: a forked copy of the host
    /// already closed its descriptor and must not close the number again.
    generation: u64,
}

impl Lifeline {
    /// A new lifeline: the host's end, and the end to hand to the child
    /// (which passes it to [`hold`] right after the fork).
    pub fn new() -> Result<(Lifeline, OwnedFd)> {
        init();
        with_fds(|fds| {
            let mut p = [0; 2];
            // SAFETY: `p` has room for the two descriptors pipe2 writes.
            if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(Error::last_os("pipe2 for a child's lifeline"));
            }
            fds.push(p[1]);
            let host = Lifeline {
                write: p[1],
                generation: fork_generation(),
            };
            // SAFETY: a fresh descriptor this process owns.
            Ok((host, unsafe { OwnedFd::from_raw_fd(p[0]) }))
        })
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        if self.generation != fork_generation() {
            return; // closed by the fork handler in this copy of the host
        }
        // Under the lock, so no fork copies the descriptor half-forgotten.
        with_fds(|fds| {
            fds.retain(|&f| f != self.write);
            // SAFETY: our write end, closed once, here.
            unsafe { libc::close(self.write) };
        });
    }
}

/// Child side, first thing after the fork: arms the read end so the host's
/// death delivers SIGKILL. Returns false when the host is already gone.
pub fn hold(read: OwnedFd) -> bool {
    let fd = read.into_raw_fd();
    // SAFETY: fcntl on a descriptor this process owns, with documented
    // commands; a failure leaves the serving loop's parent check in force.
    unsafe {
        libc::fcntl(fd, libc::F_SETOWN, libc::getpid());
        libc::fcntl(fd, F_SETSIG, libc::SIGKILL);
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC);
    }
    // A host that died before the signal was armed left a hung-up pipe.
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd, no waiting.
    unsafe { libc::poll(&mut p, 1, 0) };
    p.revents & libc::POLLHUP == 0
}
