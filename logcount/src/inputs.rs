//! The inputs of a run: the paths and `-` named on a command line, resolved into the list of
//! files to count ([`Inputs`]), each with the name it is reported under.
//!
//! A path is a file or a directory (its regular files, `--recursive` for subdirectories, names
//! starting with `.` skipped); `-` is standard input, which workers read as any other file: in
//! chunks, in parallel, and again if a worker dies mid-scan. A pipe could be read only once, so
//! it is copied to an unlinked temporary file first; a regular file (`< access.log`) is read in
//! place. Listing reads metadata only, except for that copy, made once with a fixed-size buffer.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Seek as _;
use std::io::{self, Read};
use std::os::fd::{AsFd as _, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::listing::Lister;
use super::plan::{PlanError, PlannedFile};

/// The name standard input is reported under.
pub const STDIN_NAME: &str = "-";

/// One input named by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file or a directory.
    Path(PathBuf),
    /// Standard input (`-` on a command line), plain text or gzip (told by its first bytes).
    Stdin,
}

impl Input {
    /// A command-line argument as an input: `-` is standard input, anything else a path (a
    /// file named `-` is `./-`, as for other tools).
    pub fn from_arg(arg: impl AsRef<OsStr>) -> Self {
        let arg = arg.as_ref();
        if arg == STDIN_NAME {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }
}

/// The files to count, found from a list of [`Input`]s, with their report names:
///
/// - one directory alone: names relative to it (`access.log`, `sub/x.log`);
/// - otherwise each file as given (`logs/a.log`, `/var/log/x.log`), each file found in a
///   directory D as D joined with its path inside D (`logs/a.log` for `logs` or `logs/`), and
///   standard input as `-`.
///
/// A file that an earlier input already reached (the same device and inode: named twice, or
/// named and also found in a directory) is counted once, under that earlier name. Within one
/// directory every entry counts, symlinks to the same file included.
///
/// Standard input (or its copy) stays readable as long as this value: keep it until every job
/// has run (jobs read it through `/proc/<this process>/fd/<n>`, which only this process can
/// offer).
#[derive(Debug)]
pub struct Inputs {
    files: Vec<PlannedFile>,
    errors: BTreeMap<String, String>,
    /// The directory the names are relative to: the one input, when it is a directory alone.
    root: Option<PathBuf>,
    /// The descriptor the jobs read standard input through, if `-` was named.
    _stdin: Option<File>,
}

impl Inputs {
    /// Resolves `inputs`, with this process's standard input for `-` (see the module's
    /// documentation: it is used in place when it is a regular file read from its start, and
    /// copied otherwise).
    pub fn new(inputs: &[Input], recursive: bool) -> Result<Self, PlanError> {
        Self::list(inputs, recursive, StdinFile::of_this_process)
    }

    /// [`Inputs::new`] with `stdin` standing for standard input.
    ///
    /// Fails, naming each input at fault, when a path is missing, is neither a regular file
    /// nor a directory, or is a directory that cannot be listed; when `-` is named more than
    /// once; or when standard input cannot be copied. Paths are listed before standard input
    /// is read, so a usage error does not consume it.
    pub fn with_stdin(
        inputs: &[Input],
        recursive: bool,
        stdin: impl Read,
    ) -> Result<Self, PlanError> {
        Self::list(inputs, recursive, || StdinFile::copy(stdin))
    }

    fn list(
        inputs: &[Input],
        recursive: bool,
        stdin: impl FnOnce() -> io::Result<StdinFile>,
    ) -> Result<Self, PlanError> {
        let mut lister = Lister::start(inputs, recursive, stdin)?;
        let mut files = Vec::new();
        while !lister.is_done() {
            files.extend(lister.list(usize::MAX));
        }
        files.extend(lister.list(0));
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let errors = lister.errors().clone();
        let root = lister.root().map(Path::to_path_buf);
        Ok(Self {
            files,
            errors,
            root,
            _stdin: lister.into_stdin(),
        })
    }

    /// The files, sorted by name.
    pub fn files(&self) -> &[PlannedFile] {
        &self.files
    }

    /// Entries found that could not even be examined (a broken symlink, a subdirectory that
    /// cannot be listed), by name, with the reason.
    pub fn errors(&self) -> &BTreeMap<String, String> {
        &self.errors
    }

    /// The directory the names are relative to, when the only input was a directory; `None`
    /// otherwise: each name is then the file's path (as given, or a directory as given joined
    /// with the path inside it), standard input's `-` aside.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The bytes to scan, as stored (a gzip file's compressed size).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|file| file.len).sum()
    }
}

/// Standard input as a file that any process of this user can open by path: standard input
/// itself when it is a regular file read from its start (`< access.log`: nothing to copy), else
/// an unlinked copy of what it holds.
pub(crate) struct StdinFile {
    /// A descriptor of this process for it (a duplicate of standard input, or the copy's).
    pub(crate) file: File,
    len: u64,
    gzip: bool,
}

/// The first bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

impl StdinFile {
    /// This process's standard input. A regular file is used where it is, if nothing of it was
    /// read yet; one read from partway (`(head -1; supervisor run logcount -) < log`) is
    /// copied from where it stands, as a pipe is, so the count starts there as `wc`'s does.
    pub(crate) fn of_this_process() -> io::Result<Self> {
        if let Ok(fd) = io::stdin().as_fd().try_clone_to_owned() {
            let mut file = File::from(fd);
            let meta = file.metadata()?;
            if meta.is_file() && file.stream_position()? == 0 {
                return Self::reading(file, meta.len());
            }
        }
        Self::copy(io::stdin().lock())
    }

    /// Copies `reader` to the end into a new temporary file in the temp dir (`TMPDIR`), which
    /// has no name (so nothing is left behind, however this process ends). `io::copy` moves
    /// the bytes through a fixed buffer (or by `splice` from a pipe): memory does not grow with
    /// the input.
    pub(crate) fn copy(mut reader: impl Read) -> io::Result<Self> {
        let mut file = tempfile::tempfile()?;
        let len = io::copy(&mut reader, &mut file)?;
        Self::reading(file, len)
    }

    /// `len` bytes of `file`, gzip if they start as gzip does.
    fn reading(file: File, len: u64) -> io::Result<Self> {
        let mut magic = [0u8; 2];
        let gzip = len >= 2 && {
            file.read_exact_at(&mut magic, 0)?;
            magic == GZIP_MAGIC
        };
        Ok(Self { file, len, gzip })
    }

    pub(crate) fn planned(&self) -> PlannedFile {
        PlannedFile {
            name: STDIN_NAME.into(),
            // Any process of the same user may open this process's descriptors by these
            // names, workers started by spawn included (a new open file, with its own offset).
            path: PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                self.file.as_raw_fd()
            )),
            len: self.len,
            gzip: self.gzip,
        }
    }
}

/// A file is read decompressed when its name ends in `.gz` (standard input: when it starts
/// with gzip's magic bytes).
pub(crate) fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "gz")
}

/// A path as a report name, escaped so that distinct paths get distinct names that are safe to
/// print (see `escape_bytes`).
pub(crate) fn display_name(path: &Path) -> String {
    super::report::escape_bytes(path.as_os_str().as_encoded_bytes())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write as _;

    use super::*;
    use crate::{count_inputs, plan_inputs, ChunkSource, FileCounts, Options};

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
    }

    fn names(inputs: &Inputs) -> Vec<&str> {
        inputs.files().iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn one_directory_alone_gives_relative_names_and_several_inputs_give_paths() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        write(&logs.join("a.log"), "1.1.1.1 - -\n");
        write(&logs.join("b.log"), "2.2.2.2 - -\n");
        let single = Inputs::new(&[Input::Path(logs.clone())], false).unwrap();
        assert_eq!(names(&single), ["a.log", "b.log"]);

        let other = dir.path().join("other.log");
        write(&other, "3.3.3.3 - -\n");
        let several = Inputs::new(
            &[Input::Path(logs.clone()), Input::Path(other.clone())],
            false,
        )
        .unwrap();
        let logs_name = logs.to_str().unwrap();
        assert_eq!(
            names(&several),
            [
                format!("{logs_name}/a.log"),
                format!("{logs_name}/b.log"),
                other.to_str().unwrap().to_string()
            ]
        );
        // A single file is named as given.
        let file = Inputs::new(&[Input::Path(other.clone())], false).unwrap();
        assert_eq!(names(&file), [other.to_str().unwrap()]);
    }

    #[test]
    fn a_file_reached_twice_is_counted_once_under_its_first_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("a.log"), "1.1.1.1 - -\n2.2.2.2 - -\n");
        write(&d.join("b.log"), "3.3.3.3 - -\n");
        let a = d.join("a.log");
        let inputs = Inputs::new(
            &[
                Input::Path(a.clone()),
                Input::Path(d.to_path_buf()),
                Input::Path(a.clone()),
            ],
            false,
        )
        .unwrap();
        let a_name = a.to_str().unwrap().to_string();
        let b_name = format!("{}/b.log", d.to_str().unwrap());
        assert_eq!(names(&inputs), [a_name.clone(), b_name]);
        let report = count_inputs(&inputs, &Options::default()).unwrap();
        assert_eq!(report.all, FileCounts { total: 3, ip: 3 });
        assert_eq!(report.files[&a_name].total, 2);
    }

    #[test]
    fn every_unusable_path_is_named_before_stdin_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone.log");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut stdin: &[u8] = b"1.1.1.1 - -\n";
        let error = Inputs::with_stdin(
            &[
                Input::Path(gone.clone()),
                Input::Stdin,
                Input::Path(fifo),
                Input::Stdin,
            ],
            false,
            &mut stdin,
        )
        .unwrap_err();
        let each: Vec<String> = error.each().iter().map(ToString::to_string).collect();
        assert_eq!(each.len(), 3, "{each:?}");
        assert!(each[0].ends_with("gone.log: no such file or directory"));
        assert!(each[1].contains("fifo: not a regular file or directory"));
        assert_eq!(each[2], "-: standard input named more than once");
        assert_eq!(error.to_string(), each.join("\n"));
        assert_eq!(stdin.len(), 12, "standard input was read");
    }

    #[test]
    fn stdin_is_counted_like_a_file_plain_or_gzip() {
        let text = "1.1.1.1 - -\n2.2.2.2 - -\n1.1.1.1 - -\n".repeat(5_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gzipped = gz.finish().unwrap();
        for (stdin, gzip) in [(text.as_bytes(), false), (&gzipped[..], true)] {
            let inputs = Inputs::with_stdin(&[Input::Stdin], false, stdin).unwrap();
            assert_eq!(names(&inputs), [STDIN_NAME]);
            assert_eq!(inputs.files()[0].gzip, gzip);
            assert_eq!(inputs.total_bytes(), stdin.len() as u64);
            // Small chunks: the copy is read in pieces, as a file is.
            let options = Options {
                chunk_bytes: 4096,
                ..Options::default()
            };
            let plan = plan_inputs(&inputs, &options).unwrap();
            if gzip {
                assert_eq!(plan.jobs.len(), 1);
                assert_eq!(plan.jobs[0].parts[0].source, ChunkSource::Gzip);
            } else {
                assert!(plan.jobs.len() > 10, "{} jobs", plan.jobs.len());
            }
            let report = count_inputs(&inputs, &options).unwrap();
            assert_eq!(
                report.files["-"],
                FileCounts {
                    total: 15_000,
                    ip: 2
                }
            );
        }
    }

    #[test]
    fn empty_stdin_is_an_empty_file() {
        let inputs = Inputs::with_stdin(&[Input::Stdin], false, &b""[..]).unwrap();
        let report = count_inputs(&inputs, &Options::default()).unwrap();
        assert_eq!(report.files["-"], FileCounts::default());
    }

    #[test]
    fn a_dash_argument_is_stdin_and_anything_else_a_path() {
        assert_eq!(Input::from_arg("-"), Input::Stdin);
        assert_eq!(Input::from_arg("./-"), Input::Path("./-".into()));
        assert_eq!(Input::from_arg("--"), Input::Path("--".into()));
    }
}
