//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]
mod manager;
