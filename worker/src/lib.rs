//! herd-worker: the worker side of herd, a registry of job kinds and the worker loop.
//!
//! A program declares what its workers can do with plain functions ([`job!`]) or by implementing
//! [`JobKind`]; either is registered where it is defined ([`Registry::global`] finds them all),
//! or by hand in a [`Registry`]. The supervisor sends [`Job`]s naming a kind, and [`run_worker`]
//! runs them in order over a [`Link`] to the supervisor, heartbeating while a job runs and leaving
//! cleanly on SIGTERM once the current job is done.
#![deny(unsafe_op_in_unsafe_fn)]

mod chunk;
mod job_error;
mod job_kind;
mod job_macro;
mod link;
mod payload;
mod registry;
mod wire;
mod worker_loop;

pub use chunk::{chunk_outputs_ok, read_chunk_outputs, ChunkOutputs};
pub use job_error::JobError;
pub use job_kind::JobKind;
pub use link::Link;
pub use payload::{decode_payload, encode_payload, PayloadError};
pub use registry::{DuplicateKindError, KindRegistration, Registry};
pub use wire::{FromWorker, Job, JobId, JobResult, ToWorker};
pub use worker_loop::{run_worker, Initializer, WorkerError, WorkerExit, WorkerOptions};

#[doc(hidden)]
pub mod __private {
    //! For the expansion of [`job!`](crate::job) and [`register_kind!`](crate::register_kind).
    pub use crate::registry::{KindRegistration, KINDS};
    pub use linkme;
}
