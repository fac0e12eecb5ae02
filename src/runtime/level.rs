//! Levels: a NEXT_LEVEL worker that is itself a level of the hierarchy.
//! A pool thread of the outer level runs each outer task by driving the
//! inner level (an orchestration function submits a DAG to it), then drains
//! the inner level; the outer task fails if the function returned non-zero
//! or an inner task failed, with the inner failure's message, so failures
//! travel up with the path of levels.

use super::{Registration, Runtime, Stage};
use crate::abi::DistCallConfig;
use crate::blob::TaskView;
use crate::child;
use crate::mailbox::OwnedMailbox;
use crate::status::{fail, Result, Status};
use crate::worker::{Mode, WorkerType};
use std::sync::Arc;

/// One level driven by a pool thread of the level above.
pub trait Level: Send {
    /// Its level number (messages name it "L3 worker 1").
    fn number(&self) -> u32;
    /// Runs one outer task: drives the inner level, drains it, and returns
    /// 0, or an error code with the message that explains it.
    fn run(&mut self, callable: u64, args: &TaskView<'_>, config: &DistCallConfig) -> Outcome;
    /// The inner runtime, when it lives in this process (THREAD mode), so
    /// the outer level can close it at its shutdown deadline.
    fn runtime(&self) -> Option<Arc<Runtime>> {
        None
    }
}

/// What one outer task on a level came to.
pub type Outcome = (i32, Option<String>);

/// An orchestration function of the Rust API: submits one outer task's
/// work to the inner level and returns 0, or a non-zero error code.
pub type Orch = Box<dyn FnMut(&Runtime, u64, &TaskView<'_>, &DistCallConfig) -> i32 + Send>;

/// What an outer task came to, from the orchestration function's code and
/// the inner level's drain. A function that failed and said why (with
/// `set_error_message`, as a callable does) keeps its words.
pub fn outcome(code: i32, drained: Result<()>) -> Outcome {
    match (code, drained) {
        (0, Ok(())) => (0, None),
        (c, Err(e)) => (if c != 0 { c } else { e.status as i32 }, Some(e.message)),
        (c, Ok(())) => {
            let said = child::current_message();
            let m = match said {
                Some(why) => format!("the orchestration function returned error {c}: {why}"),
                None => format!("the orchestration function returned error {c}"),
            };
            (c, Some(m))
        }
    }
}

/// A Rust inner level: the runtime and its orchestration function. The
/// inner level is shut down when the outer one drops its worker.
struct RustLevel {
    inner: Option<Arc<Runtime>>,
    orch: Orch,
}

impl Level for RustLevel {
    fn number(&self) -> u32 {
        self.inner.as_ref().map_or(0, |r| r.options().level)
    }

    fn run(&mut self, callable: u64, args: &TaskView<'_>, config: &DistCallConfig) -> Outcome {
        let inner = self.inner.as_ref().expect("shut down only on drop");
        let code = (self.orch)(inner, callable, args, config);
        outcome(code, inner.drain())
    }

    fn runtime(&self) -> Option<Arc<Runtime>> {
        self.inner.clone()
    }
}

impl Drop for RustLevel {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let _ = inner.close();
        }
    }
}

impl Runtime {
    /// Registers `inner` (created, not started) as a NEXT_LEVEL worker
    /// served by a pool thread: each outer task sent to it runs `orch` on
    /// the inner level, which is then drained. The outer level owns the
    /// inner one from here on and shuts it down with itself.
    pub fn add_level(&self, inner: Runtime, orch: Orch) -> Result<()> {
        if inner.phase()? != super::phase::SETUP {
            return fail(
                Status::BadState,
                "the inner level must be created and not yet started",
            );
        }
        self.add_level_with(move || {
            Box::new(RustLevel {
                inner: Some(Arc::new(inner)),
                orch,
            })
        })
    }

    /// Registers the `Level` that `make` builds as a NEXT_LEVEL worker
    /// served by a pool thread. `make` runs only once registration can no
    /// longer fail, so a refused level is never built (nor dropped).
    pub fn add_level_with(&self, make: impl FnOnce() -> Box<dyn Level>) -> Result<()> {
        let mut life = self.setup()?;
        let life = &mut *life;
        let Stage::Setup(regs) = &mut life.stage else {
            unreachable!("checked by setup")
        };
        let owned = OwnedMailbox::new()?;
        let level = make();
        let number = level.number();
        life.levels.extend(level.runtime());
        regs.push(Registration {
            ty: WorkerType::NextLevel,
            mode: Mode::Thread,
            mailbox: owned.handle(),
            handler: Some(serving(level)),
            level: Some(number),
        });
        life.owned.push(owned);
        Ok(())
    }

    /// PROCESS mode: forks a child that hosts its own level, built by
    /// `make` in the child (after the fork, before any thread of the new
    /// level exists, so it may fork its own children), then serves outer
    /// tasks on it. `number` names it in messages. A `make` that fails
    /// (its code) fails `start` with CHILD_DIED. The level, and every
    /// process under it, ends when this level shuts down or dies.
    pub fn spawn_level_with(
        &self,
        number: u32,
        make: impl FnOnce() -> std::result::Result<Box<dyn Level>, i32>,
    ) -> Result<i32> {
        self.fork_worker(WorkerType::NextLevel, Some(number), move || {
            make().map(serving)
        })
    }

    /// PROCESS mode for the Rust API: in the child, a runtime is created
    /// with `options`, `setup` registers its workers (0 = ready; otherwise
    /// start fails with CHILD_DIED and that code), and each outer task runs
    /// `orch` on it.
    pub fn spawn_level(
        &self,
        options: super::Options,
        setup: impl FnOnce(&Runtime) -> i32,
        orch: Orch,
    ) -> Result<i32> {
        self.spawn_level_with(options.level, move || {
            let inner = Runtime::new(options).map_err(|e| -(e.status as i32))?;
            match setup(&inner) {
                0 => Ok(Box::new(RustLevel {
                    inner: Some(Arc::new(inner)),
                    orch,
                }) as Box<dyn Level>),
                code => Err(code),
            }
        })
    }
}

/// The handler a pool thread or a level's process serves outer tasks with.
pub(super) fn serving(mut level: Box<dyn Level>) -> crate::child::Handler {
    Box::new(move |callable, args, config| {
        let (code, message) = level.run(callable, args, config);
        if let Some(m) = message.filter(|_| code != 0) {
            child::set_error_message(m.as_bytes());
        }
        code
    })
}
