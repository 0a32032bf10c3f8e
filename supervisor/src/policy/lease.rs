//! `LeaseTable`: every job of a run, who holds it, how often it was tried, and how it ended.
//!
//! Each job is leased to at most one worker at a time; a worker may hold several (sent ahead, run
//! in order), the oldest of which is the one it runs. When that worker is lost (it died, stopped
//! heartbeating, or overran the job timeout and was killed) the job goes back to the front of the
//! queue, until it has been tried `max_attempts` times; then it fails with the cause of the last
//! loss, and every other job still runs. A job ends once: a second result for it (a late answer
//! from a worker given up on, or a result sent twice) is counted as a duplicate and dropped.
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use herd_ipc::ExitStatus;
use herd_worker::{Job, JobError, JobId, JobResult};

use crate::WorkerId;

/// Why a worker lost the job it held.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossCause {
    /// The worker ended on its own: it exited, or a signal not sent by the supervisor killed it.
    Ended(#[serde(serialize_with = "as_text")] ExitStatus),
    /// The worker was stopped or lost for the reason given (the pool was terminated, the run
    /// stopped, its link broke, ...).
    Died(String),
    /// The worker sent no heartbeat for too long and was killed.
    MissedHeartbeat,
    /// The job ran longer than the job timeout and its worker was killed.
    TimedOut,
}

/// An exit status in a log record, as its `Display` text ("exit code 3", "signal 9 (SIGKILL)").
fn as_text<S: serde::Serializer>(status: &ExitStatus, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(status)
}

impl fmt::Display for LossCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossCause::Ended(status) => write!(f, "worker died ({status})"),
            LossCause::Died(how) => write!(f, "worker died ({how})"),
            LossCause::MissedHeartbeat => f.write_str("worker stopped heartbeating and was killed"),
            LossCause::TimedOut => f.write_str("job timed out and its worker was killed"),
        }
    }
}

/// Why a job ended without an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// The job kind returned an error (not retried: it would fail again).
    Error(JobError),
    /// Every attempt lost its worker; this is the last cause.
    Lost { attempts: u32, last: LossCause },
    /// The run stopped before the job could finish.
    Abandoned(String),
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobFailure::Error(error) => write!(f, "{error}"),
            JobFailure::Lost { attempts, last } => {
                write!(f, "gave up after {attempts} attempt(s); last: {last}")
            }
            JobFailure::Abandoned(reason) => write!(f, "not finished: {reason}"),
        }
    }
}

/// What happened to a result handed to [`LeaseTable::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The job is now finished with this result.
    Accepted,
    /// The job had already finished; this result was dropped.
    Duplicate,
    /// No such job.
    Unknown,
}

/// What [`LeaseTable::release`] did with the job a lost worker held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The worker held no job.
    Nothing,
    /// The job is queued again for another attempt.
    Requeued(JobId),
    /// The job used up its attempts and failed.
    Failed(JobId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Queued,
    Leased(WorkerId),
    Succeeded(Vec<u8>),
    Failed(JobFailure),
    /// Finished, and its outcome was taken out with [`LeaseTable::take`].
    Taken,
}

#[derive(Debug)]
struct Entry {
    kind: String,
    chunk: bool,
    payload: Vec<u8>,
    attempts: u32,
    /// This job's own time limit, over the run's `job_timeout`.
    timeout: Option<Duration>,
    state: State,
}

/// The jobs of one run and their leases.
#[derive(Debug)]
pub struct LeaseTable {
    entries: Vec<Entry>,
    queue: VecDeque<JobId>,
    leases: BTreeMap<WorkerId, VecDeque<JobId>>,
    max_attempts: u32,
    unfinished: usize,
    duplicates: u64,
}

impl LeaseTable {
    /// An empty table; each job may be tried `max_attempts` times (at least once).
    pub fn new(max_attempts: u32) -> Self {
        Self {
            entries: Vec::new(),
            queue: VecDeque::new(),
            leases: BTreeMap::new(),
            max_attempts: max_attempts.max(1),
            unfinished: 0,
            duplicates: 0,
        }
    }

    /// Adds a job at the back of the queue; ids are given in order from 0.
    pub fn push(&mut self, kind: impl Into<String>, payload: Vec<u8>) -> JobId {
        let id = self.entries.len() as JobId;
        self.entries.push(Entry {
            kind: kind.into(),
            chunk: false,
            payload,
            attempts: 0,
            timeout: None,
            state: State::Queued,
        });
        self.queue.push_back(id);
        self.unfinished += 1;
        id
    }

    fn entry(&mut self, id: JobId) -> Option<&mut Entry> {
        usize::try_from(id)
            .ok()
            .and_then(|index| self.entries.get_mut(index))
    }

    /// Adds a chunk job (see [`Job::chunk`]) at the back of the queue.
    pub fn push_chunk(&mut self, kind: impl Into<String>, payload: Vec<u8>) -> JobId {
        let id = self.push(kind, payload);
        if let Some(entry) = self.entry(id) {
            entry.chunk = true;
        }
        id
    }

    /// Gives job `id` a time limit of its own: an attempt running longer is killed with its
    /// worker and re-queued, as with [`SupervisorConfig::job_timeout`](crate::SupervisorConfig),
    /// which this replaces for the job (a job of an hour and one of a second need not share
    /// one). Unknown ids are ignored.
    pub fn set_timeout(&mut self, id: JobId, timeout: Duration) {
        if let Some(entry) = self.entry(id) {
            entry.timeout = Some(timeout);
        }
    }

    /// The time limit of job `id`, if it has one of its own.
    pub fn timeout(&self, id: JobId) -> Option<Duration> {
        self.entries.get(usize::try_from(id).ok()?)?.timeout
    }

    /// Leases the next queued job to `worker`, after the ones it holds already.
    pub fn lease(&mut self, worker: WorkerId) -> Option<Job> {
        let id = self.queue.pop_front()?;
        self.leases.entry(worker).or_default().push_back(id);
        let entry = self.entry(id).expect("queued ids exist");
        entry.attempts += 1;
        entry.state = State::Leased(worker);
        Some(Job {
            id,
            attempt: entry.attempts,
            kind: entry.kind.clone(),
            chunk: entry.chunk,
            payload: entry.payload.clone(),
        })
    }

    /// The job `worker` runs now (the oldest it holds), if any.
    pub fn leased_by(&self, worker: WorkerId) -> Option<JobId> {
        self.leases.get(&worker)?.front().copied()
    }

    /// How many jobs `worker` holds.
    pub fn held_by(&self, worker: WorkerId) -> usize {
        self.leases.get(&worker).map_or(0, VecDeque::len)
    }

    fn unlease(&mut self, worker: WorkerId, id: JobId) {
        if let Some(held) = self.leases.get_mut(&worker) {
            if let Some(position) = held.iter().position(|&job| job == id) {
                held.remove(position);
            }
            if held.is_empty() {
                self.leases.remove(&worker);
            }
        }
    }

    /// Records a result sent by `worker`. The first result for a job finishes it, whichever
    /// worker and attempt it comes from; any later one is a duplicate.
    pub fn complete(&mut self, worker: WorkerId, result: JobResult) -> Completion {
        self.unlease(worker, result.id);
        let Some(entry) = self.entry(result.id) else {
            return Completion::Unknown;
        };
        match entry.state {
            State::Succeeded(_) | State::Failed(_) | State::Taken => {
                self.duplicates += 1;
                return Completion::Duplicate;
            }
            State::Queued => self.queue.retain(|&queued| queued != result.id),
            State::Leased(holder) if holder != worker => {
                // Another worker runs it again; its answer will be the duplicate.
                self.unlease(holder, result.id);
            }
            State::Leased(_) => {}
        }
        let entry = self.entry(result.id).expect("checked above");
        // The input is not needed again.
        entry.payload = Vec::new();
        entry.state = match result.outcome {
            Ok(output) => State::Succeeded(output),
            Err(error) => State::Failed(JobFailure::Error(error)),
        };
        self.unfinished -= 1;
        Completion::Accepted
    }

    /// `worker` is lost: the job it was running is queued again, or fails once out of attempts.
    /// The jobs it held after that one never started: take them back with
    /// [`return_unstarted`](Self::return_unstarted).
    pub fn release(&mut self, worker: WorkerId, cause: LossCause) -> Released {
        let Some(id) = self.leased_by(worker) else {
            return Released::Nothing;
        };
        self.unlease(worker, id);
        let max_attempts = self.max_attempts;
        let entry = self.entry(id).expect("leased ids exist");
        if entry.attempts >= max_attempts {
            entry.state = State::Failed(JobFailure::Lost {
                attempts: entry.attempts,
                last: cause,
            });
            self.unfinished -= 1;
            Released::Failed(id)
        } else {
            entry.state = State::Queued;
            self.queue.push_front(id);
            Released::Requeued(id)
        }
    }

    /// `worker` never started the jobs it holds (it was leaving, or lost while running an
    /// earlier one): they go back to the front of the queue, in order, and the attempts do not
    /// count.
    pub fn return_unstarted(&mut self, worker: WorkerId) -> Vec<JobId> {
        let held: Vec<JobId> = self.leases.remove(&worker).unwrap_or_default().into();
        for &id in held.iter().rev() {
            let entry = self.entry(id).expect("leased ids exist");
            entry.attempts -= 1;
            entry.state = State::Queued;
            self.queue.push_front(id);
        }
        held
    }

    /// Moves a finished job's outcome out of the table (its output, or why it failed), for a
    /// caller that keeps results itself; `None` if it is not finished or was taken already.
    pub fn take(&mut self, id: JobId) -> Option<Result<Vec<u8>, JobFailure>> {
        let entry = self.entry(id)?;
        match entry.state {
            State::Succeeded(_) | State::Failed(_) => {
                match std::mem::replace(&mut entry.state, State::Taken) {
                    State::Succeeded(output) => Some(Ok(output)),
                    State::Failed(failure) => Some(Err(failure)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Jobs neither succeeded nor failed.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// All jobs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no jobs at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Results dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The output of a succeeded job.
    pub fn output(&self, id: JobId) -> Option<&[u8]> {
        match &self.entries.get(usize::try_from(id).ok()?)?.state {
            State::Succeeded(output) => Some(output),
            _ => None,
        }
    }

    /// Why a job failed, if it did.
    pub fn failure(&self, id: JobId) -> Option<&JobFailure> {
        match &self.entries.get(usize::try_from(id).ok()?)?.state {
            State::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// Whether a job succeeded or failed (`false` for an unknown id).
    pub fn is_finished(&self, id: JobId) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|index| self.entries.get(index))
            .is_some_and(|entry| {
                matches!(
                    entry.state,
                    State::Succeeded(_) | State::Failed(_) | State::Taken
                )
            })
    }

    /// Attempts made at a job so far.
    pub fn attempts(&self, id: JobId) -> Option<u32> {
        Some(self.entries.get(usize::try_from(id).ok()?)?.attempts)
    }

    /// Failed jobs with their cause, by id.
    pub fn failures(&self) -> impl Iterator<Item = (JobId, &JobFailure)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(id, entry)| match &entry.state {
                State::Failed(failure) => Some((id as JobId, failure)),
                _ => None,
            })
    }

    /// Fails every job not yet finished with `reason` (a run stopped before the end).
    pub fn abandon(&mut self, reason: &str) {
        for entry in &mut self.entries {
            if matches!(entry.state, State::Queued | State::Leased(_)) {
                entry.state = State::Failed(JobFailure::Abandoned(reason.to_owned()));
            }
        }
        self.queue.clear();
        self.leases.clear();
        self.unfinished = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: JobId, attempt: u32, byte: u8) -> JobResult {
        JobResult {
            id,
            attempt,
            outcome: Ok(vec![byte]),
        }
    }

    fn table(jobs: usize, max_attempts: u32) -> LeaseTable {
        let mut table = LeaseTable::new(max_attempts);
        for n in 0..jobs {
            assert_eq!(table.push("echo", vec![n as u8]), n as JobId);
        }
        table
    }

    const A: WorkerId = WorkerId(1);
    const B: WorkerId = WorkerId(2);

    #[test]
    fn jobs_are_leased_in_order_and_finish_once() {
        let mut t = table(2, 3);
        let job = t.lease(A).unwrap();
        assert_eq!(
            (job.id, job.attempt, job.payload.as_slice()),
            (0, 1, &[0u8][..])
        );
        assert_eq!(t.leased_by(A), Some(0));
        assert_eq!(t.lease(B).unwrap().id, 1);
        assert_eq!(t.lease(WorkerId(3)), None);
        assert_eq!(t.complete(A, ok(0, 1, 7)), Completion::Accepted);
        assert_eq!(t.leased_by(A), None);
        assert_eq!(t.complete(A, ok(0, 1, 7)), Completion::Duplicate);
        assert_eq!(t.complete(B, ok(1, 1, 8)), Completion::Accepted);
        assert_eq!((t.unfinished(), t.duplicates()), (0, 1));
        assert_eq!(
            (t.output(0), t.output(1)),
            (Some(&[7u8][..]), Some(&[8u8][..]))
        );
        assert_eq!(t.complete(A, ok(9, 1, 0)), Completion::Unknown);
    }

    #[test]
    fn a_lost_job_is_requeued_first_then_fails_after_max_attempts() {
        let mut t = table(2, 2);
        assert_eq!(t.lease(A).unwrap().id, 0);
        assert_eq!(
            t.release(A, LossCause::Ended(ExitStatus::Signaled(libc::SIGKILL))),
            Released::Requeued(0)
        );
        let again = t.lease(B).unwrap();
        assert_eq!(
            (again.id, again.attempt),
            (0, 2),
            "a requeued job goes before job 1"
        );
        assert_eq!(t.release(B, LossCause::TimedOut), Released::Failed(0));
        assert_eq!(t.release(B, LossCause::TimedOut), Released::Nothing);
        assert_eq!(t.lease(A).unwrap().id, 1);
        assert_eq!(t.complete(A, ok(1, 1, 1)), Completion::Accepted);
        assert_eq!(t.unfinished(), 0);
        let failures: Vec<_> = t.failures().collect();
        assert_eq!(
            failures,
            [(
                0,
                &JobFailure::Lost {
                    attempts: 2,
                    last: LossCause::TimedOut
                }
            )]
        );
        assert!(failures[0].1.to_string().contains("after 2 attempt(s)"));
        assert_eq!(
            LossCause::Ended(ExitStatus::Signaled(libc::SIGKILL)).to_string(),
            "worker died (signal 9 (SIGKILL))"
        );
    }

    #[test]
    fn a_late_result_from_a_lost_worker_finishes_the_job_and_the_rerun_is_the_duplicate() {
        let mut t = table(1, 3);
        t.lease(A).unwrap();
        t.release(A, LossCause::MissedHeartbeat);
        assert_eq!(t.queued(), 1);
        // The stopped worker resumed and answered before being killed: its result still counts.
        assert_eq!(t.complete(A, ok(0, 1, 5)), Completion::Accepted);
        assert_eq!(t.queued(), 0, "the queued re-run is withdrawn");
        assert_eq!(t.lease(B), None);

        let mut t = table(1, 3);
        t.lease(A).unwrap();
        t.release(A, LossCause::MissedHeartbeat);
        t.lease(B).unwrap();
        assert_eq!(t.complete(A, ok(0, 1, 5)), Completion::Accepted);
        assert_eq!(t.leased_by(B), None, "B's lease ends with the job");
        assert_eq!(t.complete(B, ok(0, 2, 6)), Completion::Duplicate);
        assert_eq!(t.output(0), Some(&[5u8][..]));
        assert_eq!(t.attempts(0), Some(2));
    }

    #[test]
    fn an_unstarted_job_comes_back_without_using_an_attempt() {
        let mut t = table(2, 1);
        assert_eq!(t.lease(A).unwrap().id, 0);
        assert_eq!(t.return_unstarted(A), vec![0]);
        assert_eq!(t.return_unstarted(A), Vec::<JobId>::new());
        let job = t.lease(B).unwrap();
        assert_eq!(
            (job.id, job.attempt),
            (0, 1),
            "first in line, still its first attempt"
        );
    }

    #[test]
    fn a_job_error_fails_at_once_without_retry() {
        let mut t = table(1, 5);
        t.lease(A).unwrap();
        let result = JobResult {
            id: 0,
            attempt: 1,
            outcome: Err(JobError::failed("bad line")),
        };
        assert_eq!(t.complete(A, result), Completion::Accepted);
        assert_eq!(t.queued(), 0);
        assert_eq!(t.failures().next().unwrap().1.to_string(), "bad line");
    }

    #[test]
    fn abandon_fails_everything_unfinished() {
        let mut t = table(3, 5);
        t.lease(A).unwrap();
        t.lease(B).unwrap();
        t.complete(B, ok(1, 1, 0));
        t.abandon("the run was stopped");
        assert_eq!(t.unfinished(), 0);
        assert_eq!(t.failures().map(|(id, _)| id).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn a_worker_holding_several_jobs_loses_the_running_one_and_returns_the_rest() {
        let mut t = table(4, 3);
        for expected in 0..3 {
            assert_eq!(t.lease(A).unwrap().id, expected);
        }
        assert_eq!(t.held_by(A), 3);
        assert_eq!(t.leased_by(A), Some(0), "the oldest is the one running");
        assert_eq!(t.complete(A, ok(0, 1, 9)), Completion::Accepted);
        assert_eq!(t.leased_by(A), Some(1));
        assert_eq!(t.release(A, LossCause::TimedOut), Released::Requeued(1));
        assert_eq!(t.return_unstarted(A), vec![2]);
        assert_eq!(t.held_by(A), 0);
        // Back in their order, ahead of the never-leased job 3; only job 1 used an attempt.
        let order: Vec<(JobId, u32)> = (0..3)
            .map(|_| t.lease(B).map(|job| (job.id, job.attempt)).unwrap())
            .collect();
        assert_eq!(order, [(2, 1), (1, 2), (3, 1)]);
    }

    #[test]
    fn a_taken_outcome_leaves_the_job_finished() {
        let mut t = table(2, 1);
        t.lease(A);
        t.complete(A, ok(0, 1, 4));
        assert_eq!(t.take(0), Some(Ok(vec![4])));
        assert_eq!(t.take(0), None, "taken once");
        assert!(t.is_finished(0));
        assert_eq!(t.take(1), None, "not finished");
        t.lease(A);
        assert_eq!(t.complete(A, ok(1, 1, 5)), Completion::Accepted);
        assert_eq!(t.complete(A, ok(0, 1, 4)), Completion::Duplicate);
    }
}
