//! `SupervisorConfig`: the knobs of one supervised run (the `supervisor run` options).
use std::time::Duration;

/// How a run is supervised.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Workers to keep running (SIGTTIN/SIGTTOU change it while running).
    pub workers: usize,
    /// The most workers SIGTTIN may grow the pool to (default: 4 per available CPU, at least
    /// 4), so that a flood of SIGTTIN cannot exhaust processes or memory. Never lowers the
    /// pool below `workers`.
    pub max_workers: usize,
    /// A job running longer is killed with its worker and re-queued; a job given a limit of its
    /// own ([`LeaseTable::set_timeout`](crate::LeaseTable::set_timeout)) uses that one instead.
    pub job_timeout: Option<Duration>,
    /// A worker silent for longer (stopped, frozen) is killed and its job re-queued.
    pub heartbeat_timeout: Duration,
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// Tries per job before it fails.
    pub max_attempts: u32,
    /// Unplanned restarts allowed within `restart_period` (OTP intensity).
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    pub restart_period: Duration,
    /// After a stop signal (or the last job), how long workers get before SIGKILL.
    pub grace: Duration,
    /// Jobs after which a worker is replaced by a fresh one.
    pub max_tasks_per_child: Option<u64>,
    /// Report the worker table ([`crate::Event::Status`]) this often (also on SIGUSR1).
    pub status_interval: Option<Duration>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            workers: cpus,
            max_workers: Self::default_max_workers(cpus),
            job_timeout: None,
            heartbeat_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(500),
            max_attempts: 3,
            max_restarts: 10,
            restart_period: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            max_tasks_per_child: None,
            status_interval: None,
        }
    }
}

impl SupervisorConfig {
    /// The default [`max_workers`](Self::max_workers) for `cpus` CPUs: 4 per CPU, at least 4.
    pub fn default_max_workers(cpus: usize) -> usize {
        cpus.saturating_mul(4).max(4)
    }
}
