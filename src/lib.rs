//! herd: processes, IPC and supervision for multi-process Rust programs on one host.
//!
//! This crate re-exports the member crates under short names: [`ipc`] (herd-ipc), [`worker`]
//! (herd-worker), [`supervisor`] (herd-supervisor) and [`logcount`] (herd-logcount). The README
//! follows; its Rust example runs as a doctest, and so does every Rust example of the user guides
//! in `docs/` (the `guides` module, compiled for doctests only).
#![doc = include_str!("../README.md")]

pub use herd_ipc as ipc;
pub use herd_logcount as logcount;
pub use herd_supervisor as supervisor;
pub use herd_worker as worker;
pub use herd_worker::{job, register_kind};

/// The user guides of `docs/`, compiled only by `cargo test --doc -p herd` so that every Rust
/// example in them runs as a doctest.
#[cfg(doctest)]
pub mod guides {
    /// `docs/tutorial.md`
    #[doc = include_str!("../docs/tutorial.md")]
    pub struct TutorialGuide;
    /// `docs/process.md`
    #[doc = include_str!("../docs/process.md")]
    pub struct ProcessGuide;
    /// `docs/pipe.md`
    #[doc = include_str!("../docs/pipe.md")]
    pub struct PipeGuide;
    /// `docs/queue.md`
    #[doc = include_str!("../docs/queue.md")]
    pub struct QueueGuide;
    /// `docs/sync.md`
    #[doc = include_str!("../docs/sync.md")]
    pub struct SyncGuide;
    /// `docs/connection.md`
    #[doc = include_str!("../docs/connection.md")]
    pub struct ConnectionGuide;
    /// `docs/shared_memory.md`
    #[doc = include_str!("../docs/shared_memory.md")]
    pub struct SharedMemoryGuide;
    /// `docs/manager.md`
    #[doc = include_str!("../docs/manager.md")]
    pub struct ManagerGuide;
    /// `docs/pool.md`
    #[doc = include_str!("../docs/pool.md")]
    pub struct PoolGuide;
    /// `docs/supervisor.md`
    #[doc = include_str!("../docs/supervisor.md")]
    pub struct SupervisorGuide;
    /// `docs/cli.md`
    #[doc = include_str!("../docs/cli.md")]
    pub struct CliGuide;
    /// `docs/logcount.md`
    #[doc = include_str!("../docs/logcount.md")]
    pub struct LogcountGuide;
    /// `docs/scale-out.md`
    #[doc = include_str!("../docs/scale-out.md")]
    pub struct ScaleOutGuide;
}
