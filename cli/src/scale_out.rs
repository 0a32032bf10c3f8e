//! logcount past one host: `supervisor plan logcount` (a shard plan file), shard runs of
//! `supervisor run logcount` (`--shard`, `--plan`, `--partial`) and `supervisor merge` (the
//! partials into the report one host would print). See docs/scale-out.md.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use herd_logcount::{
    self as logcount, merge_partials, partial_identity, partials_in, publish, Format, Input,
    MergeError, MergeOptions, Merger, PartialBuilder, PartialIdentity, PublishError, ShardPlan,
    ShardPlanError,
};

use crate::logcount_cmd::{count_on_pool, Counted, LogcountArgs, Tally};
use crate::output::{note, write_stdout, Exit};

/// The environment variables an array job engine gives its task index in, by engine.
const INDEX_VARIABLES: [&str; 3] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

/// The shard options of `supervisor run logcount`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Shard options (see docs/scale-out.md)")]
pub struct ShardArgs {
    /// Count only shard I of N: `I/N`, or `auto/N` to take I from the array job's
    /// environment (JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN,
    /// AWS_BATCH_JOB_ARRAY_INDEX); with --plan, `I` or `auto`.
    #[arg(long, value_name = "I/N")]
    shard: Option<ShardSpec>,
    /// The shard plan written by `supervisor plan logcount`. PATH is then optional: for a plan
    /// of one directory, where this host sees it; for a plan of several PATHs, those PATHs.
    #[arg(long, value_name = "PLAN")]
    plan: Option<PathBuf>,
    /// Write the shard's counts to OUT as a partial for `supervisor merge`, instead
    /// of printing them (OUT must not exist).
    #[arg(long, value_name = "OUT")]
    partial: Option<PathBuf>,
}

impl ShardArgs {
    /// Whether any shard option was given.
    pub(crate) fn any(&self) -> bool {
        self.shard.is_some() || self.plan.is_some() || self.partial.is_some()
    }
}

/// `--shard`: an index (or `auto`) and, without a plan file, the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardSpec {
    /// `None`: from the environment.
    index: Option<u32>,
    count: Option<u32>,
}

impl std::str::FromStr for ShardSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (index, count) = match text.split_once('/') {
            Some((index, count)) => (index, Some(count)),
            None => (text, None),
        };
        let count = count
            .map(|count| match count.parse::<u32>() {
                Ok(n) if (1..=logcount::MAX_SHARDS).contains(&n) => Ok(n),
                _ => Err(format!(
                    "expected a shard count between 1 and {}, got {count:?}",
                    logcount::MAX_SHARDS
                )),
            })
            .transpose()?;
        let index = match index {
            "auto" => None,
            index => Some(
                index
                    .parse::<u32>()
                    .map_err(|_| format!("expected I/N, auto/N, I or auto, got {text:?}"))?,
            ),
        };
        if let (Some(index), Some(count)) = (index, count) {
            if index >= count {
                return Err(format!(
                    "shard {index} of {count}: shards are numbered 0 to {}",
                    count - 1
                ));
            }
        }
        Ok(Self { index, count })
    }
}

fn usage(message: String) -> anyhow::Error {
    Exit { code: 2, message }.into()
}

/// The array task index the environment gives (`lookup` reads a variable): exactly one
/// engine's, or several that agree. Missing, malformed or contradictory is a usage error that
/// names the variables.
fn index_from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<u32, String> {
    let parse = |name: &str| -> Result<Option<u64>, String> {
        lookup(name)
            .map(|value| {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("--shard auto: {name}={value:?} is not an array index"))
            })
            .transpose()
    };
    let mut found: Vec<(String, u64)> = Vec::new();
    if let Some(index) = parse("JOB_COMPLETION_INDEX")? {
        found.push(("JOB_COMPLETION_INDEX".into(), index));
    }
    if let Some(id) = parse("SLURM_ARRAY_TASK_ID")? {
        let min = parse("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).ok_or_else(|| {
            format!("--shard auto: SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}")
        })?;
        found.push((
            format!("SLURM_ARRAY_TASK_ID-SLURM_ARRAY_TASK_MIN ({id}-{min})"),
            index,
        ));
    }
    if let Some(index) = parse("AWS_BATCH_JOB_ARRAY_INDEX")? {
        found.push(("AWS_BATCH_JOB_ARRAY_INDEX".into(), index));
    }
    let Some((_, index)) = found.first() else {
        return Err(format!(
            "--shard auto: no array index in the environment (none of {} is set)",
            INDEX_VARIABLES.join(", ")
        ));
    };
    if found.iter().any(|(_, other)| other != index) {
        let seen: Vec<String> = found
            .iter()
            .map(|(name, index)| format!("{name} = {index}"))
            .collect();
        return Err(format!(
            "--shard auto: contradictory array indexes in the environment: {}",
            seen.join(", ")
        ));
    }
    u32::try_from(*index).map_err(|_| format!("--shard auto: array index {index} is too large"))
}

/// Reads and checks a plan file.
fn read_plan(path: &Path) -> anyhow::Result<ShardPlan> {
    let text = std::fs::read_to_string(path).map_err(|error| Exit {
        code: 2,
        message: format!("{}: cannot read the plan: {error}", path.display()),
    })?;
    let not_a_plan = |error: serde_json::Error| Exit {
        code: 2,
        message: format!("{}: not a shard plan: {error}", path.display()),
    };
    // The format first: a plan of another version is told as such, not by a field it lacks.
    #[derive(serde::Deserialize)]
    struct Versioned {
        format: u32,
    }
    let Versioned { format } = serde_json::from_str(&text).map_err(not_a_plan)?;
    if format != logcount::SHARD_PLAN_FORMAT {
        return Err(usage(format!(
            "{}: shard plan format {format}; this version reads format {}: plan again",
            path.display(),
            logcount::SHARD_PLAN_FORMAT
        )));
    }
    let plan: ShardPlan = serde_json::from_str(&text).map_err(not_a_plan)?;
    plan.check().map_err(|error| Exit {
        code: 2,
        message: format!("{}: {error}", path.display()),
    })?;
    Ok(plan)
}

/// Collects a shard's chunk results: into a partial, or into a report to print.
enum Sink {
    Partial(PartialSink),
    Report(Box<Merger>),
}

/// A shard's partial: built from the results, then published to `out` as soon as the last
/// result is in (while the pool stops its workers), or after the run.
struct PartialSink {
    out: PathBuf,
    state: PartialState,
}

enum PartialState {
    Building(PartialBuilder),
    /// Published (or not, and why): whether the shard met inputs it could not read.
    Published(Result<bool, PublishError>),
}

impl PartialSink {
    fn builder(&mut self) -> Option<&mut PartialBuilder> {
        match &mut self.state {
            PartialState::Building(builder) => Some(builder),
            PartialState::Published(_) => None,
        }
    }

    /// Writes the partial out, once.
    fn publish(&mut self) {
        let state = std::mem::replace(&mut self.state, PartialState::Published(Ok(false)));
        self.state = PartialState::Published(published(state, &self.out));
    }
}

/// The outcome of publishing the partial to `out`: done now if it was still being built.
fn published(state: PartialState, out: &Path) -> Result<bool, PublishError> {
    match state {
        PartialState::Building(builder) => {
            let has_errors = builder.has_errors();
            publish(out, |file| builder.write_to(file)).map(|()| has_errors)
        }
        PartialState::Published(outcome) => outcome,
    }
}

impl Tally for Sink {
    fn add(&mut self, counts: logcount::ChunkCounts) {
        match self {
            // Every result comes before the partial is written (`all_added`).
            Sink::Partial(partial) => {
                if let Some(builder) = partial.builder() {
                    builder.add(counts);
                }
            }
            Sink::Report(merger) => merger.add(counts),
        }
    }

    fn add_job_failure(&mut self, job: &logcount::ChunkJob, reason: &str) {
        match self {
            // A failed job means not every result came in: the partial is not written yet.
            Sink::Partial(partial) => {
                if let Some(builder) = partial.builder() {
                    builder.add_job_failure(job, reason);
                }
            }
            Sink::Report(merger) => merger.add_job_failure(job, reason),
        }
    }

    fn all_added(&mut self) {
        if let Sink::Partial(partial) = self {
            partial.publish();
        }
    }
}

impl Sink {
    fn add_failure(&mut self, file_index: usize, reason: String) {
        match self {
            Sink::Partial(partial) => {
                if let Some(builder) = partial.builder() {
                    builder.add_failure(file_index, reason);
                }
            }
            Sink::Report(merger) => merger.add_failure(file_index, reason),
        }
    }
}

/// The shard plan of `paths` (files and directories, as `run logcount PATH...` takes them)
/// in `shards`. Standard input is refused: it cannot be split across hosts.
fn shard_plan(paths: &[OsString], recursive: bool, shards: u64) -> anyhow::Result<ShardPlan> {
    refuse_stdin(paths)?;
    if paths.is_empty() {
        return Err(usage(
            "PATH is required without --plan: supervisor run logcount PATH... --shard I/N".into(),
        ));
    }
    ShardPlan::new(paths, recursive, shards).map_err(|error| match error {
        ShardPlanError::Plan(error) => crate::logcount_inputs::exit(error).into(),
        error => usage(error.to_string()),
    })
}

/// Standard input (`-`) among the PATHs of a shard plan or run is a usage error.
fn refuse_stdin(paths: &[OsString]) -> anyhow::Result<()> {
    if paths
        .iter()
        .any(|path| Input::from_arg(path) == Input::Stdin)
    {
        return Err(usage(
            "-: standard input cannot be sharded (every host would read its own): name files \
             or directories, or count it with a plain run without --shard"
                .into(),
        ));
    }
    Ok(())
}

/// Where a `--plan` shard run reads the plan's directory: the PATH given, for a plan of one
/// directory (its names are relative to it, so it may be mounted elsewhere); `None` for where
/// it was planned. A plan of several inputs names its files by their paths: its PATHs, if
/// given again, must be the planned ones.
fn plan_dir(plan: &ShardPlan, file: &Path, paths: &[OsString]) -> anyhow::Result<Option<PathBuf>> {
    match (&plan.root, paths) {
        (_, []) => Ok(None),
        (Some(_), [dir]) => Ok(Some(PathBuf::from(dir))),
        (Some(root), _) => Err(usage(format!(
            "the plan {} is of one directory ({root}): a shard run of it takes that directory \
             where this host sees it, or no PATH",
            file.display()
        ))),
        (None, paths) => {
            if plan.is_of(paths) {
                Ok(None)
            } else {
                Err(usage(format!(
                    "the plan {} was made of the PATHs {:?}, which name its files: run its \
                     shards with those PATHs, or with none",
                    file.display(),
                    plan.inputs
                )))
            }
        }
    }
}

/// `supervisor run logcount [PATH...] --shard ... [--plan PLAN] [--partial OUT]`.
pub(crate) fn run_shard(args: &LogcountArgs) -> anyhow::Result<ExitCode> {
    let shard_args = &args.shard;
    let Some(spec) = shard_args.shard else {
        return Err(usage(
            "--plan and --partial need --shard (I/N, auto/N; with --plan: I or auto)".into(),
        ));
    };
    refuse_stdin(&args.paths)?;
    let plan = match (&shard_args.plan, spec.count) {
        (Some(path), count) => {
            let plan = read_plan(path)?;
            if let Some(count) = count.filter(|&count| count != plan.shard_count()) {
                return Err(usage(format!(
                    "--shard says {count} shard(s), the plan {} has {}",
                    path.display(),
                    plan.shard_count()
                )));
            }
            plan
        }
        (None, Some(count)) => shard_plan(&args.paths, args.recursive, u64::from(count))?,
        (None, None) => {
            return Err(usage(
                "--shard needs the shard count (I/N or auto/N) unless --plan gives it".into(),
            ))
        }
    };
    let dir = match &shard_args.plan {
        Some(path) => plan_dir(&plan, path, &args.paths)?,
        None => None,
    };
    let index = match spec.index {
        Some(index) => index,
        None => index_from_env(|name| std::env::var(name).ok()).map_err(usage)?,
    };
    if index >= plan.shard_count() {
        return Err(usage(format!(
            "shard {index} of {}: shards are numbered 0 to {}",
            plan.shard_count(),
            plan.shard_count() - 1
        )));
    }
    if let Some(out) = &shard_args.partial {
        if std::fs::symlink_metadata(out).is_ok() {
            // Partials are published whole (atomically): one that holds this very shard is a
            // finished earlier try of it, which an engine's retry should find done, not fail.
            let wanted = |found: &PartialIdentity| {
                found.plan_hash == plan.hash
                    && found.index == index
                    && found.key_counts == args.top.is_some()
            };
            return match partial_identity(out) {
                Ok(found) if wanted(&found) => {
                    note(&format!(
                        "{} already holds shard {index} of {} (plan {}): nothing to count\n",
                        out.display(),
                        plan.shard_count(),
                        &plan.hash[..16]
                    ));
                    Ok(ExitCode::SUCCESS)
                }
                _ => Err(usage(format!(
                    "{}: already exists and is not this shard's partial (a partial is never \
                     replaced)",
                    out.display()
                ))),
            };
        }
        // Found out before counting, not after.
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent.filter(|parent| !parent.is_dir()) {
            return Err(usage(format!(
                "{}: no such directory to write the partial {} in",
                parent.display(),
                out.display()
            )));
        }
    }
    let chunk_bytes = args.chunk_bytes.unwrap_or_else(|| {
        let workers = args.pool.workers() as u64;
        plan.chunk_bytes(index, workers)
    });
    let mut local = plan.shard_jobs(index, dir.as_deref(), chunk_bytes, args.top);
    // A file shorter than planned has lost lines: it is not counted from what is left, nor
    // even given to a worker (in a batch, its keys could not be told from the others').
    let shrunk: BTreeMap<usize, String> = local
        .files
        .iter()
        .enumerate()
        .filter_map(|(file_index, file)| {
            let now = std::fs::metadata(&file.path).ok()?.len();
            (now < file.len).then(|| {
                let reason = format!(
                    "shrank since planned: {} bytes planned, {now} now",
                    file.len
                );
                (file_index, reason)
            })
        })
        .collect();
    if !shrunk.is_empty() {
        for job in &mut local.jobs {
            job.parts
                .retain(|part| !shrunk.contains_key(&part.file_index));
        }
        local.jobs.retain(|job| !job.parts.is_empty());
    }
    let mut sink = match &shard_args.partial {
        Some(out) => Sink::Partial(PartialSink {
            out: out.clone(),
            state: PartialState::Building(PartialBuilder::new(&plan, index, &local)),
        }),
        None => Sink::Report(Box::new(Merger::new(&local))),
    };
    for (file_index, reason) in shrunk {
        sink.add_failure(file_index, reason);
    }
    let Counted { ended, summary } = count_on_pool(args, &local, &mut sink)?;
    let report = &ended.report;
    // A partial written once every result was in is complete: a signal after that changes
    // nothing (the pool does not count it as stopping the run).
    let written_early = matches!(
        &sink,
        Sink::Partial(PartialSink {
            state: PartialState::Published(_),
            ..
        })
    );
    if let Some(signal) = ended
        .stop_signal
        .filter(|_| !report.success() && !written_early)
    {
        note(&format!(
            "error: {}error: stopped by {}; shard {index} was not completed{}\n",
            summary,
            signal.as_str(),
            if shard_args.partial.is_some() {
                ", no partial written"
            } else {
                ""
            }
        ));
        return Ok(ended.failure_code());
    }
    let has_errors = match sink {
        Sink::Partial(PartialSink { out, state }) => {
            let has_errors = published(state, &out).map_err(|error| match error {
                PublishError::Exists(_) => usage(error.to_string()),
                PublishError::Io { .. } => anyhow::Error::new(error),
            })?;
            note(&format!(
                "wrote {} (shard {index} of {}, plan {})\n",
                out.display(),
                plan.shard_count(),
                &plan.hash[..16]
            ));
            has_errors
        }
        Sink::Report(merger) => {
            let result = merger.finish();
            write_stdout(&result.render(args.format))?;
            result.has_errors()
        }
    };
    if !report.success() {
        note(&format!("error: {summary}"));
        return Ok(ended.failure_code());
    }
    Ok(if has_errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Splits logcount's inputs into N shards once, for shard runs on many hosts (see
/// docs/scale-out.md). The inputs are listed and named as `run logcount PATH...` lists and names
/// them, so that the merged shards print what that run prints.
#[derive(Debug, Args)]
#[command(after_help = PLAN_EXAMPLES)]
pub struct PlanArgs {
    /// Log files and directories of logs, as for `run logcount` (not `-`: standard input
    /// cannot be split across hosts). One directory alone: the files are named relative to
    /// it, and shard runs may read it from another mount point; otherwise by their paths.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<OsString>,
    /// Split the inputs into N shards.
    #[arg(long, value_name = "N")]
    shards: u64,
    /// Write the plan (JSON) to PLAN; it must not exist.
    #[arg(short, long, value_name = "PLAN")]
    output: PathBuf,
    /// Also count files in subdirectories of directory PATHs.
    #[arg(short, long)]
    recursive: bool,
}

const PLAN_EXAMPLES: &str = "\
Examples:
  supervisor plan logcount /shared/logs --shards 4 -o plan.json          one directory
  supervisor plan logcount web/ api.log old/ --shards 4 -o plan.json     files and directories
  supervisor run logcount --plan plan.json --shard auto --partial parts/$SLURM_ARRAY_TASK_ID
  supervisor merge parts/";

pub(crate) fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let plan = shard_plan(&args.paths, args.recursive, args.shards)?;
    let mut json = serde_json::to_string_pretty(&plan).context("encoding the plan")?;
    json.push('\n');
    publish(&args.output, |file| file.write_all(json.as_bytes())).map_err(|error| match error {
        PublishError::Exists(_) => usage(error.to_string()),
        PublishError::Io { .. } => anyhow::Error::new(error),
    })?;
    let bytes: u64 = plan.files.iter().map(|file| file.len).sum();
    note(&format!(
        "planned {} file(s), {bytes} bytes, into {} shard(s): plan {}\n",
        plan.files.len(),
        plan.shard_count(),
        plan.hash
    ));
    Ok(if plan.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Merges the partials of logcount's shard runs into what one run over all the inputs prints.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0; 1 when a file could not be read, shards are missing, or a \
    partial is damaged, conflicting or from another plan; 2 for bad usage."
)]
pub struct MergeArgs {
    /// Partials written by `supervisor run logcount --partial`, or directories of them.
    #[arg(required = true, value_name = "PARTIAL|DIR")]
    inputs: Vec<PathBuf>,
    /// Output format: table, csv or json.
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    format: Format,
    /// Also report the K busiest client keys (the shards must have run with --top).
    #[arg(long, value_name = "K")]
    top: Option<usize>,
    /// Merge even if shards are missing; the gaps are listed under errors (exit 1).
    #[arg(long)]
    allow_missing: bool,
}

pub(crate) fn merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let mut paths = Vec::new();
    for input in &args.inputs {
        if input.is_dir() {
            let found = partials_in(input).map_err(|error| Exit {
                code: 2,
                message: format!("{}: cannot list directory: {error}", input.display()),
            })?;
            paths.extend(found);
        } else {
            paths.push(input.clone());
        }
    }
    let options = MergeOptions {
        top: args.top,
        allow_missing: args.allow_missing,
    };
    let merged = merge_partials(&paths, options).map_err(|error| {
        let code = match error {
            MergeError::Empty => 2,
            _ => 1,
        };
        Exit {
            code,
            message: error.to_string(),
        }
    })?;
    write_stdout(&merged.report.render(args.format))?;
    if !merged.missing.is_empty() {
        let missing: Vec<String> = merged.missing.iter().map(u32::to_string).collect();
        note(&format!(
            "warning: merged without shard(s) {}\n",
            missing.join(", ")
        ));
    }
    Ok(if merged.report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn the_array_index_comes_from_whichever_engine_set_it() {
        assert_eq!(index_from_env(env(&[("JOB_COMPLETION_INDEX", "3")])), Ok(3));
        assert_eq!(
            index_from_env(env(&[
                ("SLURM_ARRAY_TASK_ID", "12"),
                ("SLURM_ARRAY_TASK_MIN", "10")
            ])),
            Ok(2)
        );
        assert_eq!(index_from_env(env(&[("SLURM_ARRAY_TASK_ID", "1")])), Ok(1));
        assert_eq!(
            index_from_env(env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "0")])),
            Ok(0)
        );
        // Two engines that agree are fine.
        assert_eq!(
            index_from_env(env(&[
                ("JOB_COMPLETION_INDEX", "2"),
                ("AWS_BATCH_JOB_ARRAY_INDEX", "2")
            ])),
            Ok(2)
        );
    }

    #[test]
    fn a_missing_or_contradictory_array_index_names_the_variables() {
        let error = index_from_env(env(&[])).unwrap_err();
        for name in INDEX_VARIABLES {
            assert!(error.contains(name), "{error}");
        }
        let error = index_from_env(env(&[
            ("JOB_COMPLETION_INDEX", "1"),
            ("SLURM_ARRAY_TASK_ID", "2"),
        ]))
        .unwrap_err();
        assert!(
            error.contains("contradictory")
                && error.contains("JOB_COMPLETION_INDEX = 1")
                && error.contains("SLURM_ARRAY_TASK_ID"),
            "{error}"
        );
        let error = index_from_env(env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "x")])).unwrap_err();
        assert!(error.contains("AWS_BATCH_JOB_ARRAY_INDEX"), "{error}");
        let error = index_from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
        ]))
        .unwrap_err();
        assert!(error.contains("below"), "{error}");
    }

    #[test]
    fn shard_specs_parse_and_check_their_bounds() {
        let spec = |text: &str| text.parse::<ShardSpec>();
        assert_eq!(
            spec("2/4"),
            Ok(ShardSpec {
                index: Some(2),
                count: Some(4)
            })
        );
        assert_eq!(
            spec("auto/4"),
            Ok(ShardSpec {
                index: None,
                count: Some(4)
            })
        );
        assert_eq!(
            spec("auto"),
            Ok(ShardSpec {
                index: None,
                count: None
            })
        );
        assert_eq!(
            spec("1"),
            Ok(ShardSpec {
                index: Some(1),
                count: None
            })
        );
        assert!(spec("4/4").unwrap_err().contains("numbered 0 to 3"));
        assert!(spec("0/0").is_err());
        assert!(spec("x/2").is_err());
        assert!(spec("-1/2").is_err());
    }
}
