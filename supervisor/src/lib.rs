//! herd-supervisor: starts and supervises a pool of workers.
