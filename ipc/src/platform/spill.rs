//! The spill file of a queue: a memfd beside the ring where messages too large for the ring (or
//! that do not fit its free space right now) are stored, each at its own page-aligned offset.
//!
//! The file is sparse: a message's pages exist from its put until its get, when the consumer
//! punches them out. Offsets only grow (a 64-bit byte count would take centuries to wrap), so
//! nothing is ever overwritten while a record may still refer to it. Being a memfd, the file and
//! any bytes left in it by a process killed mid-put vanish with the last process holding the
//! queue. No `unsafe` here: the bytes are reached by `pread`/`pwrite`, not through a mapping.

use std::ffi::CString;
use std::fs::{File, Permissions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};

use nix::fcntl::{fallocate, FallocateFlags};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// Spilled messages start on a page boundary so that punching one out frees whole pages.
pub(crate) const SPILL_ALIGN: u64 = 4096;

/// The spill file of one queue.
#[derive(Debug)]
pub(crate) struct SpillFile {
    file: File,
}

impl SpillFile {
    /// Creates an empty spill file labelled `memfd:herd:<label>-spill`, owner-only, close-on-exec.
    pub(crate) fn create(label: &str) -> io::Result<Self> {
        let name = CString::new(format!("herd:{label}-spill")).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("queue label {label:?} contains a NUL byte"),
            )
        })?;
        let fd = memfd_create(&name, MemFdCreateFlag::MFD_CLOEXEC)?;
        let file = File::from(fd);
        file.set_permissions(Permissions::from_mode(0o600))?;
        Ok(SpillFile { file })
    }

    /// Adopts a spill file received from another process.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let file = File::from(fd);
        if !file.metadata()?.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "received queue spill fd is not a memory file",
            ));
        }
        Ok(SpillFile { file })
    }

    /// Writes `bytes` at `offset` (growing the file as needed).
    pub(crate) fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    /// Reads `len` bytes at `offset`.
    pub(crate) fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        self.file.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    }

    /// Gives the pages of `from..to` back to the system (the file keeps its size; the range
    /// reads as zeros afterwards).
    pub(crate) fn release(&self, from: u64, to: u64) -> io::Result<()> {
        if to <= from {
            return Ok(());
        }
        let offset = i64::try_from(from).map_err(|_| io::Error::other("spill offset overflow"))?;
        let len = i64::try_from(to - from).map_err(|_| io::Error::other("spill range overflow"))?;
        fallocate(
            self.file.as_raw_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )?;
        Ok(())
    }

    /// Bytes of the file that hold data (allocated pages).
    #[cfg(test)]
    pub(crate) fn allocated_bytes(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata()?.blocks() * 512)
    }
}

impl AsFd for SpillFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_are_freed_and_read_as_zeros() {
        let spill = SpillFile::create("spill-test").expect("create");
        spill
            .write_at(3 * SPILL_ALIGN, &[7; 10_000])
            .expect("write");
        assert!(spill.allocated_bytes().unwrap() >= 10_000);
        assert_eq!(
            spill.read_at(3 * SPILL_ALIGN, 10_000).unwrap(),
            vec![7; 10_000]
        );
        spill.release(0, 6 * SPILL_ALIGN).expect("punch");
        assert_eq!(spill.allocated_bytes().unwrap(), 0);
        assert_eq!(spill.read_at(3 * SPILL_ALIGN, 10).unwrap(), vec![0; 10]);
    }
}
