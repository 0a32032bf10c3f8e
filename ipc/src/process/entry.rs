//! Entries: functions a spawned (or forkserver) child can run, registered at link time under a name, and the
//! bootstrap that turns a re-executed binary into the child running one of them, before `main`.
use std::any::type_name;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::platform::{self, Socket};
use crate::process::forkserver::{self, FORKSERVER_FLAG};
use crate::process::outcome::{ChildOutcome, OutcomeWithFds, EXIT_FAILED};

/// A function a spawned child can run. Declare one with [`entry!`](crate::entry!) rather than by hand: the
/// macro also registers it so the re-executed binary can find it by [`NAME`](Self::NAME).
pub trait Entry: Copy + 'static {
    /// Unique name: the module path and function name.
    const NAME: &'static str;
    /// The arguments, serialised by the parent and decoded by the child.
    type Args: Serialize + DeserializeOwned;
    /// The return value, sent back to the parent.
    type Output: Serialize + DeserializeOwned;
    /// The body.
    fn run(args: Self::Args) -> Self::Output;
}

/// Declares an entry for [`Process::spawn`](crate::Process::spawn): a unit struct named like the function,
/// implementing [`Entry`], registered for the spawned child to find. Without `-> T` the entry returns `()`.
///
/// ```
/// use std::time::Duration;
///
/// herd_ipc::entry! {
///     /// Adds two numbers in a child process.
///     pub fn add(pair: (i32, i32)) -> i32 {
///         pair.0 + pair.1
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     herd_ipc::init(); // a spawned child runs its entry here and exits
///     let child = herd_ipc::Process::new().spawn(add, &(2, 40))?;
///     assert_eq!(child.join_timeout(Duration::from_secs(10))?, 42);
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! entry {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($arg:tt : $args:ty) -> $output:ty $body:block) => {
        $(#[$meta])*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;

        impl $crate::Entry for $name {
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));
            type Args = $args;
            type Output = $output;
            fn run($arg: $args) -> $output $body
        }

        const _: () = {
            #[allow(unsafe_code)] // linkme's `#[link_section]`: see `ENTRIES`.
            #[$crate::__private::linkme::distributed_slice($crate::__private::ENTRIES)]
            #[linkme(crate = $crate::__private::linkme)]
            static ENTRY: $crate::__private::EntryRegistration =
                $crate::__private::EntryRegistration::of::<$name>();
        };
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($arg:tt : $args:ty) $body:block) => {
        $crate::entry! { $(#[$meta])* $vis fn $name($arg: $args) -> () $body }
    };
}

/// A registered entry: its name and the type-erased function that decodes its arguments, runs it and encodes
/// its outcome. Built by [`entry!`](crate::entry!).
#[doc(hidden)]
#[derive(Debug)]
pub struct EntryRegistration {
    name: &'static str,
    run: fn(&[u8], Vec<OwnedFd>) -> OutcomeWithFds,
}

impl EntryRegistration {
    /// The registration of `E`.
    pub const fn of<E: Entry>() -> Self {
        Self {
            name: E::NAME,
            run: run_entry::<E>,
        }
    }
}

/// Every entry linked into this binary. `linkme` gathers the registrations into one linker section at link
/// time: no constructor has to run first, so the spawn bootstrap (itself a constructor, see
/// `platform/bootstrap.rs`) finds them all, however the linker orders constructors.
// linkme places the registrations in a linker section of their own (`#[link_section]`, which
// the unsafe_code lint flags): it reads them back as one slice, with no constructor and no unsafe
// code of ours.
#[allow(unsafe_code)]
#[linkme::distributed_slice]
pub static ENTRIES: [EntryRegistration];

fn run_entry<E: Entry>(args: &[u8], fds: Vec<OwnedFd>) -> OutcomeWithFds {
    let args = match codec::decode::<E::Args>(args, fds) {
        Ok(args) => args,
        Err(err) => {
            let message = format!(
                "the arguments for entry {:?} do not decode as {}: {err}",
                E::NAME,
                type_name::<E::Args>()
            );
            return (ChildOutcome::Failed(message), Vec::new());
        }
    };
    ChildOutcome::of_run(catch_unwind(AssertUnwindSafe(|| E::run(args))))
}

fn find(name: &str) -> Option<&'static EntryRegistration> {
    ENTRIES.iter().find(|entry| entry.name == name)
}

pub(crate) fn is_registered(name: &str) -> bool {
    find(name).is_some()
}

pub(crate) fn registered_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ENTRIES.iter().map(|entry| entry.name).collect();
    names.sort_unstable();
    names
}

/// The command-line flag that marks a re-executed binary as a spawned child:
/// `argv0 --herd-ipc-spawn <request fd> <result fd>`.
pub(crate) const SPAWN_FLAG: &str = "--herd-ipc-spawn";

/// What the parent hands a spawned child, in a memfd.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    pub(crate) entry: String,
    pub(crate) name: String,
    /// Who asked for the child, for `parent_process()` there.
    pub(crate) parent_pid: i32,
    pub(crate) parent_name: String,
    pub(crate) args: Vec<u8>,
    /// Fds owned by the handles inside `args`, inherited under the same numbers, in codec order.
    pub(crate) arg_fds: Vec<RawFd>,
}

/// Whether this process was started by spawn (the spawn flag is its first argument). The start-up hook
/// (`platform/bootstrap.rs`) runs every spawned child before `main`, so this is only ever true if that hook
/// did not run.
pub(crate) fn is_spawned_child() -> bool {
    std::env::args_os().nth(1).as_deref() == Some(OsStr::new(SPAWN_FLAG))
}

/// No longer required: a spawned child (and the forkserver) now runs before `main`, from a start-up hook
/// (an ELF constructor) in herd-ipc, so `main` never sees the spawn flag. That is why spawn works from
/// ordinary `#[test]` functions, whose `main` is libtest's.
///
/// Kept so programs that call it first thing in `main` need no change: in a parent it returns at once, and
/// should the start-up hook not have run, it does the hook's work (runs the requested entry, sends its
/// outcome back and exits; it then never returns).
pub fn init() {
    let args: Vec<Vec<u8>> = std::env::args_os()
        .map(|arg| arg.as_bytes().to_vec())
        .collect();
    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    run_if_started_by_herd(&args);
}

/// Called before `main` with the process's arguments: if they carry a herd marker, becomes the child (a
/// spawned entry, or the forkserver) and exits; otherwise returns at once.
pub(crate) fn run_if_started_by_herd(args: &[&[u8]]) {
    match args.get(1).copied() {
        Some(flag) if flag == SPAWN_FLAG.as_bytes() => run_spawned(&args[2..]),
        Some(flag) if flag == FORKSERVER_FLAG.as_bytes() => forkserver::serve_and_exit(&args[2..]),
        _ => {}
    }
}

/// Runs the spawned child described by `args` (`<request fd> <result fd>`) and exits.
fn run_spawned(args: &[&[u8]]) -> ! {
    let request_fd = args.first().copied();
    let result_fd = args.get(1).copied();
    let code = match adopt_arg(result_fd) {
        Ok(result_write) => {
            let (outcome, fds) = match run_request(adopt_arg(request_fd)) {
                Ok(ran) => ran,
                Err(err) => (
                    ChildOutcome::Failed(format!("spawned child could not start: {err}")),
                    Vec::new(),
                ),
            };
            let _ = io::stdout().flush();
            outcome.send(&Socket::from(result_write), &fds)
        }
        Err(err) => {
            eprintln!(
                "herd-ipc: spawned child has no result channel ({err}); was it started by herd?"
            );
            EXIT_FAILED
        }
    };
    std::process::exit(code)
}

/// Adopts the inherited fd whose number is a command-line argument.
fn adopt_arg(arg: Option<&[u8]>) -> io::Result<OwnedFd> {
    let number: RawFd = arg
        .and_then(|arg| std::str::from_utf8(arg).ok())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| io::Error::other(format!("{SPAWN_FLAG} needs two fd numbers")))?;
    platform::adopt_inherited_fd(number)
}

fn run_request(request_fd: io::Result<OwnedFd>) -> io::Result<OutcomeWithFds> {
    let bytes = platform::read_memfd(request_fd?)?;
    let request: SpawnRequest = postcard::from_bytes(&bytes).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt spawn request: {err}"),
        )
    })?;
    let fds = request
        .arg_fds
        .iter()
        .map(|&fd| platform::adopt_inherited_fd(fd))
        .collect::<io::Result<Vec<_>>>()?;
    platform::set_current_name(request.name);
    platform::set_parent(request.parent_pid, request.parent_name);
    Ok(run_by_name(&request.entry, &request.args, fds))
}

/// Runs the entry registered as `entry` on encoded arguments (bytes and the fds of their handles); an
/// unknown name is a `Failed` outcome listing the registered ones.
pub(crate) fn run_by_name(entry: &str, args: &[u8], fds: Vec<OwnedFd>) -> OutcomeWithFds {
    let Some(registration) = find(entry) else {
        let message = format!(
            "no entry named {entry:?} is registered in this binary (registered: [{}])",
            registered_names().join(", ")
        );
        return (ChildOutcome::Failed(message), Vec::new());
    };
    (registration.run)(args, fds)
}
