//! Named shared memory that other programs open by name: Python's
//! `multiprocessing.shared_memory.SharedMemory`, a C program's `shm_open`.
//!
//! A segment is the file `/dev/shm/<name>`. The process that creates it unlinks it when its
//! handle drops (unless told to [`keep`](SharedMemory::keep) it); processes that attach never do.
//! Because a SIGKILLed creator unlinks nothing, each creator also records its pid (with the
//! process's start time, so a recycled pid is not mistaken for it) and the segment's inode in
//! `/dev/shm/herd-names-<uid>/<name>`, and [`SharedMemory::sweep_orphans`] unlinks the segments
//! whose creator is gone. herd's own `Value`, `Array` and `Queue` do not need this: they live in
//! nameless memfds that the kernel frees with their last holder.

use std::fmt;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::platform::NamedMapping;
use crate::process::Pid;

/// Where `shm_open` puts its files on Linux.
const SHM_DIR: &str = "/dev/shm";
/// The prefix of the per-user directory of creator records (`herd-names-<uid>`).
const REGISTRY_PREFIX: &str = "herd-names-";
/// The longest name a file in `/dev/shm` may have.
const NAME_MAX: usize = 255;

/// Why a named shared memory operation failed; every variant names the segment.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// The name cannot be a segment name.
    #[error("bad shared memory name {name:?}: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `create`: a segment of that name exists already (Python's `FileExistsError`).
    #[error("shared memory segment {name:?} already exists in /dev/shm")]
    Exists {
        /// The segment's name.
        name: String,
    },
    /// `open`: no segment of that name (Python's `FileNotFoundError`).
    #[error("no shared memory segment {name:?} in /dev/shm")]
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// `create` with size 0 (Python refuses it too).
    #[error("shared memory segment {name:?}: size must be greater than 0")]
    ZeroSize {
        /// The segment's name.
        name: String,
    },
    /// The operating system refused.
    #[error("shared memory segment {name:?}: cannot {action}: {source}")]
    Io {
        /// The segment's name.
        name: String,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// A named shared memory segment in `/dev/shm`, as Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// Names are given without the leading slash, as in Python's API (a leading `/` is accepted and
/// dropped). [`as_slice`](SharedMemory::as_slice) and [`as_mut_slice`](SharedMemory::as_mut_slice)
/// are the segment's bytes, like Python's `buf`. Other processes may write them at any time:
/// order their writes and your reads with something that synchronises (a [`Lock`](crate::Lock),
/// an [`Event`](crate::Event), a message on a [`Pipe`](crate::Pipe), a child's exit), or you may
/// read bytes half-written.
///
/// ```
/// use herd_ipc::shared::SharedMemory;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let mut segment = SharedMemory::create_unique(4096)?; // /dev/shm/herd_<random>
///     segment.as_mut_slice()[..5].copy_from_slice(b"hello");
///
///     // Any process may attach by name: here, this one.
///     let attached = SharedMemory::open(segment.name())?;
///     assert_eq!(&attached.as_slice()[..5], b"hello");
///     assert_eq!(attached.size(), 4096);
///
///     let path = format!("/dev/shm/{}", segment.name());
///     drop(attached); // an attacher never unlinks
///     assert!(std::path::Path::new(&path).exists());
///     drop(segment); // the creator does
///     assert!(!std::path::Path::new(&path).exists());
///     Ok(())
/// }
/// ```
pub struct SharedMemory {
    mapping: NamedMapping,
    name: String,
    /// Set for the creator's handle until `keep` or `unlink`: only then does Drop unlink.
    unlink_on_drop: bool,
    /// The process that created it: a forked child's copy of the handle never unlinks.
    creator: Pid,
}

impl SharedMemory {
    /// Creates the segment `/dev/shm/<name>` of `size` zero bytes, owner-only (mode 0600).
    /// Fails with [`SharedMemoryError::Exists`] if the name is taken.
    pub fn create(name: &str, size: usize) -> Result<SharedMemory, SharedMemoryError> {
        Self::create_with_mode(name, size, 0o600)
    }

    /// As [`create`](SharedMemory::create), with the file mode (permission bits) to give the
    /// segment, for segments other users must open; the umask still applies.
    pub fn create_with_mode(
        name: &str,
        size: usize,
        mode: u32,
    ) -> Result<SharedMemory, SharedMemoryError> {
        let name = check_name(name)?;
        if size == 0 {
            return Err(SharedMemoryError::ZeroSize { name });
        }
        let path = segment_path(&name);
        let mapping = NamedMapping::create(&path, size, mode & 0o777).map_err(|source| {
            if source.kind() == ErrorKind::AlreadyExists {
                SharedMemoryError::Exists { name: name.clone() }
            } else {
                io_error(&name, "create it", source)
            }
        })?;
        if let Err(source) = write_record(&name, mapping.inode()) {
            let _ = std::fs::remove_file(&path);
            return Err(io_error(
                &name,
                "record its creator in /dev/shm/herd-names-<uid>",
                source,
            ));
        }
        Ok(SharedMemory {
            mapping,
            name,
            unlink_on_drop: true,
            creator: Pid::this(),
        })
    }

    /// Creates a segment under a fresh random name, `herd_` and 16 hex digits (Python's are
    /// `psm_` and 8), retrying if it is taken.
    pub fn create_unique(size: usize) -> Result<SharedMemory, SharedMemoryError> {
        loop {
            let mut random = [0u8; 8];
            getrandom::getrandom(&mut random).map_err(|e| {
                io_error(
                    "herd_<random>",
                    "draw a random name",
                    io::Error::other(e.to_string()),
                )
            })?;
            let name: String = std::iter::once("herd_".to_owned())
                .chain(random.iter().map(|b| format!("{b:02x}")))
                .collect();
            match Self::create(&name, size) {
                Err(SharedMemoryError::Exists { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Attaches to the existing segment `/dev/shm/<name>`, at its current size. The handle
    /// never unlinks the segment.
    pub fn open(name: &str) -> Result<SharedMemory, SharedMemoryError> {
        let name = check_name(name)?;
        let mapping = NamedMapping::open(&segment_path(&name)).map_err(|source| {
            if source.kind() == ErrorKind::NotFound {
                SharedMemoryError::NotFound { name: name.clone() }
            } else {
                io_error(&name, "open it", source)
            }
        })?;
        Ok(SharedMemory {
            mapping,
            name,
            unlink_on_drop: false,
            creator: Pid::this(),
        })
    }

    /// The name, without the leading slash (Python's `name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes (Python's `size`).
    pub fn size(&self) -> usize {
        self.mapping.len()
    }

    /// The segment's bytes (Python's `buf`); see the type's documentation about other writers.
    pub fn as_slice(&self) -> &[u8] {
        self.mapping.bytes()
    }

    /// The segment's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.mapping.bytes_mut()
    }

    /// Whether dropping this handle will unlink the segment (this process created it and has not
    /// called [`keep`](SharedMemory::keep) or [`unlink`](SharedMemory::unlink)).
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_on_drop && self.creator == Pid::this()
    }

    /// Leaves the segment in `/dev/shm` when this creator's handle drops, for others to open
    /// after this process has gone; [`sweep_orphans`](SharedMemory::sweep_orphans) will not
    /// touch it either. Someone must [`unlink`](SharedMemory::unlink) it later.
    pub fn keep(&mut self) {
        if self.unlink_on_drop {
            self.unlink_on_drop = false;
            remove_record(&self.name, self.mapping.inode());
        }
    }

    /// Removes the name now (Python's `unlink()`): new `open`s fail, while every process that
    /// has it mapped keeps using it until it drops its handle. Any handle may do it.
    pub fn unlink(&mut self) -> Result<(), SharedMemoryError> {
        self.unlink_on_drop = false;
        remove_record(&self.name, self.mapping.inode());
        let path = segment_path(&self.name);
        // Only the segment this handle maps: a later one under the same name is not ours.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.ino() == self.mapping.inode() => std::fs::remove_file(&path)
                .map_err(|source| io_error(&self.name, "unlink it", source)),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error(&self.name, "unlink it", source)),
        }
    }

    /// Unlinks the segments created by this user's herd processes that have since died without
    /// unlinking them (SIGKILL, a crash, `_exit`), and returns their names. Segments whose
    /// creator still runs, kept ones, and ones created by other programs are left alone.
    pub fn sweep_orphans() -> io::Result<Vec<String>> {
        let registry = registry_dir();
        let entries = match std::fs::read_dir(&registry) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", registry.display()),
                ))
            }
        };
        let mut swept = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue; // a record still being written
            }
            let Some(record) = read_record(&entry.path()) else {
                continue;
            };
            if record.creator_alive() {
                continue;
            }
            let path = segment_path(&name);
            let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == record.inode);
            if ours && std::fs::remove_file(&path).is_ok() {
                swept.push(name.clone());
            }
            let _ = std::fs::remove_file(entry.path());
        }
        remove_registry_if_empty();
        Ok(swept)
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if self.unlinks_on_drop() {
            let _ = self.unlink();
        }
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .field("unlinks_on_drop", &self.unlinks_on_drop())
            .finish()
    }
}

fn io_error(name: &str, action: &'static str, source: io::Error) -> SharedMemoryError {
    SharedMemoryError::Io {
        name: name.to_owned(),
        action,
        source,
    }
}

/// A name as `shm_open` takes it, without its leading slash.
fn check_name(name: &str) -> Result<String, SharedMemoryError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let bad = |reason| SharedMemoryError::BadName {
        name: name.to_owned(),
        reason,
    };
    if bare.is_empty() {
        return Err(bad("it is empty"));
    }
    if bare.len() > NAME_MAX {
        return Err(bad("it is longer than 255 bytes"));
    }
    if bare.contains('/') {
        return Err(bad("it contains a slash after the first character"));
    }
    if bare.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    if bare == "." || bare == ".." {
        return Err(bad("it is `.` or `..`"));
    }
    if bare.starts_with(REGISTRY_PREFIX) {
        return Err(bad(
            "names starting with `herd-names-` are herd's creator records",
        ));
    }
    Ok(bare.to_owned())
}

fn segment_path(name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(name)
}

/// This user's directory of creator records.
fn registry_dir() -> PathBuf {
    Path::new(SHM_DIR).join(format!("{REGISTRY_PREFIX}{}", nix::unistd::geteuid()))
}

/// Who created a segment, and which segment (its inode).
#[derive(Debug, PartialEq)]
struct Record {
    pid: i32,
    start_time: u64,
    inode: u64,
}

impl Record {
    fn creator_alive(&self) -> bool {
        process_start_time(self.pid).is_some_and(|start| start == self.start_time)
    }
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`, in clock ticks since boot):
/// with the pid, it names one process, even after the pid is reused.
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from after its last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Writes this process as the creator of `name`'s segment `inode`, replacing a stale record.
fn write_record(name: &str, inode: u64) -> io::Result<()> {
    // Another process may remove the directory as it empties just after this one made it.
    let mut attempts = 0;
    loop {
        match write_record_once(name, inode) {
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

fn write_record_once(name: &str, inode: u64) -> io::Result<()> {
    let dir = registry_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(io::Error::new(
            ErrorKind::PermissionDenied,
            format!("{} is not a directory of this user", dir.display()),
        ));
    }
    let pid = Pid::this().as_raw();
    let start_time = process_start_time(pid).ok_or_else(|| {
        io::Error::new(
            ErrorKind::NotFound,
            "cannot read this process's start time in /proc",
        )
    })?;
    // Written aside and renamed into place, so a sweep never reads half a record.
    let temp = dir.join(format!(".{name}.{pid}"));
    std::fs::write(&temp, format!("{pid} {start_time} {inode}\n"))?;
    std::fs::rename(&temp, dir.join(name)).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

fn read_record(path: &Path) -> Option<Record> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let pid = i32::try_from(fields.next()?.ok()?).ok()?;
    Some(Record {
        pid,
        start_time: fields.next()?.ok()?,
        inode: fields.next()?.ok()?,
    })
}

/// Removes `name`'s record if it is the one for segment `inode`.
fn remove_record(name: &str, inode: u64) {
    let path = registry_dir().join(name);
    if read_record(&path).is_some_and(|record| record.inode == inode) {
        let _ = std::fs::remove_file(path);
        remove_registry_if_empty();
    }
}

/// Leaves nothing of herd's in /dev/shm once no segment is recorded (fails harmlessly while a
/// record remains).
fn remove_registry_if_empty() {
    let _ = std::fs::remove_dir(registry_dir());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exists(name: &str) -> bool {
        segment_path(name).exists()
    }

    #[test]
    fn names_are_checked_and_lose_their_leading_slash() {
        assert_eq!(check_name("/psm_1234").unwrap(), "psm_1234");
        for bad in ["", "/", "a/b", "..", "herd-names-0", &"x".repeat(256)] {
            let err = check_name(bad).unwrap_err();
            assert!(
                matches!(err, SharedMemoryError::BadName { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn creator_unlinks_attacher_does_not_and_keep_persists() {
        let mut created = SharedMemory::create_unique(100).unwrap();
        let name = created.name().to_owned();
        assert!(created.unlinks_on_drop());
        let meta = std::fs::metadata(segment_path(&name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 100);
        created.as_mut_slice()[99] = 7;
        let attached = SharedMemory::open(&name).unwrap();
        assert_eq!(attached.as_slice()[99], 7);
        assert!(!attached.unlinks_on_drop());
        drop(attached);
        assert!(exists(&name));
        created.keep();
        assert!(!registry_dir().join(&name).exists(), "kept: no record");
        drop(created);
        assert!(exists(&name));
        let mut again = SharedMemory::open(&name).unwrap();
        again.unlink().unwrap();
        assert!(!exists(&name));
    }

    #[test]
    fn create_twice_and_open_missing_name_the_segment() {
        let created = SharedMemory::create_unique(10).unwrap();
        let err = SharedMemory::create(created.name(), 10).unwrap_err();
        assert!(matches!(err, SharedMemoryError::Exists { .. }), "{err}");
        assert!(err.to_string().contains(created.name()), "{err}");
        let err = SharedMemory::open("herd_surely_absent_segment").unwrap_err();
        assert!(matches!(err, SharedMemoryError::NotFound { .. }), "{err}");
        let err = SharedMemory::create("herd_zero", 0).unwrap_err();
        assert!(matches!(err, SharedMemoryError::ZeroSize { .. }), "{err}");
    }

    #[test]
    fn records_name_the_creator_and_sweep_spares_the_living() {
        let created = SharedMemory::create_unique(10).unwrap();
        let record = read_record(&registry_dir().join(created.name())).unwrap();
        assert_eq!(record.pid, Pid::this().as_raw());
        assert!(record.creator_alive());
        let swept = SharedMemory::sweep_orphans().unwrap();
        assert!(!swept.contains(&created.name().to_owned()));
        assert!(exists(created.name()));
        let dead = Record {
            start_time: record.start_time + 1,
            ..record
        };
        assert!(!dead.creator_alive(), "a reused pid is not the creator");
    }
}
