//! `Launcher` and `WorkerChannel`: how the supervisor starts a worker and talks to it.
//!
//! The supervision loop is written against these two traits; the herd-ipc implementation
//! (Process by fork or spawn, one Pipe per worker) lives in [`crate::ipc_launcher`].
use std::io;
use std::os::fd::AsFd;

use herd_ipc::Pid;
use herd_worker::{FromWorker, ToWorker};

use crate::{Kill, Wait, WorkerId};

/// The supervisor's end of one worker's connection; pollable through its fd.
pub trait WorkerChannel: AsFd {
    /// Sends one message.
    fn send(&mut self, message: ToWorker) -> io::Result<()>;
    /// One message if one is ready, without blocking; an error once the worker's end is closed.
    fn try_recv(&mut self) -> io::Result<Option<FromWorker>>;
}

/// Starts workers.
pub trait Launcher {
    /// The started process.
    type Child: Wait + Kill;
    /// The connection to it.
    type Channel: WorkerChannel;
    /// Starts one worker, in a process group of its own, dying with the supervisor.
    fn launch(&mut self, id: WorkerId) -> anyhow::Result<(Self::Child, Self::Channel)>;
    /// Reaps exited processes that are not workers (`is_worker` tells), e.g. workers' children
    /// re-parented to a subreaper supervisor.
    fn reap_strays(&mut self, is_worker: &dyn Fn(Pid) -> bool);
}
