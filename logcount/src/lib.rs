//! herd-logcount: requests and distinct client keys per access log, as a library and as a herd
//! job kind ([`LogcountChunk`]) that a supervised worker pool runs.
//!
//! A run is: list the [`Inputs`] (files, directories, standard input) and [`plan_inputs`] them
//! into [`ChunkJob`]s (chunks of large files, batches of whole small ones; [`plan`] does both
//! for one directory); run [`count_chunk`] on each (in any
//! process, in any order); feed the outcomes to a [`Merger`]; render its [`Report`]. Jobs and
//! their results are small serde values, so they cross process boundaries cheaply.
//!
//! Across hosts, a [`ShardPlan`] splits the inputs into shards; each host counts its shard's
//! jobs into a [`PartialBuilder`] and publishes the partial, and [`merge_partials`] turns the
//! partials into the report one host would have made (see docs/scale-out.md).

pub mod genlogs;

mod distinct;
mod growing;
mod inputs;
mod ipv6;
mod key_set;
mod keys;
mod kind;
mod lanes;
mod listing;
mod mapped;
mod partial;
mod plan;
mod report;
mod scan;
mod shard;
mod union;

#[cfg(test)]
mod tests;

pub use growing::GrowingPlan;
pub use inputs::{Input, Inputs, STDIN_NAME};
pub use kind::LogcountChunk;
pub use listing::Lister;
pub use mapped::MapConsent;
pub use partial::{
    merge_partials, partial_identity, partials_in, publish, MergeError, MergeOptions, Merged,
    PartialBuilder, PartialIdentity, PublishError, PARTIAL_FORMAT, PARTIAL_MAGIC,
};
pub use plan::{
    balanced_chunk_bytes, job_timeout_for, plan, plan_inputs, ChunkJob, ChunkSource, JobPart,
    Options, Plan, PlanError, PlannedFile, DEFAULT_CHUNK_BYTES, GZIP_EXPANSION, JOB_TIMEOUT_BASE,
    JOB_TIMEOUT_PER_64_MIB,
};
pub use report::{FileCounts, Format, Merger, Report, TopKey};
pub use scan::{
    count_chunk, count_chunk_with, ChunkCounts, DistinctKeys, KeyCounts, PartCounts, ReadMethod,
};
pub use shard::{Piece, ShardFile, ShardPlan, ShardPlanError, MAX_SHARDS, SHARD_PLAN_FORMAT};

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
