//! `GrowingPlan`: a run's plan made while its inputs are still being listed (by a
//! [`Lister`](super::Lister)), so that workers count the first files found while the rest are
//! being listed.
//!
//! The chunk size that [`plan_inputs`](super::plan_inputs) chooses depends on the size of the
//! whole input, which is known only at the end of the listing. Two things do not: a file no
//! larger than the chunk size for the bytes listed so far is whole in a batch whatever the total
//! (the chunk size never shrinks as the total grows), and how such files are batched changes
//! the jobs, never the counts. So while the listing goes on, small files are batched into jobs
//! as workers become free; larger files, which may be cut into chunks, wait for the end of the
//! listing, and so do the small files no worker was free for: the last jobs are then made for
//! the whole input, as `plan_inputs` makes them (guided batch sizes, equal chunks).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use super::plan::{
    balanced_chunk_bytes, batch_weight, jobs_for, whole_in_a_batch, whole_source, ChunkJob,
    JobPart, Options, Plan, PlannedFile, MAX_BATCH_FILES,
};

/// A plan that grows with the listing of its inputs (see the module's documentation). Its
/// [`Plan::files`] are in listing order (not sorted: a [`Merger`](super::Merger) sorts the
/// report), its [`Plan::jobs`] in the order they were made.
#[derive(Debug)]
pub struct GrowingPlan {
    plan: Plan,
    /// The chunk size given by the user; `None`: chosen from the bytes listed.
    chunk_bytes: Option<u64>,
    workers: u64,
    /// Files listed, not yet in a job, that are whole in a batch whatever the total: in
    /// listing order.
    small: VecDeque<usize>,
    /// Files listed that may be cut into chunks, for the end of the listing.
    large: Vec<usize>,
    listed_bytes: u64,
}

impl GrowingPlan {
    /// An empty plan: `top` and `chunk_bytes` as in [`Options`], except that a `chunk_bytes`
    /// of `None` is chosen for `workers` from the input's size, as [`balanced_chunk_bytes`]
    /// chooses it.
    pub fn new(top: Option<usize>, chunk_bytes: Option<u64>, workers: usize) -> Self {
        Self {
            plan: Plan {
                files: Vec::new(),
                jobs: Vec::new(),
                errors: BTreeMap::new(),
                top,
            },
            chunk_bytes: chunk_bytes.map(|bytes| bytes.max(1)),
            workers: workers.max(1) as u64,
            small: VecDeque::new(),
            large: Vec::new(),
            listed_bytes: 0,
        }
    }

    /// The plan so far.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Adds files just listed.
    pub fn add_files(&mut self, files: Vec<PlannedFile>) {
        for file in files {
            self.listed_bytes = self.listed_bytes.saturating_add(file.len);
            let index = self.plan.files.len();
            if whole_in_a_batch(&file, self.chunk_bytes_now()) {
                self.small.push_back(index);
            } else {
                self.large.push(index);
            }
            self.plan.files.push(file);
        }
    }

    /// The chunk size for what is listed so far: never more than the one for the whole input.
    fn chunk_bytes_now(&self) -> u64 {
        self.chunk_bytes
            .unwrap_or_else(|| balanced_chunk_bytes(self.listed_bytes, self.workers))
    }

    /// Makes one job of files listed so far, for a worker that would otherwise wait: small
    /// files, whole, in listing order, up to a chunk's weight for the bytes listed so far.
    /// Returns the new job's index in [`Plan::jobs`], or `None` when no small file waits.
    pub fn plan_next(&mut self) -> Option<usize> {
        let limit = self.chunk_bytes_now();
        let mut parts = Vec::new();
        let mut weight = 0u64;
        while let Some(&index) = self.small.front() {
            let file = &self.plan.files[index];
            let next = weight.saturating_add(batch_weight(file));
            if !parts.is_empty() && (next > limit || parts.len() >= MAX_BATCH_FILES) {
                break;
            }
            self.small.pop_front();
            weight = next;
            parts.push(JobPart {
                path: file.path.clone(),
                file_index: index,
                source: whole_source(file),
            });
        }
        if parts.is_empty() {
            return None;
        }
        self.plan.jobs.push(ChunkJob {
            parts,
            per_key_counts: self.plan.top.is_some(),
            may_map: false,
        });
        Some(self.plan.jobs.len() - 1)
    }

    /// The listing is over, with `errors` (entries that could not be examined): makes the jobs
    /// for every file not yet in one, cut and batched for the whole input. Returns the range of
    /// the new jobs in [`Plan::jobs`].
    pub fn plan_rest(&mut self, errors: &BTreeMap<String, String>) -> Range<usize> {
        self.plan.errors.extend(errors.clone());
        let mut rest: Vec<usize> = self.small.drain(..).chain(self.large.drain(..)).collect();
        rest.sort_unstable();
        let options = Options {
            recursive: false,
            chunk_bytes: self.chunk_bytes_now(),
            top: self.plan.top,
        };
        let first = self.plan.jobs.len();
        self.plan
            .jobs
            .extend(jobs_for(&self.plan.files, &rest, &options));
        first..self.plan.jobs.len()
    }

    /// The indices in [`Plan::files`] of the files listed and in no job yet (the run stopped
    /// before the listing ended).
    pub fn unplanned(&self) -> impl Iterator<Item = usize> + '_ {
        self.small.iter().chain(&self.large).copied()
    }
}
