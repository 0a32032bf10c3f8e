//! Planning a run: cut the input files (listed by [`super::Inputs`]) into chunk jobs, small
//! serde values that a worker turns into counts with [`super::count_chunk`].
//!
//! Planning reads metadata only, never file contents: a plain file becomes byte ranges of about
//! [`Options::chunk_bytes`] each (ranges need not fall on line ends; see `scan.rs` for the rule
//! that makes any cut exact), and a `.gz` file one job, since deflate streams cannot be entered
//! in the middle.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::inputs::{Input, Inputs};

/// Default chunk size: big enough that per-job overhead (open, seek, a result of up to one key
/// list) is noise, small enough that one 1.2 GB file keeps two workers busy to the end.
pub const DEFAULT_CHUNK_BYTES: u64 = 64 * 1024 * 1024;

/// How to plan a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Also count files in subdirectories of directory inputs (`sub/file.log`).
    pub recursive: bool,
    /// Target size of one chunk job of a plain file, in bytes (at least 1).
    pub chunk_bytes: u64,
    /// Report the K busiest client keys: jobs then also return per-key counts.
    pub top: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            recursive: false,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            top: None,
        }
    }
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFile {
    /// The name it is reported under (see [`Inputs`] for the rule), escaped (non-UTF-8 bytes
    /// and control characters as `\xNN`, a backslash as `\\`), so distinct paths stay distinct.
    pub name: String,
    /// Its path (symlinks are followed when read).
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    /// Its size when planned (compressed size for gzip).
    pub len: u64,
    /// Read decompressed: a name ending in `.gz`, or standard input that starts as gzip does.
    #[serde(default)]
    pub gzip: bool,
}

/// Which bytes of a file a chunk job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkSource {
    /// The lines of a plain file that start at a byte offset in `start..end`.
    Range {
        /// First byte offset owned.
        start: u64,
        /// One past the last byte offset owned.
        end: u64,
    },
    /// The whole of a gzip file, decompressed (concatenated members included).
    Gzip,
}

/// One file's share of a job: a byte range of a file too large for one job, or a whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPart {
    /// The file to read.
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    /// Index of the file in [`Plan::files`]; results carry it back.
    pub file_index: usize,
    /// Which part of it.
    pub source: ChunkSource,
}

/// One unit of work for a worker: one chunk of a large file, or a batch of whole files
/// (however many, up to about [`Options::chunk_bytes`] in all), each still counted on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkJob {
    /// What to count, in order. A file cut into several chunks has one job per chunk, each
    /// with that one part; every other file is whole in exactly one job.
    pub parts: Vec<JobPart>,
    /// Return per-key counts too (needed for `--top`; makes the result bigger).
    pub per_key_counts: bool,
    /// Whether the first attempt in a pool worker may map the file (see `mapped.rs`): only
    /// where the pool retries a job whose worker died, since a truncated mapped file kills
    /// the worker and only the retry (which reads) gets the answer. `plan` leaves it off; the
    /// scheduler turns it on when jobs get at least two attempts.
    #[serde(default)]
    pub may_map: bool,
}

impl ChunkJob {
    /// The files the job counts (a part of), in order.
    pub fn file_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().map(|part| part.file_index)
    }
}

/// A planned run: the files, the jobs covering them, and files already known to be unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Input files, sorted by name.
    pub files: Vec<PlannedFile>,
    /// Chunk jobs; every file has at least one (an empty file one empty range).
    pub jobs: Vec<ChunkJob>,
    /// Entries that could not even be examined (a broken symlink, a vanished file), by name.
    pub errors: BTreeMap<String, String>,
    /// `Options::top`, for the merge.
    pub top: Option<usize>,
}

/// An input itself is unusable: the whole run fails (exit 2 at the CLI, 1 for
/// [`PlanError::Stdin`]).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A path does not exist (or a path component is missing).
    #[error("{}: no such file or directory", .0.display())]
    Missing(PathBuf),
    /// [`plan`]'s DIR exists but is not a directory.
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A path is neither a regular file nor a directory (a FIFO, a device, a socket).
    #[error(
        "{}: not a regular file or directory (pipe a stream to standard input and name it -)",
        .0.display()
    )]
    NotAFile(PathBuf),
    /// A path could not be examined (`stat` failed: a directory on the way is not searchable).
    #[error("{}: cannot examine: {error}", path.display())]
    Inaccessible {
        /// The path.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A directory could not be listed.
    #[error("{}: cannot list directory: {error}", path.display())]
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// Why (in the message itself, not a `source`, so an error chain does not print it twice).
        error: io::Error,
    },
    /// `-` (standard input) was named more than once.
    #[error("-: standard input named more than once")]
    StdinTwice,
    /// Standard input could not be copied to a temporary file.
    #[error("-: cannot copy standard input to a temporary file in {}: {error}", temp_dir.display())]
    Stdin {
        /// Where the copy was written (`TMPDIR`).
        temp_dir: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// Several inputs are unusable: each error on a line of its own.
    #[error("{}", several_lines(.0))]
    Several(Vec<PlanError>),
    /// `chunk_bytes` was 0.
    #[error("chunk size must be at least 1 byte")]
    ZeroChunkSize,
}

impl PlanError {
    /// One error for `errors` (not empty): itself if alone, else [`PlanError::Several`].
    pub(crate) fn several(mut errors: Vec<PlanError>) -> Self {
        if errors.len() == 1 {
            errors.remove(0)
        } else {
            PlanError::Several(errors)
        }
    }

    /// The errors this one stands for: itself, or the list of [`PlanError::Several`].
    pub fn each(&self) -> &[PlanError] {
        match self {
            PlanError::Several(errors) => errors,
            one => std::slice::from_ref(one),
        }
    }
}

fn several_lines(errors: &[PlanError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Chunks per worker aimed at by [`balanced_chunk_bytes`], so the last chunks of a run spread over
/// every worker. 1.2 GB of logs (8 files) on 2 workers: 24 chunks of 64 MiB cost 0.42 CPU-s, 8
/// of 151 MB 0.38.
const CHUNKS_PER_WORKER: u64 = 4;
/// The smallest chunk worth a job of its own.
const MIN_CHUNK_BYTES: u64 = 4 << 20;
/// The largest chunk, which bounds what a retry after a lost worker re-counts.
const MAX_CHUNK_BYTES: u64 = 256 << 20;

/// The chunk size that cuts `total_bytes` of logs into a few chunks per worker: enough for load
/// balance at the end of a run, not more, because each chunk costs its distinct keys again
/// (sorted, sent, decoded, merged) whatever its size.
pub fn balanced_chunk_bytes(total_bytes: u64, workers: u64) -> u64 {
    let even = total_bytes / (workers.max(1) * CHUNKS_PER_WORKER);
    // An eighth of slack: a file just above the average size stays one chunk.
    (even + even / 8).clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
}

/// The time limit every job gets, however small: room for a slow start on a loaded machine.
pub const JOB_TIMEOUT_BASE: Duration = Duration::from_secs(60);
/// What each started 64 MiB of a chunk adds to its time limit: far more than a scan takes (a
/// core counts 64 MiB in well under a second), so only a job that is stuck reaches it.
pub const JOB_TIMEOUT_PER_64_MIB: Duration = Duration::from_secs(10);
/// How many times its size a `.gz` file is taken to hold when it is scanned: text logs
/// compress about that well, often better.
pub const GZIP_EXPANSION: u64 = 10;

impl Plan {
    /// The bytes job `job` scans: its range of a plain file, or about what a `.gz` file unpacks
    /// to ([`GZIP_EXPANSION`] times its size on disk).
    pub fn scan_bytes(&self, job: &ChunkJob) -> u64 {
        job.parts
            .iter()
            .map(|part| match part.source {
                ChunkSource::Range { start, end } => end.saturating_sub(start),
                ChunkSource::Gzip => self
                    .files
                    .get(part.file_index)
                    .map_or(0, |file| file.len.saturating_mul(GZIP_EXPANSION)),
            })
            .fold(0, u64::saturating_add)
    }

    /// Cuts the files into jobs again, for chunks of about `chunk_bytes` (at least 1), without
    /// listing them again: for a chunk size chosen from the planned total.
    pub fn recut(&mut self, chunk_bytes: u64) {
        let options = Options {
            chunk_bytes: chunk_bytes.max(1),
            top: self.top,
            recursive: false,
        };
        let all: Vec<usize> = (0..self.files.len()).collect();
        self.jobs = jobs_for(&self.files, &all, &options);
    }

    /// The time limit for `job` when none is given (`--job-timeout`): [`JOB_TIMEOUT_BASE`]
    /// plus [`JOB_TIMEOUT_PER_64_MIB`] for each started 64 MiB it scans, so that nothing can
    /// hang a run forever while honest work is never cut short.
    pub fn default_job_timeout(&self, job: &ChunkJob) -> Duration {
        job_timeout_for(self.scan_bytes(job))
    }
}

/// [`Plan::default_job_timeout`] for a job that scans `bytes`.
pub fn job_timeout_for(bytes: u64) -> Duration {
    let blocks = bytes.div_ceil(64 << 20);
    let blocks = u32::try_from(blocks).unwrap_or(u32::MAX);
    JOB_TIMEOUT_BASE.saturating_add(JOB_TIMEOUT_PER_64_MIB.saturating_mul(blocks))
}

/// Lists DIR and cuts its files into chunk jobs; files are named relative to DIR.
pub fn plan(dir: &Path, options: &Options) -> Result<Plan, PlanError> {
    if options.chunk_bytes == 0 {
        return Err(PlanError::ZeroChunkSize);
    }
    let meta = fs::metadata(dir).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => PlanError::Missing(dir.to_path_buf()),
        _ => PlanError::Inaccessible {
            path: dir.to_path_buf(),
            error: source,
        },
    })?;
    if !meta.is_dir() {
        return Err(PlanError::NotADirectory(dir.to_path_buf()));
    }
    let inputs = Inputs::new(&[Input::Path(dir.to_path_buf())], options.recursive)?;
    plan_inputs(&inputs, options)
}

/// Cuts the files of `inputs` into chunk jobs (`options.recursive` played its part when
/// `inputs` was listed). Reads nothing: planning again with another chunk size is cheap.
pub fn plan_inputs(inputs: &Inputs, options: &Options) -> Result<Plan, PlanError> {
    if options.chunk_bytes == 0 {
        return Err(PlanError::ZeroChunkSize);
    }
    let files = inputs.files().to_vec();
    let errors = inputs.errors().clone();
    let all: Vec<usize> = (0..files.len()).collect();
    let jobs = jobs_for(&files, &all, options);
    Ok(Plan {
        files,
        jobs,
        errors,
        top: options.top,
    })
}

/// What a file weighs in a batch beyond its bytes: opening, reading and closing it cost about
/// as much as scanning this many bytes, so a batch of tiny files is not thousands of opens long.
const FILE_WEIGHT_BYTES: u64 = 16 << 10;
/// The most files in one batch: bounds a job's size on the wire and what one lost worker
/// costs to redo.
pub(crate) const MAX_BATCH_FILES: usize = 8192;

/// What `file` weighs in a batch: its bytes, or [`GZIP_EXPANSION`] times them for `.gz`, plus
/// [`FILE_WEIGHT_BYTES`].
pub(crate) fn batch_weight(file: &PlannedFile) -> u64 {
    let bytes = if file.gzip {
        file.len.saturating_mul(GZIP_EXPANSION)
    } else {
        file.len
    };
    bytes.saturating_add(FILE_WEIGHT_BYTES)
}

/// What a job reads of `file` counted whole: all of it (decompressed for `.gz`).
pub(crate) fn whole_source(file: &PlannedFile) -> ChunkSource {
    if file.gzip {
        ChunkSource::Gzip
    } else {
        ChunkSource::Range {
            start: 0,
            end: file.len,
        }
    }
}

/// Whether `file` is counted whole, in a batch, with chunks of `chunk_bytes`: a `.gz` file
/// always (deflate cannot be entered midway), a plain one when it is no larger than a chunk.
pub(crate) fn whole_in_a_batch(file: &PlannedFile, chunk_bytes: u64) -> bool {
    file.gzip || file.len <= chunk_bytes
}

/// The jobs for the files at `indices` in `files`, in that order: a file larger than a chunk
/// is cut into equal chunks of one job each; the others are batched whole, in order, into jobs
/// of up to a chunk's weight ([`batch_weight`]), so a directory of thousands of small logs
/// costs a few jobs and results, not one per file.
///
/// Batches shrink towards the end (guided scheduling): a batch weighs at most twice a chunk's
/// share of what is left to batch, down to a quarter of a chunk. Jobs are leased in order, so
/// the last ones leased are small: the workers end together, and the supervisor's last merge,
/// after every worker is done, is of a small result. (With equal batches, a worker slowed by
/// other load held a large last batch while the other idled: 0.51-0.94 s for the same run.)
pub(crate) fn jobs_for(
    files: &[PlannedFile],
    indices: &[usize],
    options: &Options,
) -> Vec<ChunkJob> {
    let job = |parts| ChunkJob {
        parts,
        per_key_counts: options.top.is_some(),
        may_map: false,
    };
    let weight_of = |index: usize| batch_weight(&files[index]);
    let batched = |index: usize| whole_in_a_batch(&files[index], options.chunk_bytes);
    let total_weight: u64 = indices
        .iter()
        .copied()
        .filter(|&index| batched(index))
        .map(weight_of)
        .fold(0, u64::saturating_add);
    let mut left_weight = total_weight;
    let mut jobs = Vec::new();
    let mut batch: Vec<JobPart> = Vec::new();
    let mut batch_weight = 0u64;
    for &file_index in indices {
        let file = &files[file_index];
        let part = |source| JobPart {
            path: file.path.clone(),
            file_index,
            source,
        };
        if !batched(file_index) {
            let pieces = file.len.div_ceil(options.chunk_bytes);
            let step = huge_page_aligned(file.len.div_ceil(pieces));
            let mut start = 0;
            while start < file.len {
                let end = (start + step).min(file.len);
                jobs.push(job(vec![part(ChunkSource::Range { start, end })]));
                start = end;
            }
            continue;
        }
        let source = whole_source(file);
        let weight = weight_of(file_index);
        // At most twice a chunk's share of what is left (this batch's files included).
        let share = u128::from(options.chunk_bytes)
            * 2
            * u128::from(left_weight.saturating_add(batch_weight))
            / u128::from(total_weight.max(1));
        let limit = u64::try_from(share)
            .unwrap_or(u64::MAX)
            .clamp(options.chunk_bytes / 4, options.chunk_bytes);
        if !batch.is_empty()
            && (batch_weight.saturating_add(weight) > limit || batch.len() >= MAX_BATCH_FILES)
        {
            jobs.push(job(std::mem::take(&mut batch)));
            batch_weight = 0;
        }
        batch.push(part(source));
        batch_weight = batch_weight.saturating_add(weight);
        left_weight = left_weight.saturating_sub(weight);
    }
    if !batch.is_empty() {
        jobs.push(job(batch));
    }
    jobs
}

/// Cuts of large chunks fall on 2 MiB boundaries of the file: a mapped scan then maps whole
/// 2 MiB blocks, which the kernel maps with one page-table entry each when the page cache holds
/// them as 2 MiB folios (as readahead leaves a file read from disk). A block cut in two by a
/// chunk boundary is mapped 4 KiB page by page by both chunks.
fn huge_page_aligned(step: u64) -> u64 {
    if step >= ALIGN_CUTS_FROM {
        step.next_multiple_of(HUGE_PAGE)
    } else {
        step
    }
}

/// The size of a PMD-mapped page on x86_64 and aarch64 (with 4 KiB base pages).
const HUGE_PAGE: u64 = 2 << 20;
/// Smaller chunks keep their exact size: rounding up would unbalance them by up to 2 MiB.
const ALIGN_CUTS_FROM: u64 = 16 * HUGE_PAGE;

/// Serde for a path as its raw bytes, so that non-UTF-8 file names survive the trip to a worker
/// (serde's own `PathBuf` impl refuses them).
pub(crate) mod path_bytes {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
        path.as_os_str().as_bytes().serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<PathBuf, D::Error> {
        Vec::<u8>::deserialize(deserializer).map(|bytes| PathBuf::from(OsString::from_vec(bytes)))
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[test]
    fn the_default_job_timeout_grows_with_the_bytes_scanned() {
        let mib = 1u64 << 20;
        assert_eq!(job_timeout_for(0), Duration::from_secs(60));
        assert_eq!(job_timeout_for(1), Duration::from_secs(70));
        assert_eq!(job_timeout_for(64 * mib), Duration::from_secs(70));
        assert_eq!(job_timeout_for(64 * mib + 1), Duration::from_secs(80));
        assert_eq!(job_timeout_for(256 * mib), Duration::from_secs(100));
        assert!(job_timeout_for(u64::MAX) >= Duration::from_secs(60));

        let file = |name: &str, len| PlannedFile {
            name: name.into(),
            path: PathBuf::from(name),
            len,
            gzip: name.ends_with(".gz"),
        };
        let job = |file_index, source| ChunkJob {
            parts: vec![JobPart {
                path: PathBuf::new(),
                file_index,
                source,
            }],
            per_key_counts: false,
            may_map: false,
        };
        let plan = Plan {
            files: vec![file("a.log", 200 * mib), file("b.log.gz", 9 * mib)],
            jobs: Vec::new(),
            errors: BTreeMap::new(),
            top: None,
        };
        let range = job(
            0,
            ChunkSource::Range {
                start: 100 * mib,
                end: 200 * mib,
            },
        );
        assert_eq!(plan.scan_bytes(&range), 100 * mib);
        assert_eq!(plan.default_job_timeout(&range), Duration::from_secs(80));
        // 9 MiB of gzip counts as 90 MiB of text.
        let gzip = job(1, ChunkSource::Gzip);
        assert_eq!(plan.scan_bytes(&gzip), 90 * mib);
        assert_eq!(plan.default_job_timeout(&gzip), Duration::from_secs(80));
        // A batch scans the sum of its parts.
        let batch = ChunkJob {
            parts: [range, gzip]
                .iter()
                .flat_map(|job| job.parts.clone())
                .collect(),
            ..job(0, ChunkSource::Gzip)
        };
        assert_eq!(plan.scan_bytes(&batch), 190 * mib);
        assert_eq!(plan.default_job_timeout(&batch), Duration::from_secs(90));
    }
}
