//! herd-supervisor: starts and supervises a pool of workers.
//!
//! The policy lives in small, OS-free modules unit-tested with mocks: [`LeaseTable`] (no lost
//! or doubled job), [`RestartIntensity`] and [`Backoff`] (no restart storm), [`Drain`]
//! (SIGINT/SIGTERM), [`Reaper`] (no zombie, no signal to a reaped pid).
#![deny(unsafe_op_in_unsafe_fn)]

mod backoff;
mod drain;
mod intensity;
mod lease;
mod reap;
mod worker_id;

pub use backoff::Backoff;
pub use drain::{Drain, DrainState};
pub use intensity::{IntensityExceeded, RestartIntensity};
pub use lease::{Completion, JobFailure, LeaseTable, LossCause, Released};
pub use reap::{ExitStatus, Kill, Reaper, Wait};
pub use worker_id::WorkerId;
