//! The worker status table (SIGUSR1 and `--status-interval`): what the supervisor reports about
//! each worker, with state, memory and CPU time read from procfs, and the file (or input) it is
//! on.
use std::time::Duration;

use herd_ipc::Pid;
use herd_supervisor::{Status, WorkerRow};

use crate::console::JobLabel;

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

/// The table's summary line.
pub fn header(status: &Status) -> String {
    format!(
        "supervisor status: {} worker(s), {} job(s) queued, {} unfinished",
        status.workers.len(),
        status.queued,
        status.unfinished
    )
}

/// The column titles, under the summary line in text.
pub const COLUMNS: &str = " worker      pid state        rss       cpu   jobs  current job";

/// One worker's line: `stats` as read from procfs (`?` where gone), and what it is on, by
/// `label` when the job has one.
pub fn row(row: &WorkerRow, stats: Option<ProcStats>, label: Option<&JobLabel>) -> String {
    let state = stats.map_or('?', |s| s.state);
    let rss = stats.map_or("?".to_owned(), |s| {
        format!("{:.1}M", s.rss_bytes as f64 / 1048576.0)
    });
    let cpu = stats.map_or("?".to_owned(), |s| format!("{:.2}s", s.cpu.as_secs_f64()));
    let current = match (row.current, label) {
        (None, _) => "idle".to_owned(),
        (Some((_, running)), Some(label)) => {
            format!("{label} for {:.1}s", running.as_secs_f64())
        }
        (Some((job, running)), None) => format!("job {job} for {:.1}s", running.as_secs_f64()),
    };
    format!(
        "{:>7} {:>8} {:>5} {:>10} {:>9} {:>6}  {current}",
        format!("#{}", row.id.0),
        row.pid,
        state,
        rss,
        cpu,
        row.jobs_done
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_supervisor::WorkerId;

    #[test]
    fn reads_this_process_from_procfs() {
        let stats = proc_stats(Pid::this()).expect("this process is in /proc");
        // The process state is its main thread's: running, or sleeping while a test thread reads.
        assert!(matches!(stats.state, 'R' | 'S'), "state {}", stats.state);
        assert!(stats.rss_bytes > 0);
    }

    #[test]
    fn renders_a_header_and_one_line_per_worker_naming_its_file() {
        let idle = WorkerRow {
            id: WorkerId(1),
            pid: Pid::this(),
            jobs_done: 4,
            current: None,
        };
        let busy = WorkerRow {
            id: WorkerId(2),
            pid: Pid::from_raw(i32::MAX),
            jobs_done: 0,
            current: Some((7, Duration::from_millis(1500))),
        };
        let header = header(&Status {
            workers: vec![idle.clone(), busy.clone()],
            queued: 3,
            unfinished: 9,
        });
        assert_eq!(
            header,
            "supervisor status: 2 worker(s), 3 job(s) queued, 9 unfinished"
        );

        let line = row(&idle, proc_stats(idle.pid), None);
        assert_eq!(
            line.len(),
            COLUMNS.len() - "current job".len() + "idle".len()
        );
        assert!(
            line.contains("#1") && !line.contains(" ? ") && line.ends_with("idle"),
            "{line}"
        );
        let label = JobLabel::File {
            name: "access.log".into(),
            chunk: Some((2, 4)),
        };
        let line = row(&busy, proc_stats(busy.pid), Some(&label));
        assert!(
            line.contains(" ? ") && line.ends_with("access.log [2/4] for 1.5s"),
            "{line}"
        );
        let line = row(&busy, None, None);
        assert!(line.ends_with("job 7 for 1.5s"), "{line}");
    }
}
