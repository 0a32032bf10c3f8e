//! Handing data to a spawned child: the memfd holding its spawn request, and adopting the fds it inherits
//! through `execv`.
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

/// An anonymous file (memfd, close-on-exec) holding `bytes`: a spawn request of any size, handed
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
