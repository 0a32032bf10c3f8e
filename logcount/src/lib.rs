//! herd-logcount: requests and distinct client keys per access log, as a library and as a herd
//! job kind ([`LogcountChunk`]) that a supervised worker pool runs.
//!
//! A run is: list the [`Inputs`] (files, directories, standard input) and [`plan_inputs`] them
//! into [`ChunkJob`]s ([`plan`] does both for one directory); run [`count_chunk`] on each (in any
//! process, in any order); feed the outcomes to a [`Merger`]; render its [`Report`]. Jobs and
//! their results are small serde values, so they cross process boundaries cheaply.

pub mod genlogs;

mod distinct;
mod inputs;
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

pub use inputs::{Input, Inputs, STDIN_NAME};
pub use kind::LogcountChunk;
pub use mapped::MapConsent;
pub use plan::{
    balanced_chunk_bytes, job_timeout_for, plan, plan_inputs, ChunkJob, ChunkSource, Options, Plan,
    PlanError, PlannedFile, DEFAULT_CHUNK_BYTES, GZIP_EXPANSION, JOB_TIMEOUT_BASE,
    JOB_TIMEOUT_PER_64_MIB,
};
pub use report::{FileCounts, Format, Merger, Report, TopKey};
pub use scan::{
    count_chunk, count_chunk_with, ChunkCounts, ChunkError, DistinctKeys, KeyCounts, ReadMethod,
};

/// Plans, counts and merges a whole run in this thread: for tests, tools and small inputs.
/// (The supervisor spreads [`Plan::jobs`] over its worker pool instead.)
pub fn count_dir(dir: &std::path::Path, options: &Options) -> Result<Report, PlanError> {
    count_plan(&plan(dir, options)?)
}

/// [`count_dir`] for listed inputs.
pub fn count_inputs(inputs: &Inputs, options: &Options) -> Result<Report, PlanError> {
    count_plan(&plan_inputs(inputs, options)?)
}

fn count_plan(plan: &Plan) -> Result<Report, PlanError> {
    let mut merger = Merger::new(plan);
    for job in &plan.jobs {
        merger.add(count_chunk(job));
    }
    Ok(merger.finish())
}
