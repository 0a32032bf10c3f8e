//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
mod manager;

pub use codec::CodecError;
