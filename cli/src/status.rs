//! The worker status table (SIGUSR1 and `--status-interval`): what the supervisor reports about
//! each worker, with state, memory and CPU time read from procfs.
use std::fmt::Write as _;
use std::time::Duration;

use herd_ipc::Pid;
use herd_supervisor::Status;

/// A worker's state, resident memory and CPU time from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStats {
    /// R, S, D, T, Z...
    pub state: char,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// Reads a process's stats; `None` if it is gone.
pub fn proc_stats(pid: Pid) -> Option<ProcStats> {
    let stat = procfs::process::Process::new(pid.as_raw())
        .ok()?
        .stat()
        .ok()?;
    let ticks = procfs::ticks_per_second().max(1);
    Some(ProcStats {
        state: stat.state,
        rss_bytes: stat.rss * procfs::page_size(),
        cpu: Duration::from_millis((stat.utime + stat.stime) * 1000 / ticks),
    })
}

/// The table, one line per worker under a header.
pub fn render(status: &Status) -> String {
    let mut out = format!(
        "supervisor status: {} worker(s), {} job(s) queued, {} unfinished\n",
        status.workers.len(),
        status.queued,
        status.unfinished
    );
    let _ = writeln!(
        out,
        "{:>7} {:>8} {:>5} {:>10} {:>9} {:>6}  current job",
        "worker", "pid", "state", "rss", "cpu", "jobs"
    );
    for row in &status.workers {
        let stats = proc_stats(row.pid);
        let state = stats.map_or('?', |s| s.state);
        let rss = stats.map_or("?".to_owned(), |s| {
            format!("{:.1}M", s.rss_bytes as f64 / 1048576.0)
        });
        let cpu = stats.map_or("?".to_owned(), |s| format!("{:.2}s", s.cpu.as_secs_f64()));
        let current = row.current.map_or("idle".to_owned(), |(job, running)| {
            format!("job {job} for {:.1}s", running.as_secs_f64())
        });
        let _ = writeln!(
            out,
            "{:>7} {:>8} {:>5} {:>10} {:>9} {:>6}  {current}",
            format!("#{}", row.id.0),
            row.pid,
            state,
            rss,
            cpu,
            row.jobs_done
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_supervisor::{WorkerId, WorkerRow};

    #[test]
    fn reads_this_process_from_procfs() {
        let stats = proc_stats(Pid::this()).expect("this process is in /proc");
        // The process state is its main thread's: running, or sleeping while a test thread reads.
        assert!(matches!(stats.state, 'R' | 'S'), "state {}", stats.state);
        assert!(stats.rss_bytes > 0);
    }

    #[test]
    fn renders_one_line_per_worker() {
        let rows = [
            WorkerRow {
                id: WorkerId(1),
                pid: Pid::this(),
                jobs_done: 4,
                current: None,
            },
            WorkerRow {
                id: WorkerId(2),
                pid: Pid::from_raw(i32::MAX),
                jobs_done: 0,
                current: Some((7, Duration::from_millis(1500))),
            },
        ];
        let table = render(&Status {
            workers: rows.to_vec(),
            queued: 3,
            unfinished: 9,
        });
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].contains("2 worker(s), 3 job(s) queued, 9 unfinished"));
        assert!(
            lines[2].contains("#1") && !lines[2].contains(" ? ") && lines[2].ends_with("idle"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains(" ? ") && lines[3].ends_with("job 7 for 1.5s"),
            "{}",
            lines[3]
        );
    }
}
