//! The supervisor's policies, free of OS calls so that each is unit-tested with mocks: who holds
//! which job ([`LeaseTable`]), how often workers may be restarted ([`RestartIntensity`],
//! [`Backoff`]), what a stop signal does ([`Drain`]) and how children are waited for and
//! signalled ([`Reaper`] over the [`Wait`] and [`Kill`] traits).
mod backoff;
mod drain;
mod intensity;
mod lease;
mod reap;

pub use backoff::Backoff;
pub use drain::{Drain, DrainState};
pub use intensity::{IntensityExceeded, RestartIntensity};
pub use lease::{Completion, JobFailure, LeaseTable, LossCause, Released};
pub use reap::{Kill, Reaper, Wait};
