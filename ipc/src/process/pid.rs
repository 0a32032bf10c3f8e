//! `Pid`: a process id, the one pid type of herd's crates.
use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A process id, as the kernel's `pid_t`.
///
/// A pid names a process only until that process has been reaped; after that the kernel may give the
/// number to another process. herd signals and reaps its own children through pidfds for that reason; a
/// `Pid` is for identification (logs, `/proc` lookups, comparing with `getppid`) and for signalling a
/// process that is known not to have been reaped yet (a child of ours, or its process group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pid(i32);

impl Pid {
    /// A pid from its raw value.
    pub const fn from_raw(pid: i32) -> Self {
        Self(pid)
    }

    /// The raw value, e.g. for `libc` calls or `/proc/PID` paths.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The pid of the calling process.
    pub fn this() -> Self {
        Self(nix::unistd::getpid().as_raw())
    }

    /// The pid of the calling process's parent (1, or a subreaper's, once the parent is gone).
    pub fn parent() -> Self {
        Self(nix::unistd::getppid().as_raw())
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Pid {
    type Err = ParseIntError;

    /// Parses the decimal form that [`Display`](fmt::Display) writes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Self)
    }
}

impl From<Pid> for nix::unistd::Pid {
    fn from(pid: Pid) -> Self {
        Self::from_raw(pid.0)
    }
}

impl From<nix::unistd::Pid> for Pid {
    fn from(pid: nix::unistd::Pid) -> Self {
        Self(pid.as_raw())
    }
}

impl From<Pid> for i32 {
    fn from(pid: Pid) -> Self {
        pid.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_displays() {
        let pid = Pid::from_raw(4242);
        assert_eq!(pid.as_raw(), 4242);
        assert_eq!(pid.to_string(), "4242");
        assert_eq!("4242".parse::<Pid>().unwrap(), pid);
        assert_eq!(nix::unistd::Pid::from(pid).as_raw(), 4242);
        assert_eq!(Pid::from(nix::unistd::Pid::from_raw(7)), Pid::from_raw(7));
        assert_eq!(Pid::this().as_raw() as u32, std::process::id());
        assert_eq!(
            postcard::to_stdvec(&pid).unwrap(),
            postcard::to_stdvec(&4242i32).unwrap()
        );
    }
}
