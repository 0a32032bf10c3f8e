//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
// The OS layer is used by the primitives that land on top of it (sync, queue); until they are
// merged some of its items have no caller yet.
#[allow(dead_code, unused_imports)]
mod platform;
mod queue;

pub use codec::CodecError;
