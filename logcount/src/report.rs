//! The result of a run: merging chunk results into per-file and overall counts, and rendering
//! them as a table, CSV or JSON.
//!
//! The three formats name each quantity the same way: JSON keys and CSV columns are `file`,
//! `total` (requests: lines counted), `ip` (distinct client keys), `error`, and for `--top`
//! `key` and `count` (its requests); the table says `requests`, `distinct clients`, `client`.
//!
//! Distinct counts are exact: a file's keys are the union of its chunks' sorted key lists, and
//! the overall keys the union of the files'; unions are linear merges of sorted vectors (or,
//! for byte-string keys across files, a k-way merge that only counts).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::ipv6::format_ipv6;
use super::keys::format_ipv4;
use super::plan::ChunkJob;
use super::plan::Plan;
use super::scan::{ChunkCounts, DistinctKeys, KeyCounts};
use super::union::{
    merge_counted, side_by_side, union_len, CountedKeys, CountedUnion, SortedUnion,
};

/// Requests and distinct client keys of one file, or of all files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCounts {
    /// Lines counted.
    pub total: u64,
    /// Distinct client keys.
    pub ip: u64,
}

/// One of the busiest client keys (`--top`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopKey {
    /// The key, escaped as file names are (see `escape_bytes`).
    pub key: String,
    /// Requests under it, over all files.
    pub count: u64,
}

/// The merged result of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Per file, by name.
    pub files: BTreeMap<String, FileCounts>,
    /// Over all files: summed totals, distinct keys across files.
    pub all: FileCounts,
    /// Files that could not be read, with the reason.
    pub errors: BTreeMap<String, String>,
    /// The busiest keys, most requests first (ties by key), if `--top` was asked.
    pub top: Option<Vec<TopKey>>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with a total row.
    Table,
    /// `file,total,ip,error` with a header; the total row has an empty file name. With
    /// `--top`, one table with a `kind` column: `kind,file,total,ip,error,key,count`.
    Csv,
    /// `{"files": {...}, "all": {...}, "errors": {...}}`.
    Json,
}

impl Format {
    /// Every format with its name, as `FromStr` reads it: for command lines and help texts.
    pub const NAMES: [(&'static str, Format); 3] = [
        ("table", Format::Table),
        ("csv", Format::Csv),
        ("json", Format::Json),
    ];
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|&(_, format)| format)
            .ok_or_else(|| format!("unknown format {text:?} (known: table, csv, json)"))
    }
}

/// The union of the packed and long keys of [`DistinctKeys`] lists pushed one at a time, kind
/// by kind. (Byte-string keys go into a [`CountedUnion`] or [`Merger::other_runs`] instead,
/// packed in one buffer.)
#[derive(Debug, Default)]
struct KeyUnion {
    ipv4: SortedUnion<u32>,
    ipv6: SortedUnion<u128>,
    long: SortedUnion<[u8; 32]>,
}

impl KeyUnion {
    /// Adds the packed and long keys of `keys` (its byte-string keys must have been taken out).
    fn push(&mut self, keys: DistinctKeys) {
        debug_assert!(keys.other.is_empty());
        self.ipv4.push(keys.ipv4);
        self.ipv6.push(keys.ipv6);
        self.long.push(keys.long);
    }

    /// The number of keys in the union (see [`SortedUnion::count`]).
    fn count(self) -> u64 {
        self.ipv4.count() + self.ipv6.count() + self.long.count()
    }

    fn finish(self) -> DistinctKeys {
        DistinctKeys {
            ipv4: self.ipv4.finish(),
            ipv6: self.ipv6.finish(),
            other: Vec::new(),
            long: self.long.finish(),
        }
    }
}

/// A key in the `--top` ranking: its count, its bytes (a long key's first bytes) and, for a
/// long key, its digest.
type Ranked = (u64, Vec<u8>, Option<[u8; 32]>);

/// A map for [`TopCounts`]: foldhash, seeded at random per map (keys can be attacker-chosen;
/// see `distinct.rs`), several times faster than std's SipHash on millions of keys.
type CountMap<K, V = u64> = HashMap<K, V, foldhash::fast::RandomState>;

/// The `--top` order: most requests first, then by key bytes, then by digest.
fn rank_order(a: &Ranked, b: &Ranked) -> Ordering {
    b.0.cmp(&a.0)
        .then_with(|| a.1.cmp(&b.1))
        .then_with(|| a.2.cmp(&b.2))
}

/// A [`Ranked`] ordered by [`rank_order`]: the greatest is the one ranked last.
#[derive(Debug)]
struct RankedLast(Ranked);

impl Ord for RankedLast {
    fn cmp(&self, other: &Self) -> Ordering {
        rank_order(&self.0, &other.0)
    }
}

impl PartialOrd for RankedLast {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RankedLast {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for RankedLast {}

/// Requests per packed and long key over all files, for `--top`. (Byte-string keys come sorted
/// with their counts, and are summed by the merge that counts them, in [`Merger::finish`]:
/// hashing millions of host names would cost several times the time and memory.)
#[derive(Debug, Default)]
struct TopCounts {
    ipv4: CountMap<u32>,
    ipv6: CountMap<u128>,
    /// Long keys by digest: their count and first bytes.
    long: CountMap<[u8; 32], (u64, Vec<u8>)>,
}

impl TopCounts {
    fn add(&mut self, keys: &DistinctKeys, counts: &KeyCounts) {
        for (&key, &count) in keys.ipv4.iter().zip(&counts.ipv4) {
            *self.ipv4.entry(key).or_insert(0) += count;
        }
        for (&key, &count) in keys.ipv6.iter().zip(&counts.ipv6) {
            *self.ipv6.entry(key).or_insert(0) += count;
        }
        for ((digest, &count), shown) in keys.long.iter().zip(&counts.long).zip(&counts.long_shown)
        {
            self.long
                .entry(*digest)
                .or_insert_with(|| (0, shown.clone()))
                .0 += count;
        }
    }

    /// Offers every packed and long key to `best`.
    fn offer_to(self, best: &mut TopHeap) {
        for (key, count) in self.ipv4 {
            best.offer(count, format_ipv4(key).as_bytes(), None);
        }
        for (key, count) in self.ipv6 {
            best.offer(count, format_ipv6(key).as_bytes(), None);
        }
        for (digest, (count, shown)) in self.long {
            best.offer(count, &shown, Some(digest));
        }
    }
}

/// The best `k` keys offered so far (`--top`): a heap whose top is the worst of them, rather
/// than gather and sort millions of keys to show three. A key's bytes are copied only if it
/// enters.
#[derive(Debug)]
struct TopHeap {
    k: usize,
    best: BinaryHeap<RankedLast>,
}

impl TopHeap {
    fn new(k: usize) -> Self {
        Self {
            k,
            best: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, count: u64, key: &[u8], digest: Option<[u8; 32]>) {
        if self.best.len() < self.k {
            self.best.push(RankedLast((count, key.to_vec(), digest)));
        } else if let Some(mut worst) = self.best.peek_mut() {
            let (worst_count, worst_key, worst_digest) = &worst.0;
            let better = count
                .cmp(worst_count)
                .reverse()
                .then_with(|| key.cmp(worst_key))
                .then_with(|| digest.cmp(worst_digest))
                .is_lt();
            if better {
                *worst = RankedLast((count, key.to_vec(), digest));
            }
        }
    }

    /// The keys, most requests first, ties broken by the key's bytes (a long key's: its first
    /// bytes, then its digest).
    fn into_top(self) -> Vec<TopKey> {
        self.best
            .into_sorted_vec()
            .into_iter()
            .map(|RankedLast((count, key, digest))| TopKey {
                key: match digest {
                    None => escape_bytes(&key),
                    Some(digest) => show_long_key(&key, &digest),
                },
                count,
            })
            .collect()
    }
}

/// A cut file's packed and long keys once all its chunks are in (its packed keys are then also
/// in the run's union; kept here so that the union can be rebuilt should the file fail after
/// all). Its byte-string keys are in [`Merger::other_runs`].
#[derive(Debug)]
struct DoneFile {
    /// The IPv4 and IPv6 keys (the other two lists empty).
    packed: DistinctKeys,
    long: Vec<[u8; 32]>,
}

/// One file's results so far: a few numbers, and more only for a file cut into chunks.
#[derive(Debug, Default)]
struct FileParts {
    total: u64,
    /// Its distinct keys, once known (for a file counted whole, from its one part's result).
    distinct: Option<u64>,
    error: Option<String>,
    /// Part results still to come.
    chunks_left: usize,
    /// For a file cut into several chunks (several jobs): the union of their keys, made here.
    split: Option<Box<SplitFile>>,
}

/// The keys of a file cut into chunks.
#[derive(Debug, Default)]
struct SplitFile {
    /// The union of its chunks' packed and long keys so far...
    keys: KeyUnion,
    /// ... and of their byte-string keys (with counts, for `--top`).
    other: CountedUnion,
    /// Its keys once every chunk is in.
    done: Option<DoneFile>,
}

/// Gathers job results in any order (and at most once each, which the pool guarantees) and
/// produces the [`Report`]. Merges as results arrive: a batch's keys (the union of its files'
/// keys, made by the worker) go into the run's union at once; a chunk's keys into its file's
/// union, and a file's packed keys into the run's union as soon as its last chunk is in, so
/// that `finish` (which runs after the last worker is done, on the run's critical path) has
/// next to nothing left to merge of them; byte-string keys are counted across results in
/// `finish`, from each result's own list. Memory follows the distinct keys per result, not
/// the number of files: a file counted whole costs a few numbers here.
#[derive(Debug)]
pub struct Merger {
    names: Vec<String>,
    files: Vec<FileParts>,
    errors: BTreeMap<String, String>,
    top: Option<usize>,
    top_counts: TopCounts,
    /// The packed keys of every batch result.
    batches: KeyUnion,
    /// The long keys of every batch result.
    batch_long: Vec<Vec<[u8; 32]>>,
    /// The byte-string keys (with counts for `--top`) of every batch result, and of every cut
    /// file whose chunks are all in (with its index): one buffer per result, counted across
    /// results (and their counts summed) by one k-way merge in `finish`, never merged into a
    /// run-wide copy, which with millions of host names would cost as much memory again.
    other_runs: Vec<(Option<usize>, CountedKeys)>,
    /// The packed keys of every split file whose chunks are all in.
    split: KeyUnion,
    /// A split file already in `split` failed afterwards: rebuild `split` in `finish`.
    split_stale: bool,
}

impl Merger {
    /// A merger for the files of `plan` (its planning errors are carried over).
    pub fn new(plan: &Plan) -> Self {
        let mut merger = Self::empty(plan.top);
        merger.add_planned(plan, 0..plan.jobs.len());
        merger
    }

    /// A merger for a plan that grows while the run goes on (a
    /// [`GrowingPlan`](super::GrowingPlan)): tell it of each job with
    /// [`add_planned`](Self::add_planned) before the job's result comes in.
    pub fn growing(top: Option<usize>) -> Self {
        Self::empty(top)
    }

    /// Takes in what `plan` has gained since this merger last saw it: its new files, its
    /// planning errors, and its jobs at `jobs` (every job of a file cut into chunks in one
    /// call, before any of their results is added).
    pub fn add_planned(&mut self, plan: &Plan, jobs: std::ops::Range<usize>) {
        for file in plan.files.iter().skip(self.names.len()) {
            self.names.push(file.name.clone());
            self.files.push(FileParts::default());
        }
        self.errors
            .extend(plan.errors.iter().map(|(k, v)| (k.clone(), v.clone())));
        let new_jobs = plan.jobs.get(jobs).unwrap_or_default();
        for index in new_jobs.iter().flat_map(ChunkJob::file_indices) {
            if let Some(file) = self.files.get_mut(index) {
                file.chunks_left += 1;
                if file.chunks_left > 1 && file.split.is_none() {
                    file.split = Some(Box::default());
                }
            }
        }
    }

    fn empty(top: Option<usize>) -> Self {
        Self {
            names: Vec::new(),
            files: Vec::new(),
            errors: BTreeMap::new(),
            top,
            top_counts: TopCounts::default(),
            batches: KeyUnion::default(),
            batch_long: Vec::new(),
            other_runs: Vec::new(),
            split: KeyUnion::default(),
            split_stale: false,
        }
    }

    /// Adds the result of one job. Parts for an unknown file index are ignored.
    pub fn add(&mut self, counts: ChunkCounts) {
        let ChunkCounts {
            parts,
            mut keys,
            counts,
        } = counts;
        // Byte-string keys travel as one buffer from here on (with counts for `--top`).
        let other = CountedKeys::new(
            &std::mem::take(&mut keys.other),
            counts.as_ref().map(|counts| &counts.other[..]),
        );
        if let (Some(_), Some(key_counts)) = (self.top, &counts) {
            self.top_counts.add(&keys, key_counts);
        }
        // A chunk of a split file: its keys are that file's alone.
        let split_file = match parts.as_slice() {
            [only] => Some(only.file_index).filter(|&index| {
                self.files
                    .get(index)
                    .is_some_and(|file| file.split.is_some())
            }),
            _ => None,
        };
        for part in parts {
            let Some(file) = self.files.get_mut(part.file_index) else {
                continue;
            };
            file.chunks_left = file.chunks_left.saturating_sub(1);
            match part.outcome {
                Err(reason) => self.fail(part.file_index, reason),
                Ok(_) if file.error.is_some() => {}
                Ok(counted) => {
                    file.total += counted.total;
                    if file.split.is_none() {
                        file.distinct = Some(counted.ip);
                    }
                }
            }
        }
        match split_file {
            Some(index) => {
                let file = &mut self.files[index];
                let Some(split) = file.split.as_mut().filter(|_| file.error.is_none()) else {
                    return;
                };
                split.keys.push(keys);
                split.other.push(other);
                if file.chunks_left == 0 {
                    let keys = std::mem::take(&mut split.keys).finish();
                    let other = std::mem::take(&mut split.other).finish();
                    file.distinct = Some(keys.len() + other.len() as u64);
                    let DistinctKeys {
                        ipv4, ipv6, long, ..
                    } = keys;
                    let packed = DistinctKeys {
                        ipv4,
                        ipv6,
                        ..DistinctKeys::default()
                    };
                    self.split.push(packed.clone());
                    self.other_runs.push((Some(index), other));
                    split.done = Some(DoneFile { packed, long });
                }
            }
            None => {
                let DistinctKeys {
                    ipv4, ipv6, long, ..
                } = keys;
                self.batches.push(DistinctKeys {
                    ipv4,
                    ipv6,
                    ..DistinctKeys::default()
                });
                self.other_runs.push((None, other));
                self.batch_long.push(long);
            }
        }
    }

    /// Marks the files of a job the pool gave up on unreadable, with `reason`.
    pub fn add_job_failure(&mut self, job: &ChunkJob, reason: &str) {
        for index in job.file_indices() {
            self.add_failure(index, reason.to_owned());
        }
    }

    /// Marks a file unreadable (a job the pool gave up on). The file is then reported under
    /// `errors` only; the first reason is kept. A file already counted whole, by a job whose
    /// result is in, keeps its counts: a job has a result or a failure, never both.
    pub fn add_failure(&mut self, file_index: usize, reason: String) {
        if let Some(file) = self.files.get(file_index) {
            if file.split.is_some() || file.distinct.is_none() {
                self.fail(file_index, reason);
            }
        }
    }

    fn fail(&mut self, file_index: usize, reason: String) {
        if let Some(file) = self.files.get_mut(file_index) {
            file.error.get_or_insert(reason);
            self.split_stale |= file
                .split
                .as_ref()
                .is_some_and(|split| split.done.is_some());
        }
    }

    /// The merged report. A file some of whose chunks never came in (a run stopped early) is
    /// listed under `errors`, not counted from the chunks that did.
    pub fn finish(mut self) -> Report {
        let mut report = Report {
            errors: self.errors,
            ..Report::default()
        };
        if self.split_stale {
            self.split = KeyUnion::default();
            for file in self.files.iter().filter(|file| file.error.is_none()) {
                if let Some(done) = file.split.as_ref().and_then(|split| split.done.as_ref()) {
                    self.split.push(done.packed.clone());
                }
            }
        }
        // Long keys of the counted results, for the overall count.
        let mut long = self.batch_long;
        let failed: Vec<bool> = self.files.iter().map(|file| file.error.is_some()).collect();
        for (name, file) in self.names.into_iter().zip(self.files) {
            let distinct = match (file.error, file.distinct) {
                (Some(reason), _) => {
                    report.errors.insert(name, reason);
                    continue;
                }
                (None, None) => {
                    let missing = file.chunks_left;
                    report.errors.insert(
                        name,
                        format!(
                            "not counted: the run stopped with {missing} of its chunks uncounted"
                        ),
                    );
                    continue;
                }
                (None, Some(distinct)) => distinct,
            };
            report.all.total += file.total;
            report.files.insert(
                name,
                FileCounts {
                    total: file.total,
                    ip: distinct,
                },
            );
            if let Some(done) = file.split.and_then(|split| split.done) {
                long.push(done.long);
            }
        }
        let mut packed = self.batches;
        packed.push(self.split.finish());
        // A cut file that failed after its chunks were in is left out; a batch's keys are
        // those of its counted files only.
        let other: Vec<&CountedKeys> = self
            .other_runs
            .iter()
            .filter(|(file, _)| file.is_none_or(|index| !failed[index]))
            .map(|(_, keys)| keys)
            .collect();
        let mut best = self.top.map(TopHeap::new);
        let count_other = || {
            merge_counted(&other, |key, count| {
                if let Some(best) = &mut best {
                    best.offer(count, key, None);
                }
            })
        };
        let (packed_count, other_count) = side_by_side(packed, KeyUnion::count, count_other);
        report.all.ip = packed_count + other_count + union_len(&long);
        if let Some(mut best) = best {
            self.top_counts.offer_to(&mut best);
            report.top = Some(best.into_top());
        }
        report
    }
}

/// Bytes (a file name, a client key) as text that is safe to print anywhere and keeps distinct
/// byte strings distinct: a backslash as `\\`, each byte that is not valid UTF-8 as `\xNN`,
/// an ASCII control character (newline, ESC, DEL...) as `\xNN` too, a C1 control or a
/// bidirectional-text control (which can reorder what a terminal shows) as `\u{XXXX}`, and
/// every other character as is. Every backslash of the output starts an escape, so the text
/// reads back to exactly one byte string: two files never share a row, and no name can move
/// the cursor, recolour the terminal or split a line.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '\\' => text.push_str("\\\\"),
                '\0'..='\u{1f}' | '\u{7f}' => {
                    let _ = write!(text, "\\x{:02X}", ch as u32);
                }
                '\u{80}'..='\u{9f}'
                | '\u{61c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}' => {
                    let _ = write!(text, "\\u{{{:X}}}", ch as u32);
                }
                _ => text.push(ch),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(text, "\\x{byte:02X}");
        }
    }
    text
}

/// How `--top` shows a key longer than the byte-for-byte threshold: its first bytes, escaped
/// as any key is, then `\...sha256:` and the hex SHA-256 of the whole key. `escape_bytes`
/// never writes a backslash followed by `.`, so this can never read as a short key.
pub(crate) fn show_long_key(first: &[u8], digest: &[u8; 32]) -> String {
    let mut text = escape_bytes(first);
    text.push_str("\\...sha256:");
    for byte in digest {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

impl Report {
    /// Whether some file could not be read (exit 1 at the CLI).
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The report in `format`, ending with a newline.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.to_table(),
            Format::Csv => self.to_csv(),
            Format::Json => self.to_json(),
        }
    }

    /// `{"files": {"NAME": {"total": N, "ip": M}, ...}, "all": {...}, "errors": {...}}`, with
    /// the separators and ASCII-only escaping of Python's `json.dumps`, so the two versions'
    /// outputs compare byte for byte. `"top": [{"key": K, "count": N}, ...]` follows if asked.
    pub fn to_json(&self) -> String {
        let counts = |c: &FileCounts| format!("{{\"total\": {}, \"ip\": {}}}", c.total, c.ip);
        let files: Vec<String> = self
            .files
            .iter()
            .map(|(name, c)| format!("{}: {}", json_string(name), counts(c)))
            .collect();
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(name, reason)| format!("{}: {}", json_string(name), json_string(reason)))
            .collect();
        let mut json = format!(
            "{{\"files\": {{{}}}, \"all\": {}, \"errors\": {{{}}}",
            files.join(", "),
            counts(&self.all),
            errors.join(", ")
        );
        if let Some(top) = &self.top {
            let keys: Vec<String> = top
                .iter()
                .map(|t| {
                    format!(
                        "{{\"key\": {}, \"count\": {}}}",
                        json_string(&t.key),
                        t.count
                    )
                })
                .collect();
            let _ = write!(json, ", \"top\": [{}]", keys.join(", "));
        }
        json.push_str("}\n");
        json
    }

    /// A header, one row per file, then the file name-less total row; errors as rows with only
    /// the `error` column. With `--top`, one table still (never two in one stream): a first
    /// column `kind` (`file`, `error`, `total`, `top`) and two more, `key` and `count`, filled
    /// on `top` rows only.
    pub fn to_csv(&self) -> String {
        let Some(top) = &self.top else {
            let mut csv = String::from("file,total,ip,error\n");
            for (name, c) in &self.files {
                let _ = writeln!(csv, "{},{},{},", csv_field(name), c.total, c.ip);
            }
            for (name, reason) in &self.errors {
                let _ = writeln!(csv, "{},,,{}", csv_field(name), csv_field(reason));
            }
            let _ = writeln!(csv, ",{},{},", self.all.total, self.all.ip);
            return csv;
        };
        let mut csv = String::from("kind,file,total,ip,error,key,count\n");
        for (name, c) in &self.files {
            let _ = writeln!(csv, "file,{},{},{},,,", csv_field(name), c.total, c.ip);
        }
        for (name, reason) in &self.errors {
            let _ = writeln!(csv, "error,{},,,{},,", csv_field(name), csv_field(reason));
        }
        let _ = writeln!(csv, "total,,{},{},,,", self.all.total, self.all.ip);
        for t in top {
            let _ = writeln!(csv, "top,,,,,{},{}", csv_field(&t.key), t.count);
        }
        csv
    }

    /// Columns `file`, `requests`, `distinct clients`, sorted by name, then a `TOTAL` row and a
    /// note that its distinct count is the union over the files, not the column's sum.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 3]> =
            vec![["file".into(), "requests".into(), "distinct clients".into()]];
        for (name, c) in &self.files {
            rows.push([name.clone(), c.total.to_string(), c.ip.to_string()]);
        }
        rows.push([
            "TOTAL".into(),
            self.all.total.to_string(),
            self.all.ip.to_string(),
        ]);
        let width = |col: usize| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [width(0), width(1), width(2)];
        let mut table = String::new();
        for (index, row) in rows.iter().enumerate() {
            if index + 1 == rows.len() {
                let _ = writeln!(
                    table,
                    "{}",
                    "-".repeat(widths[0] + widths[1] + widths[2] + 4)
                );
            }
            let _ = writeln!(
                table,
                "{:<w0$}  {:>w1$}  {:>w2$}",
                row[0],
                row[1],
                row[2],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        }
        table.push_str(TOTAL_NOTE);
        if !self.errors.is_empty() {
            table.push_str("\nerrors:\n");
            for (name, reason) in &self.errors {
                let _ = writeln!(table, "  {name}: {reason}");
            }
        }
        if let Some(top) = &self.top {
            table.push_str("\ntop clients:\n");
            let _ = writeln!(table, "  {:>12}  client", "requests");
            for t in top {
                let _ = writeln!(table, "  {:>12}  {}", t.count, t.key);
            }
        }
        table
    }
}

/// The line under the table's `TOTAL` row: a client seen in several files is one client.
const TOTAL_NOTE: &str =
    "(TOTAL distinct clients counts each client once over all files: not the sum of the rows)\n";

/// A JSON string as Python's `json.dumps` writes it (ensure_ascii): `\"`, `\\`, `\n`, `\r`,
/// `\t`, `\b`, `\f`, any other byte outside printable ASCII as `\u00XX`, non-ASCII as UTF-16
/// `\uXXXX` escapes (lowercase hex).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// A CSV field, quoted when it holds a comma, quote, CR or LF. A field that begins with `=`,
/// `+`, `-` or `@` (a file named `=HYPERLINK(...)`, a client key `@SUM(...)`) would run as a
/// formula when the CSV is opened in a spreadsheet: it gets a single quote in front, inside
/// quotes (`"'=HYPERLINK(...)"`), which spreadsheets show as text, as OWASP's CSV-injection
/// guidance recommends. A lone `-` (standard input's name) is no formula and stays as it is.
fn csv_field(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@']) && text != "-" {
        format!("\"'{}\"", text.replace('"', "\"\""))
    } else if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_would_run_as_formulas_are_neutralised() {
        assert_eq!(csv_field("a.log"), "a.log");
        assert_eq!(csv_field("a,b.log"), "\"a,b.log\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(csv_field("+1.log"), "\"'+1.log\"");
        assert_eq!(csv_field("-2,3"), "\"'-2,3\"");
        assert_eq!(csv_field("@SUM(A1)"), "\"'@SUM(A1)\"");
        // Only the first character counts.
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("-"), "-");

        let mut report = Report::default();
        report
            .files
            .insert("=cmd.log".into(), FileCounts { total: 1, ip: 1 });
        report.top = Some(vec![TopKey {
            key: "-client".into(),
            count: 1,
        }]);
        let csv = report.to_csv();
        assert!(csv.contains("\nfile,\"'=cmd.log\",1,1,,,\n"), "{csv}");
        assert!(csv.contains("\ntop,,,,,\"'-client\",1\n"), "{csv}");
    }

    #[test]
    fn json_string_matches_python_ensure_ascii() {
        assert_eq!(json_string("a.log"), "\"a.log\"");
        assert_eq!(json_string("q\"b\\"), "\"q\\\"b\\\\\"");
        assert_eq!(
            json_string("é\u{1F600}\u{7f}\u{1}\t"),
            "\"\\u00e9\\ud83d\\ude00\\u007f\\u0001\\t\""
        );
    }

    #[test]
    fn csv_quotes_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn escape_bytes_marks_invalid_utf8() {
        assert_eq!(escape_bytes(b"ok\xff\xfe!"), "ok\\xFF\\xFE!");
        assert_eq!(escape_bytes("é".as_bytes()), "é");
    }

    #[test]
    fn escape_bytes_keeps_look_alikes_apart_and_controls_out() {
        // Raw bytes FF FE, and the eight characters `\xFF\xFE` typed as a name.
        assert_eq!(escape_bytes(b"\xff\xfe.log"), "\\xFF\\xFE.log");
        assert_eq!(escape_bytes(br"\xFF\xFE.log"), r"\\xFF\\xFE.log");
        assert_eq!(escape_bytes(b"a\nb.log"), r"a\x0Ab.log");
        assert_eq!(escape_bytes(b"\x1b[31mred\x1b[0m"), r"\x1B[31mred\x1B[0m");
        assert_eq!(escape_bytes(b"del\x7f\t\r"), r"del\x7F\x09\x0D");
        assert_eq!(escape_bytes("\u{9b}2J".as_bytes()), r"\u{9B}2J");
        assert_eq!(
            escape_bytes("evil\u{202e}gol.exe".as_bytes()),
            r"evil\u{202E}gol.exe"
        );
    }

    /// Reads `escape_bytes` output back (as shard plans read names back to paths): the proof
    /// that it is one-to-one.
    fn unescape(text: &str) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt as _;
        crate::shard::path_of(text).as_os_str().as_bytes().to_vec()
    }

    proptest::proptest! {
        #[test]
        fn escape_bytes_is_one_to_one_and_printable(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            text in "\\PC*",
        ) {
            for input in [bytes, text.into_bytes()] {
                let escaped = escape_bytes(&input);
                proptest::prop_assert!(!escaped.chars().any(|c| c.is_control()), "{escaped:?}");
                proptest::prop_assert_eq!(unescape(&escaped), input);
            }
        }
    }

    #[test]
    fn look_alike_names_render_as_two_rows_in_every_format() {
        let mut report = Report::default();
        for (name, total) in [
            (b"\xff\xfe.log".as_slice(), 1),
            (br"\xFF\xFE.log", 2),
            (b"a\nb", 3),
        ] {
            report
                .files
                .insert(escape_bytes(name), FileCounts { total, ip: 1 });
        }
        let table = report.to_table();
        assert_eq!(table.lines().count(), 7, "{table}");
        assert!(!table.contains('\u{1b}'));
        let csv = report.to_csv();
        assert_eq!(csv.lines().count(), 5, "{csv}");
        let json = report.to_json();
        assert!(json.contains(r#""\\xFF\\xFE.log": {"total": 1"#), "{json}");
        assert!(
            json.contains(r#""\\\\xFF\\\\xFE.log": {"total": 2"#),
            "{json}"
        );
        assert!(json.contains(r#""a\\x0Ab": {"total": 3"#), "{json}");
    }
}
