//! The wire types between supervisor and worker: a [`Job`] goes out, a [`JobResult`] comes back.
//!
//! Jobs and results travel in batches: a worker may be sent several jobs at once (short jobs
//! would otherwise cost a round trip each), runs them in order, and sends results back in batches
//! too, flushing whenever it has nothing left to run. Heartbeats flow while a job runs so the
//! supervisor can tell a stopped or frozen worker from a slow job.
use serde::{Deserialize, Serialize};

use crate::JobError;

/// A job's identity, unique within one run. Attempts of the same job share it.
pub type JobId = u64;

/// One unit of work leased to one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Which job this is.
    pub id: JobId,
    /// 1 for the first try, incremented each time the job is re-queued after a lost worker.
    pub attempt: u32,
    /// The registered [`crate::JobKind::NAME`] to run.
    pub kind: String,
    /// Whether the payload is a chunk: a sequence of inputs, each run on its own, answered by
    /// one [`crate::ChunkOutputs`] (see [`crate::Registry::run_job`]).
    pub chunk: bool,
    /// The input, encoded with [`crate::encode_payload`].
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// What one attempt of a job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job this answers.
    pub id: JobId,
    /// The attempt that produced it.
    pub attempt: u32,
    /// The encoded output, or why there is none.
    #[serde(with = "outcome_bytes")]
    pub outcome: Result<Vec<u8>, JobError>,
}

/// Supervisor to worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run these jobs in order, answering each with a result in [`FromWorker::Done`].
    Run(Vec<Job>),
    /// Exit after the current job (if any).
    Stop,
}

/// Worker to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker is up and waits for a job.
    Ready,
    /// The worker is alive (sent periodically, also while a job runs).
    Heartbeat,
    /// Jobs finished, in the order they ran.
    Done(Vec<JobResult>),
    /// The worker leaves (it got SIGTERM) and takes no more jobs; a job sent meanwhile was not
    /// started.
    Leaving,
}

/// Payloads travel as byte strings: serde's own `Vec<u8>` is a sequence of `u8`s, which postcard
/// encodes to the same bytes but one call per byte (a logcount chunk's 300 KB result took ~1 ms
/// to encode and again to decode). `serde_bytes` covers `Vec<u8>`; this covers the `Result`.
mod outcome_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    use crate::JobError;

    pub(super) fn serialize<S: Serializer>(
        outcome: &Result<Vec<u8>, JobError>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        outcome
            .as_ref()
            .map(|bytes| Bytes::new(bytes))
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Result<Vec<u8>, JobError>, D::Error> {
        Ok(Result::<ByteBuf, JobError>::deserialize(deserializer)?.map(ByteBuf::into_vec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_as_byte_strings() {
        let job = Job {
            id: 7,
            attempt: 2,
            kind: "kind".into(),
            chunk: false,
            payload: vec![0, 1, 0x7F, 0x80, 0xFF],
        };
        let bytes = postcard::to_stdvec(&ToWorker::Run(vec![job.clone()])).unwrap();
        assert_eq!(
            postcard::from_bytes::<ToWorker>(&bytes).unwrap(),
            ToWorker::Run(vec![job])
        );
        for outcome in [
            Ok(vec![9u8; 1000]),
            Ok(Vec::new()),
            Err(JobError::failed("no")),
        ] {
            let result = JobResult {
                id: 1,
                attempt: 1,
                outcome,
            };
            let bytes = postcard::to_stdvec(&FromWorker::Done(vec![result.clone()])).unwrap();
            assert_eq!(
                postcard::from_bytes::<FromWorker>(&bytes).unwrap(),
                FromWorker::Done(vec![result])
            );
        }
    }
}
