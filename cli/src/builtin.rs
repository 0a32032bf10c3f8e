//! The job kinds the `supervisor` command's workers know, forked or spawned: logcount (registered
//! by the herd-logcount library crate) and the diagnostic kinds (registered in this crate), all
//! found through [`Registry::global`].
use herd_worker::Registry;

herd_supervisor::worker_entry!(
    /// A spawned worker of the `supervisor` command: runs every registered kind.
    pub builtin_worker, Registry::global
);
