//! `supervisor run logcount`: counts requests and distinct clients in access logs over the
//! worker pool, merging the chunk jobs' results as they arrive.
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::ops::Range;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use herd_logcount::{
    self as logcount, ChunkCounts, ChunkJob, Format, GrowingPlan, Input, Lister, LogcountChunk,
    Merger,
};
use herd_supervisor::LeaseTable;
use herd_worker::{decode_payload, encode_payload, JobKind as _};

use crate::console::JobLabel;
use crate::output::{note, write_stdout};
use crate::pool::{long_help, CommandSupervisor, Ended, PoolArgs};

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

/// How a job is shown in the worker table, the progress bar and the failure summary: its file
/// and which chunk of how many, or its batch. `jobs` holds every chunk of the files cut in it.
fn job_labels(plan: &logcount::Plan, jobs: Range<usize>) -> Vec<JobLabel> {
    let jobs = &plan.jobs[jobs];
    let mut chunks_of = BTreeMap::<usize, usize>::new();
    for job in jobs {
        if let [part] = job.parts.as_slice() {
            *chunks_of.entry(part.file_index).or_default() += 1;
        }
    }
    let mut seen = BTreeMap::<usize, usize>::new();
    let name = |index: usize| plan.files[index].name.clone();
    jobs.iter()
        .map(|job| match job.parts.as_slice() {
            [part] => {
                let seen = seen.entry(part.file_index).or_default();
                *seen += 1;
                let of = chunks_of[&part.file_index];
                JobLabel::File {
                    name: name(part.file_index),
                    chunk: (of > 1).then_some((*seen, of)),
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
        })
        .collect()
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

/// A plan's jobs running on the pool, their results added to a [`Tally`] while the workers
/// are still counting, so that little is left after the last one. Jobs are leased in order, so
/// results come nearly in order: the finished prefix is added as it grows (linear overall),
/// whatever is left (a retried or failed job held the prefix back) at the end, then the jobs
/// the pool gave up on.
struct PoolRun {
    supervisor: CommandSupervisor,
    /// A mapped scan is only safe where a job whose worker died gets another attempt.
    may_map: bool,
    /// Each job gets a time limit from its size (unless `--job-timeout` gives one to all), so
    /// that a stuck job cannot hang the run forever.
    timeout_by_size: bool,
    labels: Vec<JobLabel>,
    /// Jobs whose results are added: the first `added_before`.
    added_before: usize,
    /// No more jobs will be submitted.
    closed: bool,
    told_all_added: bool,
}

impl PoolRun {
    /// Starts the pool on `plan`'s jobs; `more_to_come`: jobs will be submitted later (then
    /// [`close`](Self::close) when they are all in).
    fn start(
        args: &LogcountArgs,
        plan: &logcount::Plan,
        more_to_come: bool,
    ) -> anyhow::Result<Self> {
        let progress = args.pool.log.init();
        let jobs = lease_table(args, plan)?;
        let labels = job_labels(plan, 0..plan.jobs.len());
        for (id, label) in labels.iter().enumerate() {
            tracing::trace!(event = "job_planned", job = id, "job {id}: {label}");
        }
        let supervisor = args
            .pool
            .supervisor(COMMAND, jobs, labels.clone(), progress)?;
        Ok(Self {
            supervisor: if more_to_come {
                supervisor.keep_alive()
            } else {
                supervisor
            },
            may_map: args.pool.max_attempts > 1,
            timeout_by_size: args.pool.job_timeout.is_none(),
            labels,
            added_before: 0,
            closed: !more_to_come,
            told_all_added: false,
        })
    }

    /// Adds `plan`'s jobs at `jobs` (the next ones, in order) to the run; false once the run
    /// takes no more (it was stopped).
    fn submit(&mut self, plan: &logcount::Plan, jobs: Range<usize>) -> anyhow::Result<bool> {
        let labels = job_labels(plan, jobs.clone());
        for (job, label) in plan.jobs[jobs].iter().zip(labels) {
            let Some(id) = self
                .supervisor
                .submit(LogcountChunk::NAME, encode_job(job, self.may_map)?)
            else {
                return Ok(false);
            };
            if self.timeout_by_size {
                self.supervisor
                    .set_job_timeout(id, plan.default_job_timeout(job));
            }
            tracing::trace!(event = "job_planned", job = id, "job {id}: {label}");
            self.supervisor.observer_mut().add_label(label.clone());
            self.labels.push(label);
        }
        Ok(true)
    }

    /// No more jobs will be submitted.
    fn close(&mut self) {
        self.closed = true;
        self.supervisor.close();
    }

    /// One pass of the pool's loop, waiting at most `wait`, then adds the results that
    /// extend the finished prefix. Returns whether the run is over.
    fn step(&mut self, wait: Duration, tally: &mut impl Tally) -> anyhow::Result<bool> {
        let over = self.supervisor.step_for(wait);
        while let Some(output) = self.supervisor.jobs().output(self.added_before as u64) {
            tally.add(decode_payload(output)?);
            // Added: drop the encoded result rather than keep a second copy of its keys until
            // the end (with millions of host names that copy is a large part of the memory).
            self.supervisor.take_outcome(self.added_before as u64);
            self.added_before += 1;
        }
        let all_in = self.added_before == self.supervisor.jobs().len();
        if all_in && self.closed && !self.told_all_added {
            self.told_all_added = true;
            tally.all_added();
        }
        Ok(over)
    }

    /// The run is over: adds the results still out of order and the failures of `plan`'s
    /// jobs.
    fn end(self, plan: &logcount::Plan, tally: &mut impl Tally) -> anyhow::Result<Counted> {
        let ended = Ended::of(self.supervisor);
        let report = &ended.report;
        for id in self.added_before..plan.jobs.len() {
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
        let labels = self.labels;
        let summary = report.failure_summary_naming(|id| {
            labels
                .get(usize::try_from(id).ok()?)
                .map(ToString::to_string)
        });
        Ok(Counted { ended, summary })
    }
}

/// The lease table for `plan`'s jobs, with their time limits (see [`PoolRun`]).
fn lease_table(args: &LogcountArgs, plan: &logcount::Plan) -> anyhow::Result<LeaseTable> {
    let may_map = args.pool.max_attempts > 1;
    let mut jobs = LeaseTable::new(args.pool.max_attempts);
    for job in &plan.jobs {
        let id = jobs.push(LogcountChunk::NAME, encode_job(job, may_map)?);
        if args.pool.job_timeout.is_none() {
            jobs.set_timeout(id, plan.default_job_timeout(job));
        }
    }
    Ok(jobs)
}

/// A job as its payload, mapped scans allowed or not.
fn encode_job(job: &ChunkJob, may_map: bool) -> anyhow::Result<Vec<u8>> {
    if job.may_map == may_map {
        return Ok(encode_payload(job)?);
    }
    let mut job = job.clone();
    job.may_map = may_map;
    Ok(encode_payload(&job)?)
}

/// Runs `plan`'s jobs on the pool, adding their results to `tally` as they come.
pub(crate) fn count_on_pool(
    args: &LogcountArgs,
    plan: &logcount::Plan,
    tally: &mut impl Tally,
) -> anyhow::Result<Counted> {
    let mut run = PoolRun::start(args, plan, false)?;
    while !run.step(Duration::from_millis(50), tally)? {}
    run.end(plan, tally)
}

/// How many directory entries are listed between two passes of the pool's loop: a few
/// hundred microseconds of `stat`, so workers' messages are read without delay.
const LIST_STEP: usize = 256;

/// A counted run whose inputs were listed while the workers counted.
struct StreamedRun {
    counted: Counted,
    plan: GrowingPlan,
    /// Whether the listing ended (a stopped run stops listing too).
    listed_all: bool,
}

/// Lists the inputs while the pool counts the files found: small files are batched into jobs
/// whenever a worker would otherwise wait, the rest are planned for the whole input once the
/// listing is over (see [`GrowingPlan`]).
fn count_while_listing(
    args: &LogcountArgs,
    lister: &mut Lister,
    merger: &mut Merger,
) -> anyhow::Result<StreamedRun> {
    let workers = args.pool.workers();
    let mut plan = GrowingPlan::new(args.top, args.chunk_bytes, workers);
    let mut run = PoolRun::start(args, plan.plan(), true)?;
    let mut listing = true;
    loop {
        if listing {
            plan.add_files(lister.list(LIST_STEP));
            if lister.is_done() {
                listing = false;
                let jobs = plan.plan_rest(lister.errors());
                merger.add_planned(plan.plan(), jobs.clone());
                run.submit(plan.plan(), jobs)?;
                run.close();
            } else {
                while run.supervisor.wants_jobs() {
                    let Some(job) = plan.plan_next() else {
                        break;
                    };
                    merger.add_planned(plan.plan(), job..job + 1);
                    if !run.submit(plan.plan(), job..job + 1)? {
                        break;
                    }
                }
                if run.supervisor.stopped().is_some() {
                    // Stopped (a signal, too many restarts): no more jobs, so no more listing.
                    listing = false;
                }
            }
        }
        let wait = if listing {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        if run.step(wait, merger)? {
            break;
        }
    }
    let counted = run.end(plan.plan(), merger)?;
    Ok(StreamedRun {
        counted,
        plan,
        listed_all: lister.is_done(),
    })
}

pub fn run(args: &LogcountArgs) -> anyhow::Result<ExitCode> {
    if args.shard.any() {
        return crate::scale_out::run_shard(args);
    }
    let named: Vec<Input> = args.paths.iter().map(Input::from_arg).collect();
    // The lister holds standard input's copy, which the workers read: keep it to the end.
    let mut lister = Lister::new(&named, args.recursive).map_err(crate::logcount_inputs::exit)?;
    let mut merger = Merger::growing(args.top);
    let StreamedRun {
        counted: Counted { ended, summary },
        plan,
        listed_all,
    } = count_while_listing(args, &mut lister, &mut merger)?;
    let report = &ended.report;
    // Files listed but never given to the pool (the run stopped first) are not counted: those
    // in no job yet, and those of a job the stopping pool no longer took.
    let so_far = plan.plan();
    merger.add_planned(so_far, so_far.jobs.len()..so_far.jobs.len());
    let never_submitted = &so_far.jobs[report.jobs.len().min(so_far.jobs.len())..];
    let not_given: Vec<usize> = plan
        .unplanned()
        .chain(never_submitted.iter().flat_map(ChunkJob::file_indices))
        .collect();
    for &index in &not_given {
        merger.add_failure(
            index,
            "not counted: the run stopped before a worker was given it".to_owned(),
        );
    }
    let result = merger.finish();
    write_stdout(&result.render(args.format))?;
    if !report.success() {
        note(&format!("error: {summary}"));
        if let Some(signal) = ended.stop_signal {
            let mut uncounted: Vec<&str> = report
                .jobs
                .failures()
                .filter_map(|(id, _)| so_far.jobs.get(usize::try_from(id).ok()?))
                .flat_map(|job| job.file_indices())
                .chain(not_given.iter().copied())
                .filter_map(|index| so_far.files.get(index))
                .map(|file| file.name.as_str())
                .collect();
            uncounted.sort_unstable();
            uncounted.dedup();
            let mut text = format!(
                "error: stopped by {} before counting {} file(s){}:\n",
                signal.as_str(),
                uncounted.len(),
                if listed_all {
                    ""
                } else {
                    " and before listing every input"
                }
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
        let plan = logcount::plan(dir.path(), &options).unwrap();
        let chunks = plan.jobs.len() - 1;
        assert!(chunks > 1, "{chunks} chunks");

        let jobs = lease_table(&run_args(&[], dir.path()), &plan).unwrap();
        let labels = job_labels(&plan, 0..plan.jobs.len());
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
        let jobs = lease_table(&given, &plan).unwrap();
        for id in 0..plan.jobs.len() {
            assert_eq!(
                jobs.timeout(id as u64),
                None,
                "the run's --job-timeout applies"
            );
        }
    }
}
