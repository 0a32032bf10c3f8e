//! Handing data between a parent and the child it starts: the result pipe, the memfd holding a spawn request,
//! and adopting the fds a spawned child inherits through `execv`.
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// A close-on-exec pipe whose read end is non-blocking (the parent polls it next to the child's pidfd) and
/// whose write end blocks (the child simply writes its result).
pub(crate) fn result_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    fcntl(read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((read, write))
}

/// Reads what is available from a non-blocking fd into `buf`; `Ok(true)` at end of file.
pub(crate) fn read_available(fd: &OwnedFd, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut file = File::from(fd.try_clone()?);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `bytes` to a blocking fd.
pub(crate) fn write_all(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    File::from(fd.try_clone()?).write_all(bytes)
}

/// A sealed-size anonymous file (memfd, close-on-exec) holding `bytes`: a spawn request of any size, handed
/// over without the parent blocking until the child reads it.
pub(crate) fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = memfd_create(c"herd-spawn-request", MemFdCreateFlag::MFD_CLOEXEC)?;
    let file = File::from(fd);
    file.write_all_at(bytes, 0)?;
    Ok(file.into())
}

/// Reads the whole content of a memfd from offset 0 (the offset is shared with the parent's copy).
pub(crate) fn read_memfd(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let file = File::from(fd);
    let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// Takes ownership of an fd this process inherited through `execv` and whose number the parent named on the
/// command line; sets close-on-exec again. Fails if no such fd is open, so a bogus number is an error, not a
/// double close.
///
/// Only the spawn bootstrap (`herd_ipc::init`) calls this, at the top of `main`, once per inherited fd: no
/// other owner of these numbers exists yet.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    match fcntl(fd, FcntlArg::F_GETFD) {
        Ok(_) => {}
        Err(Errno::EBADF) => {
            return Err(io::Error::other(format!(
                "fd {fd} named by the parent is not open in this process"
            )))
        }
        Err(errno) => return Err(errno.into()),
    }
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: fcntl just proved `fd` is open; it was inherited through execv for this process to own (the
    // parent passed its number to us alone) and init() adopts each number once, before any other code runs.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
