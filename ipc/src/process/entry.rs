//! Entries: functions a spawned child can run, registered at link time under a name, and `init()`, the
//! bootstrap at the top of `main` that turns a re-executed binary into the child running one of them.
use std::any::type_name;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::platform::{self, Socket};
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

        $crate::__private::inventory::submit! {
            $crate::__private::EntryRegistration::of::<$name>()
        }
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

inventory::collect!(EntryRegistration);

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
    inventory::iter::<EntryRegistration>().find(|entry| entry.name == name)
}

pub(crate) fn is_registered(name: &str) -> bool {
    find(name).is_some()
}

pub(crate) fn registered_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = inventory::iter::<EntryRegistration>()
        .map(|entry| entry.name)
        .collect();
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
    pub(crate) args: Vec<u8>,
    /// Fds owned by the handles inside `args`, inherited under the same numbers, in codec order.
    pub(crate) arg_fds: Vec<RawFd>,
}

/// Whether this process was started by spawn (the spawn flag is its first argument). In a child that
/// called [`init`] this is never asked: `init` runs the entry and exits.
pub(crate) fn is_spawned_child() -> bool {
    std::env::args_os().nth(1).as_deref() == Some(OsStr::new(SPAWN_FLAG))
}

/// Call at the top of `main` (before anything else, threads included) in every binary that uses
/// [`Process::spawn`](crate::Process::spawn): supervisor, examples, test binaries with `harness = false`.
///
/// In the parent it returns at once. In a spawned child (this binary re-executed with the spawn flag) it runs
/// the requested entry, sends its outcome back and exits: it never returns.
pub fn init() {
    if !is_spawned_child() {
        return;
    }
    let mut args = std::env::args_os().skip(2);
    let request_fd = args.next();
    let result_fd = args.next();
    let code = match adopt_arg(result_fd.as_deref()) {
        Ok(result_write) => {
            let (outcome, fds) = match run_request(adopt_arg(request_fd.as_deref())) {
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
fn adopt_arg(arg: Option<&OsStr>) -> io::Result<OwnedFd> {
    let number: RawFd = arg
        .and_then(OsStr::to_str)
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
    let Some(entry) = find(&request.entry) else {
        let message = format!(
            "no entry named {:?} is registered in this binary (registered: [{}])",
            request.entry,
            registered_names().join(", ")
        );
        return Ok((ChildOutcome::Failed(message), Vec::new()));
    };
    Ok((entry.run)(&request.args, fds))
}
