//! Mailbox memory the library owns: a shared mapping, so a child forked
//! later sees the same bytes (or, under loom, loom atomics for the words).

use super::Mailbox;
#[cfg(loom)]
use super::SIZE;
#[cfg(loom)]
use crate::loom::{AtomicU32, AtomicU64};
#[cfg(not(loom))]
use crate::sys;
use std::ptr::NonNull;

/// Mailbox memory owned by the library: a shared mapping for a forked child
/// (so both processes see it), or a private aligned page for a pool thread.
#[derive(Debug)]
pub struct OwnedMailbox {
    #[cfg(not(loom))]
    map: sys::SharedMap,
    #[cfg(loom)]
    words: Box<LoomWords>,
}

impl OwnedMailbox {
    /// Maps a fresh, zeroed (IDLE) mailbox.
    pub fn new() -> crate::status::Result<OwnedMailbox> {
        Ok(OwnedMailbox {
            #[cfg(not(loom))]
            map: sys::SharedMap::new(super::SIZE)?,
            #[cfg(loom)]
            words: Box::new(LoomWords::new()),
        })
    }

    /// A handle to it.
    pub fn handle(&self) -> Mailbox {
        #[cfg(not(loom))]
        let base = self.map.as_ptr();
        #[cfg(loom)]
        let base = (&*self.words as *const LoomWords).cast_mut().cast::<u8>();
        // SAFETY: the memory is 8-aligned, SIZE bytes (or, under loom, a
        // `LoomWords`), and lives as long as `self`; owners keep `self`
        // alive while handles are used.
        unsafe { Mailbox::from_raw(NonNull::new(base).expect("mapped")) }
    }
}

/// Under loom, a mailbox is loom atomics for the words of its first 64
/// bytes plus plain bytes for the rest (loom cannot overlay atomics on raw
/// memory). Offsets and protocol are the same.
#[cfg(loom)]
#[derive(Debug)]
#[repr(C, align(8))]
pub(crate) struct LoomWords {
    pub(super) u32s: [AtomicU32; 16],
    pub(super) callable: AtomicU64,
    pub(super) bytes: std::cell::UnsafeCell<[u8; SIZE]>,
}

#[cfg(loom)]
impl LoomWords {
    fn new() -> LoomWords {
        LoomWords {
            u32s: std::array::from_fn(|_| AtomicU32::new(0)),
            callable: AtomicU64::new(0),
            bytes: std::cell::UnsafeCell::new([0; SIZE]),
        }
    }
}
