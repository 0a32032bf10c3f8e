//! herd-supervisor: starts and supervises a pool of workers.
pub mod genlogs;
pub mod logcount;
