//! Thin safe wrappers over the system calls the runtime needs: shared
//! mappings, futexes, fork, reaping and the lifelines that tie children to
//! their host. Every `unsafe` system call of the crate lives here.

pub mod lifeline;

use crate::status::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// An anonymous `MAP_SHARED` mapping: children forked after it is made see
/// the same bytes at the same address. Unmapped on drop.
#[derive(Debug)]
pub struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; concurrent access
// to its contents is governed by the users (atomics in the mailbox).
unsafe impl Send for SharedMap {}
// SAFETY: as above; `&SharedMap` only hands out the base address.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` zeroed bytes, page aligned. `MAP_NORESERVE`: untouched pages cost nothing.
    pub fn new(len: usize) -> Result<SharedMap> {
        if len == 0 {
            return Err(Error::new(
                crate::status::Status::InvalidArgument,
                "a shared mapping needs at least one byte",
            ));
        }
        // SAFETY: anonymous mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os(&format!("mmap of {len} shared bytes")));
        }
        Ok(SharedMap {
            ptr: NonNull::new(p.cast()).expect("mmap returned NULL"),
            len,
        })
    }

    /// Base address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true: `new` refuses zero).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Sleeps while `word` holds `expected`, at most `timeout` (None = no limit).
/// Works across processes on `MAP_SHARED` memory. Returns on wake-up,
/// mismatch, timeout or signal; callers re-check their condition.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned 32-bit location for the duration of
    // the call; FUTEX_WAIT only reads it. Shared (non-private) op so it works
    // across processes.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            tsp,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes up to `n` sleepers on `word`.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned 32-bit location; FUTEX_WAKE does not
    // access it beyond hashing its address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Forks. In the child, runs `child` and leaves with `_exit(code)` without
/// running the parent's destructors or atexit handlers. Returns the child's pid.
pub fn fork_child<F: FnOnce() -> i32>(child: F) -> Result<i32> {
    // SAFETY: the caller guarantees no library thread exists (forking is done
    // before the pool starts); the child only runs `child` and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::last_os("fork"));
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: leaving the child without unwinding into the parent's frames.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with status {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Reaps `pid`; with `block == false`, returns `Ok(None)` if it still runs.
pub fn wait_child(pid: i32, block: bool) -> Result<Option<ExitStatus>> {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: plain waitpid on a pid this process forked.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::last_os(&format!("waitpid({pid})")));
        }
        return Ok(Some(if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }));
    }
}

/// Whether every page of `[addr, addr + len)` is mapped in this process
/// (mincore fails with ENOMEM on an unmapped page). `len` at most 1 MiB.
pub fn is_mapped(addr: u64, len: usize) -> bool {
    const PAGE: u64 = 4096;
    let start = addr & !(PAGE - 1);
    let end = addr.saturating_add(len.max(1) as u64);
    let pages = end.div_ceil(PAGE).saturating_sub(start / PAGE) as usize;
    let mut vec = [0u8; 260];
    if pages > vec.len() {
        return false;
    }
    // SAFETY: mincore only inspects the range; `vec` has room for one byte
    // per page of it.
    unsafe {
        libc::mincore(
            start as *mut libc::c_void,
            pages * PAGE as usize,
            vec.as_mut_ptr(),
        ) == 0
    }
}

/// The parent process's id.
pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

/// A descriptor that becomes readable when process `pid` exits.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: plain pidfd_open; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::last_os(&format!("pidfd_open({pid})")));
    }
    // SAFETY: a fresh descriptor this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// An eventfd, for waking a thread blocked in `poll_readable`.
pub fn eventfd() -> Result<OwnedFd> {
    // SAFETY: plain eventfd; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("eventfd"));
    }
    // SAFETY: a fresh descriptor this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable.
pub fn eventfd_signal(fd: &OwnedFd) {
    let one = 1u64;
    // SAFETY: writing 8 bytes from a live u64 to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Blocks until at least one of `fds` is readable, or `timeout` passes
/// (None: no limit); returns which are readable (none on timeout).
pub fn poll_readable(
    fds: &[&OwnedFd],
    ready: &mut Vec<usize>,
    timeout: Option<Duration>,
) -> Result<()> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| t.as_millis().clamp(1, i32::MAX as u128) as i32);
    loop {
        // SAFETY: `p` is a live array of p.len() pollfds.
        let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
        if r >= 0 {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(Error::last_os("poll"));
        }
    }
    ready.clear();
    ready.extend(
        p.iter()
            .enumerate()
            .filter(|(_, q)| q.revents != 0)
            .map(|(i, _)| i),
    );
    Ok(())
}

/// Kills a child this process forked and has not reaped (SIGKILL), then
/// reaps it. Returns how it ended.
pub fn kill_and_reap(pid: i32) -> Result<Option<ExitStatus>> {
    // SAFETY: signalling a pid that is still our unreaped child, so it
    // cannot have been reused by another process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_child(pid, true)
}

/// Sends SIGKILL to a child this process forked and has not reaped yet
/// (someone else reaps it).
pub fn kill_child(pid: i32) {
    // SAFETY: as in `kill_and_reap`: the pid is our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Whether a process that is not our child has ended: it no longer exists,
/// or it is a zombie waiting for its own parent to reap it.
pub fn process_ended(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return true;
    }
    // The state letter follows the command name's closing parenthesis.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].trim_start().chars().next())
            .is_some_and(|c| c == 'Z' || c == 'X')
    })
}

/// This process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}
