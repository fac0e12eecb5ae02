//! Scopes: nested regions of submission. Every task or allocation made in a
//! scope holds a reference on itself until the scope ends, so its memory
//! cannot be reclaimed while code in the scope may still name it. The
//! outermost (root) scope is always open and ends at each drain.

use crate::abi::DIST_MAX_SCOPE_DEPTH;
use crate::status::{fail, Result, Status};

/// The stack of open scopes; frame 0 is the root.
#[derive(Debug)]
pub struct ScopeStack {
    /// Slots submitted in each open scope. Frames past `depth` are kept
    /// (empty) so their capacity is reused.
    frames: Vec<Vec<u32>>,
    depth: usize,
}

impl Default for ScopeStack {
    fn default() -> Self {
        ScopeStack {
            frames: vec![Vec::new()],
            depth: 0,
        }
    }
}

impl ScopeStack {
    /// Open scopes, not counting the root.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Opens a nested scope.
    pub fn begin(&mut self) -> Result<()> {
        if self.depth >= DIST_MAX_SCOPE_DEPTH as usize {
            return fail(
                Status::InvalidArgument,
                format!("scopes nest at most {DIST_MAX_SCOPE_DEPTH} deep"),
            );
        }
        self.depth += 1;
        if self.frames.len() <= self.depth {
            self.frames.push(Vec::new());
        }
        Ok(())
    }

    /// Records a slot in the innermost scope.
    pub fn add(&mut self, slot: u32) {
        self.frames[self.depth].push(slot);
    }

    /// Closes the innermost scope, passing each of its slots to `release`.
    pub fn end(&mut self, mut release: impl FnMut(u32)) -> Result<()> {
        if self.depth == 0 {
            return fail(Status::BadState, "scope_end without a matching scope_begin");
        }
        let mut frame = std::mem::take(&mut self.frames[self.depth]);
        self.depth -= 1;
        frame.drain(..).for_each(&mut release);
        self.frames[self.depth + 1] = frame;
        Ok(())
    }

    /// Ends the root scope's current contents (at drain), passing each slot to `release`.
    pub fn end_root(&mut self, mut release: impl FnMut(u32)) {
        let mut frame = std::mem::take(&mut self.frames[0]);
        frame.drain(..).for_each(&mut release);
        self.frames[0] = frame;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_limits() {
        let mut s = ScopeStack::default();
        assert_eq!(s.end(|_| {}).unwrap_err().status, Status::BadState);
        for _ in 0..64 {
            s.begin().unwrap();
        }
        assert_eq!(s.begin().unwrap_err().status, Status::InvalidArgument);
        s.add(7);
        let mut got = Vec::new();
        s.end(|x| got.push(x)).unwrap();
        assert_eq!(got, vec![7]);
        assert_eq!(s.depth(), 63);
    }
}
