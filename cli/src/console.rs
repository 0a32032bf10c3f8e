//! `Console`: how the `supervisor` command shows a run's events: each becomes a `tracing`
//! record (level, message, and the worker, pid, job and file as fields), the worker table
//! becomes one record per worker, and the progress bar names what each worker is on.
use std::collections::BTreeMap;
use std::fmt;

use herd_supervisor::{Event, Level, LossCause, Observer, Status, WorkerId};
use herd_worker::JobId;
use indicatif::ProgressBar;

use crate::logging::{STATUS_TARGET, TARGET};
use crate::status;

/// What a job works on, as people and log records name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobLabel {
    /// A logcount job: its file, and which chunk of how many when the file was cut.
    File {
        name: String,
        chunk: Option<(usize, usize)>,
    },
    /// A logcount job over a batch of whole files: the first one's name, and how many more.
    Batch { first: String, more: usize },
    /// A diagnostic job: its kind and input.
    Input { kind: &'static str, input: String },
}

impl JobLabel {
    fn file(&self) -> Option<&str> {
        match self {
            JobLabel::File { name, .. } | JobLabel::Batch { first: name, .. } => Some(name),
            JobLabel::Input { .. } => None,
        }
    }

    fn chunk(&self) -> Option<String> {
        match self {
            JobLabel::File {
                chunk: Some((n, of)),
                ..
            } => Some(format!("{n}/{of}")),
            _ => None,
        }
    }

    fn input(&self) -> Option<&str> {
        match self {
            JobLabel::Input { input, .. } => Some(input),
            JobLabel::File { .. } | JobLabel::Batch { .. } => None,
        }
    }
}

impl fmt::Display for JobLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobLabel::File {
                name,
                chunk: Some((n, of)),
            } => write!(f, "{name} [{n}/{of}]"),
            JobLabel::File { name, chunk: None } => f.write_str(name),
            JobLabel::Batch { first, more } => write!(f, "{first} and {more} more file(s)"),
            JobLabel::Input { kind, input } => write!(f, "{kind} {input}"),
        }
    }
}

/// Turns the run's events into log records and keeps the progress bar up to date.
#[derive(Debug)]
pub struct Console {
    progress: ProgressBar,
    labels: Vec<JobLabel>,
    /// The job each busy worker runs, for the progress bar.
    running: BTreeMap<WorkerId, JobId>,
    /// Every worker's pid, for the records of events that name only the worker (a job leased
    /// or finished). Worker ids are never reused, so an entry is never wrong, and a run starts
    /// few enough workers (restarts are limited) that keeping them all costs little.
    pids: BTreeMap<WorkerId, i32>,
}

impl Console {
    /// A console for jobs named by `labels` (indexed by job id), drawing `progress`.
    pub fn new(progress: ProgressBar, labels: Vec<JobLabel>) -> Self {
        Self {
            progress,
            labels,
            running: BTreeMap::new(),
            pids: BTreeMap::new(),
        }
    }

    /// Names the next job submitted.
    pub fn add_label(&mut self, label: JobLabel) {
        self.labels.push(label);
    }

    /// Removes the progress bar.
    pub fn finish(&self) {
        self.progress.finish_and_clear();
    }

    fn label(&self, job: JobId) -> Option<&JobLabel> {
        usize::try_from(job).ok().and_then(|i| self.labels.get(i))
    }

    /// What the busy workers are on: `#1 access.log [2/4]  #2 b.log`.
    fn update_message(&self) {
        if self.progress.is_hidden() {
            return;
        }
        let mut message = String::new();
        for (worker, job) in &self.running {
            if !message.is_empty() {
                message.push_str("  ");
            }
            match self.label(*job) {
                Some(label) => message.push_str(&format!("#{} {label}", worker.0)),
                None => message.push_str(&format!("#{} job {job}", worker.0)),
            }
        }
        self.progress.set_message(message);
    }

    fn record(&self, event: &Event) {
        let mut fields = Fields::of(event);
        if fields.pid.is_none() {
            fields.pid = fields
                .worker
                .and_then(|worker| self.pids.get(&WorkerId(worker)).copied());
        }
        let label = fields.job.and_then(|job| self.label(job));
        let message = match label {
            Some(label) => format!("{event} ({label})"),
            None => event.to_string(),
        };
        let (file, chunk, input) = match label {
            Some(label) => (label.file(), label.chunk(), label.input()),
            None => (None, None, None),
        };
        macro_rules! at_level {
            ($($record:tt)+) => {
                match event.level() {
                    Level::Debug => tracing::debug!($($record)+),
                    Level::Info => tracing::info!($($record)+),
                    Level::Warn => tracing::warn!($($record)+),
                    Level::Error => tracing::error!($($record)+),
                }
            };
        }
        at_level!(
            target: TARGET,
            event = fields.name,
            worker = fields.worker,
            pid = fields.pid,
            job = fields.job,
            file,
            chunk,
            input,
            attempt = fields.attempt,
            next_attempt = fields.next_attempt,
            max_attempts = fields.max_attempts,
            cause = fields.cause,
            status = fields.status.as_deref(),
            error = fields.error,
            signal = fields.signal,
            grace_secs = fields.grace_secs,
            total = fields.total,
            size = fields.size,
            at_limit = fields.at_limit,
            workers = fields.workers,
            max_restarts = fields.max_restarts,
            period_secs = fields.period_secs,
            "{message}"
        );
    }

    /// The worker table: a header record, then one per worker.
    fn record_status(&self, table: &Status) {
        tracing::info!(
            target: STATUS_TARGET,
            event = "status",
            workers = table.workers.len() as u64,
            queued = table.queued as u64,
            unfinished = table.unfinished as u64,
            "{}",
            status::header(table)
        );
        for row in &table.workers {
            let stats = status::proc_stats(row.pid);
            let label = row.current.and_then(|(job, _)| self.label(job));
            tracing::info!(
                target: STATUS_TARGET,
                event = "worker_status",
                worker = row.id.0,
                pid = row.pid.as_raw(),
                jobs_done = row.jobs_done,
                job = row.current.map(|(job, _)| job),
                running_secs = row.current.map(|(_, running)| running.as_secs_f64()),
                file = label.and_then(JobLabel::file),
                chunk = label.and_then(JobLabel::chunk),
                input = label.and_then(JobLabel::input),
                state = stats.map(|s| s.state.to_string()),
                rss_bytes = stats.map(|s| s.rss_bytes),
                cpu_secs = stats.map(|s| s.cpu.as_secs_f64()),
                "{}",
                status::row(row, stats, label)
            );
        }
    }
}

/// An event's fields, flat, as log records carry them.
#[derive(Default)]
struct Fields<'a> {
    name: &'static str,
    worker: Option<u64>,
    pid: Option<i32>,
    job: Option<JobId>,
    attempt: Option<u32>,
    next_attempt: Option<u32>,
    max_attempts: Option<u32>,
    cause: Option<&'static str>,
    status: Option<String>,
    error: Option<&'a str>,
    signal: Option<&'static str>,
    grace_secs: Option<f64>,
    total: Option<u64>,
    size: Option<u64>,
    at_limit: Option<bool>,
    workers: Option<u64>,
    max_restarts: Option<u32>,
    period_secs: Option<f64>,
}

/// A loss cause's name in records, and the exit status or error it carries (for `status`).
fn cause_fields(cause: &LossCause) -> (&'static str, Option<String>) {
    match cause {
        LossCause::Ended(status) => ("ended", Some(status.to_string())),
        LossCause::Died(how) => ("died", Some(how.clone())),
        LossCause::MissedHeartbeat => ("missed_heartbeat", None),
        LossCause::TimedOut => ("timed_out", None),
    }
}

impl<'a> Fields<'a> {
    fn of(event: &'a Event) -> Fields<'a> {
        let worker = |id: &WorkerId| Some(id.0);
        let pid = |pid: &herd_ipc::Pid| Some(pid.as_raw());
        match event {
            Event::JobsAdded { total } => Fields {
                name: "jobs_added",
                total: Some(*total),
                ..Fields::default()
            },
            Event::WorkerStarted { worker: w, pid: p } => Fields {
                name: "worker_started",
                worker: worker(w),
                pid: pid(p),
                ..Fields::default()
            },
            Event::WorkerStartFailed { worker: w, error } => Fields {
                name: "worker_start_failed",
                worker: worker(w),
                error: Some(error),
                ..Fields::default()
            },
            Event::JobLeased {
                job,
                worker: w,
                attempt,
            } => Fields {
                name: "job_leased",
                job: Some(*job),
                worker: worker(w),
                attempt: Some(*attempt),
                ..Fields::default()
            },
            Event::JobFinished { job, worker: w } => Fields {
                name: "job_finished",
                job: Some(*job),
                worker: worker(w),
                ..Fields::default()
            },
            Event::DuplicateResult { job, worker: w } => Fields {
                name: "duplicate_result",
                job: Some(*job),
                worker: worker(w),
                ..Fields::default()
            },
            Event::UnknownJob { job, worker: w } => Fields {
                name: "unknown_job",
                job: Some(*job),
                worker: worker(w),
                ..Fields::default()
            },
            Event::WorkerDied {
                worker: w,
                pid: p,
                status,
            } => Fields {
                name: "worker_died",
                worker: worker(w),
                pid: pid(p),
                status: Some(status.clone()),
                ..Fields::default()
            },
            Event::WorkerKilled {
                worker: w,
                pid: p,
                cause,
            } => Fields {
                name: "worker_killed",
                worker: worker(w),
                pid: pid(p),
                cause: Some(cause_fields(cause).0),
                status: cause_fields(cause).1,
                ..Fields::default()
            },
            Event::SignalFailed {
                worker: w,
                pid: p,
                error,
            } => Fields {
                name: "signal_failed",
                worker: worker(w),
                pid: pid(p),
                error: Some(error),
                ..Fields::default()
            },
            Event::WaitFailed { worker: w, error } => Fields {
                name: "wait_failed",
                worker: worker(w),
                error: Some(error),
                ..Fields::default()
            },
            Event::LinkFailed {
                worker: w,
                pid: p,
                error,
            } => Fields {
                name: "link_failed",
                worker: worker(w),
                pid: pid(p),
                error: Some(error),
                ..Fields::default()
            },
            Event::SendFailed {
                job,
                worker: w,
                error,
            } => Fields {
                name: "send_failed",
                job: Some(*job),
                worker: worker(w),
                error: Some(error),
                ..Fields::default()
            },
            Event::WorkerLeaving { worker: w, pid: p } => Fields {
                name: "worker_leaving",
                worker: worker(w),
                pid: pid(p),
                ..Fields::default()
            },
            Event::JobReturnedUnstarted { job } => Fields {
                name: "job_returned_unstarted",
                job: Some(*job),
                ..Fields::default()
            },
            Event::JobRequeued {
                job,
                worker: w,
                pid: p,
                cause,
                next_attempt,
                max_attempts,
            } => Fields {
                name: "job_requeued",
                job: Some(*job),
                worker: worker(w),
                pid: pid(p),
                cause: Some(cause_fields(cause).0),
                status: cause_fields(cause).1,
                next_attempt: Some(*next_attempt),
                max_attempts: Some(*max_attempts),
                ..Fields::default()
            },
            Event::JobFailed {
                job,
                worker: w,
                pid: p,
                cause,
            } => Fields {
                name: "job_failed",
                job: Some(*job),
                worker: worker(w),
                pid: pid(p),
                cause: Some(cause_fields(cause).0),
                status: cause_fields(cause).1,
                ..Fields::default()
            },
            Event::RestartLimitHit(exceeded) => Fields {
                name: "restart_limit_hit",
                max_restarts: Some(exceeded.max_restarts),
                period_secs: Some(exceeded.period.as_secs_f64()),
                ..Fields::default()
            },
            Event::DrainBegun { signal, grace } => Fields {
                name: "drain_begun",
                signal: Some(signal),
                grace_secs: Some(grace.as_secs_f64()),
                ..Fields::default()
            },
            Event::StoppingNow { signal } => Fields {
                name: "stopping_now",
                signal: Some(signal),
                ..Fields::default()
            },
            Event::GraceExpired { workers } => Fields {
                name: "grace_expired",
                workers: Some(*workers as u64),
                ..Fields::default()
            },
            Event::PoolResized {
                signal,
                size,
                at_limit,
            } => Fields {
                name: "pool_resized",
                signal: Some(signal),
                size: Some(*size as u64),
                at_limit: Some(*at_limit),
                ..Fields::default()
            },
            Event::Status(_) => Fields {
                name: "status",
                ..Fields::default()
            },
            // A kind of event newer than this command: its level and message still show.
            _ => Fields {
                name: "other",
                ..Fields::default()
            },
        }
    }
}

impl Observer for Console {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::JobsAdded { total } => self.progress.set_length(*total),
            Event::WorkerStarted { worker, pid } => {
                self.pids.insert(*worker, pid.as_raw());
            }
            Event::JobLeased { job, worker, .. } => {
                self.running.insert(*worker, *job);
                self.update_message();
            }
            Event::JobFinished { worker, .. } | Event::JobFailed { worker, .. } => {
                self.running.remove(worker);
                self.progress.inc(1);
                self.update_message();
            }
            Event::JobRequeued { worker, .. }
            | Event::WorkerDied { worker, .. }
            | Event::WorkerKilled { worker, .. } => {
                self.running.remove(worker);
                self.update_message();
            }
            Event::JobReturnedUnstarted { job } => {
                self.running.retain(|_, running| running != job);
                self.update_message();
            }
            _ => {}
        }
        match event {
            Event::Status(table) => self.record_status(table),
            event => self.record(event),
        }
    }
}
