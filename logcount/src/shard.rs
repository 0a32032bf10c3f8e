//! Shard plans: the one listing of a run's inputs that N hosts split between them, each counting
//! only its share (see docs/scale-out.md).
//!
//! The files, sorted by name, are laid end to end as one stream of bytes, which is cut into N
//! ranges of equal length. A plain file that straddles a cut is split there (the scan's rule
//! makes any cut exact: a line belongs to the range it starts in); a `.gz` file cannot be
//! entered in the middle and goes whole to the shard its first byte falls in; an empty file to
//! the shard its position falls in. The split depends on nothing but the names and sizes, so
//! every host that lists the same inputs computes the same plan, and its hash, on its own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::plan::{plan, ChunkJob, ChunkSource, Options, Plan, PlanError, PlannedFile};

/// The version of the shard plan rules and of the plan file; part of the hash.
pub const SHARD_PLAN_FORMAT: u32 = 1;

/// The most shards a plan may have.
pub const MAX_SHARDS: u32 = 1 << 20;

/// One input file of a shard plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFile {
    /// Its name: its path relative to the input directory, escaped as reports show it (which
    /// reads back to exactly the path's bytes).
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
    /// The input directory as it was given, escaped like the names (for shards that run
    /// without a directory of their own).
    pub root: String,
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

fn is_gzip_name(name: &str) -> bool {
    name.ends_with(".gz")
}

impl ShardPlan {
    /// Lists `dir` (as `supervisor run logcount` does) and splits its files into `shards`.
    pub fn new(dir: &Path, recursive: bool, shards: u64) -> Result<Self, ShardPlanError> {
        let options = Options {
            recursive,
            chunk_bytes: u64::MAX,
            top: None,
        };
        let listing = plan(dir, &options)?;
        let files: Vec<ShardFile> = listing
            .files
            .into_iter()
            .map(|file| ShardFile {
                name: file.name,
                len: file.len,
            })
            .collect();
        Self::from_files(
            super::report::escape_bytes(dir.as_os_str().as_encoded_bytes()),
            recursive,
            files,
            listing.errors,
            shards,
        )
    }

    /// Splits `files` (sorted by name) into `shards`.
    pub fn from_files(
        root: String,
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
            root,
            recursive,
            files,
            errors,
            shards: pieces,
        };
        plan.hash = hex(&plan.compute_hash());
        Ok(plan)
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The hash of what the shards count: the format, the shard count, the files' names and
    /// sizes, the listing errors' names and the pieces. Not the root, so hosts that mount the
    /// inputs at different paths still agree.
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

    /// Checks a plan read from a file: known format, files sorted, pieces as the rules cut
    /// them, and the recorded hash matching the content.
    pub fn check(&self) -> Result<(), ShardPlanError> {
        let bad = |what: String| Err(ShardPlanError::Inconsistent(what));
        if self.format != SHARD_PLAN_FORMAT {
            return bad(format!(
                "format {} (this version reads format {SHARD_PLAN_FORMAT})",
                self.format
            ));
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

    /// The chunk jobs of shard `index` for the local pool: its pieces cut into chunks of about
    /// `chunk_bytes`, the files read under `root` (`None`: the plan's own root). The returned
    /// plan lists the files of the shard's pieces, in the same order.
    pub fn shard_jobs(
        &self,
        index: u32,
        root: Option<&Path>,
        chunk_bytes: u64,
        top: Option<usize>,
    ) -> Plan {
        let root = root.map_or_else(|| path_of(&self.root), Path::to_path_buf);
        let pieces = self
            .shards
            .get(index as usize)
            .map_or(&[][..], Vec::as_slice);
        let mut files = Vec::new();
        let mut jobs = Vec::new();
        for piece in pieces {
            let Some(file) = self.files.get(piece.file) else {
                continue;
            };
            let path = root.join(path_of(&file.name));
            let file_index = files.len();
            files.push(PlannedFile {
                name: file.name.clone(),
                path: path.clone(),
                len: file.len,
                gzip: is_gzip_name(&file.name),
            });
            let job = |source| ChunkJob {
                path: path.clone(),
                file_index,
                source,
                per_key_counts: top.is_some(),
                may_map: false,
            };
            if is_gzip_name(&file.name) {
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

    /// Every byte of every plain file is in exactly one piece, and each shard's bytes are
    /// within one of the fair share (`.gz` aside).
    fn assert_exact_cover(files: &[ShardFile], shards: u64) {
        let plan =
            ShardPlan::from_files("d".into(), false, files.to_vec(), BTreeMap::new(), shards)
                .unwrap();
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
        let plan = ShardPlan::from_files(
            "d".into(),
            false,
            vec![file("a", 10), file("b.gz", 100), file("c", 10)],
            BTreeMap::new(),
            4,
        )
        .unwrap();
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
            ShardPlan::from_files(root.into(), false, files, BTreeMap::new(), shards)
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
        let mut plan = ShardPlan::from_files(
            "d".into(),
            false,
            vec![file("a", 10), file("c", 95)],
            BTreeMap::new(),
            2,
        )
        .unwrap();
        plan.check().unwrap();
        plan.files[0].len = 12;
        let error = plan.check().unwrap_err().to_string();
        assert!(error.contains("not the split"), "{error}");
        plan.shards = split(&plan.files, 2);
        let error = plan.check().unwrap_err().to_string();
        assert!(error.contains("hash"), "{error}");
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
