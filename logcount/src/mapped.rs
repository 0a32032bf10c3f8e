//! `MappedWindow`: a read-only private mapping of a byte range of a file, so a chunk is scanned
//! in place instead of being copied by `read` into a buffer (the copy was a quarter of the CPU).
//!
//! The hazard, and why it is accepted only in pool workers: touching a mapped page that lies
//! past the end of a file truncated after the mapping was made (logrotate's `copytruncate`
//! does exactly that) raises SIGBUS, which kills the process. So only a job's first attempt in
//! a supervisor pool worker maps (`ReadMethod::Map`, chosen by `LogcountChunk`), and only for a
//! job that has a second attempt ([`ChunkJob::may_map`](super::ChunkJob::may_map)): if it dies,
//! the supervisor sees a lost worker, starts another one and re-leases the job, whose next attempt
//! reads with `read(2)` (`ReadMethod::Read`), which sees the shorter file and cannot fault.
//! In-process callers (`count_dir`, `count_chunk`) never map.
//!
//! A mapping can only be made with a [`MapConsent`], whose constructor is `unsafe`: the caller
//! states there that a SIGBUS is survivable where the scan runs.
#![allow(unsafe_code)] // mmap/munmap and reads of mapped file pages: see each SAFETY comment

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// The caller's promise that scanning files through a mapping is acceptable here: the one way
/// to [`ReadMethod::Map`](super::ReadMethod::Map) and so to this module's mapped reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapConsent {
    _promise: (),
}

impl MapConsent {
    /// Consent to mapped scans.
    ///
    /// # Safety
    /// Each file scanned with this consent must keep the bytes being scanned (it is never cut
    /// below the size it had when a window was mapped) until the scan ends, or the caller
    /// accepts that the process is killed by SIGBUS at the first read past the new end: at an
    /// arbitrary point of the scan, with no unwinding and no destructors, leaving whatever it
    /// holds (locks, shared memory in mid-update, partly written output) as it is. A pool worker
    /// whose job the supervisor re-runs with `read` after the worker's death is such a process;
    /// a program's main process usually is not.
    pub unsafe fn new() -> Self {
        Self { _promise: () }
    }
}

/// A private, read-only mapping of `len` bytes of a file from `offset`. Pages are faulted in as
/// the scan reaches them (the kernel maps 64 KiB of page cache per fault); `MAP_POPULATE`,
/// `MADV_SEQUENTIAL` and `MADV_HUGEPAGE` were measured and gained nothing or lost.
#[derive(Debug)]
pub(crate) struct MappedWindow {
    /// Start of the mapping (page-aligned, at or before the requested offset).
    base: NonNull<u8>,
    /// Length of the mapping from `base`.
    mapped_len: usize,
    /// Where the requested bytes start within the mapping.
    skip: usize,
}

impl MappedWindow {
    /// Maps `len` (> 0) bytes of `file` from `offset`. The caller has clamped `offset + len` to
    /// the file's size (fstat) just before: the bytes are then all in the file unless it is
    /// truncated meanwhile, the hazard this module's doc describes and the consent accepts.
    pub(crate) fn map(
        _consent: MapConsent,
        file: &File,
        offset: u64,
        len: usize,
    ) -> io::Result<Self> {
        let page = page_size();
        let skip = (offset % page as u64) as usize;
        let aligned = offset - skip as u64;
        let mapped_len = len
            .checked_add(skip)
            .filter(|_| len > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad mapping length"))?;
        let file_offset = libc::off_t::try_from(aligned)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: a fresh mapping chosen by the kernel (address hint null) aliases no Rust
        // object. PROT_READ + MAP_PRIVATE: our view can never be written through, and writes
        // by others to the file are fine for `&[u8]` reads of plain bytes (the chunk is counted
        // as it was seen, as with `read`). What a mapping cannot promise is that the pages stay
        // backed: see `bytes`.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(Self {
            base,
            mapped_len,
            skip,
        })
    }

    /// The mapped bytes of the file.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `base..base + mapped_len` is one live mapping owned by `self` (unmapped only
        // in `Drop`, so not while this borrow lives), readable, and never written through (it
        // is PROT_READ and private), so a shared slice over it is sound as far as Rust's
        // aliasing rules go. The one event it cannot rule out is the file being truncated
        // below this range while we read: the kernel then raises SIGBUS on the first access
        // past the new end, killing the process. That is the protocol of this module: a
        // mapping exists only under a `MapConsent`, whose maker accepted that death (a pool
        // worker's first attempt at a job; the supervisor re-leases the job of a worker that
        // died, and every later attempt reads with `read`).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.skip), self.len()) }
    }

    fn len(&self) -> usize {
        self.mapped_len - self.skip
    }
}

impl Drop for MappedWindow {
    fn drop(&mut self) {
        // SAFETY: `base`/`mapped_len` describe the mapping made in `map`, unmapped only here;
        // no borrow of `bytes` outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.mapped_len);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}
