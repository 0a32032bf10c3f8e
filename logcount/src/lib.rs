//! herd-logcount: requests and distinct client keys per access log, as a library and as a herd
//! job kind ([`LogcountChunk`]) that a supervised worker pool runs.
//!
//! A run is: [`plan`] the directory into [`ChunkJob`]s (chunks of large files, batches of
//! whole small ones); run [`count_chunk`] on each (in any
//! process, in any order); feed the outcomes to a [`Merger`]; render its [`Report`]. Jobs and
//! their results are small serde values, so they cross process boundaries cheaply.

pub mod genlogs;

mod distinct;
mod ipv6;
mod key_set;
mod keys;
mod kind;
mod lanes;
mod mapped;
mod plan;
mod report;
mod scan;
mod union;

#[cfg(test)]
mod tests;

pub use kind::LogcountChunk;
pub use mapped::MapConsent;
pub use plan::{
    balanced_chunk_bytes, job_timeout_for, plan, ChunkJob, ChunkSource, JobPart, Options, Plan,
    PlanError, PlannedFile, DEFAULT_CHUNK_BYTES, GZIP_EXPANSION, JOB_TIMEOUT_BASE,
    JOB_TIMEOUT_PER_64_MIB,
};
pub use report::{FileCounts, Format, Merger, Report, TopKey};
pub use scan::{
    count_chunk, count_chunk_with, ChunkCounts, DistinctKeys, KeyCounts, PartCounts, ReadMethod,
};

/// Plans, counts and merges a whole run in this thread: for tests, tools and small inputs.
/// (The supervisor spreads [`Plan::jobs`] over its worker pool instead.)
pub fn count_dir(dir: &std::path::Path, options: &Options) -> Result<Report, PlanError> {
    let plan = plan(dir, options)?;
    let mut merger = Merger::new(&plan);
    for job in &plan.jobs {
        merger.add(count_chunk(job));
    }
    Ok(merger.finish())
}
