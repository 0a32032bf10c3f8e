//! The job kinds the `supervisor` binary's workers know: the diagnostic kinds and logcount.
use herd_worker::Registry;

use crate::logcount_kind::LogcountChunk;
use crate::register_diagnostic_kinds;

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
