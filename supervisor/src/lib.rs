//! herd-supervisor: starts and supervises a pool of worker processes.
//!
//! The policy lives in small, OS-free modules under `policy/`, unit-tested with mocks:
//! [`LeaseTable`] (no lost or doubled job), [`RestartIntensity`] and [`Backoff`] (no restart
//! storm), [`Drain`] (SIGINT/SIGTERM), [`Reaper`] (no zombie, no signal to a reaped pid).
//! [`Supervisor`] is the single-threaded loop that applies them to real workers started by a
//! [`Launcher`], reading signals from a [`SignalSource`] and reporting every [`Event`] to an
//! [`Observer`]; [`Pool`] offers the same machinery to other programs, in the spirit of
//! `multiprocessing.Pool`.
#![deny(unsafe_op_in_unsafe_fn)]

mod clock;
mod config;
mod event;
mod ipc_launcher;
mod launch;
mod parent_death;
mod pipe_link;
mod policy;
mod pool;
mod report;
mod signals;
mod supervise;
mod worker_id;

pub use clock::{Clock, SystemClock};
pub use config::SupervisorConfig;
pub use event::{Event, Ignore, Level, Observer, Record, Status, WorkerRow};
pub use herd_ipc::StartMethod;
pub use ipc_launcher::{run_spawned_worker, IpcLauncher, WorkerArgs, WorkerProcess};
pub use launch::{Launcher, WorkerChannel};
pub use pipe_link::{
    worker_pipe, worker_pipe_with_limits, Frame, LinkError, SupervisorEnd, WorkerEnd,
    DEFAULT_REASSEMBLY_LIMIT,
};
pub use policy::{
    Backoff, Completion, Drain, DrainState, IntensityExceeded, JobFailure, Kill, LeaseTable,
    LossCause, Reaper, Released, RestartIntensity, Wait,
};
pub use pool::{pool_worker, AsyncResult, Imap, ImapUnordered, Pool, PoolBuilder, PoolError};
pub use report::{RunReport, StopReason};
pub use signals::{BlockedSignals, InheritedHandlers, SignalInbox, SignalSource, Waker};
pub use supervise::Supervisor;
pub use worker_id::WorkerId;

#[doc(hidden)]
pub mod __private {
    //! For [`worker_entry!`](crate::worker_entry)'s expansion in other crates.
    pub use herd_ipc;
}

pub use herd_worker::{job, register_kind};
