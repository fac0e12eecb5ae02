//! The tensor map: for each tensor address, the task that last wrote it.
//!
//! A submit looks producers up here (INPUT, INOUT) and records itself as the
//! new writer (INOUT, OUTPUT, OUTPUT_EXISTING). When a task is consumed its
//! entries are removed, but only those that still name it: a newer writer of
//! the same address keeps its entry.

use std::collections::HashMap;

/// Address → slot of its last writer.
#[derive(Debug, Default)]
pub struct TensorMap {
    writers: HashMap<u64, u32>,
}

impl TensorMap {
    /// The last writer of `addr`, if one is alive.
    pub fn writer(&self, addr: u64) -> Option<u32> {
        self.writers.get(&addr).copied()
    }

    /// Records `slot` as the last writer of `addr`; returns the writer it replaces.
    pub fn set_writer(&mut self, addr: u64, slot: u32) -> Option<u32> {
        self.writers.insert(addr, slot)
    }

    /// Removes `addr`'s entry if it still names `slot`.
    pub fn remove_if(&mut self, addr: u64, slot: u32) {
        if self.writers.get(&addr) == Some(&slot) {
            self.writers.remove(&addr);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.writers.len()
    }

    /// Whether it has no entries.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_writer_never_erases_a_newer_one() {
        let mut m = TensorMap::default();
        assert_eq!(m.set_writer(0x100, 1), None);
        assert_eq!(m.set_writer(0x100, 2), Some(1));
        m.remove_if(0x100, 1);
        assert_eq!(m.writer(0x100), Some(2));
        m.remove_if(0x100, 2);
        assert!(m.is_empty());
    }
}
