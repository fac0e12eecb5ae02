//! What a level served on another host (feature `mpi`, `crate::remote`)
//! needs from a runtime, beyond the `Level` of a local one:
//! - the tags of the task it runs (a local level shares memory, so tags
//!   never travel; a remote one must know which bytes go out and come
//!   back): `TagTable` keeps each NEXT_LEVEL task's tags from submit, and
//!   a worker's `launch` word names the slot and member it runs;
//! - taking its worker out of the pool when its host goes silent
//!   (`RemoteWorker::retire`), and seeing that the pool gave it up (a
//!   deadline, a shutdown);
//! - a readiness handshake at start (`on_start`).

use super::{level::serving, Registration, Runtime, Stage};
use crate::abi::DistTensorArgType;
use crate::engine::{MemberArgs, TaskSpec};
use crate::mailbox::{state, Mailbox, OwnedMailbox};
use crate::progress::Progress;
use crate::status::{Error, Result};
use crate::worker::{Mode, WorkerType};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A readiness handshake run by `start`, after the workers are installed
/// and before any pool thread runs, with start's deadline.
pub(crate) type StartHook = Box<dyn FnOnce(Option<Instant>) -> Result<()> + Send>;

/// The tags of NEXT_LEVEL tasks, by slot, while remote levels exist.
#[derive(Default)]
pub(crate) struct TagTable {
    on: AtomicBool,
    by_slot: Mutex<HashMap<u32, Vec<Vec<DistTensorArgType>>>>,
}

impl TagTable {
    /// Records the tags of a task just submitted (under the engine lock, so
    /// before any of its members can launch). A later task in the same slot
    /// replaces them: a slot is reused only once its task was consumed.
    pub(crate) fn record<M: MemberArgs + ?Sized>(&self, spec: &TaskSpec<'_, M>, id: u64) {
        if spec.ty != WorkerType::NextLevel || !self.on.load(Ordering::Relaxed) {
            return;
        }
        let slot = crate::engine::task_slot(id);
        let tags = (0..spec.members.count())
            .map(|i| {
                spec.members
                    .member(i)
                    .ok()
                    .and_then(|a| a.tags.map(<[_]>::to_vec))
                    .unwrap_or_default()
            })
            .collect();
        lock(&self.by_slot).insert(slot, tags);
    }

    fn get(&self, slot: u32, member: u32) -> Option<Vec<DistTensorArgType>> {
        lock(&self.by_slot)
            .get(&slot)
            .and_then(|m| m.get(member as usize).cloned())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A remote level's handle on its worker in the runtime that drives it.
#[derive(Clone)]
pub(crate) struct RemoteWorker {
    progress: Arc<Progress>,
    tags: Arc<TagTable>,
    index: usize,
    mailbox: Mailbox,
}

impl RemoteWorker {
    /// How messages name it ("L3 worker 1 (rank 2)"), once started.
    pub(crate) fn label(&self) -> String {
        match self.progress.workers().get(self.index) {
            Some(w) => w.to_string(),
            None => format!("NEXT_LEVEL worker index {}", self.index),
        }
    }

    /// The tags of the task member it runs now (empty: all INPUT).
    pub(crate) fn tags(&self) -> Vec<DistTensorArgType> {
        let Some(w) = self.progress.workers().get(self.index) else {
            return Vec::new();
        };
        let launch = w.launch.load(Ordering::Acquire);
        self.tags
            .get((launch >> 32) as u32, launch as u32)
            .unwrap_or_default()
    }

    /// Takes the worker out of its pool for good; its task (if any) ends
    /// with `cause`. False before start (nothing to take out yet).
    pub(crate) fn retire(&self, cause: Error) -> bool {
        if self.progress.workers().len() <= self.index {
            return false;
        }
        self.progress.retire_worker(self.index, cause);
        true
    }

    /// Whether the pool gave up the task it runs: its worker was retired
    /// (a task deadline) after `seen` showed it in flight, or the runtime
    /// is shutting down past its deadline (SHUTDOWN in its mailbox).
    pub(crate) fn given_up(&self, seen: &mut bool) -> Option<&'static str> {
        if self.mailbox.state() == state::SHUTDOWN {
            return Some("the DistWorker driving it shut down while its task ran");
        }
        let w = self.progress.workers().get(self.index)?;
        let in_flight = w.in_flight.load(Ordering::Acquire) != 0;
        if in_flight {
            *seen = true;
            None
        } else if *seen {
            Some("its task was ended by the pool (a deadline) while it ran")
        } else {
            None
        }
    }
}

impl Runtime {
    /// Registers a NEXT_LEVEL worker served on another host: `make` builds
    /// its `Level` from its handle once registration can no longer fail.
    /// `rank` names it in messages ("L3 worker 1 (rank 2)").
    pub(crate) fn add_remote_level(
        &self,
        rank: u32,
        number: u32,
        make: impl FnOnce(RemoteWorker) -> Box<dyn super::Level>,
    ) -> Result<()> {
        let mut life = self.setup()?;
        let life = &mut *life;
        let Stage::Setup(regs) = &mut life.stage else {
            unreachable!("checked by setup")
        };
        let owned = OwnedMailbox::new()?;
        self.tags.on.store(true, Ordering::Relaxed);
        let handle = RemoteWorker {
            progress: self.shared.clone(),
            tags: self.tags.clone(),
            index: regs.len(),
            mailbox: owned.handle(),
        };
        regs.push(Registration {
            ty: WorkerType::NextLevel,
            mode: Mode::Remote(rank),
            mailbox: owned.handle(),
            handler: Some(serving(make(handle))),
            level: Some(number),
        });
        life.owned.push(owned);
        Ok(())
    }

    /// Runs `hook` at start (see `StartHook`); its failure fails start.
    pub(crate) fn on_start(&self, hook: StartHook) -> Result<()> {
        let mut life = self.setup()?;
        life.start_hooks.push(hook);
        Ok(())
    }
}
