//! The heap ring: a first-in-first-out allocator over the shared heap that
//! children see at the same addresses.
//!
//! Allocations are carved in order after the newest one, wrapping to the
//! start when the end is reached. Freed allocations are reclaimed from both
//! ends of the ring: from the oldest (first-in-first-out task lifetimes) and
//! from the newest (a nested scope ending before its outer scope). A hole in
//! the middle is reclaimed once the allocations around it are.

use crate::status::{fail, Result, Status};
use std::collections::VecDeque;

/// Alignment of every allocation.
pub const ALIGN: u64 = 64;

#[derive(Clone, Copy, Debug)]
struct Block {
    off: u64,
    len: u64,
    live: bool,
}

/// Allocator state; offsets are relative to the heap's base.
#[derive(Debug)]
pub struct HeapRing {
    capacity: u64,
    /// Blocks in allocation order; `blocks[i]` has handle `first + i`.
    blocks: VecDeque<Block>,
    first: u64,
    live_bytes: u64,
    /// The most `live_bytes` has been.
    peak_bytes: u64,
}

/// Identifies one allocation for `free`.
pub type Handle = u64;

impl HeapRing {
    /// A ring over `capacity` bytes (rounded down to the alignment).
    pub fn new(capacity: u64) -> HeapRing {
        HeapRing {
            capacity: capacity / ALIGN * ALIGN,
            blocks: VecDeque::new(),
            first: 0,
            live_bytes: 0,
            peak_bytes: 0,
        }
    }

    /// Bytes in live allocations.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// The most bytes that were live at once.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes
    }

    /// Total bytes of the ring.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity
    }

    /// Number of blocks not yet reclaimed (live or holes).
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Bytes an allocation of `size` takes (at least one alignment unit, so
    /// every allocation has its own address).
    pub fn rounded(size: u64) -> Option<u64> {
        let size = size.max(1);
        size.checked_add(ALIGN - 1).map(|s| s / ALIGN * ALIGN)
    }

    /// Allocates a tensor's `size` bytes: Ok(None) when no contiguous space
    /// is free now (waiting may help), RESOURCE_EXHAUSTED when the ring could
    /// never hold it.
    pub fn alloc_tensor(&mut self, size: u64) -> Result<Option<(Handle, u64)>> {
        if Self::rounded(size).is_none_or(|s| s > self.capacity) {
            return fail(
                Status::ResourceExhausted,
                format!(
                    "a tensor of {size} bytes does not fit the {}-byte heap ring",
                    self.capacity
                ),
            );
        }
        Ok(self.alloc(size))
    }

    /// Allocates `size` bytes; None when no contiguous space is free now.
    pub fn alloc(&mut self, size: u64) -> Option<(Handle, u64)> {
        let len = Self::rounded(size)?;
        if len > self.capacity {
            return None;
        }
        let off = match (self.blocks.front(), self.blocks.back()) {
            (Some(head), Some(tail)) => {
                let end = tail.off + tail.len;
                if tail.off >= head.off {
                    // Not wrapped: free space after the tail, then before the head.
                    if end + len <= self.capacity {
                        end
                    } else if len <= head.off {
                        0
                    } else {
                        return None;
                    }
                } else if end + len <= head.off {
                    // Wrapped: free space between the tail and the head.
                    end
                } else {
                    return None;
                }
            }
            _ => 0,
        };
        self.blocks.push_back(Block {
            off,
            len,
            live: true,
        });
        self.live_bytes += len;
        self.peak_bytes = self.peak_bytes.max(self.live_bytes);
        Some((self.first + self.blocks.len() as u64 - 1, off))
    }

    /// Frees an allocation and reclaims what can be reclaimed.
    pub fn free(&mut self, handle: Handle) {
        let i = handle
            .checked_sub(self.first)
            .expect("handle of a reclaimed block") as usize;
        let b = &mut self.blocks[i];
        assert!(b.live, "double free in the heap ring");
        b.live = false;
        self.live_bytes -= b.len;
        while self.blocks.front().is_some_and(|b| !b.live) {
            self.blocks.pop_front();
            self.first += 1;
        }
        while self.blocks.back().is_some_and(|b| !b.live) {
            self.blocks.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_reuse_and_wrap() {
        let mut r = HeapRing::new(1024);
        let (a, oa) = r.alloc(100).unwrap();
        let (b, ob) = r.alloc(300).unwrap();
        let (c, oc) = r.alloc(500).unwrap();
        assert_eq!((oa, ob, oc), (0, 128, 448));
        assert!(r.alloc(200).is_none(), "only 64 bytes left at the end");
        r.free(a);
        // The head moved to 128: a 100-byte block fits at 0 (wrap).
        let (d, od) = r.alloc(100).unwrap();
        assert_eq!(od, 0);
        assert!(r.alloc(64).is_none(), "wrapped: 0..128 used up to the head");
        r.free(b);
        r.free(c);
        r.free(d);
        assert_eq!(r.live_bytes(), 0);
        assert_eq!(r.blocks(), 0);
        assert_eq!(r.alloc(1024).unwrap().1, 0);
    }

    #[test]
    fn newest_first_reclaims_from_the_tail() {
        let mut r = HeapRing::new(4096);
        let (outer, _) = r.alloc(1000).unwrap();
        let inner: Vec<_> = (0..3).map(|_| r.alloc(500).unwrap().0).collect();
        for h in inner.into_iter().rev() {
            r.free(h);
        }
        assert_eq!(r.blocks(), 1, "inner scope reclaimed while the outer lives");
        assert_eq!(r.alloc(2000).unwrap().1, 1024);
        r.free(outer);
    }

    #[test]
    fn holes_wait_for_their_neighbours() {
        let mut r = HeapRing::new(640);
        let h: Vec<_> = (0..10).map(|_| r.alloc(64).unwrap().0).collect();
        r.free(h[5]);
        assert!(r.alloc(64).is_none());
        assert_eq!(r.blocks(), 10);
        for &x in &h[..5] {
            r.free(x);
        }
        assert_eq!(r.blocks(), 4, "head reclaimed through the hole");
        assert_eq!(r.alloc(320).unwrap().1, 0);
    }

    #[test]
    fn sizes() {
        assert_eq!(HeapRing::rounded(0), Some(64));
        assert_eq!(HeapRing::rounded(65), Some(128));
        assert_eq!(HeapRing::rounded(u64::MAX), None);
        let mut r = HeapRing::new(100);
        assert_eq!(r.capacity_bytes(), 64);
        assert!(r.alloc(65).is_none());
    }
}
