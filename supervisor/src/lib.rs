//! herd-supervisor: starts and supervises a pool of workers.
//!
//! The policy lives in small, OS-free modules unit-tested with mocks: [`LeaseTable`] (no lost
//! or doubled job), [`RestartIntensity`] and [`Backoff`] (no restart storm), [`Drain`]
//! (SIGINT/SIGTERM), [`Reaper`] (no zombie, no signal to a reaped pid). [`Supervisor`] is the
//! single-threaded loop that applies them to real workers started by a [`Launcher`]; [`Pool`]
//! offers the same machinery to other programs, in the spirit of `multiprocessing.Pool`.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod genlogs;
pub mod logcount;

mod backoff;
mod builtin;
mod config;
mod diagnostic_kinds;
mod drain;
mod intensity;
mod ipc_launcher;
mod launch;
mod lease;
mod logcount_kind;
mod parent_death;
mod pipe_link;
mod pool;
mod reap;
mod report;
mod signals;
mod status;
mod supervise;
mod worker_id;

pub use backoff::Backoff;
pub use builtin::builtin_registry;
pub use config::SupervisorConfig;
pub use diagnostic_kinds::{
    register_diagnostic_kinds, Crash, Echo, Fail, Grandchild, Hang, HangOnce, Sleep, WorkerPid,
    DIAGNOSTIC_KINDS,
};
pub use drain::{Drain, DrainState};
pub use intensity::{IntensityExceeded, RestartIntensity};
pub use ipc_launcher::{worker_entry, IpcLauncher, StartMethod, WorkerArgs, WorkerProcess};
pub use launch::{Launcher, WorkerChannel};
pub use lease::{Completion, JobFailure, LeaseTable, LossCause, Released};
pub use logcount_kind::LogcountChunk;
pub use pipe_link::{worker_pipe, Frame, LinkError, SupervisorEnd, WorkerEnd};
pub use pool::{AsyncResult, ImapUnordered, Pool, PoolError};
pub use reap::{Kill, Reaper, Wait};
pub use report::{RunReport, StopReason};
pub use signals::{BlockedSignals, InheritedHandlers, SignalInbox};
pub use status::{proc_stats, ProcStats, WorkerRow};
pub use supervise::Supervisor;
pub use worker_id::WorkerId;
