//! What /proc says about processes: children and their states, zombies, and /dev/shm entries,
//! for tests that check that nothing is left behind.
use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

/// `(pid, state)` of every process whose parent is `parent`, from /proc.
pub fn children_of(parent: i32) -> Vec<(i32, char)> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|process| process.stat().ok())
        .filter(|stat| stat.ppid == parent)
        .map(|stat| (stat.pid, stat.state))
        .collect()
}

/// Pids of the live (non-zombie) children of `parent`.
pub fn live_children_of(parent: i32) -> Vec<i32> {
    children_of(parent)
        .into_iter()
        .filter(|&(_, state)| state != 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn is_alive(pid: i32) -> bool {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .is_ok_and(|stat| stat.state != 'Z')
}

/// Fails if a child of `parent` is a zombie now and still one 300 ms later.
pub fn no_lasting_zombie_under(parent: i32) -> Result<(), String> {
    let zombies: BTreeSet<i32> = children_of(parent)
        .into_iter()
        .filter(|&(_, state)| state == 'Z')
        .map(|(pid, _)| pid)
        .collect();
    if zombies.is_empty() {
        return Ok(());
    }
    thread::sleep(Duration::from_millis(300));
    let lasting: Vec<i32> = children_of(parent)
        .into_iter()
        .filter(|&(pid, state)| state == 'Z' && zombies.contains(&pid))
        .map(|(pid, _)| pid)
        .collect();
    if lasting.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "zombie children of {parent} for over 300 ms: {lasting:?}"
        ))
    }
}

/// Fails if this test process has a zombie child.
pub fn no_zombie_of_this_process() -> Result<(), String> {
    no_lasting_zombie_under(std::process::id() as i32)
}

/// Entries of /dev/shm.
pub fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Fails if /dev/shm holds an entry that was not in `before` and names herd (other programs on
/// the machine may create their own meanwhile).
pub fn nothing_new_in_shm(before: &BTreeSet<String>) -> Result<(), String> {
    let new: Vec<String> = shm_entries()
        .difference(before)
        .filter(|name| name.to_lowercase().contains("herd"))
        .cloned()
        .collect();
    if new.is_empty() {
        Ok(())
    } else {
        Err(format!("left in /dev/shm: {new:?}"))
    }
}
