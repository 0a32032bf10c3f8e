//! `Lister`: the files of a run's inputs, found a few directory entries at a time, so that a
//! caller can count the first files while the rest are still being listed (a directory of tens
//! of thousands of small logs takes about as long to list and `stat` as to count).
//!
//! It runs in the caller's thread, in steps, rather than on a thread of its own: a supervisor
//! that starts its workers by `fork` must stay single-threaded (a child forked while another
//! thread holds a lock would find it held forever), and a step of a few hundred entries takes
//! well under a millisecond, so the caller's loop still answers its workers at once.
//!
//! The rules (which entries count, report names, a file reached twice counted once) are those
//! of [`Inputs`](super::Inputs), which lists in one go with this type.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::inputs::{display_name, is_gzip, Input, StdinFile};
use super::plan::{PlanError, PlannedFile};

/// Lists the files of a run's [`Input`]s step by step (see the module's documentation).
///
/// Every input is examined when the lister is made, so that an unusable one (missing, neither
/// a file nor a directory, a directory that cannot be listed) fails the run before anything is
/// counted; standard input, if named, is read then too (copied when it is a pipe). Keep the
/// lister until every job has run: the jobs read standard input through a descriptor it holds.
#[derive(Debug)]
pub struct Lister {
    /// Named paths not yet listed, in order.
    paths: VecDeque<PathBuf>,
    /// Names are relative to the one directory named.
    relative: bool,
    recursive: bool,
    /// The directories being walked, innermost last.
    frames: Vec<Frame>,
    /// Files found and not yet handed out.
    found: Vec<PlannedFile>,
    errors: BTreeMap<String, String>,
    /// (device, inode) of the files of earlier inputs: not counted again.
    earlier: HashSet<(u64, u64)>,
    /// (device, inode) of the files of the input being listed.
    this_input: HashSet<(u64, u64)>,
    /// (device, inode) of the directories entered for the current input, so symlink cycles end.
    visited: HashSet<(u64, u64)>,
    root: Option<PathBuf>,
    /// The descriptor the jobs read standard input through, if `-` was named.
    stdin: Option<File>,
}

/// A directory being walked.
#[derive(Debug)]
struct Frame {
    entries: fs::ReadDir,
    /// The directory's own report name, for an error while listing it.
    name: String,
    /// Its entries are named under this path.
    relative: PathBuf,
}

impl Lister {
    /// Examines `inputs`, with this process's standard input for `-` (used in place when it is
    /// a regular file read from its start, copied otherwise).
    pub fn new(inputs: &[Input], recursive: bool) -> Result<Self, PlanError> {
        Self::start(inputs, recursive, StdinFile::of_this_process)
    }

    /// Examines `inputs`, failing with every input at fault (see
    /// [`Inputs::with_stdin`](super::Inputs::with_stdin)); paths are examined before standard
    /// input is read, so a usage error does not consume it.
    pub(crate) fn start(
        inputs: &[Input],
        recursive: bool,
        stdin: impl FnOnce() -> io::Result<StdinFile>,
    ) -> Result<Self, PlanError> {
        let mut problems = Vec::new();
        let mut paths = VecDeque::new();
        for input in inputs {
            if let Input::Path(path) = input {
                match examine(path) {
                    Ok(()) => paths.push_back(path.clone()),
                    Err(problem) => problems.push(problem),
                }
            }
        }
        let stdin_named = inputs.iter().filter(|i| **i == Input::Stdin).count();
        if stdin_named > 1 {
            problems.push(PlanError::StdinTwice);
        }
        if !problems.is_empty() {
            return Err(PlanError::several(problems));
        }
        let root = match inputs {
            [Input::Path(path)] if path.is_dir() => Some(path.clone()),
            _ => None,
        };
        let mut found = Vec::new();
        // Standard input is a stream, counted on its own even when it is a file named too.
        let stdin = if stdin_named == 1 {
            let stdin = stdin().map_err(|error| PlanError::Stdin {
                temp_dir: std::env::temp_dir(),
                error,
            })?;
            found.push(stdin.planned());
            Some(stdin.file)
        } else {
            None
        };
        Ok(Self {
            paths,
            relative: root.is_some(),
            recursive,
            frames: Vec::new(),
            found,
            errors: BTreeMap::new(),
            earlier: HashSet::new(),
            this_input: HashSet::new(),
            visited: HashSet::new(),
            root,
            stdin,
        })
    }

    /// Examines up to about `entries` more directory entries and named paths, and hands out
    /// the files found since the last call (in listing order, not sorted).
    pub fn list(&mut self, entries: usize) -> Vec<PlannedFile> {
        let mut examined = 0;
        while examined < entries {
            if let Some(frame) = self.frames.last_mut() {
                match frame.entries.next() {
                    Some(Ok(entry)) => {
                        examined += 1;
                        let relative = frame.relative.join(entry.file_name());
                        self.add_entry(&entry, relative);
                    }
                    Some(Err(error)) => {
                        let frame = self.frames.pop().expect("a frame is open");
                        self.errors
                            .insert(frame.name, format!("cannot list directory: {error}"));
                        self.end_frame();
                    }
                    None => {
                        self.frames.pop();
                        self.end_frame();
                    }
                }
            } else if let Some(path) = self.paths.pop_front() {
                examined += 1;
                self.begin(&path);
            } else {
                break;
            }
        }
        std::mem::take(&mut self.found)
    }

    /// Whether every input has been listed (the files found may still wait in [`list`]'s
    /// next answer).
    ///
    /// [`list`]: Self::list
    pub fn is_done(&self) -> bool {
        self.frames.is_empty() && self.paths.is_empty()
    }

    /// Entries found that could not even be examined (a broken symlink, a subdirectory that
    /// cannot be listed), by name, with the reason.
    pub fn errors(&self) -> &BTreeMap<String, String> {
        &self.errors
    }

    /// The directory the names are relative to, when the only input is a directory.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Gives up standard input's descriptor (see [`Lister`]), to be kept as long as jobs read it.
    pub(crate) fn into_stdin(self) -> Option<File> {
        self.stdin
    }

    /// Starts on a named path: a file is added, a directory opened for walking. Each was
    /// examined when the lister was made; one that changed since is reported under its name.
    fn begin(&mut self, path: &Path) {
        let name = display_name(path);
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(error) => {
                self.errors.insert(name, format!("cannot examine: {error}"));
                return;
            }
        };
        if meta.is_dir() {
            self.visited.clear();
            self.visited.insert((meta.dev(), meta.ino()));
            let relative = if self.relative {
                PathBuf::new()
            } else {
                path.to_path_buf()
            };
            match fs::read_dir(path) {
                Ok(entries) => self.frames.push(Frame {
                    entries,
                    name,
                    relative,
                }),
                Err(error) => {
                    self.errors
                        .insert(name, format!("cannot list directory: {error}"));
                }
            }
        } else if meta.is_file() {
            self.add_file(name, path.to_path_buf(), &meta);
        } else {
            self.errors
                .insert(name, "not a regular file or directory".to_owned());
        }
        self.end_frame();
    }

    /// When the walk of a named path is over, its files join the earlier inputs' (a file
    /// reached again by a later input is not counted again; within one input, every entry
    /// counts).
    fn end_frame(&mut self) {
        if self.frames.is_empty() {
            self.earlier.extend(self.this_input.drain());
        }
    }

    fn add_file(&mut self, name: String, path: PathBuf, meta: &fs::Metadata) {
        let id = (meta.dev(), meta.ino());
        if self.earlier.contains(&id) {
            return;
        }
        self.this_input.insert(id);
        self.found.push(PlannedFile {
            name,
            gzip: is_gzip(&path),
            path,
            len: meta.len(),
        });
    }

    /// One entry of the directory being walked, named `relative`: a file is added; a
    /// subdirectory is entered when recursive (once: symlink cycles end).
    fn add_entry(&mut self, entry: &fs::DirEntry, relative: PathBuf) {
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            return;
        }
        let path = entry.path();
        let name = display_name(&relative);
        // A symlink to a file is a file: only a symlink is stat'ed through its path
        // (following it); any other entry relative to its directory (fstatat), which saves a
        // lookup of every component of the path per file.
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        let meta = if is_link {
            fs::metadata(&path)
        } else {
            entry.metadata()
        };
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => {
                let what = if is_link && e.kind() == io::ErrorKind::NotFound {
                    "broken symlink"
                } else {
                    "cannot stat"
                };
                self.errors.insert(name, format!("{what}: {e}"));
                return;
            }
        };
        if meta.is_file() {
            self.add_file(name, path, &meta);
        } else if meta.is_dir() && self.recursive && self.visited.insert((meta.dev(), meta.ino())) {
            match fs::read_dir(&path) {
                Ok(entries) => self.frames.push(Frame {
                    entries,
                    name,
                    relative,
                }),
                Err(e) => {
                    self.errors
                        .insert(name, format!("cannot list directory: {e}"));
                }
            }
        }
        // Anything else (FIFOs, sockets, devices, directories without --recursive) is not a
        // regular file and is not input.
    }
}

/// Checks that a named path can be listed: it exists, and is a regular file or a directory
/// that can be opened.
fn examine(path: &Path) -> Result<(), PlanError> {
    let meta = fs::metadata(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => PlanError::Missing(path.to_path_buf()),
        _ => PlanError::Inaccessible {
            path: path.to_path_buf(),
            error,
        },
    })?;
    if meta.is_dir() {
        fs::read_dir(path)
            .map(drop)
            .map_err(|error| PlanError::Unreadable {
                path: path.to_path_buf(),
                error,
            })
    } else if meta.is_file() {
        Ok(())
    } else {
        Err(PlanError::NotAFile(path.to_path_buf()))
    }
}
