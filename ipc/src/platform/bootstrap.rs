//! The start-up hook that turns a re-executed binary into the child herd asked for, before `main` runs.
//!
//! spawn re-executes the running binary as `argv0 --herd-ipc-spawn <request fd> <result fd>`, and the
//! forkserver is started as `argv0 --herd-ipc-forkserver <channel fd> <parent pid>`. If that marker reached
//! `main`, every `main` would have to call `herd_ipc::init()` first, which a libtest binary (an ordinary
//! `#[test]`) cannot do: its `main` is libtest's, which rejects the unknown option. So the marker is read by
//! an ELF constructor (a function pointer in `.init_array`), which the dynamic loader (or the static start-up
//! code) calls before `main`; the child runs its entry there and exits, and no `main` ever sees the marker.
//!
//! The constructor cannot rely on Rust std being set up (`std::env::args` is filled by std's own
//! constructor, whose order relative to this one is the linker's choice), so it reads `/proc/self/cmdline`
//! with raw `open`/`read`. Entries are found through `linkme`'s link-time section, which needs no
//! constructor, so the order of constructors cannot hide an entry.
use std::ffi::CStr;

/// Reads `/proc/self/cmdline` (the arguments, each followed by a NUL) with raw system calls; `None` if it
/// cannot be read (no /proc: spawn needs `/proc/self/exe` anyway, so no herd child can be running).
fn read_cmdline() -> Option<Vec<u8>> {
    const CMDLINE: &CStr = c"/proc/self/cmdline";
    // SAFETY: open takes a NUL-terminated path that lives for the call; it returns a new fd or -1.
    let fd = unsafe { libc::open(CMDLINE.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut cmdline = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = loop {
        // SAFETY: read writes at most chunk.len() bytes into `chunk`, which lives for the call; `fd` is the
        // file opened above, still open.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        match usize::try_from(n) {
            Ok(0) => break true,
            Ok(n) => cmdline.extend_from_slice(&chunk[..n]),
            Err(_) if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            Err(_) => break false,
        }
    };
    // SAFETY: `fd` was opened above and is closed exactly once, here; nothing else knows its number.
    unsafe { libc::close(fd) };
    complete.then_some(cmdline)
}

/// The constructor: hands the arguments to the process layer, which returns at once unless a herd marker
/// is there (then it runs the child and exits the process).
extern "C" fn herd_ipc_bootstrap() {
    let Some(cmdline) = read_cmdline() else {
        return;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    crate::process::run_if_started_by_herd(&args);
}

/// The `.init_array` entry.
///
/// SAFETY (why a constructor is sound here): `.init_array` functions run once, on the main thread, before
/// `main` and before any thread of the program exists, with the C runtime (malloc, stdio, environ) already
/// set up; that is all `herd_ipc_bootstrap` needs. It reads its arguments through raw system calls, touches
/// no static that another constructor initialises, and in an ordinary process (no herd marker) it only reads
/// `/proc/self/cmdline` and returns. `#[used]` keeps the static even though no code names it; the spawn and
/// forkserver paths reference it through [`ensure_linked`] so the object holding it is always linked into
/// any binary that can start herd children.
#[used]
#[link_section = ".init_array"]
static BOOTSTRAP: extern "C" fn() = herd_ipc_bootstrap;

/// Keeps the constructor in the binary: called on every path that re-executes this binary, so the linker
/// cannot drop the object that holds [`BOOTSTRAP`].
pub(crate) fn ensure_linked() {
    std::hint::black_box(&BOOTSTRAP);
}
