//! `StartMethod`: fork, spawn or forkserver, chosen by value (`"fork"`, `"spawn"`, `"forkserver"` as in
//! Python's `multiprocessing.set_start_method`), and `Process::start`, which dispatches on it.
use std::fmt;
use std::str::FromStr;

use crate::codec;
use crate::platform::ForkPermit;
use crate::process::builder::{Process, StartError};
use crate::process::child::Child;
use crate::process::entry::Entry;

/// How [`Process::start`] starts a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Fork this process and run the entry in the copy ([`Process::fork`]): the fastest start, refused in a
    /// multi-threaded process.
    Fork,
    /// Re-execute this binary and run the entry there ([`Process::spawn`]): safe anywhere, the slowest.
    Spawn,
    /// Ask this process's forkserver to fork a child that runs the entry ([`Process::forkserver`]): about
    /// as fast as fork after the first start, and safe in a multi-threaded process.
    Forkserver,
}

impl StartMethod {
    /// Every method, in the order fork, spawn, forkserver.
    pub const ALL: [StartMethod; 3] = [Self::Fork, Self::Spawn, Self::Forkserver];

    /// The name: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fork => "fork",
            Self::Spawn => "spawn",
            Self::Forkserver => "forkserver",
        }
    }

    /// [`Fork`](Self::Fork) while this process has a single thread (counted in `/proc/self/task`, as
    /// [`Process::fork`] does), [`Forkserver`](Self::Forkserver) otherwise (or when threads cannot be counted).
    pub fn default_for_this_process() -> Self {
        if ForkPermit::single_threaded().is_ok() {
            Self::Fork
        } else {
            Self::Forkserver
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A start method name that is none of `fork`, `spawn`, `forkserver`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown start method {0:?} (known: fork, spawn, forkserver)")]
pub struct UnknownStartMethod(pub String);

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str() == name)
            .ok_or_else(|| UnknownStartMethod(name.to_owned()))
    }
}

impl Process {
    /// Starts a child that runs `entry` on `args` by `method`: [`fork`](Self::fork) (the entry runs in a
    /// forked copy of this process, on a copy of the arguments decoded there),
    /// [`spawn`](Self::spawn) or [`forkserver`](Self::forkserver). The child behaves the same whichever
    /// method started it, so a program can take the method as configuration.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use herd_ipc::{Process, StartMethod};
    ///
    /// herd_ipc::entry! {
    ///     fn shout(word: String) -> String { word.to_uppercase() }
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     for method in ["fork", "spawn", "forkserver"] {
    ///         let method: StartMethod = method.parse()?;
    ///         let child = Process::new().start(method, shout, &"hey".to_owned())?;
    ///         assert_eq!(child.join_timeout(Duration::from_secs(10))?, "HEY");
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn start<E: Entry>(
        self,
        method: StartMethod,
        entry: E,
        args: &E::Args,
    ) -> Result<Child<E::Output>, StartError> {
        match method {
            StartMethod::Spawn => self.spawn(entry, args),
            StartMethod::Forkserver => self.forkserver(entry, args),
            StartMethod::Fork => {
                // Encoded here so bad arguments fail the start, as with the other methods; the child decodes
                // its copy (the fds of the handles inside are duplicates it inherits), owning what it runs on.
                let encoded = codec::encode(args).map_err(|source| StartError::Arguments {
                    entry: E::NAME.to_owned(),
                    source,
                })?;
                self.fork(move || {
                    let args = codec::decode::<E::Args>(&encoded.bytes, encoded.fds)
                        .unwrap_or_else(|err| {
                            panic!("the arguments for entry {:?} do not decode: {err}", E::NAME)
                        });
                    E::run(args)
                })
            }
        }
    }
}
