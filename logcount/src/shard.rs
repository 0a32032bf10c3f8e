//! Shard plans: the one listing of a run's inputs that N hosts split between them, each counting
//! only its share (see docs/scale-out.md).
//!
//! The inputs are files and directories, listed and named exactly as a single-host run lists
//! and names them ([`Inputs`]), so that the merged shards report what that run reports. The
//! files, sorted by name, are laid end to end as one stream of bytes, which is cut into N
//! ranges of equal length. A plain file that straddles a cut is split there (the scan's rule
//! makes any cut exact: a line belongs to the range it starts in); a `.gz` file cannot be
//! entered in the middle and goes whole to the shard its first byte falls in; an empty file to
//! the shard its position falls in. The split depends on nothing but the names and sizes, so
//! every host that lists the same inputs computes the same plan, and its hash, on its own.
//! Standard input cannot be split across hosts (each would read its own) and is not an input
//! here.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::inputs::{is_gzip, Input, Inputs};
use super::plan::{
    balanced_chunk_bytes, jobs_for, ChunkJob, ChunkSource, JobPart, Options, Plan, PlanError,
    PlannedFile,
};
use super::report::escape_bytes;

/// The version of the shard plan rules and of the plan file; part of the hash. Format 1 had one
/// directory (`root`); format 2 has the inputs as given (`inputs`) and `root` only for one
/// directory alone.
pub const SHARD_PLAN_FORMAT: u32 = 2;

/// The most shards a plan may have.
pub const MAX_SHARDS: u32 = 1 << 20;

/// One input file of a shard plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFile {
    /// Its name, as a single-host run reports it (escaped, which reads back to exactly the
    /// path's bytes): its path relative to [`ShardPlan::root`] when there is one, else its path
    /// itself.
    pub name: String,
    /// Its size when planned: the bytes the shards count, even if it grows meanwhile.
    pub len: u64,
}

/// The part of one file a shard counts: the lines that start in `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Index of the file in [`ShardPlan::files`].
    pub file: usize,
    /// First byte offset owned.
    pub start: u64,
    /// One past the last byte offset owned (a `.gz` file's whole size).
    pub end: u64,
}

/// A run's inputs split into shards; what `supervisor plan` writes as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlan {
    /// [`SHARD_PLAN_FORMAT`].
    pub format: u32,
    /// The plan's hash, hex SHA-256 of its content ([`ShardPlan::compute_hash`]): partials of
    /// different plans are never merged.
    pub hash: String,
    /// The paths the inputs were given as, in order, escaped like the names.
    pub inputs: Vec<String>,
    /// When the one input is a directory: that directory, which the names are relative to (a
    /// shard may read it from elsewhere: [`ShardPlan::shard_jobs`]). Otherwise `None`, and each
    /// name is the file's path (as given, or a directory as given joined with the path inside
    /// it; a relative one is read from the shard's working directory).
    pub root: Option<String>,
    /// Whether subdirectories were listed.
    pub recursive: bool,
    /// The input files, sorted by name.
    pub files: Vec<ShardFile>,
    /// Entries that could not even be examined when listing, by name, with the reason.
    pub errors: BTreeMap<String, String>,
    /// For each shard, the pieces it counts, in file order.
    pub shards: Vec<Vec<Piece>>,
}

/// A shard plan file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ShardPlanError {
    /// Listing the inputs failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Zero shards, or more than [`MAX_SHARDS`].
    #[error("the number of shards must be between 1 and {MAX_SHARDS}, got {0}")]
    ShardCount(u64),
    /// The plan's content does not match its rules or its hash (edited by hand, or damaged).
    #[error("inconsistent shard plan: {0}")]
    Inconsistent(String),
}

/// Whether the file named `name` is read decompressed: the rule of [`Inputs`], on its path.
fn is_gzip_name(name: &str) -> bool {
    is_gzip(&path_of(name))
}

impl ShardPlan {
    /// Lists `paths` (files and directories, as `supervisor run logcount PATH...` does, with
    /// the same names) and splits their files into `shards`.
    pub fn new(
        paths: &[impl AsRef<Path>],
        recursive: bool,
        shards: u64,
    ) -> Result<Self, ShardPlanError> {
        let named: Vec<Input> = paths
            .iter()
            .map(|path| Input::Path(path.as_ref().to_path_buf()))
            .collect();
        let inputs = Inputs::new(&named, recursive)?;
        let files: Vec<ShardFile> = inputs
            .files()
            .iter()
            .map(|file| ShardFile {
                name: file.name.clone(),
                len: file.len,
            })
            .collect();
        Self::from_files(
            paths.iter().map(|path| name_of(path.as_ref())).collect(),
            inputs.root().map(name_of),
            recursive,
            files,
            inputs.errors().clone(),
            shards,
        )
    }

    /// Splits `files` (sorted by name, named under `root` if any, else by their paths) into
    /// `shards`.
    pub fn from_files(
        inputs: Vec<String>,
        root: Option<String>,
        recursive: bool,
        files: Vec<ShardFile>,
        errors: BTreeMap<String, String>,
        shards: u64,
    ) -> Result<Self, ShardPlanError> {
        if shards == 0 || shards > u64::from(MAX_SHARDS) {
            return Err(ShardPlanError::ShardCount(shards));
        }
        let pieces = split(&files, shards);
        let mut plan = Self {
            format: SHARD_PLAN_FORMAT,
            hash: String::new(),
            inputs,
            root,
            recursive,
            files,
            errors,
            shards: pieces,
        };
        plan.hash = hex(&plan.compute_hash());
        Ok(plan)
    }

    /// Whether `paths` are the inputs of this plan, as they were given.
    pub fn is_of(&self, paths: &[impl AsRef<Path>]) -> bool {
        self.inputs.len() == paths.len()
            && paths
                .iter()
                .zip(&self.inputs)
                .all(|(path, input)| name_of(path.as_ref()) == *input)
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The hash of what the shards count: the format, the shard count, the files' names and
    /// sizes, the listing errors' names and the pieces. Not the inputs or the root, so hosts
    /// that mount one directory at different paths still agree (the names of several inputs
    /// are their paths, so those hosts give the same paths, relative ones from their own
    /// working directories).
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"herd logcount shard plan\0");
        hasher.update(self.format.to_le_bytes());
        hasher.update([u8::from(self.recursive)]);
        hasher.update((self.shards.len() as u64).to_le_bytes());
        hasher.update((self.files.len() as u64).to_le_bytes());
        for file in &self.files {
            hasher.update((file.name.len() as u64).to_le_bytes());
            hasher.update(file.name.as_bytes());
            hasher.update(file.len.to_le_bytes());
        }
        hasher.update((self.errors.len() as u64).to_le_bytes());
        for name in self.errors.keys() {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
        }
        for pieces in &self.shards {
            hasher.update((pieces.len() as u64).to_le_bytes());
            for piece in pieces {
                hasher.update((piece.file as u64).to_le_bytes());
                hasher.update(piece.start.to_le_bytes());
                hasher.update(piece.end.to_le_bytes());
            }
        }
        hasher.finalize().into()
    }

    /// Checks a plan read from a file: known format, a root only for one input, files sorted,
    /// pieces as the rules cut them, and the recorded hash matching the content.
    pub fn check(&self) -> Result<(), ShardPlanError> {
        let bad = |what: String| Err(ShardPlanError::Inconsistent(what));
        if self.format != SHARD_PLAN_FORMAT {
            return bad(format!(
                "format {} (this version reads format {SHARD_PLAN_FORMAT}: plan again)",
                self.format
            ));
        }
        if let Some(root) = &self.root {
            if self.inputs != [root.as_str()] {
                return bad(format!(
                    "its root {root:?} is not its one input (inputs {:?})",
                    self.inputs
                ));
            }
        }
        let count = self.shards.len() as u64;
        if count == 0 || count > u64::from(MAX_SHARDS) {
            return Err(ShardPlanError::ShardCount(count));
        }
        if !self
            .files
            .windows(2)
            .all(|pair| pair[0].name < pair[1].name)
        {
            return bad("its files are not sorted by name".into());
        }
        if split(&self.files, count) != self.shards {
            return bad("its shards are not the split of its files".into());
        }
        let hash = hex(&self.compute_hash());
        if hash != self.hash {
            return bad(format!(
                "its hash is {}, its content hashes to {hash}",
                self.hash
            ));
        }
        Ok(())
    }

    /// Where a file of this plan is read: under `dir` (where this host sees the plan's
    /// [`root`](ShardPlan::root); `None`: where it was planned) when the plan has a root, else
    /// at its name. `dir` is only for a plan with a root: the names of other plans are their
    /// paths, and are read there whatever `dir` says.
    pub fn file_path(&self, file: &ShardFile, dir: Option<&Path>) -> PathBuf {
        match (&self.root, dir) {
            (Some(_), Some(dir)) => dir.join(path_of(&file.name)),
            (Some(root), None) => path_of(root).join(path_of(&file.name)),
            (None, _) => path_of(&file.name),
        }
    }

    /// The chunk jobs of shard `index` for the local pool: its pieces cut into chunks of about
    /// `chunk_bytes`, the files read where [`ShardPlan::file_path`] says (`dir`: where this
    /// host sees the plan's root). The returned plan lists the files of the shard's pieces, in
    /// the same order.
    pub fn shard_jobs(
        &self,
        index: u32,
        dir: Option<&Path>,
        chunk_bytes: u64,
        top: Option<usize>,
    ) -> Plan {
        let pieces = self
            .shards
            .get(index as usize)
            .map_or(&[][..], Vec::as_slice);
        let mut files = Vec::new();
        let mut jobs = Vec::new();
        let mut whole = Vec::new();
        for piece in pieces {
            let Some(file) = self.files.get(piece.file) else {
                continue;
            };
            let path = self.file_path(file, dir);
            let gzip = is_gzip_name(&file.name);
            let file_index = files.len();
            files.push(PlannedFile {
                name: file.name.clone(),
                path: path.clone(),
                len: file.len,
                gzip,
            });
            // Whole files are batched (or cut) as one host does; a piece of a file cut across
            // shards gets jobs of one part each: a partial keeps such a piece's own keys.
            if piece.start == 0 && piece.end == file.len {
                whole.push(file_index);
                continue;
            }
            let job = |source| ChunkJob {
                parts: vec![JobPart {
                    path: path.clone(),
                    file_index,
                    source,
                }],
                per_key_counts: top.is_some(),
                may_map: false,
            };
            if gzip {
                jobs.push(job(ChunkSource::Gzip));
                continue;
            }
            let len = piece.end - piece.start;
            let parts = len.div_ceil(chunk_bytes.max(1)).max(1);
            let step = len.div_ceil(parts).max(1);
            let mut start = piece.start;
            loop {
                let end = (start + step).min(piece.end);
                jobs.push(job(ChunkSource::Range { start, end }));
                if end == piece.end {
                    break;
                }
                start = end;
            }
        }
        let options = Options {
            recursive: false,
            chunk_bytes: chunk_bytes.max(1),
            top,
        };
        jobs.extend(jobs_for(&files, &whole, &options));
        Plan {
            files,
            jobs,
            errors: self.errors.clone(),
            top,
        }
    }

    /// The bytes shard `index` counts.
    pub fn shard_bytes(&self, index: u32) -> u64 {
        self.shards
            .get(index as usize)
            .map_or(0, |pieces| pieces.iter().map(|p| p.end - p.start).sum())
    }

    /// The chunk size for shard `index` on `workers` workers. Each chunk costs its distinct
    /// keys again whatever its size, so a shard's pieces are cut no finer than one host would
    /// cut the whole input ([`balanced_chunk_bytes`] of every shard's bytes), unless the shard
    /// needs finer cuts to keep its workers busy (about a worker's share of it, with an eighth
    /// of slack so that an even piece stays whole), and never finer than one host would cut
    /// the shard alone.
    pub fn chunk_bytes(&self, index: u32, workers: u64) -> u64 {
        let total: u64 = self.files.iter().map(|file| file.len).sum();
        let shard = self.shard_bytes(index);
        let share = shard / workers.max(1);
        let busy = share + share / 8;
        balanced_chunk_bytes(total, workers)
            .min(busy)
            .max(balanced_chunk_bytes(shard, workers))
    }
}

/// The cut of `files` (in order) into `shards` equal byte ranges of their concatenation.
fn split(files: &[ShardFile], shards: u64) -> Vec<Vec<Piece>> {
    let total: u128 = files.iter().map(|file| u128::from(file.len)).sum();
    let shards_wide = u128::from(shards);
    // Shard s owns the stream's bytes from cut(s) to cut(s + 1).
    let cut = |s: u64| -> u128 { total * u128::from(s) / shards_wide };
    // The shard whose range holds stream offset `at` (the last shard for the very end).
    let shard_at = |at: u128| -> u64 {
        if total == 0 {
            return 0;
        }
        // The largest s with cut(s) <= at.
        let guess = (at * shards_wide / total).min(shards_wide - 1) as u64;
        let mut s = guess;
        while s + 1 < shards && cut(s + 1) <= at {
            s += 1;
        }
        while s > 0 && cut(s) > at {
            s -= 1;
        }
        s
    };
    let mut pieces = vec![Vec::new(); shards as usize];
    let mut offset: u128 = 0;
    for (index, file) in files.iter().enumerate() {
        let len = u128::from(file.len);
        let first = shard_at(offset);
        if file.len == 0 || is_gzip_name(&file.name) {
            pieces[first as usize].push(Piece {
                file: index,
                start: 0,
                end: file.len,
            });
        } else {
            let mut s = first;
            while s < shards && cut(s) < offset + len {
                let start = cut(s).max(offset) - offset;
                let end = cut(s + 1).min(offset + len) - offset;
                if end > start {
                    pieces[s as usize].push(Piece {
                        file: index,
                        start: start as u64,
                        end: end as u64,
                    });
                }
                s += 1;
            }
        }
        offset += len;
    }
    pieces
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A path as a plan names it: escaped as reports show names.
fn name_of(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_encoded_bytes())
}

/// The path an escaped name stands for (the inverse of `escape_bytes`): `\\` is a backslash,
/// `\xNN` a byte, `\u{X}` a character; anything else is itself.
pub(crate) fn path_of(name: &str) -> PathBuf {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('\\') {
        bytes.extend_from_slice(&rest.as_bytes()[..at]);
        let escape = &rest[at..];
        if let Some(after) = escape.strip_prefix(r"\\") {
            bytes.push(b'\\');
            rest = after;
        } else if let Some(byte) = escape
            .strip_prefix(r"\x")
            .and_then(|after| after.get(..2))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            bytes.push(byte);
            rest = &escape[4..];
        } else if let Some((ch, len)) = escape.strip_prefix(r"\u{").and_then(|after| {
            let close = after.find('}')?;
            let ch = char::from_u32(u32::from_str_radix(&after[..close], 16).ok()?)?;
            Some((ch, close + 4))
        }) {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            rest = &escape[len..];
        } else {
            bytes.push(b'\\');
            rest = &escape[1..];
        }
    }
    bytes.extend_from_slice(rest.as_bytes());
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::escape_bytes;
    use std::os::unix::ffi::OsStrExt;

    fn file(name: &str, len: u64) -> ShardFile {
        ShardFile {
            name: name.into(),
            len,
        }
    }

    /// A plan of `files` in the directory `d`.
    fn of_files(files: Vec<ShardFile>, shards: u64) -> ShardPlan {
        ShardPlan::from_files(
            vec!["d".into()],
            Some("d".into()),
            false,
            files,
            BTreeMap::new(),
            shards,
        )
        .unwrap()
    }

    /// Every byte of every plain file is in exactly one piece, and each shard's bytes are
    /// within one of the fair share (`.gz` aside).
    fn assert_exact_cover(files: &[ShardFile], shards: u64) {
        let plan = of_files(files.to_vec(), shards);
        plan.check().unwrap();
        for (index, file) in files.iter().enumerate() {
            let mut pieces: Vec<Piece> = plan
                .shards
                .iter()
                .flatten()
                .filter(|piece| piece.file == index)
                .copied()
                .collect();
            pieces.sort_by_key(|piece| piece.start);
            assert!(!pieces.is_empty(), "{} is in no shard", file.name);
            let mut at = 0;
            for piece in &pieces {
                assert_eq!(piece.start, at, "{pieces:?}");
                at = piece.end;
            }
            assert_eq!(at, file.len, "{pieces:?}");
        }
        let total: u64 = files.iter().map(|f| f.len).sum();
        if files.iter().all(|f| !is_gzip_name(&f.name)) {
            for s in 0..plan.shard_count() {
                let bytes = plan.shard_bytes(s);
                assert!(
                    bytes.abs_diff(total / shards) <= 1,
                    "shard {s}: {bytes} of {total}"
                );
            }
        }
    }

    #[test]
    fn shards_cover_every_byte_once_and_evenly() {
        let files = [file("a", 10), file("b", 0), file("c", 95), file("d", 3)];
        for shards in 1..=12 {
            assert_exact_cover(&files, shards);
        }
        assert_exact_cover(&[file("big", 1 << 40)], 7);
        assert_exact_cover(&[], 3);
        assert_exact_cover(&[file("a.gz", 50), file("b", 50), file("c.gz", 1)], 4);
    }

    proptest::proptest! {
        #[test]
        fn any_sizes_and_shard_counts_are_covered_exactly(
            sizes in proptest::collection::vec(
                proptest::prop_oneof![0u64..5, 0u64..10_000, 0u64..(1 << 60)],
                0..12,
            ),
            shards in 1u64..40,
        ) {
            let files: Vec<ShardFile> = sizes
                .iter()
                .enumerate()
                .map(|(index, &len)| file(&format!("f{index:02}"), len))
                .collect();
            assert_exact_cover(&files, shards);
        }
    }

    #[test]
    fn a_gzip_file_is_never_cut() {
        let plan = of_files(vec![file("a", 10), file("b.gz", 100), file("c", 10)], 4);
        let gz: Vec<Piece> = plan
            .shards
            .iter()
            .flatten()
            .filter(|p| p.file == 1)
            .copied()
            .collect();
        assert_eq!(
            gz,
            [Piece {
                file: 1,
                start: 0,
                end: 100
            }]
        );
    }

    #[test]
    fn the_hash_depends_on_sizes_and_shards_not_on_the_root() {
        let files = vec![file("a", 10), file("c", 95)];
        let plan = |root: &str, files: Vec<ShardFile>, shards| {
            let root = String::from(root);
            ShardPlan::from_files(
                vec![root.clone()],
                Some(root),
                false,
                files,
                BTreeMap::new(),
                shards,
            )
            .unwrap()
            .hash
        };
        let base = plan("/x", files.clone(), 3);
        assert_eq!(base, plan("/elsewhere", files.clone(), 3));
        assert_ne!(base, plan("/x", files.clone(), 4));
        assert_ne!(base, plan("/x", vec![file("a", 11), file("c", 95)], 3));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn an_edited_plan_is_refused() {
        let mut plan = of_files(vec![file("a", 10), file("c", 95)], 2);
        plan.check().unwrap();
        plan.files[0].len = 12;
        let error = plan.check().unwrap_err().to_string();
        assert!(error.contains("not the split"), "{error}");
        plan.shards = split(&plan.files, 2);
        let error = plan.check().unwrap_err().to_string();
        assert!(error.contains("hash"), "{error}");
    }

    /// `logs/` with a file big enough to be cut, a `.gz` file and a file in a subdirectory, and
    /// `other.log` beside it.
    fn several_inputs() -> tempfile::TempDir {
        let temp = tempfile::tempdir().unwrap();
        let logs = temp.path().join("logs");
        std::fs::create_dir_all(logs.join("sub")).unwrap();
        let mut big = String::new();
        for line in 0..2000u32 {
            big.push_str(&format!(
                "10.0.{}.{} x\nhost-{}.example y\n",
                line % 7,
                line % 91,
                line % 50
            ));
        }
        std::fs::write(logs.join("big.log"), big).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"172.16.0.1 a\n10.0.0.1 b\n").unwrap();
        std::fs::write(logs.join("old.log.gz"), gz.finish().unwrap()).unwrap();
        std::fs::write(logs.join("sub/deep.log"), "1.2.3.4 z\n").unwrap();
        std::fs::write(temp.path().join("other.log"), "2001:db8::1 a\n5.6.7.8 b\n").unwrap();
        temp
    }

    fn listed(paths: &[PathBuf], recursive: bool) -> Inputs {
        let named: Vec<Input> = paths.iter().cloned().map(Input::Path).collect();
        Inputs::new(&named, recursive).unwrap()
    }

    #[test]
    fn several_inputs_are_named_and_read_as_a_plain_run_names_and_reads_them() {
        let temp = several_inputs();
        let logs = temp.path().join("logs");
        let other = temp.path().join("other.log");
        // A directory, a file, and a file of that directory named again (counted once).
        let paths = [logs.clone(), other.clone(), logs.join("big.log")];
        for recursive in [false, true] {
            let plan = ShardPlan::new(&paths, recursive, 1).unwrap();
            plan.check().unwrap();
            let inputs = listed(&paths, recursive);
            let local = plan.shard_jobs(0, None, 1 << 20, None);
            assert_eq!(local.files, inputs.files(), "recursive: {recursive}");
            assert_eq!(plan.root, None);
            let given: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            assert_eq!(plan.inputs, given);
        }
        let plan = ShardPlan::new(&paths, false, 2).unwrap();
        let names: Vec<&str> = plan.files.iter().map(|f| f.name.as_str()).collect();
        let logs_name = logs.display().to_string();
        assert_eq!(
            names,
            [
                format!("{logs_name}/big.log"),
                format!("{logs_name}/old.log.gz"),
                other.display().to_string()
            ]
        );

        // One directory alone: names relative to it, read from where this host sees it.
        let plan = ShardPlan::new(&[&logs], true, 2).unwrap();
        assert_eq!(plan.root.as_deref(), Some(logs_name.as_str()));
        let names: Vec<&str> = plan.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["big.log", "old.log.gz", "sub/deep.log"]);
        let elsewhere = Path::new("/mnt/elsewhere");
        assert_eq!(
            plan.file_path(&plan.files[2], Some(elsewhere)),
            elsewhere.join("sub/deep.log")
        );
        assert_eq!(
            plan.file_path(&plan.files[2], None),
            logs.join("sub/deep.log")
        );
        // One file alone is named as given, and a `.gz` file given by itself is never cut.
        let gz = logs.join("old.log.gz");
        let plan = ShardPlan::new(&[&gz], false, 3).unwrap();
        assert_eq!(plan.root, None);
        assert_eq!(plan.files[0].name, gz.display().to_string());
        let local = plan.shard_jobs(0, Some(elsewhere), 1, None);
        assert_eq!(
            local.files[0].path, gz,
            "a plan without a root reads its names"
        );
        assert_eq!(local.jobs.len(), 1);
        assert_eq!(local.jobs[0].parts[0].source, ChunkSource::Gzip);
    }

    #[test]
    fn the_shards_of_several_inputs_merge_to_what_one_run_counts() {
        use crate::{count_inputs, Format, Options};
        let temp = several_inputs();
        let logs = temp.path().join("logs");
        let paths = [
            temp.path().join("other.log"),
            logs.clone(),
            logs.join("sub"),
        ];
        let top = Some(3);
        let single = count_inputs(
            &listed(&paths, false),
            &Options {
                top,
                ..Options::default()
            },
        )
        .unwrap();
        for shards in 1..=4 {
            let plan = ShardPlan::new(&paths, false, shards).unwrap();
            let big = plan
                .files
                .iter()
                .position(|f| f.name.ends_with("big.log"))
                .unwrap();
            let holding_big = plan
                .shards
                .iter()
                .filter(|pieces| pieces.iter().any(|p| p.file == big))
                .count();
            assert_eq!(holding_big > 1, shards > 1, "{shards} shards");
            let merged = merge_of_every_shard(&plan, 4096, top);
            for format in [Format::Table, Format::Csv, Format::Json] {
                assert_eq!(
                    merged.report.render(format),
                    single.render(format),
                    "{shards} shards"
                );
            }
        }
    }

    /// Counts every shard of `plan` in this thread (chunks of `chunk_bytes`), publishes each
    /// one's partial and merges them: what `supervisor merge` prints after N shard runs.
    fn merge_of_every_shard(
        plan: &ShardPlan,
        chunk_bytes: u64,
        top: Option<usize>,
    ) -> crate::Merged {
        use crate::{count_chunk, merge_partials, publish, MergeOptions, PartialBuilder};
        let parts = tempfile::tempdir().unwrap();
        let mut written = Vec::new();
        for index in 0..plan.shard_count() {
            let local = plan.shard_jobs(index, None, chunk_bytes, top);
            let mut builder = PartialBuilder::new(plan, index, &local);
            for job in &local.jobs {
                builder.add(count_chunk(job));
            }
            let out = parts.path().join(format!("part-{index}"));
            publish(&out, |file| builder.write_to(file)).unwrap();
            written.push(out);
        }
        merge_partials(
            &written,
            MergeOptions {
                top,
                allow_missing: false,
            },
        )
        .unwrap()
    }

    /// One line of a random log: a client key of every kind the counter tells apart (IPv4,
    /// canonical and other IPv6 spellings, host names, a key longer than the digest threshold,
    /// a line that is only a key), from a small alphabet so that keys repeat across files.
    fn random_line(pick: u32) -> String {
        let key = pick % 23;
        match pick % 7 {
            0 => format!("10.0.{}.{} - - [x] \"GET / HTTP/1.1\" 200\n", key % 3, key),
            1 => format!("2001:db8::{key:x} - - y\n"),
            2 => format!("2001:DB8::{key:x} - - y\n"),
            3 => format!("host-{key}.example.net - - z\n"),
            4 => format!("{}{key} - - long\n", "k".repeat(300)),
            5 => format!("192.168.1.{key}\n"),
            _ => format!("172.16.{key}.1 - -\n"),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// For random inputs and any N in 1..=16, merging the N shards' partials prints what
        /// one run over the same inputs prints, byte for byte, in every format, with and
        /// without `--top`.
        #[test]
        fn random_inputs_in_any_number_of_shards_merge_to_one_run(
            files in proptest::collection::vec(
                (proptest::collection::vec(proptest::num::u32::ANY, 0..400), proptest::bool::ANY, proptest::bool::ANY),
                1..6,
            ),
            shards in 1u64..=16,
            chunk_bytes in 64u64..4096,
            top in proptest::option::of(1usize..4),
        ) {
            use std::io::Write as _;
            use crate::{count_inputs, Format, Options};
            let temp = tempfile::tempdir().unwrap();
            let logs = temp.path().join("logs");
            std::fs::create_dir(&logs).unwrap();
            for (index, (lines, gzip, final_newline)) in files.iter().enumerate() {
                let mut text: String = lines.iter().map(|&pick| random_line(pick)).collect();
                if !final_newline {
                    text.pop();
                }
                if *gzip {
                    let out = std::fs::File::create(logs.join(format!("f{index}.log.gz"))).unwrap();
                    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                    encoder.write_all(text.as_bytes()).unwrap();
                    encoder.finish().unwrap();
                } else {
                    std::fs::write(logs.join(format!("f{index}.log")), text).unwrap();
                }
            }
            let paths = [logs];
            let single = count_inputs(
                &listed(&paths, false),
                &Options { top, ..Options::default() },
            )
            .unwrap();
            let plan = ShardPlan::new(&paths, false, shards).unwrap();
            let merged = merge_of_every_shard(&plan, chunk_bytes, top);
            for format in [Format::Table, Format::Csv, Format::Json] {
                proptest::prop_assert_eq!(merged.report.render(format), single.render(format));
            }
        }
    }

    #[test]
    fn shards_are_cut_no_finer_than_one_host_cuts_the_input_unless_workers_would_idle() {
        let mib = 1 << 20;
        // 8 files of 151 MB in 4 shards on 2 workers: one host cuts nothing (151 MB chunks),
        // and each shard's two files stay whole too.
        let files: Vec<ShardFile> = (0..8).map(|i| file(&format!("f{i}"), 151 * mib)).collect();
        let plan = of_files(files.clone(), 4);
        let chunk = plan.chunk_bytes(0, 2);
        assert!(chunk >= 151 * mib, "{chunk}");
        let local = plan.shard_jobs(0, None, chunk, None);
        assert_eq!(local.jobs.len(), 2);
        // In 16 shards (75 MB each), a shard is still cut for both workers.
        let plan = of_files(files, 16);
        let chunk = plan.chunk_bytes(3, 2);
        let local = plan.shard_jobs(3, None, chunk, None);
        assert!(local.jobs.len() >= 2, "{} jobs", local.jobs.len());
        // Never finer than one host cuts the shard alone.
        assert!(chunk >= balanced_chunk_bytes(plan.shard_bytes(3), 2));
    }

    #[test]
    fn a_root_that_is_not_the_one_input_is_refused() {
        let mut plan = ShardPlan::from_files(
            vec!["a".into(), "b".into()],
            None,
            false,
            vec![file("a/x", 10)],
            BTreeMap::new(),
            2,
        )
        .unwrap();
        plan.check().unwrap();
        plan.root = Some("a".into());
        let error = plan.check().unwrap_err().to_string();
        assert!(error.contains("not its one input"), "{error}");
        plan.root = None;
        plan.format = 1;
        let error = plan.check().unwrap_err().to_string();
        assert!(error.contains("format 1"), "{error}");
    }

    #[test]
    fn names_read_back_to_their_paths() {
        for raw in [
            &b"plain.log"[..],
            b"\xff\xfe.log",
            br"\xFF.log",
            b"a\nb",
            "evil\u{202e}gol".as_bytes(),
            b"sub/dir\\x",
        ] {
            let name = escape_bytes(raw);
            assert_eq!(path_of(&name).as_os_str().as_bytes(), raw, "{name}");
        }
    }
}
