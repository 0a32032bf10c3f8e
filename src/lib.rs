//! herd: processes, IPC and supervision for multi-process Rust programs on one host.
//!
//! This crate re-exports the member crates under short names: [`ipc`] (herd-ipc), [`worker`]
//! (herd-worker), [`supervisor`] (herd-supervisor) and [`logcount`] (herd-logcount). The README follows; its Rust example runs as
//! a doctest.
#![doc = include_str!("../README.md")]

pub use herd_ipc as ipc;
pub use herd_logcount as logcount;
pub use herd_supervisor as supervisor;
pub use herd_worker as worker;
