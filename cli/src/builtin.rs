//! The job kinds the `supervisor` command's workers know, forked or spawned: logcount and the
//! diagnostic kinds.
use herd_logcount::LogcountChunk;
use herd_worker::Registry;

use crate::diagnostic_kinds::register_diagnostic_kinds;

/// A registry with every built-in kind.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    // The names are distinct constants, so registration cannot collide.
    register_diagnostic_kinds(&mut registry).expect("diagnostic kind names are distinct");
    registry
        .register(LogcountChunk)
        .expect("logcount is not a diagnostic kind name");
    registry
}

herd_supervisor::worker_entry!(
    /// A spawned worker of the `supervisor` command: runs the built-in kinds.
    pub builtin_worker, builtin_registry
);
