//! Partials: one shard's counts in a versioned, checksummed binary file, and the merge of a
//! run's partials into the report a single host would have printed.
//!
//! A shard's [`PartialBuilder`] takes its chunk results (in any order) and unions them per
//! file; [`PartialBuilder::encode`] writes the result in a fixed order (files by name, keys
//! sorted), so the same shard always gives the same bytes, and [`publish`] puts them in place
//! atomically without ever replacing a file. [`merge_partials`] checks the partials (checksum,
//! plan hash, shard indexes), then streams each one's sorted key runs, piece by piece, into a
//! [`Merger`], the same code that merges chunk results on one host: the output is the same
//! by construction, and memory is bounded by the distinct keys (as on one host), not by the
//! number of partials. The format is documented in docs/scale-out.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::plan::{ChunkJob, ChunkSource, JobPart, Plan, PlannedFile};
use super::report::{FileCounts, Merger, Report};
use super::scan::{ChunkCounts, DistinctKeys, KeyCounts, PartCounts};
use super::shard::{hex, ShardPlan};
use super::union::SortedUnion;

/// The first bytes of every partial.
pub const PARTIAL_MAGIC: [u8; 8] = *b"HERDPART";
/// The partial format this version writes and reads.
pub const PARTIAL_FORMAT: u32 = 2;
/// Header flag: the partial holds per-key request counts (the shard ran with `--top`).
const FLAG_KEY_COUNTS: u32 = 1;
/// Entry status: the piece, a part of a file cut across shards, was counted; its own keys
/// follow in the key sections.
const COUNTED: u8 = 0;
/// Entry status: the file could not be read; a reason follows.
const FAILED: u8 = 1;
/// Entry status: the piece is a whole file and was counted; its distinct count follows, its
/// keys are in the shard's union of whole files' keys.
const COUNTED_WHOLE: u8 = 2;
/// The longest byte string (name, reason, key) a partial may hold: far above what a shard
/// writes, low enough that a damaged length cannot make the reader allocate much.
const MAX_STRING: u32 = 1 << 20;
/// The size of the trailing SHA-256.
const CHECKSUM_LEN: u64 = 32;
/// How much of a partial the merge reads with one call.
const READ_BUFFER: usize = 256 << 10;

/// Per-key request counts of one piece while its chunks come in, in key order.
#[derive(Debug, Default)]
struct CountTables {
    ipv4: BTreeMap<u32, u64>,
    ipv6: BTreeMap<u128, u64>,
    other: BTreeMap<Vec<u8>, u64>,
    long: BTreeMap<[u8; 32], (u64, Vec<u8>)>,
}

impl CountTables {
    /// Adds another table's counts.
    fn absorb(&mut self, other: CountTables) {
        for (key, count) in other.ipv4 {
            *self.ipv4.entry(key).or_insert(0) += count;
        }
        for (key, count) in other.ipv6 {
            *self.ipv6.entry(key).or_insert(0) += count;
        }
        for (key, count) in other.other {
            *self.other.entry(key).or_insert(0) += count;
        }
        for (digest, (count, shown)) in other.long {
            self.long.entry(digest).or_insert_with(|| (0, shown)).0 += count;
        }
    }

    fn add(&mut self, keys: &DistinctKeys, counts: &KeyCounts) {
        for (&key, &count) in keys.ipv4.iter().zip(&counts.ipv4) {
            *self.ipv4.entry(key).or_insert(0) += count;
        }
        for (&key, &count) in keys.ipv6.iter().zip(&counts.ipv6) {
            *self.ipv6.entry(key).or_insert(0) += count;
        }
        for (key, &count) in keys.other.iter().zip(&counts.other) {
            *self.other.entry(key.clone()).or_insert(0) += count;
        }
        for ((digest, &count), shown) in keys.long.iter().zip(&counts.long).zip(&counts.long_shown)
        {
            self.long
                .entry(*digest)
                .or_insert_with(|| (0, shown.clone()))
                .0 += count;
        }
    }
}

/// One piece of a file as the shard counted it.
#[derive(Debug)]
struct BuiltPiece {
    name: String,
    len: u64,
    start: u64,
    end: u64,
    total: u64,
    error: Option<String>,
    /// The jobs planned for it.
    jobs: usize,
    chunks_left: usize,
    /// For a whole file counted in one job: its distinct keys, from the job's result.
    distinct: Option<u64>,
    /// The keys of a piece counted in jobs of its own (a part of a file, or a whole file cut
    /// into several chunks).
    keys: KeyRuns,
}

impl BuiltPiece {
    /// Whether the piece is the whole file.
    fn is_whole(&self) -> bool {
        self.start == 0 && self.end == self.len
    }

    /// Whether its jobs' keys are its own: jobs of one part each, for a piece that is a part
    /// of a file or that was cut into several chunks (its distinct count is then their union).
    /// A whole file counted in one job has its distinct count in the result, and its keys go
    /// to the shard's union of whole files' keys.
    fn keeps_keys(&self) -> bool {
        !self.is_whole() || self.jobs > 1
    }
}

/// Sorted key lists as results bring them, united when the partial is written.
#[derive(Debug, Default)]
struct KeyRuns {
    ipv4: SortedUnion<u32>,
    ipv6: SortedUnion<u128>,
    /// Byte-string keys, one sorted list per result: united when written.
    other: Vec<Vec<u8>>,
    long: SortedUnion<[u8; 32]>,
    counts: Option<CountTables>,
}

impl KeyRuns {
    fn new(key_counts: bool) -> Self {
        Self {
            counts: key_counts.then(CountTables::default),
            ..Self::default()
        }
    }

    fn push(&mut self, keys: DistinctKeys, counts: Option<&KeyCounts>) {
        if let (Some(tables), Some(key_counts)) = (&mut self.counts, counts) {
            tables.add(&keys, key_counts);
        }
        let DistinctKeys {
            ipv4,
            ipv6,
            other,
            long,
        } = keys;
        self.ipv4.push(ipv4);
        self.ipv6.push(ipv6);
        self.other.extend(other);
        self.long.push(long);
    }

    /// The union of the keys, and the counts.
    fn finish(self) -> (DistinctKeys, Option<CountTables>) {
        let mut other = self.other;
        other.sort_unstable();
        other.dedup();
        let keys = DistinctKeys {
            ipv4: self.ipv4.finish(),
            ipv6: self.ipv6.finish(),
            other,
            long: self.long.finish(),
        };
        (keys, self.counts)
    }
}

/// How a piece is written.
enum Written {
    /// Status [`FAILED`], with the reason.
    Failed(String),
    /// Status [`COUNTED`], with the piece's own keys.
    Piece(DistinctKeys, Option<CountTables>),
    /// Status [`COUNTED_WHOLE`], with the file's distinct count.
    Whole(u64),
}

/// Gathers one shard's chunk results into its partial.
#[derive(Debug)]
pub struct PartialBuilder {
    hash: [u8; 32],
    index: u32,
    count: u32,
    key_counts: bool,
    errors: BTreeMap<String, String>,
    pieces: Vec<BuiltPiece>,
    /// The keys of the whole files counted in jobs with others (or alone, in one job).
    whole: Box<KeyRuns>,
}

impl PartialBuilder {
    /// A builder for shard `index` of `plan`, whose chunk jobs are `local` (from
    /// [`ShardPlan::shard_jobs`]; results name its file indexes).
    pub fn new(plan: &ShardPlan, index: u32, local: &Plan) -> Self {
        let shard = plan
            .shards
            .get(index as usize)
            .map_or(&[][..], Vec::as_slice);
        let mut pieces: Vec<BuiltPiece> = shard
            .iter()
            .zip(&local.files)
            .map(|(piece, file)| BuiltPiece {
                name: file.name.clone(),
                len: file.len,
                start: piece.start,
                end: piece.end,
                total: 0,
                error: None,
                jobs: 0,
                chunks_left: 0,
                distinct: None,
                keys: KeyRuns::new(local.top.is_some()),
            })
            .collect();
        for file_index in local.jobs.iter().flat_map(ChunkJob::file_indices) {
            if let Some(piece) = pieces.get_mut(file_index) {
                piece.jobs += 1;
                piece.chunks_left += 1;
            }
        }
        Self {
            hash: plan.compute_hash(),
            index,
            count: plan.shard_count(),
            key_counts: local.top.is_some(),
            errors: local.errors.clone(),
            pieces,
            whole: Box::new(KeyRuns::new(local.top.is_some())),
        }
    }

    /// Whether the shard met an input it could not read (a listing error, a failed file).
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
            || self
                .pieces
                .iter()
                .any(|piece| piece.error.is_some() || piece.chunks_left > 0)
    }

    /// Adds the result of one chunk job: the chunk of a piece counted in jobs of its own (its
    /// keys are then the piece's), or whole files, alone or batched (each part's counts are the
    /// file's, and the job's keys, the union of its counted parts' keys, go to the shard's union
    /// of whole files' keys). A job of several parts that holds a piece of a file cut across
    /// shards, or a file already marked unreadable, cannot be told apart by file: its files are
    /// marked unreadable, so that no key is counted without its file.
    pub fn add(&mut self, counts: ChunkCounts) {
        let ChunkCounts {
            parts,
            keys,
            counts,
        } = counts;
        let own = match parts.as_slice() {
            [only] => Some(only.file_index).filter(|&index| {
                self.pieces
                    .get(index)
                    .is_some_and(|piece| piece.keeps_keys())
            }),
            _ => None,
        };
        if let Some(index) = own {
            let piece = &mut self.pieces[index];
            piece.chunks_left = piece.chunks_left.saturating_sub(1);
            let [part] = <[PartCounts; 1]>::try_from(parts).expect("one part");
            match part.outcome {
                Err(reason) => {
                    piece.error.get_or_insert(reason);
                }
                Ok(_) if piece.error.is_some() => {}
                Ok(counted) => {
                    piece.total += counted.total;
                    piece.keys.push(keys, counts.as_ref());
                }
            }
            return;
        }
        let attributable = parts.iter().all(|part| {
            self.pieces
                .get(part.file_index)
                .is_some_and(|piece| piece.is_whole() && piece.error.is_none())
        });
        for part in parts {
            let Some(piece) = self.pieces.get_mut(part.file_index) else {
                continue;
            };
            piece.chunks_left = piece.chunks_left.saturating_sub(1);
            match part.outcome {
                Err(reason) => {
                    piece.error.get_or_insert(reason);
                }
                Ok(_) if !attributable => {
                    piece.error.get_or_insert_with(|| {
                        "not counted: its job also held a file it cannot be told apart from".into()
                    });
                }
                Ok(counted) => {
                    piece.total = counted.total;
                    piece.distinct = Some(counted.ip);
                }
            }
        }
        if attributable {
            self.whole.push(keys, counts.as_ref());
        }
    }

    /// Marks the files of a job the pool gave up on unreadable.
    pub fn add_job_failure(&mut self, job: &ChunkJob, reason: &str) {
        for file_index in job.file_indices() {
            self.add_failure(file_index, reason.to_owned());
        }
    }

    /// Marks a file of the shard unreadable (the first reason is kept). A whole file counted
    /// in a job with others keeps its counts: its keys are in the shard's union already, and a
    /// job has a result or a failure, never both.
    pub fn add_failure(&mut self, file_index: usize, reason: String) {
        if let Some(piece) = self.pieces.get_mut(file_index) {
            if piece.distinct.is_none() {
                piece.error.get_or_insert(reason);
            }
        }
    }

    /// Writes the partial (see docs/scale-out.md for the layout) to `out`, as it goes: the
    /// only copy of the keys in memory is the builder's own.
    pub fn write_to(self, out: &mut dyn Write) -> io::Result<()> {
        let mut out = Hashing::new(out);
        out.write_all(&PARTIAL_MAGIC)?;
        put_u32(&mut out, PARTIAL_FORMAT)?;
        out.write_all(&self.hash)?;
        put_u32(&mut out, self.index)?;
        put_u32(&mut out, self.count)?;
        put_u32(&mut out, if self.key_counts { FLAG_KEY_COUNTS } else { 0 })?;
        put_u64(&mut out, self.pieces.len() as u64)?;
        // The table says how many keys each piece and the whole files' union have: finish the
        // unions first. A whole file cut into chunks joins the union once its own is made.
        let mut whole = *self.whole;
        let pieces: Vec<(BuiltPiece, Written)> = self
            .pieces
            .into_iter()
            .map(|mut piece| {
                let keys = std::mem::take(&mut piece.keys);
                let written = match piece.error.take() {
                    Some(reason) => Written::Failed(reason),
                    None if piece.chunks_left > 0 => Written::Failed(format!(
                        "not counted: the run stopped with {} of its chunks uncounted",
                        piece.chunks_left
                    )),
                    None if !piece.keeps_keys() => match piece.distinct {
                        Some(distinct) => Written::Whole(distinct),
                        None => Written::Failed("not counted: no job counted it".into()),
                    },
                    None => {
                        let (keys, counts) = keys.finish();
                        if piece.is_whole() {
                            let distinct = keys.len();
                            if let (Some(tables), Some(counts)) = (&mut whole.counts, counts) {
                                tables.absorb(counts);
                            }
                            whole.push(keys, None);
                            Written::Whole(distinct)
                        } else {
                            Written::Piece(keys, counts)
                        }
                    }
                };
                (piece, written)
            })
            .collect();
        let (whole_keys, whole_counts) = whole.finish();
        for (piece, written) in &pieces {
            put_bytes(&mut out, piece.name.as_bytes())?;
            put_u64(&mut out, piece.len)?;
            put_u64(&mut out, piece.start)?;
            put_u64(&mut out, piece.end)?;
            match written {
                Written::Failed(reason) => {
                    out.write_all(&[FAILED])?;
                    put_u64(&mut out, 0)?;
                    put_bytes(&mut out, reason.as_bytes())?;
                }
                Written::Piece(keys, _) => {
                    out.write_all(&[COUNTED])?;
                    put_u64(&mut out, piece.total)?;
                    put_key_lens(&mut out, keys)?;
                }
                Written::Whole(distinct) => {
                    out.write_all(&[COUNTED_WHOLE])?;
                    put_u64(&mut out, piece.total)?;
                    put_u64(&mut out, *distinct)?;
                }
            }
        }
        put_u64(&mut out, self.errors.len() as u64)?;
        for (name, reason) in &self.errors {
            put_bytes(&mut out, name.as_bytes())?;
            put_bytes(&mut out, reason.as_bytes())?;
        }
        put_key_lens(&mut out, &whole_keys)?;
        for (_, written) in pieces {
            if let Written::Piece(keys, counts) = written {
                write_keys(&mut out, &keys)?;
                if let Some(tables) = counts {
                    write_counts(&mut out, tables)?;
                }
            }
        }
        write_keys(&mut out, &whole_keys)?;
        if let Some(tables) = whole_counts {
            write_counts(&mut out, tables)?;
        }
        out.finish()
    }

    /// The partial's bytes, in memory.
    pub fn encode(self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut bytes);
        bytes
    }
}

/// A writer that hashes what goes through it: the partial's checksum. It gathers the small
/// writes (a key, a count: hundreds of thousands per partial) into blocks, so that each is a
/// copy into a buffer rather than a call through `inner` and a hasher update of its own (which
/// cost as much as the rest of writing a partial).
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    block: Vec<u8>,
}

impl<'a> Hashing<'a> {
    /// The size of the blocks passed on to `inner` and the hasher.
    const BLOCK: usize = 64 << 10;

    fn new(inner: &'a mut dyn Write) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            block: Vec::with_capacity(Self::BLOCK),
        }
    }

    /// Hashes and writes the gathered block.
    fn pass_on(&mut self) -> io::Result<()> {
        self.hasher.update(&self.block);
        self.inner.write_all(&self.block)?;
        self.block.clear();
        Ok(())
    }

    /// Writes what is left, then the checksum of everything written.
    fn finish(mut self) -> io::Result<()> {
        self.pass_on()?;
        let checksum = self.hasher.finalize();
        self.inner.write_all(&checksum)
    }
}

impl Write for Hashing<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.block.len() + buf.len() > Self::BLOCK {
            self.pass_on()?;
            if buf.len() > Self::BLOCK {
                self.hasher.update(buf);
                return self.inner.write_all(buf);
            }
        }
        self.block.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.inner.flush()
    }
}

fn put_u32(out: &mut impl Write, value: u32) -> io::Result<()> {
    out.write_all(&value.to_le_bytes())
}

fn put_u64(out: &mut impl Write, value: u64) -> io::Result<()> {
    out.write_all(&value.to_le_bytes())
}

fn put_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    put_u32(out, bytes.len() as u32)?;
    out.write_all(bytes)
}

/// How many IPv4, IPv6, byte-string and long keys `keys` holds.
fn put_key_lens(out: &mut impl Write, keys: &DistinctKeys) -> io::Result<()> {
    for n in [
        keys.ipv4.len(),
        keys.ipv6.len(),
        keys.other.len(),
        keys.long.len(),
    ] {
        put_u64(out, n as u64)?;
    }
    Ok(())
}

fn write_keys(out: &mut impl Write, keys: &DistinctKeys) -> io::Result<()> {
    for key in &keys.ipv4 {
        out.write_all(&key.to_le_bytes())?;
    }
    for key in &keys.ipv6 {
        out.write_all(&key.to_le_bytes())?;
    }
    for key in &keys.other {
        put_bytes(out, key)?;
    }
    for digest in &keys.long {
        out.write_all(digest)?;
    }
    Ok(())
}

/// The counts parallel to the keys just written (the tables hold exactly those keys), then
/// what `--top` shows of each long key.
fn write_counts(out: &mut impl Write, tables: CountTables) -> io::Result<()> {
    for count in tables.ipv4.values().chain(tables.ipv6.values()) {
        put_u64(out, *count)?;
    }
    for count in tables.other.values() {
        put_u64(out, *count)?;
    }
    for (count, _) in tables.long.values() {
        put_u64(out, *count)?;
    }
    for (_, shown) in tables.long.values() {
        put_bytes(out, shown)?;
    }
    Ok(())
}

/// Why a partial could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The output path is taken (a partial is never replaced).
    #[error("{}: already exists (a partial is never replaced)", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
}

/// Creates `out` with what `write` writes: into a temporary file in the same directory,
/// flushed to disk, then linked under its name (link(2) fails rather than replace an existing
/// file) and the temporary name removed, so that `out` never exists half-written.
pub fn publish(
    out: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), PublishError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| PublishError::Io { path, error }
    };
    if fs::symlink_metadata(out).is_ok() {
        return Err(PublishError::Exists(out.to_path_buf()));
    }
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = out.file_name().ok_or_else(|| PublishError::Io {
        path: out.to_path_buf(),
        error: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        let mut buffered = io::BufWriter::with_capacity(1 << 20, file);
        write(&mut buffered)?;
        buffered
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(&temp)(error));
    }
    let linked = fs::hard_link(&temp, out);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(PublishError::Exists(out.to_path_buf()));
        }
        Err(error) => return Err(io_error(out)(error)),
    }
    File::open(&dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(&dir))
}

/// Why partials could not be merged. Every message names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No partial was given.
    #[error("no partials to merge")]
    Empty,
    /// A partial could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The partial.
        path: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
    /// A partial is damaged, truncated or not a partial at all.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The partial.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Two partials come from different plans (inputs that changed between shards, or another
    /// run's partial).
    #[error(
        "{} and {} come from different plans (plan {} of {} shard(s) and plan {} of {} shard(s)); \
         partials merge only with partials of the same plan",
        first.display(), other.display(), first_hash, first_count, other_hash, other_count
    )]
    DifferentPlans {
        /// A partial of the first plan seen.
        first: PathBuf,
        /// Its plan hash.
        first_hash: String,
        /// Its shard count.
        first_count: u32,
        /// The partial that differs.
        other: PathBuf,
        /// Its plan hash.
        other_hash: String,
        /// Its shard count.
        other_count: u32,
    },
    /// Two partials claim the same shard with different contents.
    #[error(
        "{} and {} are both shard {index} but differ; remove the wrong one",
        first.display(), other.display()
    )]
    ConflictingDuplicate {
        /// The shard index.
        index: u32,
        /// The first partial for it.
        first: PathBuf,
        /// The other.
        other: PathBuf,
    },
    /// Shards are missing (and `allow_missing` was not given).
    #[error(
        "missing shard(s) {} of {count}: merge them all, or pass --allow-missing to merge \
         what is there",
        list(.missing)
    )]
    Missing {
        /// The missing shard indexes.
        missing: Vec<u32>,
        /// The shard count.
        count: u32,
    },
    /// `--top` was asked of partials written without per-key counts.
    #[error("{}: has no per-key counts (run the shard with --top to merge with --top)", .0.display())]
    NoKeyCounts(PathBuf),
}

fn list(indexes: &[u32]) -> String {
    indexes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The outcome of a merge.
#[derive(Debug)]
pub struct Merged {
    /// What a single-host run over the same inputs reports (minus what missing shards held).
    pub report: Report,
    /// Shards with no partial (only with `allow_missing`).
    pub missing: Vec<u32>,
}

/// How to merge.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Report the K busiest client keys (the partials must hold per-key counts).
    pub top: Option<usize>,
    /// Merge even when shards are missing, listing them under the report's errors.
    pub allow_missing: bool,
}

/// A partial's header and table.
#[derive(Debug)]
struct PartialHead {
    path: PathBuf,
    checksum: [u8; 32],
    size: u64,
    hash: [u8; 32],
    index: u32,
    count: u32,
    key_counts: bool,
    entries: Vec<Entry>,
    errors: Vec<(String, String)>,
    /// How many keys of each kind the union of the whole files' keys holds.
    whole_lens: [u64; 4],
    /// Where the key sections start.
    keys_at: u64,
}

#[derive(Debug)]
struct Entry {
    name: String,
    len: u64,
    start: u64,
    end: u64,
    /// `Err(reason)` for a file that could not be read.
    outcome: Result<Counted, String>,
}

#[derive(Debug)]
enum Counted {
    /// A piece of a file cut across shards, with its own keys.
    Piece {
        total: u64,
        /// Keys of each kind: IPv4, IPv6, byte strings, long.
        lens: [u64; 4],
    },
    /// A whole file: its keys are in the partial's union of whole files' keys.
    Whole { total: u64, distinct: u64 },
}

/// A reader that knows its position and turns a short read into a clear error.
struct Source<R> {
    inner: R,
    at: u64,
}

impl<R: Read> Source<R> {
    fn exact<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf)?;
        self.at += N as u64;
        Ok(buf)
    }

    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.exact::<1>()?[0])
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.exact()?))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.exact()?))
    }

    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let len = self.u32()?;
        if len > MAX_STRING {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a string of {len} bytes at offset {}", self.at - 4),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf)?;
        self.at += u64::from(len);
        Ok(buf)
    }

    fn text(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("text that is not UTF-8 before offset {}", self.at),
            )
        })
    }
}

/// Which shard a partial holds, read from its header once its checksum is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialIdentity {
    /// The plan's hash, hex, as in [`ShardPlan::hash`](crate::ShardPlan::hash).
    pub plan_hash: String,
    /// The shard's index.
    pub index: u32,
    /// The plan's number of shards.
    pub count: u32,
    /// Whether it holds per-key counts (written with `--top`).
    pub key_counts: bool,
}

/// Reads the identity of the partial at `path`, checking its whole checksum: whether a
/// partial already published is a complete copy of a given shard (a retried task finds its
/// own partial, published atomically, and need not count again).
pub fn partial_identity(path: &Path) -> Result<PartialIdentity, MergeError> {
    let head = read_head(path)?;
    Ok(PartialIdentity {
        plan_hash: super::shard::hex(&head.hash),
        index: head.index,
        count: head.count,
        key_counts: head.key_counts,
    })
}

/// Reads and checks the header, table and checksum of the partial at `path`.
fn read_head(path: &Path) -> Result<PartialHead, MergeError> {
    let io_error = |error: io::Error| MergeError::Io {
        path: path.to_path_buf(),
        error,
    };
    let corrupt = |reason: String| MergeError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    let mut magic = [0u8; 8];
    let got = read_up_to(&mut file, &mut magic).map_err(io_error)?;
    if got < magic.len() || magic != PARTIAL_MAGIC {
        return Err(corrupt("not a logcount partial (wrong magic)".into()));
    }
    if size < 8 + 4 + CHECKSUM_LEN {
        return Err(corrupt(format!("truncated ({size} bytes)")));
    }
    // The checksum covers everything before it: one streaming pass, in large reads (a copy
    // through a small buffer made a read call per 8 KiB).
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let hashed = io::copy(
        &mut BufReader::with_capacity(READ_BUFFER, (&mut file).take(size - CHECKSUM_LEN)),
        &mut hasher,
    )
    .map_err(io_error)?;
    let mut checksum = [0u8; 32];
    file.read_exact(&mut checksum).map_err(io_error)?;
    if hashed != size - CHECKSUM_LEN || hasher.finalize().as_slice() != checksum {
        return Err(corrupt(
            "checksum mismatch: the file is truncated or damaged".into(),
        ));
    }
    file.seek(SeekFrom::Start(8)).map_err(io_error)?;
    let mut source = Source {
        inner: BufReader::new(file),
        at: 8,
    };
    let bad = |error: io::Error| {
        corrupt(if error.kind() == io::ErrorKind::UnexpectedEof {
            "truncated".into()
        } else {
            error.to_string()
        })
    };
    let format = source.u32().map_err(bad)?;
    if format != PARTIAL_FORMAT {
        return Err(corrupt(format!(
            "partial format {format}, this version reads format {PARTIAL_FORMAT}"
        )));
    }
    let hash = source.exact::<32>().map_err(bad)?;
    let index = source.u32().map_err(bad)?;
    let count = source.u32().map_err(bad)?;
    let flags = source.u32().map_err(bad)?;
    if count == 0 || index >= count {
        return Err(corrupt(format!("shard index {index} of {count} shard(s)")));
    }
    let entries_len = source.u64().map_err(bad)?;
    let mut entries = Vec::new();
    for _ in 0..entries_len {
        if source.at >= size {
            return Err(corrupt("truncated file table".into()));
        }
        let name = source.text().map_err(bad)?;
        let len = source.u64().map_err(bad)?;
        let start = source.u64().map_err(bad)?;
        let end = source.u64().map_err(bad)?;
        let status = source.u8().map_err(bad)?;
        let total = source.u64().map_err(bad)?;
        let outcome = match status {
            COUNTED => Ok(Counted::Piece {
                total,
                lens: read_lens(&mut source).map_err(bad)?,
            }),
            COUNTED_WHOLE => Ok(Counted::Whole {
                total,
                distinct: source.u64().map_err(bad)?,
            }),
            FAILED => Err(source.text().map_err(bad)?),
            other => return Err(corrupt(format!("unknown entry status {other}"))),
        };
        if start > end || end > len {
            return Err(corrupt(format!("{name}: bytes {start}..{end} of {len}")));
        }
        if let Ok(Counted::Whole { total, distinct }) = outcome {
            if (start, end) != (0, len) {
                return Err(corrupt(format!(
                    "{name}: bytes {start}..{end} of {len} counted as a whole file"
                )));
            }
            if distinct > total {
                return Err(corrupt(format!(
                    "{name}: {distinct} distinct clients in {total} requests"
                )));
            }
        }
        if entries.last().is_some_and(|last: &Entry| last.name >= name) {
            return Err(corrupt(format!("{name}: file entries out of order")));
        }
        entries.push(Entry {
            name,
            len,
            start,
            end,
            outcome,
        });
    }
    let errors_len = source.u64().map_err(bad)?;
    let mut errors = Vec::new();
    for _ in 0..errors_len {
        if source.at >= size {
            return Err(corrupt("truncated error list".into()));
        }
        errors.push((source.text().map_err(bad)?, source.text().map_err(bad)?));
    }
    let whole_lens = read_lens(&mut source).map_err(bad)?;
    let whole_files = entries
        .iter()
        .any(|entry| matches!(entry.outcome, Ok(Counted::Whole { .. })));
    if !whole_files && whole_lens != [0; 4] {
        return Err(corrupt("keys of whole files, but no whole file".into()));
    }
    let whole_keys = whole_lens
        .iter()
        .fold(0u64, |sum, n| sum.saturating_add(*n));
    for entry in &entries {
        if let Ok(Counted::Whole { distinct, .. }) = entry.outcome {
            if distinct > whole_keys {
                return Err(corrupt(format!(
                    "{}: {distinct} distinct clients, more than the {whole_keys} keys of the \
                     shard's whole files",
                    entry.name
                )));
            }
        }
    }
    if source.at > size - CHECKSUM_LEN {
        return Err(corrupt("its file table runs into the checksum".into()));
    }
    Ok(PartialHead {
        path: path.to_path_buf(),
        checksum,
        size,
        hash,
        index,
        count,
        key_counts: flags & FLAG_KEY_COUNTS != 0,
        entries,
        errors,
        whole_lens,
        keys_at: source.at,
    })
}

/// How many keys of each kind (IPv4, IPv6, byte strings, long) a key section holds.
fn read_lens<R: Read>(source: &mut Source<R>) -> io::Result<[u64; 4]> {
    let mut lens = [0u64; 4];
    for n in &mut lens {
        *n = source.u64()?;
    }
    Ok(lens)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(got)
}

/// Reads `n` keys, checking that they are strictly increasing (what the merge relies on).
fn read_sorted<T: Ord, R: Read>(
    source: &mut Source<R>,
    n: u64,
    mut read: impl FnMut(&mut Source<R>) -> io::Result<T>,
) -> io::Result<Vec<T>> {
    let mut keys: Vec<T> = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let key = read(source)?;
        if keys.last().is_some_and(|last| *last >= key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("keys out of order before offset {}", source.at),
            ));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// How many fixed-size values [`read_fixed`] reads with one call: its buffer stays small
/// (512 KiB for 128-bit keys) whatever a damaged count says.
const READ_BLOCK: u64 = 1 << 14;

/// Reads `n` values of `N` bytes each, `READ_BLOCK` at a time rather than one read call each,
/// passing each, with the offset just past it, to `take`.
fn read_fixed<const N: usize, R: Read>(
    source: &mut Source<R>,
    n: u64,
    mut take: impl FnMut([u8; N], u64) -> io::Result<()>,
) -> io::Result<()> {
    let mut block = Vec::new();
    let mut left = n;
    while left > 0 {
        let count = left.min(READ_BLOCK);
        block.resize(count as usize * N, 0);
        source.inner.read_exact(&mut block)?;
        for (index, bytes) in block.chunks_exact(N).enumerate() {
            let end = source.at + (index as u64 + 1) * N as u64;
            take(bytes.try_into().expect("chunks of N bytes"), end)?;
        }
        source.at += count * N as u64;
        left -= count;
    }
    Ok(())
}

/// Reads `n` fixed-size keys, checking that they are strictly increasing, as [`read_sorted`]
/// does, in blocks.
fn read_sorted_fixed<const N: usize, T: Ord + Copy, R: Read>(
    source: &mut Source<R>,
    n: u64,
    decode: impl Fn([u8; N]) -> T,
) -> io::Result<Vec<T>> {
    let mut keys: Vec<T> = Vec::with_capacity(n.min(1 << 16) as usize);
    read_fixed(source, n, |bytes, end| {
        let key = decode(bytes);
        if keys.last().is_some_and(|last| *last >= key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("keys out of order before offset {end}"),
            ));
        }
        keys.push(key);
        Ok(())
    })?;
    Ok(keys)
}

fn read_counts<R: Read>(source: &mut Source<R>, n: u64) -> io::Result<Vec<u64>> {
    let mut counts = Vec::with_capacity(n.min(1 << 16) as usize);
    read_fixed(source, n, |bytes, _| {
        counts.push(u64::from_le_bytes(bytes));
        Ok(())
    })?;
    Ok(counts)
}

/// Reads one counted piece's keys (and its counts if the partial has them).
fn read_piece<R: Read>(
    source: &mut Source<R>,
    lens: [u64; 4],
    key_counts: bool,
) -> io::Result<(DistinctKeys, Option<KeyCounts>)> {
    let keys = DistinctKeys {
        ipv4: read_sorted_fixed(source, lens[0], u32::from_le_bytes)?,
        ipv6: read_sorted_fixed(source, lens[1], u128::from_le_bytes)?,
        other: read_sorted(source, lens[2], |s| s.bytes())?,
        long: read_sorted_fixed(source, lens[3], |digest: [u8; 32]| digest)?,
    };
    if !key_counts {
        return Ok((keys, None));
    }
    let counts = KeyCounts {
        ipv4: read_counts(source, lens[0])?,
        ipv6: read_counts(source, lens[1])?,
        other: read_counts(source, lens[2])?,
        long: read_counts(source, lens[3])?,
        long_shown: (0..lens[3])
            .map(|_| source.bytes())
            .collect::<io::Result<_>>()?,
    };
    Ok((keys, Some(counts)))
}

/// A file of the run: its size when planned, and the byte ranges of it the partials hold.
type Coverage = (u64, Vec<(u64, u64)>);

/// Merges the partials at `paths` into the report one host would have printed over the same
/// inputs. See the module docs.
pub fn merge_partials(paths: &[PathBuf], options: MergeOptions) -> Result<Merged, MergeError> {
    let mut heads: BTreeMap<u32, PartialHead> = BTreeMap::new();
    let mut first: Option<(PathBuf, [u8; 32], u32)> = None;
    for path in paths {
        let head = read_head(path)?;
        match &first {
            None => first = Some((head.path.clone(), head.hash, head.count)),
            Some((first_path, hash, count)) if *hash != head.hash || *count != head.count => {
                return Err(MergeError::DifferentPlans {
                    first: first_path.clone(),
                    first_hash: hex(hash),
                    first_count: *count,
                    other: head.path,
                    other_hash: hex(&head.hash),
                    other_count: head.count,
                });
            }
            Some(_) => {}
        }
        if let Some(seen) = heads.get(&head.index) {
            if seen.checksum == head.checksum && seen.size == head.size {
                continue;
            }
            return Err(MergeError::ConflictingDuplicate {
                index: head.index,
                first: seen.path.clone(),
                other: head.path,
            });
        }
        if options.top.is_some() && !head.key_counts {
            return Err(MergeError::NoKeyCounts(head.path));
        }
        heads.insert(head.index, head);
    }
    let Some((_, _, count)) = first else {
        return Err(MergeError::Empty);
    };
    let missing: Vec<u32> = (0..count).filter(|i| !heads.contains_key(i)).collect();
    if !missing.is_empty() && !options.allow_missing {
        return Err(MergeError::Missing { missing, count });
    }

    // The run's files, the pieces present of each, and its listing errors.
    let mut files: BTreeMap<&str, Coverage> = BTreeMap::new();
    let mut errors = BTreeMap::new();
    // Files counted whole, and in which partial: a file whole in one partial is in no other
    // (the plan gives each byte to one shard), or its counts could not be told apart.
    let mut whole_in: BTreeMap<&str, &Path> = BTreeMap::new();
    for head in heads.values() {
        for entry in &head.entries {
            if matches!(entry.outcome, Ok(Counted::Whole { .. })) {
                whole_in.insert(&entry.name, &head.path);
            }
        }
    }
    for head in heads.values() {
        for entry in &head.entries {
            let file = files.entry(&entry.name).or_insert((entry.len, Vec::new()));
            file.1.push((entry.start, entry.end));
            if let Some(whole) = whole_in.get(entry.name.as_str()) {
                if file.1.len() > 1 {
                    return Err(MergeError::Corrupt {
                        path: head.path.clone(),
                        reason: format!(
                            "{}: counted as a whole file in {} and in another partial too",
                            entry.name,
                            whole.display()
                        ),
                    });
                }
            }
        }
        for (name, reason) in &head.errors {
            errors.entry(name.clone()).or_insert_with(|| reason.clone());
        }
    }
    // No byte of a file is in two partials (the plan gives each to one shard): a partial copied
    // under another index, say, would count its lines twice.
    let mut pieces_of: BTreeMap<&str, Vec<(u64, u64, &Path)>> = BTreeMap::new();
    for head in heads.values() {
        for entry in &head.entries {
            pieces_of
                .entry(&entry.name)
                .or_default()
                .push((entry.start, entry.end, &head.path));
        }
    }
    for (name, pieces) in &mut pieces_of {
        pieces.sort_unstable();
        for pair in pieces.windows(2) {
            let ((_, end, first), (start, _, second)) = (pair[0], pair[1]);
            if start < end {
                return Err(MergeError::Corrupt {
                    path: second.to_path_buf(),
                    reason: format!(
                        "{name}: bytes from {start} counted in {} too",
                        first.display()
                    ),
                });
            }
        }
    }
    for index in &missing {
        errors.insert(
            format!("(shard {index} of {count})"),
            "missing partial: the files only it counted are not listed".into(),
        );
    }
    let index_of: BTreeMap<&str, usize> = files
        .keys()
        .enumerate()
        .map(|(index, name)| (*name, index))
        .collect();
    let plan = Plan {
        files: files
            .iter()
            .map(|(name, (len, _))| PlannedFile {
                name: name.to_string(),
                path: PathBuf::new(),
                len: *len,
                gzip: name.ends_with(".gz"),
            })
            .collect(),
        // A job per piece with keys of its own (or unreadable), and per partial one job for its
        // whole files, whose keys come as one union, as a batch's do on one host.
        jobs: heads
            .values()
            .flat_map(|head| {
                let part = |entry: &Entry| JobPart {
                    path: PathBuf::new(),
                    file_index: index_of[entry.name.as_str()],
                    source: ChunkSource::Range {
                        start: entry.start,
                        end: entry.end,
                    },
                };
                let job = |parts| ChunkJob {
                    parts,
                    per_key_counts: options.top.is_some(),
                    may_map: false,
                };
                let (whole, own): (Vec<&Entry>, Vec<&Entry>) = head
                    .entries
                    .iter()
                    .partition(|entry| matches!(entry.outcome, Ok(Counted::Whole { .. })));
                let batch = (!whole.is_empty()).then(|| job(whole.into_iter().map(part).collect()));
                own.into_iter()
                    .map(move |entry| job(vec![part(entry)]))
                    .chain(batch)
            })
            .collect(),
        errors,
        top: options.top,
    };
    let mut merger = Merger::new(&plan);
    // A file not wholly covered by the partials present is not counted from a part of it.
    if !missing.is_empty() {
        for (index, (len, pieces)) in files.values().enumerate() {
            let mut pieces = pieces.clone();
            pieces.sort_unstable();
            let mut at = 0;
            let mut whole = true;
            for (start, end) in pieces {
                whole &= start <= at;
                at = at.max(end);
            }
            if !whole || at < *len {
                merger.add_failure(
                    index,
                    format!(
                        "not counted: part of it was in missing shard(s) {}",
                        list(&missing)
                    ),
                );
            }
        }
    }
    for head in heads.values() {
        let corrupt = |error: io::Error| MergeError::Corrupt {
            path: head.path.clone(),
            reason: if error.kind() == io::ErrorKind::UnexpectedEof {
                "truncated key section".into()
            } else {
                error.to_string()
            },
        };
        let mut file = File::open(&head.path).map_err(|error| MergeError::Io {
            path: head.path.clone(),
            error,
        })?;
        file.seek(SeekFrom::Start(head.keys_at)).map_err(corrupt)?;
        let mut source = Source {
            inner: BufReader::with_capacity(
                READ_BUFFER,
                file.take(head.size - CHECKSUM_LEN - head.keys_at),
            ),
            at: head.keys_at,
        };
        let mut whole_parts = Vec::new();
        for entry in &head.entries {
            let file_index = index_of[entry.name.as_str()];
            match &entry.outcome {
                Err(reason) => merger.add_failure(file_index, reason.clone()),
                Ok(Counted::Piece { total, lens }) => {
                    let (keys, counts) =
                        read_piece(&mut source, *lens, head.key_counts).map_err(corrupt)?;
                    // One piece, one job: its distinct count is its keys' (the merger unites
                    // the keys of a file in several pieces).
                    merger.add(ChunkCounts {
                        parts: vec![PartCounts {
                            file_index,
                            outcome: Ok(FileCounts {
                                total: *total,
                                ip: keys.len(),
                            }),
                        }],
                        keys,
                        counts: options.top.and(counts),
                    });
                }
                Ok(Counted::Whole { total, distinct }) => whole_parts.push(PartCounts {
                    file_index,
                    outcome: Ok(FileCounts {
                        total: *total,
                        ip: *distinct,
                    }),
                }),
            }
        }
        let (keys, counts) =
            read_piece(&mut source, head.whole_lens, head.key_counts).map_err(corrupt)?;
        if !whole_parts.is_empty() {
            merger.add(ChunkCounts {
                parts: whole_parts,
                keys,
                counts: options.top.and(counts),
            });
        }
    }
    Ok(Merged {
        report: merger.finish(),
        missing,
    })
}

/// The partials in `dir`: its regular files, by name (hidden names, such as a partial still
/// being written, are skipped).
pub fn partials_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        if entry.file_type()?.is_file() {
            found.insert(entry.path());
        }
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{count_chunk, count_dir, Format, Options};

    /// Logs with every kind of key, one file large enough to be cut across shards.
    fn logs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut big = String::new();
        for line in 0..3000u32 {
            let key = match line % 4 {
                0 => format!("10.0.{}.{}", line % 5, line % 77),
                1 => format!("host-{}.example", line % 300),
                2 => format!("2001:db8::{:x}", line % 90),
                _ => format!("{}{}", "k".repeat(300), line % 3),
            };
            big.push_str(&format!("{key} x\n"));
        }
        std::fs::write(dir.path().join("big.log"), big).unwrap();
        std::fs::write(dir.path().join("small.log"), "1.2.3.4 a\n10.0.0.0 b\n").unwrap();
        std::fs::write(dir.path().join("empty.log"), "").unwrap();
        dir
    }

    /// The chunk size of the shards in these tests: small, so that files are cut.
    const TEST_CHUNK: u64 = 4096;

    /// Shard `index` of `plan`, counted in this thread, as partial bytes.
    fn shard_bytes(plan: &ShardPlan, index: u32, top: Option<usize>) -> Vec<u8> {
        shard_bytes_cut(plan, index, top, TEST_CHUNK)
    }

    /// [`shard_bytes`] with chunks of `chunk_bytes`.
    fn shard_bytes_cut(
        plan: &ShardPlan,
        index: u32,
        top: Option<usize>,
        chunk_bytes: u64,
    ) -> Vec<u8> {
        let local = plan.shard_jobs(index, None, chunk_bytes, top);
        let mut builder = PartialBuilder::new(plan, index, &local);
        for job in &local.jobs {
            builder.add(count_chunk(job));
        }
        builder.encode()
    }

    fn write_shards(
        logs: &Path,
        shards: u64,
        top: Option<usize>,
    ) -> (tempfile::TempDir, Vec<PathBuf>) {
        write_shards_cut(logs, shards, top, TEST_CHUNK)
    }

    /// [`write_shards`] with chunks of `chunk_bytes`.
    fn write_shards_cut(
        logs: &Path,
        shards: u64,
        top: Option<usize>,
        chunk_bytes: u64,
    ) -> (tempfile::TempDir, Vec<PathBuf>) {
        let plan = ShardPlan::new(&[logs], false, shards).unwrap();
        let parts = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..plan.shard_count())
            .map(|index| {
                let path = parts.path().join(format!("part-{index}"));
                let bytes = shard_bytes_cut(&plan, index, top, chunk_bytes);
                publish(&path, |file| file.write_all(&bytes)).unwrap();
                path
            })
            .collect();
        (parts, paths)
    }

    /// The merge of the partials at `paths`, and the single-host count of `logs`.
    fn merged_and_single(paths: &[PathBuf], logs: &Path, top: Option<usize>) -> (Report, Report) {
        let merged = merge_partials(
            paths,
            MergeOptions {
                top,
                allow_missing: false,
            },
        )
        .unwrap();
        let options = Options {
            top,
            ..Options::default()
        };
        (merged.report, count_dir(logs, &options).unwrap())
    }

    #[test]
    fn merged_shards_report_what_one_count_reports() {
        let logs = logs();
        for shards in [1, 2, 3, 5, 8] {
            for top in [None, Some(4)] {
                let (_parts, paths) = write_shards(logs.path(), shards, top);
                let (merged, single) = merged_and_single(&paths, logs.path(), top);
                for format in [Format::Table, Format::Csv, Format::Json] {
                    assert_eq!(
                        merged.render(format),
                        single.render(format),
                        "{shards} shards, top {top:?}"
                    );
                }
            }
        }
    }

    /// Many small files: each shard batches them into a few jobs, as one host does, and the
    /// partials (each whole file a count, its keys in the shard's union) merge to the single
    /// host's report, a file that cannot be read inside a batch included.
    #[test]
    fn a_shard_of_many_small_files_is_counted_in_batches_and_merges_exactly() {
        let logs = tempfile::tempdir().unwrap();
        for index in 0..600u32 {
            let text = format!(
                "10.0.{}.{} a\nhost-{}.example b\n2001:db8::{:x} c\n",
                index / 200,
                index % 200,
                index % 37,
                index % 53
            );
            std::fs::write(logs.path().join(format!("f{index:03}.log")), text).unwrap();
        }
        let unreadable = logs.path().join("f123.log");
        std::fs::set_permissions(
            &unreadable,
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        let readable_by_us = std::fs::read(&unreadable).is_ok();
        let chunk_bytes = 4 << 20;
        for top in [None, Some(3)] {
            let plan = ShardPlan::new(&[logs.path()], false, 3).unwrap();
            for index in 0..plan.shard_count() {
                let local = plan.shard_jobs(index, None, chunk_bytes, top);
                assert!(
                    local.jobs.len() * 20 < local.files.len(),
                    "{} jobs for {} files",
                    local.jobs.len(),
                    local.files.len()
                );
            }
            let (_parts, paths) = write_shards_cut(logs.path(), 3, top, chunk_bytes);
            let (merged, single) = merged_and_single(&paths, logs.path(), top);
            assert_eq!(merged.render(Format::Json), single.render(Format::Json));
            assert_eq!(merged.files.len() + merged.errors.len(), 600);
            if !readable_by_us {
                assert!(merged.errors.contains_key("f123.log"));
            }
        }
    }

    #[test]
    fn the_same_shard_encodes_to_the_same_bytes_whatever_the_chunking() {
        let logs = logs();
        let plan = ShardPlan::new(&[logs.path()], false, 3).unwrap();
        let fine = shard_bytes(&plan, 1, Some(2));
        let local = plan.shard_jobs(1, None, 1 << 30, Some(2));
        let mut coarse = PartialBuilder::new(&plan, 1, &local);
        // Results in reverse order, one chunk per piece.
        for job in local.jobs.iter().rev() {
            coarse.add(count_chunk(job));
        }
        assert!(fine == coarse.encode());
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_caught_naming_the_file() {
        let logs = logs();
        let plan = ShardPlan::new(&[logs.path()], false, 2).unwrap();
        let bytes = shard_bytes(&plan, 0, Some(3));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged");
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(97).collect();
        cuts.push(bytes.len() - 1);
        for cut in cuts {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let error = read_head(&path).unwrap_err().to_string();
            assert!(error.starts_with(&path.display().to_string()), "{error}");
        }
        for at in (0..bytes.len()).step_by(61) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            std::fs::write(&path, &flipped).unwrap();
            assert!(
                read_head(&path).is_err(),
                "a flipped byte at {at} went unnoticed"
            );
        }
    }

    /// A partial whose checksum is right but whose content is not (written by something else
    /// than herd): a clear error, never a panic or a huge allocation.
    #[test]
    fn a_well_checksummed_but_inconsistent_partial_is_refused() {
        let logs = logs();
        let plan = ShardPlan::new(&[logs.path()], false, 1).unwrap();
        let bytes = shard_bytes(&plan, 0, None);
        let dir = tempfile::tempdir().unwrap();
        let reseal = |mut body: Vec<u8>| {
            body.truncate(body.len() - 32);
            let checksum = Sha256::digest(&body);
            body.extend_from_slice(&checksum);
            body
        };
        // The whole files' IPv4 key count (the last table field before the keys), made
        // huge: the keys run out.
        let path = dir.path().join("sound");
        std::fs::write(&path, &bytes).unwrap();
        let ipv4_count_at = read_head(&path).unwrap().keys_at as usize - 32;
        let mut huge = bytes.clone();
        huge[ipv4_count_at..ipv4_count_at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let path = dir.path().join("huge");
        std::fs::write(&path, reseal(huge)).unwrap();
        let error = merge_partials(std::slice::from_ref(&path), MergeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("truncated") || error.contains("order"),
            "{error}"
        );
        // The first entry (a whole file) with more distinct clients than requests.
        let name_len = u32::from_le_bytes(bytes[64..68].try_into().unwrap()) as usize;
        let status_at = 68 + name_len + 8 * 3;
        assert_eq!(bytes[status_at], COUNTED_WHOLE);
        let distinct_at = status_at + 1 + 8;
        let mut inflated = bytes.clone();
        inflated[distinct_at..distinct_at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        let path = dir.path().join("inflated");
        std::fs::write(&path, reseal(inflated)).unwrap();
        let error = read_head(&path).unwrap_err().to_string();
        assert!(error.contains("distinct clients in"), "{error}");
        // An unknown format version (the one before this, say).
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&1u32.to_le_bytes());
        let path = dir.path().join("other");
        std::fs::write(&path, reseal(other)).unwrap();
        let error = read_head(&path).unwrap_err().to_string();
        assert!(
            error.contains("partial format 1, this version reads format 2"),
            "{error}"
        );
    }

    /// Two partials of one plan that claim the same bytes (a shard's partial copied under
    /// another index), a piece or a whole file (even an empty one): refused, not counted twice.
    #[test]
    fn bytes_claimed_by_two_partials_are_refused() {
        let logs = logs();
        let plan = ShardPlan::new(&[logs.path()], false, 2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (shard, expected) in [(0, "counted in"), (1, "counted as a whole file in")] {
            let bytes = shard_bytes(&plan, shard, None);
            let mut copy = bytes.clone();
            copy.truncate(copy.len() - 32);
            copy[44..48].copy_from_slice(&(1 - shard).to_le_bytes());
            let checksum = Sha256::digest(&copy);
            copy.extend_from_slice(&checksum);
            let (first, second) = (dir.path().join("p0"), dir.path().join("p1"));
            std::fs::write(&first, &bytes).unwrap();
            std::fs::write(&second, &copy).unwrap();
            assert_eq!(read_head(&second).unwrap().index, 1 - shard);
            let error = merge_partials(&[first, second], MergeOptions::default())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "shard {shard}: {error}");
        }
    }

    /// More keys than one read block and a partial larger than one write block: written and
    /// read back exactly, and a key out of order in a later block is found at its offset.
    #[test]
    fn keys_across_read_and_write_blocks_are_exact_and_checked() {
        let logs = tempfile::tempdir().unwrap();
        let keys = 3 * READ_BLOCK as u32 + 5;
        let text: String = (0..keys)
            .map(|key| {
                format!(
                    "10.{}.{}.{} - - x\n",
                    key >> 16,
                    (key >> 8) & 255,
                    key & 255
                )
            })
            .collect();
        std::fs::write(logs.path().join("many.log"), text).unwrap();
        let plan = ShardPlan::new(&[logs.path()], false, 1).unwrap();
        let bytes = shard_bytes(&plan, 0, None);
        assert!(bytes.len() > 2 * Hashing::BLOCK, "{} bytes", bytes.len());
        let (_parts, paths) = write_shards(logs.path(), 1, None);
        let merged = merge_partials(&paths, MergeOptions::default()).unwrap();
        assert_eq!(merged.report.all.ip, u64::from(keys));
        let single = count_dir(logs.path(), &Options::default()).unwrap();
        assert_eq!(
            merged.report.render(Format::Json),
            single.render(Format::Json)
        );

        let head = read_head(&paths[0]).unwrap();
        assert!(
            matches!(&head.entries[0].outcome, Ok(Counted::Whole { distinct, .. }) if *distinct == u64::from(keys))
                && head.whole_lens[0] == u64::from(keys),
            "{:?}",
            head.entries
        );
        let keys_at = head.keys_at as usize;
        let swapped = READ_BLOCK as usize + 7;
        let at = keys_at + 4 * swapped;
        let mut body = bytes.clone();
        body.truncate(body.len() - 32);
        let (first, second) = (body[at..at + 4].to_vec(), body[at + 4..at + 8].to_vec());
        body[at..at + 4].copy_from_slice(&second);
        body[at + 4..at + 8].copy_from_slice(&first);
        let checksum = Sha256::digest(&body);
        body.extend_from_slice(&checksum);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unsorted");
        std::fs::write(&path, body).unwrap();
        let error = merge_partials(&[path], MergeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with(&format!("keys out of order before offset {}", at + 8)),
            "{error}"
        );
    }

    proptest::proptest! {
        /// Whatever follows a valid header, under a valid checksum: an error or a report,
        /// never a panic.
        #[test]
        fn arbitrary_content_under_a_valid_checksum_never_panics(
            entries in 0u64..3,
            body in proptest::collection::vec(
                proptest::prop_oneof![proptest::num::u8::ANY, 0u8..2],
                0..300,
            ),
        ) {
            let mut bytes = PARTIAL_MAGIC.to_vec();
            bytes.extend_from_slice(&PARTIAL_FORMAT.to_le_bytes());
            bytes.extend_from_slice(&[7; 32]);
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&entries.to_le_bytes());
            bytes.extend_from_slice(&body);
            let checksum = Sha256::digest(&bytes);
            bytes.extend_from_slice(&checksum);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("crafted");
            std::fs::write(&path, &bytes).unwrap();
            let _ = merge_partials(&[path], MergeOptions::default());
        }
    }

    #[test]
    fn publish_never_replaces_a_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("part");
        publish(&out, |file| file.write_all(b"first")).unwrap();
        let error = publish(&out, |file| file.write_all(b"second")).unwrap_err();
        assert!(matches!(error, PublishError::Exists(_)), "{error}");
        assert_eq!(std::fs::read(&out).unwrap(), b"first");
        // A writer that fails: nothing published, nothing left over.
        let failed = dir.path().join("failed");
        let error = publish(&failed, |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["part"]);
    }
}
