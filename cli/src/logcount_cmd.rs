//! `supervisor run logcount`: counts requests and distinct clients in access logs over the
//! worker pool, merging the chunk jobs' results as they arrive.
use std::ffi::OsString;
use std::process::ExitCode;

use clap::Args;
use herd_logcount::{self as logcount, ChunkCounts, ChunkJob, Format, LogcountChunk, Merger};
use herd_supervisor::LeaseTable;
use herd_worker::{decode_payload, encode_payload, JobKind as _};

use crate::console::JobLabel;
use crate::output::{note, write_stdout};
use crate::pool::{long_help, Ended, PoolArgs};

/// The smallest `--chunk-bytes`: below it per-job costs swamp the counting, and a large input
/// would be planned into more jobs than memory holds.
const MIN_CHUNK_BYTES: u64 = 64 * 1024;

fn parse_chunk_bytes(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(bytes) if bytes >= MIN_CHUNK_BYTES => Ok(bytes),
        _ => Err(format!(
            "expected a number of bytes of at least {MIN_CHUNK_BYTES} (64 KiB), got {text:?}"
        )),
    }
}

const EXAMPLES: &str = "\
Examples:
  supervisor run logcount files/                  count every file in files/
  supervisor run logcount a.log b.log.gz old/     files and directories together
  zcat old/*.gz | supervisor run logcount -       standard input
  supervisor run logcount -r -j 8 /var/log/nginx  with subdirectories, on 8 workers
  supervisor run logcount logs/ --format json --top 10";

/// What `--help` (not `-h`) adds after the examples.
const EXIT_STATUS: &str =
    "  0 every file was counted; 1 some files could not be read (listed under errors), or standard
  input could not be copied; 2 bad usage, or a PATH missing or not a file or directory; 130/143 SIGINT/SIGTERM stopped the run first (the files
  not counted are listed); 141 stdout was closed before the report was written.";

/// Counts requests and distinct client keys per access-log file (`.gz` read decompressed),
/// with totals, on a supervised pool of workers. PATHs are files, directories (the files in
/// them) and `-` for standard input; a file named twice is counted once.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES, after_long_help = long_help(EXAMPLES, EXIT_STATUS))]
pub struct LogcountArgs {
    /// Log files, directories of logs (the files directly in them; with --recursive, in
    /// subdirectories too) and `-` for standard input (not with --shard); gzip is read
    /// decompressed.
    #[arg(required_unless_present = "plan", value_name = "PATH")]
    pub paths: Vec<OsString>,
    /// Report format: table, csv or json.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: Format,
    /// Also report the K busiest client keys.
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Also count files in subdirectories of directory PATHs.
    #[arg(short, long)]
    pub recursive: bool,
    /// Cut plain files into chunk jobs of about B bytes, at least 64 KiB [default: about 4
    /// chunks per worker, between 4 and 256 MiB].
    #[arg(long, value_name = "B", value_parser = parse_chunk_bytes)]
    pub chunk_bytes: Option<u64>,
    #[command(flatten)]
    pub shard: crate::scale_out::ShardArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
}

/// The path of this subcommand, for usage errors.
pub(crate) const COMMAND: &[&str] = &["run", "logcount"];

/// The lease table for a planned logcount run, and each job's label (its file, and which
/// chunk of how many). Without `--job-timeout`, each job gets a time limit from its size
/// ([`Plan::default_job_timeout`](logcount::Plan::default_job_timeout)), so that a stuck job
/// cannot hang the run forever.
pub(crate) fn logcount_jobs(
    args: &LogcountArgs,
    plan: &mut logcount::Plan,
) -> anyhow::Result<(LeaseTable, Vec<JobLabel>)> {
    // A mapped scan is only safe where a job whose worker died gets another attempt.
    let may_map = args.pool.max_attempts > 1;
    for job in &mut plan.jobs {
        job.may_map = may_map;
    }
    let mut chunks_of = vec![0usize; plan.files.len()];
    for job in &plan.jobs {
        if let [part] = job.parts.as_slice() {
            chunks_of[part.file_index] += 1;
        }
    }
    let mut seen = vec![0usize; plan.files.len()];
    let mut jobs = LeaseTable::new(args.pool.max_attempts);
    let mut labels = Vec::with_capacity(plan.jobs.len());
    for job in &plan.jobs {
        let id = jobs.push(LogcountChunk::NAME, encode_payload(job)?);
        if args.pool.job_timeout.is_none() {
            jobs.set_timeout(id, plan.default_job_timeout(job));
        }
        let name = |index: usize| plan.files[index].name.clone();
        let label = match job.parts.as_slice() {
            [part] => {
                seen[part.file_index] += 1;
                let of = chunks_of[part.file_index];
                JobLabel::File {
                    name: name(part.file_index),
                    chunk: (of > 1).then_some((seen[part.file_index], of)),
                }
            }
            [first, rest @ ..] => JobLabel::Batch {
                first: name(first.file_index),
                more: rest.len(),
            },
            [] => JobLabel::Batch {
                first: String::new(),
                more: 0,
            },
        };
        tracing::trace!(
            event = "job_planned",
            job = id,
            "job {id}: {label}, {} part(s)",
            job.parts.len()
        );
        labels.push(label);
    }
    Ok((jobs, labels))
}

/// Where a run's chunk results go: a [`Merger`] for the report, or a shard's partial.
pub(crate) trait Tally {
    /// One job's result.
    fn add(&mut self, counts: ChunkCounts);
    /// A job the pool gave up on: its files are not counted.
    fn add_job_failure(&mut self, job: &ChunkJob, reason: &str);
    /// Every job's result is in, while the pool may still be stopping its workers: a tally
    /// with more to do with the results (a shard's partial to write out) can do it now,
    /// alongside, rather than after. Not called when some job did not succeed.
    fn all_added(&mut self) {}
}

impl Tally for Merger {
    fn add(&mut self, counts: ChunkCounts) {
        Merger::add(self, counts);
    }

    fn add_job_failure(&mut self, job: &ChunkJob, reason: &str) {
        Merger::add_job_failure(self, job, reason);
    }
}

/// How a counting run on the pool ended, with its failure summary (each failed job named by
/// its file and chunk, or its batch).
pub(crate) struct Counted {
    pub ended: Ended,
    pub summary: String,
}

/// Runs `plan`'s jobs on the pool and adds their results to `tally` while the workers are
/// still counting, so that little is left after the last one. Jobs are leased in order, so
/// results come nearly in order: the finished prefix is added as it grows (linear overall),
/// whatever is left (a retried or failed job held the prefix back) at the end, then the jobs
/// the pool gave up on.
pub(crate) fn count_on_pool(
    args: &LogcountArgs,
    plan: &mut logcount::Plan,
    tally: &mut impl Tally,
) -> anyhow::Result<Counted> {
    let progress = args.pool.log.init();
    let (jobs, labels) = logcount_jobs(args, plan)?;
    let mut added_before = 0;
    let mut told_all_added = false;
    let mut supervisor = args
        .pool
        .supervisor(COMMAND, jobs, labels.clone(), progress)?;
    while !supervisor.step() {
        while let Some(output) = supervisor.jobs().output(added_before as u64) {
            tally.add(decode_payload(output)?);
            // Added: drop the encoded result rather than keep a second copy of its keys until
            // the end (with millions of host names that copy is a large part of the memory).
            supervisor.take_outcome(added_before as u64);
            added_before += 1;
        }
        if added_before == plan.jobs.len() && !told_all_added {
            told_all_added = true;
            tally.all_added();
        }
    }
    let ended = Ended::of(supervisor);
    let report = &ended.report;
    for id in added_before..plan.jobs.len() {
        if let Some(output) = report.jobs.output(id as u64) {
            tally.add(decode_payload(output)?);
        }
    }
    for (id, failure) in report.jobs.failures() {
        if let Some(job) = usize::try_from(id)
            .ok()
            .and_then(|index| plan.jobs.get(index))
        {
            tally.add_job_failure(job, &format!("not counted: {failure}"));
        }
    }
    let summary = report.failure_summary_naming(|id| {
        labels
            .get(usize::try_from(id).ok()?)
            .map(ToString::to_string)
    });
    Ok(Counted { ended, summary })
}

pub fn run(args: &LogcountArgs) -> anyhow::Result<ExitCode> {
    if args.shard.any() {
        return crate::scale_out::run_shard(args);
    }
    // `_inputs` holds standard input's copy, which the workers read: keep it to the end.
    let (_inputs, mut plan) = crate::logcount_inputs::plan(args)?;
    let mut merger = Merger::new(&plan);
    let Counted { ended, summary } = count_on_pool(args, &mut plan, &mut merger)?;
    let report = &ended.report;
    let result = merger.finish();
    write_stdout(&result.render(args.format))?;
    if !report.success() {
        note(&format!("error: {summary}"));
        if let Some(signal) = ended.stop_signal {
            let mut uncounted: Vec<&str> = report
                .jobs
                .failures()
                .filter_map(|(id, _)| plan.jobs.get(usize::try_from(id).ok()?))
                .flat_map(|job| job.file_indices())
                .filter_map(|index| plan.files.get(index))
                .map(|file| file.name.as_str())
                .collect();
            uncounted.sort_unstable();
            uncounted.dedup();
            let mut text = format!(
                "error: stopped by {} before counting {} file(s):\n",
                signal.as_str(),
                uncounted.len()
            );
            for name in uncounted {
                text.push_str(&format!("  {name}\n"));
            }
            note(&text);
        }
        return Ok(ended.failure_code());
    }
    Ok(if result.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Command, RunCommand};

    fn run_args(extra: &[&str], dir: &std::path::Path) -> LogcountArgs {
        let mut argv = vec!["supervisor", "run", "logcount", dir.to_str().unwrap()];
        argv.extend(extra);
        match Cli::parse_from(argv).command {
            Command::Run(RunCommand::Logcount(args)) => args,
            other => unreachable!("parsed a logcount run, got {other:?}"),
        }
    }

    #[test]
    fn logcount_jobs_get_a_timeout_from_their_size_unless_one_is_given_and_a_label() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), "1.2.3.4 - - x\n".repeat(10_000)).unwrap();
        std::fs::write(dir.path().join("b.log"), "1.2.3.4 - - x\n").unwrap();
        let options = logcount::Options {
            chunk_bytes: 64 * 1024,
            ..logcount::Options::default()
        };
        let mut plan = logcount::plan(dir.path(), &options).unwrap();
        let chunks = plan.jobs.len() - 1;
        assert!(chunks > 1, "{chunks} chunks");

        let (jobs, labels) = logcount_jobs(&run_args(&[], dir.path()), &mut plan.clone()).unwrap();
        for (id, job) in plan.jobs.iter().enumerate() {
            let expected = plan.default_job_timeout(job);
            assert_eq!(expected, Duration::from_secs(70));
            assert_eq!(jobs.timeout(id as u64), Some(expected));
        }
        assert_eq!(labels[0].to_string(), format!("a.log [1/{chunks}]"));
        assert_eq!(
            labels[chunks - 1].to_string(),
            format!("a.log [{chunks}/{chunks}]")
        );
        assert_eq!(labels[chunks].to_string(), "b.log");

        let given = run_args(&["--job-timeout", "5"], dir.path());
        assert_eq!(given.pool.job_timeout, Some(Duration::from_secs(5)));
        let (jobs, _) = logcount_jobs(&given, &mut plan).unwrap();
        for id in 0..plan.jobs.len() {
            assert_eq!(
                jobs.timeout(id as u64),
                None,
                "the run's --job-timeout applies"
            );
        }
    }
}
