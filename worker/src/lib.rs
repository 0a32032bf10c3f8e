//! herd-worker: the worker side of herd, a registry of job kinds and the worker loop.
