//! `LogcountChunk`: logcount's chunk job as a herd job kind, so the pool can run it.
//!
//! An unreadable file is an answer about the input, not a failed job: the output carries its
//! reason (in its [`PartCounts`](crate::PartCounts)) for the merge to list under `errors`, and
//! the job is not retried.
//!
//! The first attempt at a job maps the file's range instead of reading it (no copy into a
//! buffer), if the job says a retry exists ([`ChunkJob::may_map`]). A file truncated during that
//! scan kills the worker with SIGBUS; the supervisor then re-leases the job, and every later
//! attempt reads, which cannot fault (see `logcount/mapped.rs`). Without a retry (one attempt
//! per job) nothing would re-count the file, so every attempt reads.
use herd_worker::{JobError, JobKind};

use crate::{count_chunk_with, ChunkCounts, ChunkJob, MapConsent, ReadMethod};

/// Counts one chunk of one log file.
#[derive(Debug)]
pub struct LogcountChunk;

// Every worker of a program that links this crate knows logcount (`Registry::global`).
herd_worker::register_kind!(LogcountChunk);

impl LogcountChunk {
    /// Whether attempt `attempt` (1 for the first) of a job that `may_map` maps: the first
    /// does, every retry reads; a job that may not map always reads.
    pub fn maps(attempt: u32, may_map: bool) -> bool {
        may_map && attempt <= 1
    }

    /// How attempt `attempt` reads; only [`JobKind::run_attempt`] calls it, in a pool worker.
    fn read_method(attempt: u32, may_map: bool) -> ReadMethod {
        if Self::maps(attempt, may_map) {
            #[allow(unsafe_code)] // the pool side of the mapped-scan contract
            // SAFETY: attempts are numbered by the supervisor, which runs them in pool workers:
            // a SIGBUS on attempt 1 kills only that worker, which holds no lock another process
            // needs, and `may_map` says the job has a second attempt, which the supervisor
            // leases after the death and which reads with `read`.
            let consent = unsafe { MapConsent::new() };
            ReadMethod::Map(consent)
        } else {
            ReadMethod::Read
        }
    }
}

impl JobKind for LogcountChunk {
    const NAME: &'static str = "logcount-chunk";
    type Input = ChunkJob;
    type Output = ChunkCounts;
    /// Outside the pool's retry protocol: always `read`.
    fn run(&self, job: ChunkJob) -> Result<Self::Output, JobError> {
        self.run_attempt(job, 2)
    }
    /// Attempt 1 maps (a part that cannot be mapped, such as a file in `/proc`, is read): it
    /// is meant for the worker loop of a supervised pool, where a SIGBUS costs one worker and
    /// a retry.
    fn run_attempt(&self, job: ChunkJob, attempt: u32) -> Result<Self::Output, JobError> {
        Ok(count_chunk_with(
            &job,
            Self::read_method(attempt, job.may_map),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChunkSource, JobPart};

    #[test]
    fn only_the_first_attempt_maps() {
        assert!(LogcountChunk::maps(1, true));
        assert!(matches!(
            LogcountChunk::read_method(1, true),
            ReadMethod::Map(_)
        ));
        for attempt in 2..5 {
            assert!(!LogcountChunk::maps(attempt, true));
            assert_eq!(LogcountChunk::read_method(attempt, true), ReadMethod::Read);
        }
    }

    #[test]
    fn a_job_without_a_retry_never_maps() {
        for attempt in 1..5 {
            assert!(!LogcountChunk::maps(attempt, false));
            assert_eq!(LogcountChunk::read_method(attempt, false), ReadMethod::Read);
        }
    }

    #[test]
    fn a_file_that_cannot_be_mapped_is_read() {
        // sysfs attributes cannot be mapped (ENODEV), but read fine: "0-1\n" or the like.
        let job = ChunkJob {
            parts: vec![JobPart {
                path: "/sys/devices/system/cpu/online".into(),
                file_index: 0,
                source: ChunkSource::Range {
                    start: 0,
                    end: 1 << 20,
                },
            }],
            per_key_counts: false,
            may_map: true,
        };
        let read = count_chunk_with(&job, ReadMethod::Read);
        let total = read.parts[0].outcome.as_ref().unwrap().total;
        assert_eq!(total, 1, "{read:?}");
        for attempt in 1..3 {
            let counts = LogcountChunk.run_attempt(job.clone(), attempt).unwrap();
            assert_eq!(counts, read, "attempt {attempt}");
        }
    }
}
