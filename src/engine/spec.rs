//! What a submitter hands the engine: a task's spec and its members'
//! arguments.

use crate::abi::DistCallConfig;
use crate::blob::Args;
use crate::status::Result;
use crate::worker::WorkerType;

/// The arguments of a task's members, read one at a time so a submitter's
/// arrays are never copied into an intermediate collection.
pub trait MemberArgs {
    /// Number of members (at least 1).
    fn count(&self) -> u32;
    /// Member `i`'s arguments.
    fn member(&self, i: u32) -> Result<Args<'_>>;
}

impl MemberArgs for [Args<'_>] {
    fn count(&self) -> u32 {
        self.len() as u32
    }
    fn member(&self, i: u32) -> Result<Args<'_>> {
        Ok(self[i as usize])
    }
}

/// A task as the core receives it.
pub struct TaskSpec<'a, M: MemberArgs + ?Sized = [Args<'a>]> {
    /// Pool that runs it.
    pub ty: WorkerType,
    /// Handle or callable id.
    pub callable: u64,
    /// Launch configuration.
    pub config: DistCallConfig,
    /// One entry per group member.
    pub members: &'a M,
}
