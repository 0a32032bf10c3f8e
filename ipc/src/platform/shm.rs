//! Shared memory segment: an anonymous `memfd` sized with `ftruncate` and mapped `MAP_SHARED`.
//!
//! A [`SharedMemory`] owns both the memfd and its mapping; dropping it unmaps the memory and closes
//! the fd. The segment has no name in any file system (it never appears in `/dev/shm`), is created
//! readable and writable by the owner only (mode 0600) and close-on-exec, and the kernel frees it
//! when the last process holding the fd or a mapping exits, however it exits (SIGKILL included).
//! Children started by fork inherit the mapping; other processes receive the fd (SCM_RIGHTS or
//! spawn arguments) and map it with [`SharedMemory::from_fd`].

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// An owned, mapped memfd segment. The memory starts zero-filled and is page aligned.
pub(crate) struct SharedMemory {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value until Drop; the struct only hands
// out raw pointers, and every user synchronises access to the bytes with atomics, futexes or the
// process-shared robust mutex, which work across threads as well as across processes.
unsafe impl Send for SharedMemory {}
// SAFETY: as for Send: `&SharedMemory` only exposes the base pointer, the length and the fd.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Creates a zero-filled segment of `len` bytes. `name` only labels the memfd in
    /// `/proc/<pid>/fd` and `/proc/<pid>/maps` (as `memfd:herd:<name>`); it is not a path.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("shared memory segment `{name}`: length must be greater than 0"),
            ));
        }
        let label = CString::new(format!("herd:{name}")).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("shared memory segment name {name:?} contains a NUL byte"),
            )
        })?;
        let size = libc::off_t::try_from(len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("shared memory segment `{name}`: length {len} is too large"),
            )
        })?;
        // SAFETY: `label` is a valid NUL-terminated string that outlives the call; MFD_CLOEXEC keeps
        // the fd out of exec'd programs unless it is deliberately passed.
        let raw = unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this fd; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is a valid open memfd; fchmod only changes its inode's mode bits.
        if unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid memfd opened for writing; ftruncate extends it with zero pages.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd, len)
    }

    /// Maps a segment received from another process. Its length is the memfd's size.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fd` is a valid open fd and `stat` points to writable memory of the right type.
        if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstat succeeded, so it filled the whole struct.
        let stat = unsafe { stat.assume_init() };
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "received fd is not a non-empty shared memory segment",
            ));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared read/write mapping of `len` bytes of `fd` at an address the kernel
        // chooses; it aliases no Rust object, and the file is at least `len` bytes long.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(addr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self { fd, base, len })
    }

    /// The first byte of the mapping (page aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl AsFd for SharedMemory {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe the mapping created in `map`, which nothing uses any more
        // (all borrows of the memory are tied to `&self`). Failure would only leak address space.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("fd", &self.fd.as_raw_fd())
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_mapping_of_the_fd_sees_the_same_bytes() {
        let first = SharedMemory::create("test", 100).expect("create");
        assert_eq!(first.len(), 100);
        // SAFETY: the mapping is 100 bytes long and only this test uses it.
        unsafe { first.as_ptr().add(99).write(42) };
        let second = SharedMemory::from_fd(first.as_fd().try_clone_to_owned().expect("dup"))
            .expect("from_fd");
        assert_eq!(second.len(), 100);
        // SAFETY: as above; both mappings are of the same 100-byte file.
        assert_eq!(unsafe { second.as_ptr().add(99).read() }, 42);
        // SAFETY: as above.
        assert_eq!(unsafe { second.as_ptr().read() }, 0, "memory starts zeroed");
    }

    #[test]
    fn segment_is_owner_only_cloexec_and_nameless() {
        let shm = SharedMemory::create("rights", 4096).expect("create");
        let raw = shm.as_fd().as_raw_fd();
        let meta = std::fs::metadata(format!("/proc/self/fd/{raw}")).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // SAFETY: F_GETFD on an fd we own only reads its flags.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        let target = std::fs::read_link(format!("/proc/self/fd/{raw}")).expect("readlink");
        assert!(
            target.to_string_lossy().starts_with("/memfd:herd:rights"),
            "{target:?}"
        );
    }

    #[test]
    fn bad_sizes_and_names_are_clear_errors() {
        let err = SharedMemory::create("zero", 0).expect_err("zero length");
        assert!(err.to_string().contains("greater than 0"), "{err}");
        let err = SharedMemory::create("a\0b", 8).expect_err("NUL in name");
        assert!(err.to_string().contains("NUL"), "{err}");
        let file = tempfile_fd();
        let err = SharedMemory::from_fd(file).expect_err("empty file");
        assert!(err.to_string().contains("non-empty"), "{err}");
    }

    fn tempfile_fd() -> OwnedFd {
        let label = CString::new("empty").expect("label");
        // SAFETY: valid NUL-terminated name; we take ownership of the returned fd below.
        let raw = unsafe { libc::memfd_create(label.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: fresh fd owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }
}
