//! Shared-memory lifetime and rights across real processes: herd segments are memfds that never
//! appear in /dev/shm, are owner-only and close-on-exec, and vanish once no process holds them,
//! even when their creator is SIGKILLed.

use herd_testkit as support;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::Duration;

use herd::ipc::{Array, Barrier, Condition, Event, Lock, Semaphore, Value};
use support::{ensure, fork_child, run, wait_until, Verdict};

const JOIN: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    run(vec![
        (
            "segments_never_appear_in_dev_shm",
            segments_never_appear_in_dev_shm,
        ),
        (
            "segments_are_owner_only_and_cloexec",
            segments_are_owner_only_and_cloexec,
        ),
        (
            "killed_creator_leaves_no_segment_once_survivors_exit",
            killed_creator_leaves_no_segment_once_survivors_exit,
        ),
    ])
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Where a process holds a memfd with this inode: as an open fd or as a mapping.
fn holders(pid: u32, inode: u64) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let is_memfd = target.to_string_lossy().starts_with("/memfd:");
            if is_memfd && std::fs::metadata(fd.path()).is_ok_and(|m| m.ino() == inode) {
                found.push(format!("pid {pid} fd {}", fd.file_name().to_string_lossy()));
            }
        }
    }
    if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        for line in maps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() >= 6
                && fields[4] == inode.to_string()
                && fields[5].starts_with("/memfd:")
            {
                found.push(format!("pid {pid} maps {line}"));
            }
        }
    }
    found
}

/// Every process we can inspect that holds the memfd inode.
fn holders_anywhere(inode: u64) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec!["cannot read /proc".into()];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .flat_map(|pid| holders(pid, inode))
        .collect()
}

/// The inodes of every herd memfd process `pid` has open.
fn herd_memfd_inodes(pid: u32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:herd:"))
                })
                .filter_map(|fd| std::fs::metadata(fd.path()).ok().map(|m| m.ino()))
                .collect()
        })
        .unwrap_or_default()
}

/// The inode of the first `memfd:herd:<label>` fd in process `pid` not in `exclude`.
fn herd_memfd_inode(pid: u32, label: &str, exclude: &BTreeSet<u64>) -> Option<u64> {
    let prefix = format!("/memfd:herd:{label}");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with(&prefix))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok().map(|m| m.ino()))
        .find(|inode| !exclude.contains(inode))
}

fn segments_never_appear_in_dev_shm() -> Verdict {
    let before = support::proc::shm_entries();
    let lock = Lock::new().map_err(err)?;
    let value = Value::<u64>::new(1).map_err(err)?;
    let array = Array::<u8>::new(1 << 20).map_err(err)?;
    let others = (
        Semaphore::new(1).map_err(err)?,
        Event::new().map_err(err)?,
        Condition::new().map_err(err)?,
        Barrier::new(2).map_err(err)?,
    );
    let child = {
        let (lock, value, array) = (lock.clone(), value.clone(), array.clone());
        let before = before.clone();
        fork_child(move || {
            let _guard = lock.lock().map_err(err)?;
            value.fetch_add(1);
            array.set(12345, 7).map_err(err)?;
            // Only herd's names count: other programs on the machine may come and go there.
            support::proc::nothing_new_in_shm(&before).map_err(|e| format!("in child: {e}"))
        })
    };
    child.join(JOIN)?;
    ensure(
        value.load() == 2 && array.get(12345).map_err(err)? == 7,
        || "child's writes not visible".into(),
    )?;
    drop((lock, value, array, others));
    support::proc::nothing_new_in_shm(&before)
}

fn segments_are_owner_only_and_cloexec() -> Verdict {
    let _value = Value::<u32>::new(0).map_err(err)?;
    let _lock = Lock::new().map_err(err)?;
    let mut checked = 0;
    for fd in std::fs::read_dir("/proc/self/fd").map_err(err)?.flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("/memfd:herd:") {
            continue;
        }
        let mode = std::fs::metadata(fd.path()).map_err(err)?.mode() & 0o777;
        ensure(mode == 0o600, || format!("{target:?} has mode {mode:o}"))?;
        let name = fd.file_name().to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{name}")).map_err(err)?;
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .ok_or("no flags in fdinfo")?;
        ensure(flags & libc::O_CLOEXEC as u32 != 0, || {
            format!("{target:?} not CLOEXEC")
        })?;
        checked += 1;
    }
    ensure(checked >= 2, || format!("found only {checked} herd memfds"))
}

/// A creator makes a 1 MiB Array and forks a survivor that keeps using it; the creator is
/// SIGKILLed. The survivor still works with the segment (it holds the only mapping), and once it
/// exits no process anywhere holds the memfd: the kernel has freed it, with nothing in /dev/shm.
fn killed_creator_leaves_no_segment_once_survivors_exit() -> Verdict {
    let before = support::proc::shm_entries();
    // report[0] = inode of the creator's segment, report[1] = survivor pid.
    let report = Array::<u64>::new(2).map_err(err)?;
    let go = Event::new().map_err(err)?;
    let survivor_done = Event::new().map_err(err)?;
    // Memfds the creator inherits from us are not the one it creates.
    let inherited = herd_memfd_inodes(std::process::id());
    let creator = {
        let (report, go, survivor_done) = (report.clone(), go.clone(), survivor_done.clone());
        fork_child(move || {
            let data = Array::<u8>::new(1 << 20).map_err(err)?;
            data.set(0, 1).map_err(err)?;
            let me = std::process::id();
            let inode = herd_memfd_inode(me, "array", &inherited)
                .ok_or("creator cannot find its own memfd")?;
            // The survivor: a grandchild that outlives the creator.
            let survivor = fork_child(move || {
                go.wait_timeout(SHORT).map_err(err)?;
                // The creator is dead by now; the segment must still work.
                for i in 0..1000 {
                    data.set(i, 9).map_err(err)?;
                }
                ensure(data.get(999).map_err(err)? == 9, || {
                    "survivor lost data".into()
                })?;
                survivor_done.set();
                Ok(())
            });
            report.set(1, survivor.pid().as_raw() as u64).map_err(err)?;
            report.set(0, inode).map_err(err)?;
            std::mem::forget(survivor); // the creator dies before it could join
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        })
    };
    ensure(
        wait_until(SHORT, || report.get(0).is_ok_and(|i| i != 0)),
        || "creator never reported".into(),
    )?;
    let inode = report.get(0).map_err(err)?;
    let survivor = report.get(1).map_err(err)? as u32;
    creator.kill()?;
    let held = holders(survivor, inode);
    ensure(!held.is_empty(), || {
        "the survivor does not hold the segment".into()
    })?;
    go.set();
    survivor_done
        .wait_timeout(SHORT)
        .map_err(|_| "survivor failed".to_string())?;
    // The survivor was orphaned by the creator's death; it exits on its own after its closure.
    ensure(
        wait_until(SHORT, || holders_anywhere(inode).is_empty()),
        || format!("segment still held: {:?}", holders_anywhere(inode)),
    )?;
    support::proc::nothing_new_in_shm(&before)
}
