//! Memory: allocations from the heap ring owned by scopes, scopes
//! themselves, and the descriptors a task was dispatched with.

use super::slot::Phase;
use super::Engine;
use crate::abi::{DistTaskId, DistTensor};
use crate::blob;
use crate::status::{fail, Error, Result, Status};

impl Engine {
    /// Allocates a tensor from the heap ring, owned by the current scope.
    /// Ok(None) when the ring cannot hold it now.
    pub fn alloc(&mut self, shape: &[u32], dtype: u8) -> Result<Option<DistTensor>> {
        let mut t = DistTensor {
            data: 0,
            shapes: [0; 5],
            ndims: shape.len() as u32,
            dtype,
        };
        t.shapes[..shape.len()].copy_from_slice(shape);
        blob::check_tensor(&t)?;
        let size = blob::tensor_bytes(&t).unwrap_or(u64::MAX);
        let Some((h, off)) = self.ring.alloc_tensor(size)? else {
            return Ok(None);
        };
        t.data = self.heap_base + off;
        let idx = self.alloc_slot()?;
        let s = &mut self.slots[idx as usize];
        s.is_alloc = true;
        s.phase = Phase::Done;
        s.refs = 1;
        s.cold_mut().allocs.push(h);
        s.writes.push(t.data);
        self.scopes.add(idx);
        self.done.push(idx);
        if let Some(p) = self.map.set_writer(t.data, idx) {
            self.depend(idx, p, false);
        }
        Ok(Some(t))
    }

    /// Opens a nested scope.
    pub fn scope_begin(&mut self) -> Result<()> {
        self.scopes.begin()
    }

    /// Closes the innermost scope, releasing its tasks' scope references.
    pub fn scope_end(&mut self) -> Result<()> {
        let mut ended = std::mem::take(&mut self.ended);
        let r = self.scopes.end(|i| ended.push(i));
        self.release_all(&mut ended);
        self.ended = ended;
        r
    }

    /// The tensor descriptor a task's member was dispatched with (for
    /// OUTPUT tensors submitted with `data == 0`, the allocated address).
    pub fn task_tensor(&self, id: DistTaskId, member: u32, index: u32) -> Result<DistTensor> {
        let slot = self.known(id)?;
        if member >= slot.members() {
            return fail(
                Status::InvalidArgument,
                format!(
                    "task {id:#x} has {} member(s); {member} is out of range",
                    slot.members()
                ),
            );
        }
        blob::tensor_at(slot.blob(member), index as usize).ok_or_else(|| {
            Error::new(
                Status::InvalidArgument,
                format!("task {id:#x} member {member} has no tensor {index}"),
            )
        })
    }
}
