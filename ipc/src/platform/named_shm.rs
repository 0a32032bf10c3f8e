//! Named shared memory in `/dev/shm`, as `shm_open` makes it (`shm_open("/name")` is
//! `open("/dev/shm/name")` on Linux), so other programs, Python's
//! `multiprocessing.shared_memory` among them, open the same segment by name.
//!
//! A [`NamedMapping`] owns the open file and its shared mapping (the memfd segment type's
//! mapping code, which unmaps in `Drop`); the file descriptor is close-on-exec (std opens with
//! `O_CLOEXEC`) and a created file is owner-only (0600) unless asked otherwise.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::shm::SharedMemory;

/// An open, mapped `/dev/shm` file.
#[derive(Debug)]
pub(crate) struct NamedMapping {
    map: SharedMemory,
    inode: u64,
}

impl NamedMapping {
    /// Creates `path` (it must not exist: `O_EXCL`, and no symlink is followed) with `mode`,
    /// sizes it to `len` zero bytes and maps it.
    pub(crate) fn create(path: &Path, len: usize, mode: u32) -> io::Result<NamedMapping> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let sized = u64::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size too large"))
            .and_then(|len| file.set_len(len))
            .and_then(|()| Self::map(file));
        if sized.is_err() {
            // Leave no half-made segment behind under the name.
            let _ = std::fs::remove_file(path);
        }
        sized
    }

    /// Opens and maps an existing `path` read-write, at its current size.
    pub(crate) fn open(path: &Path) -> io::Result<NamedMapping> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Self::map(file)
    }

    fn map(file: File) -> io::Result<NamedMapping> {
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file, so not a shared memory segment",
            ));
        }
        if meta.len() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the segment is empty (size 0): nothing to map",
            ));
        }
        let fd: OwnedFd = file.into();
        Ok(NamedMapping {
            map: SharedMemory::from_fd(fd)?,
            inode: meta.ino(),
        })
    }

    /// The inode of the mapped file, which tells this segment from a later one of the same name.
    pub(crate) fn inode(&self) -> u64 {
        self.inode
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The segment's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, valid until `self.map` drops, which the
        // borrow of `self` prevents; any bit pattern is a valid `u8`. Other processes may write
        // the file at any time (that is its purpose); herd cannot see them, so the public type
        // documents that programs order such writes with their reads (a Lock, an Event, a
        // message), as Python's `SharedMemory.buf` requires too.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// The segment's bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and the mapping is writable (PROT_WRITE, opened read-write);
        // `&mut self` makes this the only view into it from this process.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.map.len()) }
    }
}

impl AsFd for NamedMapping {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }
}
