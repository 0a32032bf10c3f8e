//! `LogcountChunk`: logcount's chunk job as a herd job kind, so the pool can run it.
//!
//! An unreadable file is an answer about the input, not a failed job: the output carries the
//! [`ChunkError`] for the merge to list under `errors`, and the job is not retried.
use herd_worker::{JobError, JobKind};

use crate::logcount::{count_chunk, ChunkCounts, ChunkError, ChunkJob};

/// Counts one chunk of one log file.
#[derive(Debug)]
pub struct LogcountChunk;

impl JobKind for LogcountChunk {
    const NAME: &'static str = "logcount-chunk";
    type Input = ChunkJob;
    type Output = Result<ChunkCounts, ChunkError>;
    fn run(&self, job: ChunkJob) -> Result<Self::Output, JobError> {
        Ok(count_chunk(&job))
    }
}
