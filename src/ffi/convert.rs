//! Conversions from C arguments to the core's types. Counts are checked
//! against capacity before any pointer they describe is read.

use super::null;
use crate::abi::{DistCallConfig, DistTaskArgs, DistTaskFn, DistTaskView, DistWorkerOptions};
use crate::blob::{self, Args, TaskView};
use crate::child::Handler;
use crate::engine::{MemberArgs, MAX_GROUP};
use crate::mailbox::Mailbox;
use crate::progress::WaitPolicy;
use crate::runtime::{Options, DEFAULT_HEAP_RING_SIZE};
use crate::status::{fail, Result, Status};
use std::os::raw::c_void;
use std::ptr::NonNull;
use std::time::Duration;

/// Borrows `n` elements at `p`; NULL is allowed only when `n` is 0.
///
/// # Safety
/// A non-NULL `p` must point to `n` valid elements.
unsafe fn slice<'a, T>(p: *const T, n: u32, name: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, n as usize) })
}

/// Reads a config field by field; the bools are read as bytes so a stray
/// value from C is not undefined behaviour.
///
/// # Safety
/// `p` must point to a readable `DistCallConfig`.
pub unsafe fn config(p: *const DistCallConfig) -> DistCallConfig {
    // SAFETY: per the caller's contract; fields read through raw addresses.
    unsafe {
        DistCallConfig {
            block_dim: std::ptr::addr_of!((*p).block_dim).read_unaligned(),
            aicpu_thread_num: std::ptr::addr_of!((*p).aicpu_thread_num).read_unaligned(),
            enable_profiling: (std::ptr::addr_of!((*p).enable_profiling) as *const u8).read() != 0,
            enable_dump_tensor: (std::ptr::addr_of!((*p).enable_dump_tensor) as *const u8).read()
                != 0,
        }
    }
}

/// The members of a C task: `count` entries at `args` (or one empty member).
pub struct CMembers {
    args: *const DistTaskArgs,
    count: u32,
}

impl CMembers {
    /// Checks `group_size` against capacity, then the array pointer.
    pub fn new(args: *const DistTaskArgs, group_size: u32) -> Result<CMembers> {
        if group_size > MAX_GROUP {
            return fail(
                Status::InvalidArgument,
                format!("group_size {group_size} exceeds the limit of {MAX_GROUP}"),
            );
        }
        if group_size > 1 && args.is_null() {
            return Err(null("task->args (group_size > 1)"));
        }
        Ok(CMembers {
            args,
            count: group_size.max(1),
        })
    }
}

impl MemberArgs for CMembers {
    fn count(&self) -> u32 {
        self.count
    }

    fn member(&self, i: u32) -> Result<Args<'_>> {
        if self.args.is_null() {
            return Ok(Args::default());
        }
        // SAFETY: `args` points to `count` entries (the caller's contract for
        // DistTask.args) and i < count.
        let a = unsafe { self.args.add(i as usize).read() };
        blob::encoded_len(a.tensor_count as u64, a.scalar_count as u64)?;
        // SAFETY: the pointers describe tensor_count / scalar_count elements
        // per the DistTaskArgs contract; NULL with a non-zero count is refused.
        unsafe {
            Ok(Args {
                tensors: slice(a.tensors, a.tensor_count, "args.tensors")?,
                tags: if a.tags.is_null() {
                    None
                } else {
                    Some(slice(a.tags, a.tensor_count, "args.tags")?)
                },
                scalars: slice(a.scalars, a.scalar_count, "args.scalars")?,
            })
        }
    }
}

/// Validates and wraps a mailbox pointer from C.
///
/// # Safety
/// A non-NULL `p` must point to 4096 bytes that stay mapped while used.
pub unsafe fn mailbox(p: *mut c_void) -> Result<Mailbox> {
    let Some(base) = NonNull::new(p.cast::<u8>()) else {
        return Err(null("mailbox"));
    };
    if !(base.as_ptr() as usize).is_multiple_of(8) {
        return fail(
            Status::InvalidArgument,
            format!("mailbox {p:p} is not 8-byte aligned"),
        );
    }
    // SAFETY: non-NULL, aligned, and sized per the caller's contract.
    Ok(unsafe { Mailbox::from_raw(base) })
}

/// A user pointer handed to a function that runs in a forked child.
#[derive(Clone, Copy)]
pub struct SendPtr(pub *mut c_void);

// SAFETY: it only crosses into the child process created by fork; the
// caller vouches for its use there.
unsafe impl Send for SendPtr {}

impl SendPtr {
    /// The pointer.
    pub fn get(self) -> *mut c_void {
        self.0
    }
}

/// A C callable and its user pointer.
struct CCallable {
    f: unsafe extern "C" fn(*mut c_void, u64, *const DistTaskView, *const DistCallConfig) -> i32,
    user: *mut c_void,
}

// SAFETY: the C API documents that a callable and its user pointer are
// called from a pool thread (THREAD mode) or a child process; the caller
// provides that guarantee by registering them.
unsafe impl Send for CCallable {}

impl CCallable {
    fn call(&mut self, callable: u64, view: &TaskView<'_>, config: &DistCallConfig) -> i32 {
        let v = DistTaskView::from(view);
        // SAFETY: `f` is the caller's callable; the view and config outlive the call.
        unsafe { (self.f)(self.user, callable, &v, config) }
    }
}

/// What a C callable receives: the decoded blob's arrays, in place.
impl From<&TaskView<'_>> for DistTaskView {
    fn from(view: &TaskView<'_>) -> DistTaskView {
        DistTaskView {
            tensor_count: view.tensors.len() as i32,
            scalar_count: view.scalars.len() as i32,
            tensors: view.tensors.as_ptr(),
            scalars: view.scalars.as_ptr(),
        }
    }
}

/// Wraps a C callable as a core handler; NULL is refused.
pub fn handler(f: DistTaskFn, user: *mut c_void) -> Result<Handler> {
    let f = f.ok_or_else(|| null("fn"))?;
    let mut c = CCallable { f, user };
    Ok(Box::new(move |callable, view, config| {
        c.call(callable, view, config)
    }))
}

/// Milliseconds from C, 0 meaning "none".
fn optional_ms(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms as u64))
}

fn ms(d: Option<Duration>) -> u32 {
    d.map_or(0, |t| t.as_millis().min(u32::MAX as u128) as u32)
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// The options a C caller asked for; zeros mean the documented defaults.
impl From<&DistWorkerOptions> for Options {
    fn from(o: &DistWorkerOptions) -> Options {
        let size = usize::try_from(o.heap_ring_size).unwrap_or(usize::MAX);
        Options {
            level: o.level,
            heap_ring_size: if size == 0 {
                DEFAULT_HEAP_RING_SIZE
            } else {
                size
            },
            alloc_timeout: Duration::from_millis(o.alloc_timeout_ms as u64),
            shutdown_timeout: optional_ms(o.shutdown_timeout_ms),
            start_timeout: optional_ms(o.start_timeout_ms),
            worker_spin: Duration::from_micros(o.worker_spin_us as u64),
            wait: WaitPolicy {
                spin: Duration::from_micros(o.dispatcher_spin_us as u64),
                caller_spin: Duration::from_micros(o.wait_spin_us as u64),
                // A zero interval would spin the dispatcher: at least 1 µs.
                poll: Duration::from_micros(o.poll_interval_us.max(1) as u64),
                task_timeout: optional_ms(o.task_timeout_ms),
                ..WaitPolicy::default()
            },
        }
    }
}

/// The C view of a runtime's options (`dist_worker_options_init`).
impl From<&Options> for DistWorkerOptions {
    fn from(o: &Options) -> DistWorkerOptions {
        DistWorkerOptions {
            level: o.level,
            heap_ring_size: o.heap_ring_size as u64,
            alloc_timeout_ms: ms(Some(o.alloc_timeout)),
            task_timeout_ms: ms(o.wait.task_timeout),
            shutdown_timeout_ms: ms(o.shutdown_timeout),
            worker_spin_us: us(o.worker_spin),
            dispatcher_spin_us: us(o.wait.spin),
            wait_spin_us: us(o.wait.caller_spin),
            poll_interval_us: us(o.wait.poll),
            start_timeout_ms: ms(o.start_timeout),
        }
    }
}
