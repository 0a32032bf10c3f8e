//! The OS layer of herd-ipc: every `unsafe` call into the kernel lives in the
//! modules below, and this re-export list is all the rest of the crate may use.

mod socket;

pub(crate) use socket::{control_buffer, poll, Blocking, Socket, MAX_FDS_PER_MESSAGE};
