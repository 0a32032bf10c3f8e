//! Shared-memory MPMC queues: [`Queue`] and [`JoinableQueue`].
mod ring;
