//! The few MPI calls the remote levels make, over rsmpi's raw layer
//! (`mpi::ffi`): thread-level initialisation, a private communicator,
//! nonblocking point-to-point messages and matched probes. Every call
//! returns its error (the communicators use MPI_ERRORS_RETURN); nothing
//! here blocks on a peer. All the `unsafe` of the remote levels that
//! touches MPI is in this file.

use crate::status::{Error, Result, Status};
use mpi::ffi;
use std::os::raw::{c_char, c_int, c_void};

/// A communicator handle (a pointer in OpenMPI).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Comm(ffi::MPI_Comm);

// SAFETY: an MPI handle may be used from any thread once MPI was
// initialised with MPI_THREAD_SERIALIZED or more (checked at init); the
// library makes its calls from one thread at a time.
unsafe impl Send for Comm {}
// SAFETY: as above; the handle itself is never written after creation.
unsafe impl Sync for Comm {}

/// An outstanding nonblocking operation.
#[derive(Debug)]
pub(crate) struct Request(ffi::MPI_Request);

// SAFETY: a request handle may be tested from any thread (see `Comm`).
unsafe impl Send for Request {}

/// A message matched by a probe, to be received with `Comm::mrecv`.
pub(crate) struct Matched {
    message: ffi::MPI_Message,
    /// The sender's rank.
    pub source: i32,
    /// Its length in bytes.
    pub len: usize,
}

/// MPI's text for an error code.
fn error_text(code: c_int) -> String {
    let mut buf = [0 as c_char; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len: c_int = 0;
    // SAFETY: the buffer holds MPI_MAX_ERROR_STRING characters and a NUL.
    let rc = unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr(), &mut len) };
    if rc != 0 || len <= 0 {
        return format!("MPI error {code}");
    }
    let bytes: Vec<u8> = buf[..len as usize].iter().map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// DIST_ERR_OS naming the MPI call and MPI's text, unless `rc` is MPI_SUCCESS.
fn check(rc: c_int, what: &str) -> Result<()> {
    if rc == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(Error::new(
            Status::Os,
            format!("{what} failed: {}", error_text(rc)),
        ))
    }
}

/// Whether MPI_Init ran in this process; whether MPI_Finalize ran.
pub(crate) fn state() -> (bool, bool) {
    let (mut init, mut fin) = (0, 0);
    // SAFETY: both may be called at any time, from any thread.
    unsafe {
        ffi::MPI_Initialized(&mut init);
        ffi::MPI_Finalized(&mut fin);
    }
    (init != 0, fin != 0)
}

/// MPI_Init_thread asking for MPI_THREAD_MULTIPLE; refuses a library that
/// gives less than MPI_THREAD_SERIALIZED (the library makes its calls from
/// one thread of its own while the caller's threads run). Returns the level
/// provided.
///
/// # Safety
/// `argc` and `argv` are NULL or the program's own, as MPI_Init_thread wants.
pub(crate) unsafe fn init_thread(argc: *mut c_int, argv: *mut *mut *mut c_char) -> Result<i32> {
    let mut provided: c_int = 0;
    // SAFETY: per this function's contract; `provided` is writable.
    let rc = unsafe { ffi::MPI_Init_thread(argc, argv, ffi::RSMPI_THREAD_MULTIPLE, &mut provided) };
    check(rc, "MPI_Init_thread")?;
    // SAFETY: a constant of the MPI library.
    let serialized = unsafe { ffi::RSMPI_THREAD_SERIALIZED };
    if provided < serialized {
        return Err(Error::new(
            Status::BadState,
            format!(
                "the MPI library provides thread level {provided}, below \
                 MPI_THREAD_SERIALIZED ({serialized}), which the library needs"
            ),
        ));
    }
    Ok(provided)
}

/// For a program that initialised MPI itself: refuses a thread level
/// below MPI_THREAD_SERIALIZED.
pub(crate) fn check_thread_level() -> Result<()> {
    let mut provided: c_int = 0;
    // SAFETY: MPI is initialised (checked by the caller); plain out-parameter.
    let rc = unsafe { ffi::MPI_Query_thread(&mut provided) };
    check(rc, "MPI_Query_thread")?;
    // SAFETY: a constant of the MPI library.
    let serialized = unsafe { ffi::RSMPI_THREAD_SERIALIZED };
    if provided < serialized {
        return Err(Error::new(
            Status::BadState,
            format!(
                "MPI was initialised with thread level {provided}, below \
                 MPI_THREAD_SERIALIZED ({serialized}), which the library needs \
                 (MPI_Init_thread with MPI_THREAD_MULTIPLE, or let dist_worker_mpi_init do it)"
            ),
        ));
    }
    Ok(())
}

/// MPI_Finalize.
pub(crate) fn finalize() -> Result<()> {
    // SAFETY: called once, after init, with no library thread making MPI calls.
    check(unsafe { ffi::MPI_Finalize() }, "MPI_Finalize")
}

/// MPI_COMM_WORLD with errors returned, and a duplicate of it for the
/// library's own messages (so they never meet the program's). Collective:
/// every rank calls it once, right after init.
pub(crate) fn world_dup() -> Result<Comm> {
    // SAFETY: MPI is initialised (the caller's order); the constants are
    // MPI's, and `dup` is writable.
    unsafe {
        let world = ffi::RSMPI_COMM_WORLD;
        check(
            ffi::MPI_Comm_set_errhandler(world, ffi::RSMPI_ERRORS_RETURN),
            "MPI_Comm_set_errhandler",
        )?;
        let mut dup: ffi::MPI_Comm = ffi::RSMPI_COMM_NULL;
        check(ffi::MPI_Comm_dup(world, &mut dup), "MPI_Comm_dup")?;
        check(
            ffi::MPI_Comm_set_errhandler(dup, ffi::RSMPI_ERRORS_RETURN),
            "MPI_Comm_set_errhandler",
        )?;
        Ok(Comm(dup))
    }
}

fn null_request() -> ffi::MPI_Request {
    // SAFETY: a constant of the MPI library.
    unsafe { ffi::RSMPI_REQUEST_NULL }
}

fn byte() -> ffi::MPI_Datatype {
    // SAFETY: a constant of the MPI library.
    unsafe { ffi::RSMPI_UINT8_T }
}

/// A length as an MPI count (chunks are far below 2^31 bytes).
fn count(len: usize) -> Result<c_int> {
    c_int::try_from(len).map_err(|_| {
        Error::new(
            Status::InvalidArgument,
            format!("{len} bytes exceed one MPI message"),
        )
    })
}

impl Comm {
    /// This process's rank and the number of ranks.
    pub(crate) fn rank_size(&self) -> Result<(i32, i32)> {
        let (mut rank, mut size) = (0, 0);
        // SAFETY: a valid communicator; the out-parameters are writable.
        unsafe {
            check(ffi::MPI_Comm_rank(self.0, &mut rank), "MPI_Comm_rank")?;
            check(ffi::MPI_Comm_size(self.0, &mut size), "MPI_Comm_size")?;
        }
        Ok((rank, size))
    }

    /// Starts sending `len` bytes at `buf` to `dest` with `tag`.
    ///
    /// # Safety
    /// `buf` must stay valid and unchanged for `len` bytes until the request
    /// completes (or is given up with the peer).
    pub(crate) unsafe fn isend(
        &self,
        buf: *const u8,
        len: usize,
        dest: i32,
        tag: i32,
    ) -> Result<Request> {
        let mut req = null_request();
        // SAFETY: per this function's contract; `req` is writable.
        let rc = unsafe {
            ffi::MPI_Isend(
                buf as *const c_void,
                count(len)?,
                byte(),
                dest,
                tag,
                self.0,
                &mut req,
            )
        };
        check(rc, "MPI_Isend")?;
        Ok(Request(req))
    }

    /// Starts receiving up to `len` bytes from `source` with `tag` into `buf`.
    ///
    /// # Safety
    /// `buf` must stay valid for writing `len` bytes, and untouched by
    /// anyone else, until the request completes (or is cancelled).
    pub(crate) unsafe fn irecv(
        &self,
        buf: *mut u8,
        len: usize,
        source: i32,
        tag: i32,
    ) -> Result<Request> {
        let mut req = null_request();
        // SAFETY: per this function's contract; `req` is writable.
        let rc = unsafe {
            ffi::MPI_Irecv(
                buf as *mut c_void,
                count(len)?,
                byte(),
                source,
                tag,
                self.0,
                &mut req,
            )
        };
        check(rc, "MPI_Irecv")?;
        Ok(Request(req))
    }

    /// A message with `tag` from any rank that has arrived, if one has.
    pub(crate) fn improbe(&self, tag: i32) -> Result<Option<Matched>> {
        let mut flag: c_int = 0;
        // SAFETY: plain out-parameters; a zeroed status is a valid one.
        unsafe {
            let mut message: ffi::MPI_Message = ffi::RSMPI_MESSAGE_NULL;
            let mut status: ffi::MPI_Status = std::mem::zeroed();
            check(
                ffi::MPI_Improbe(
                    ffi::RSMPI_ANY_SOURCE,
                    tag,
                    self.0,
                    &mut flag,
                    &mut message,
                    &mut status,
                ),
                "MPI_Improbe",
            )?;
            if flag == 0 {
                return Ok(None);
            }
            let mut n: c_int = 0;
            check(ffi::MPI_Get_count(&status, byte(), &mut n), "MPI_Get_count")?;
            Ok(Some(Matched {
                message,
                source: status.MPI_SOURCE,
                len: n.max(0) as usize,
            }))
        }
    }

    /// Receives a matched message (it has arrived: this does not wait for a peer).
    pub(crate) fn mrecv(&self, mut m: Matched) -> Result<Vec<u8>> {
        // u64 words: the bytes start 8-byte aligned.
        let mut words = vec![0u64; m.len.div_ceil(8).max(1)];
        // SAFETY: the buffer holds at least m.len bytes; the message was
        // matched by improbe and is received once.
        let rc = unsafe {
            ffi::MPI_Mrecv(
                words.as_mut_ptr() as *mut c_void,
                count(m.len)?,
                byte(),
                &mut m.message,
                ffi::RSMPI_STATUS_IGNORE,
            )
        };
        check(rc, "MPI_Mrecv")?;
        let mut bytes = Vec::with_capacity(m.len);
        for w in &words {
            bytes.extend_from_slice(&w.to_ne_bytes());
        }
        bytes.truncate(m.len);
        Ok(bytes)
    }
}

impl Request {
    /// Whether it completed (then the handle is spent). An operation that
    /// completed with an error returns it.
    pub(crate) fn test(&mut self) -> Result<bool> {
        let mut flag: c_int = 0;
        // SAFETY: a live request handle; a zeroed status is a valid one.
        let rc = unsafe {
            let mut status: ffi::MPI_Status = std::mem::zeroed();
            ffi::MPI_Test(&mut self.0, &mut flag, &mut status)
        };
        check(rc, "MPI_Test")?;
        Ok(flag != 0)
    }

    /// Gives the operation up (a peer that is gone). A receive is
    /// cancelled and tested for up to 100 ms, so that it settles (cancelled,
    /// or complete) before its memory goes back to its owner; whatever has
    /// not settled then, and every send, is freed: MPI forgets it.
    pub(crate) fn abandon(mut self, receive: bool) {
        if receive {
            // SAFETY: a live request handle.
            unsafe { ffi::MPI_Cancel(&mut self.0) };
            let by = std::time::Instant::now() + std::time::Duration::from_millis(100);
            while std::time::Instant::now() < by {
                match self.test() {
                    Ok(false) => std::thread::yield_now(),
                    _ => return, // settled: the handle is spent
                }
            }
        }
        // SAFETY: a live request handle, given up once here.
        unsafe { ffi::MPI_Request_free(&mut self.0) };
    }
}
