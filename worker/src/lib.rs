//! herd-worker: the worker side of herd, a registry of job kinds and the worker loop.
//!
//! A program that embeds herd declares what its workers can do by implementing [`JobKind`] and
//! registering it in a [`Registry`]; the supervisor sends [`Job`]s naming a kind, and
//! [`run_worker`] runs them one at a time over a [`Link`] to the supervisor, heartbeating while a
//! job runs and leaving cleanly on SIGTERM once the current job is done.
#![deny(unsafe_op_in_unsafe_fn)]

mod job_error;
mod job_kind;
mod link;
mod payload;
mod registry;
mod wire;
mod worker_loop;

pub use job_error::JobError;
pub use job_kind::JobKind;
pub use link::Link;
pub use payload::{decode_payload, encode_payload, PayloadError};
pub use registry::{DuplicateKindError, Registry};
pub use wire::{FromWorker, Job, JobId, JobResult, ToWorker};
pub use worker_loop::{run_worker, WorkerError, WorkerExit, WorkerOptions};
