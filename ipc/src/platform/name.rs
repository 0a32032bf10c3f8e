//! The name of the current process, as `current_process()` reports it, and the pid and name of the
//! process that started it, as `parent_process()` reports them: set once in a child before its code runs,
//! read lock-free so they stay usable after fork even if another parent thread was reading them.
use std::sync::atomic::{AtomicPtr, Ordering};

/// Null until a child sets its name; then a `String` leaked for the rest of the process's life.
static CURRENT_NAME: AtomicPtr<String> = AtomicPtr::new(std::ptr::null_mut());

/// Null in a process herd did not start; then the starter's pid and name, leaked like `CURRENT_NAME`.
static PARENT: AtomicPtr<(i32, String)> = AtomicPtr::new(std::ptr::null_mut());

/// Name of a process that herd did not start.
const MAIN_PROCESS: &str = "MainProcess";

/// Records the name of this process (called in the child, before its body runs).
pub(crate) fn set_current_name(name: String) {
    let leaked: &'static mut String = Box::leak(Box::new(name));
    // The previous name (inherited from the parent by fork) is leaked too: another reference to it may exist.
    CURRENT_NAME.store(leaked, Ordering::Release);
}

/// The name of this process: its herd name, or `MainProcess`.
pub(crate) fn current_name() -> &'static str {
    let ptr = CURRENT_NAME.load(Ordering::Acquire);
    if ptr.is_null() {
        return MAIN_PROCESS;
    }
    // SAFETY: non-null values stored in CURRENT_NAME come only from Box::leak in set_current_name, are never
    // freed or mutated, and the Release/Acquire pair makes the String's contents visible here.
    unsafe { (*ptr).as_str() }
}

/// Records the pid and name of the process that started this one (called in the child, before its body
/// runs).
pub(crate) fn set_parent(pid: i32, name: String) {
    let leaked: &'static mut (i32, String) = Box::leak(Box::new((pid, name)));
    // As in `set_current_name`, a previous value (inherited by fork) is leaked, not freed.
    PARENT.store(leaked, Ordering::Release);
}

/// The pid and name of the process that started this one; `None` in a process herd did not start.
pub(crate) fn parent() -> Option<(i32, &'static str)> {
    let ptr = PARENT.load(Ordering::Acquire);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null values stored in PARENT come only from Box::leak in set_parent, are never freed or
    // mutated, and the Release/Acquire pair makes their contents visible here.
    let (pid, name) = unsafe { &*ptr };
    Some((*pid, name.as_str()))
}
