//! Counting one chunk: the hot loop that streams a byte range of a file (or a whole decompressed
//! `.gz`) through a bounded buffer, finds line ends with 64-byte newline masks, and adds each
//! line's client key to the chunk's distinct sets.
//!
//! A chunk `[start, end)` owns exactly the lines that *start* inside it (a line starts at offset
//! 0 or right after a `\n`). So it reads from `start - 1`, skips through the first `\n`, and
//! reads past `end` to finish its last line; cutting a file anywhere, into any number of chunks,
//! counts every line exactly once, and planning never has to read the file.
//!
//! Memory is one buffer plus the distinct keys: a line longer than the buffer is not gathered
//! whole; [`SpanningLine`] keeps only its key (which ends at the first `,` or ` - -`), and of a
//! key longer than [`LONG_KEY_BYTES`] only a running SHA-256 and its first bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use flate2::read::MultiGzDecoder;
use memchr::memchr;
use serde::{Deserialize, Serialize};

use super::distinct::{
    byte_strings, digests, key_digest, sorted_delta, ByteKeys, LongKeyHasher, LongKeys,
    LONG_KEY_BYTES,
};
use super::ipv6;
use super::key_set::{PackedKeys, WideKeys};
use super::keys::{self, QuadValues, ScalarValues};
use super::lanes::{Baseline, NewlineBlocks, NewlineMasks};
use super::mapped::{MapConsent, MappedWindow};
use super::plan::{ChunkJob, ChunkSource, JobPart};
use super::report::FileCounts;
use super::union::KeyPile;

/// Read buffer: large enough that syscalls and per-buffer work vanish, small enough to stay in
/// L2 next to the hot part of the key set.
const BUFFER_BYTES: usize = 256 * 1024;

/// The distinct client keys seen in a chunk (or a merged set of chunks): packed canonical IPv4
/// and IPv6 keys, all other keys of up to 256 bytes as raw bytes, and longer keys as
/// their SHA-256 digests, each sorted ascending and deduplicated. Each key belongs to exactly
/// one of the four lists (a key is packed only if it is the canonical text of its address, and
/// the byte and digest lists split by length), so the distinct count is the sum of their
/// lengths.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistinctKeys {
    /// Canonical dotted quads, packed big-endian (`1.2.3.4` -> `0x01020304`).
    #[serde(with = "sorted_delta")]
    pub ipv4: Vec<u32>,
    /// Canonical IPv6 texts, packed big-endian (`2001:db8::1` -> `0x20010db8_0..._1`).
    #[serde(with = "sorted_delta")]
    pub ipv6: Vec<u128>,
    /// Every other key of at most 256 bytes, byte for byte.
    #[serde(with = "byte_strings")]
    pub other: Vec<Vec<u8>>,
    /// The SHA-256 digests of the keys longer than 256 bytes, which are not held whole (see
    /// docs/logcount.md, "Long keys").
    #[serde(with = "digests")]
    pub long: Vec<[u8; 32]>,
}

impl DistinctKeys {
    /// The number of distinct keys.
    pub fn len(&self) -> u64 {
        (self.ipv4.len() + self.ipv6.len() + self.other.len() + self.long.len()) as u64
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.ipv4.is_empty()
            && self.ipv6.is_empty()
            && self.other.is_empty()
            && self.long.is_empty()
    }
}

/// Per-key request counts, parallel to [`DistinctKeys`] (`ipv4[i]` is the count of
/// `keys.ipv4[i]`). Present only when the job asked for them (`--top`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCounts {
    /// Counts of the packed IPv4 keys.
    pub ipv4: Vec<u64>,
    /// Counts of the packed IPv6 keys.
    pub ipv6: Vec<u64>,
    /// Counts of the byte-string keys.
    pub other: Vec<u64>,
    /// Counts of the long keys (by digest).
    pub long: Vec<u64>,
    /// The first bytes of each long key (what `--top` shows of it).
    #[serde(with = "byte_strings")]
    pub long_shown: Vec<Vec<u8>>,
}

/// What one part of a job found: its file's index and, unless the file could not be read,
/// the lines and distinct keys of that part (a whole file's own counts, exact, for a file not
/// cut into chunks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartCounts {
    /// Index of the file in [`super::Plan::files`].
    pub file_index: usize,
    /// The counts, or why the file could not be read (`cannot open: ...`, `invalid gzip:
    /// ...`): an answer about the input, not a failure of the worker, so no retry.
    pub outcome: Result<FileCounts, String>,
}

/// What one job found: small by design, it is what crosses the process boundary. Per part,
/// two numbers (or an error); then the distinct keys of all counted parts together, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCounts {
    /// One per part of the job, in the job's order.
    pub parts: Vec<PartCounts>,
    /// The union of the distinct client keys of the parts that were counted.
    pub keys: DistinctKeys,
    /// Per-key counts summed over those parts, if [`ChunkJob::per_key_counts`] was set.
    pub counts: Option<KeyCounts>,
}

/// How a chunk job gets the bytes of a plain file (a `.gz` file is always read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMethod {
    /// `read(2)` into a bounded buffer: sees a file truncated meanwhile as shorter, never faults.
    Read,
    /// Map the range and scan it in place (no copy). A file truncated while mapped raises
    /// SIGBUS and kills the process: only for a pool worker's first attempt at a job, whose
    /// retry after a lost worker reads (see `mapped.rs`). The [`MapConsent`] says so.
    Map(MapConsent),
}

/// Counts the lines and distinct client keys of each part of a job, reading with `read(2)`.
/// A pure function of the job and the files' bytes; safe to run in any process, any number of
/// times.
pub fn count_chunk(job: &ChunkJob) -> ChunkCounts {
    count_chunk_with(job, ReadMethod::Read)
}

/// [`count_chunk`] with a choice of [`ReadMethod`]; `Map` only where a SIGBUS is survivable.
/// A part that cannot be mapped is read.
pub fn count_chunk_with(job: &ChunkJob, method: ReadMethod) -> ChunkCounts {
    count_with_sizes(job, method, BUFFER_BYTES, MAP_WINDOW_BYTES)
}

/// Parts smaller than this are read even where mapping is allowed: one `read` of a small file
/// costs less than mapping it, faulting its pages in and unmapping it.
const MAP_FROM_BYTES: u64 = BUFFER_BYTES as u64;

/// [`count_chunk_with`] with a read buffer and mapping windows of `buffer_bytes`.
#[cfg(test)]
pub(crate) fn count_chunk_with_buffer(
    job: &ChunkJob,
    method: ReadMethod,
    buffer_bytes: usize,
) -> ChunkCounts {
    count_with_sizes(job, method, buffer_bytes, buffer_bytes)
}

/// Counts `job` with a read buffer of `buffer_bytes` and mapping windows of `window_bytes`.
fn count_with_sizes(
    job: &ChunkJob,
    method: ReadMethod,
    buffer_bytes: usize,
    window_bytes: usize,
) -> ChunkCounts {
    let mut keys = JobKeys::new(job.per_key_counts);
    let mut buffer = Vec::new();
    let parts = job
        .parts
        .iter()
        .map(|part| {
            let count = |method, buffer: &mut Vec<u8>| {
                let sizes = (buffer_bytes, window_bytes);
                count_part(part, job.per_key_counts, method, sizes, buffer)
            };
            let mut outcome = count(method, &mut buffer);
            if outcome.is_err() && matches!(method, ReadMethod::Map(_)) {
                // A file that cannot be mapped (on sysfs, say) is read: the read's verdict on
                // the input is the one reported. A failed part added nothing to `keys`.
                outcome = count(ReadMethod::Read, &mut buffer);
            }
            let outcome = outcome.map(|counter| counter.into_job(&mut keys));
            PartCounts {
                file_index: part.file_index,
                outcome,
            }
        })
        .collect();
    let (keys, counts) = keys.finish();
    ChunkCounts {
        parts,
        keys,
        counts,
    }
}

/// Counts one part into a fresh [`Counter`]; `buffer` is the read buffer, kept across parts.
fn count_part(
    part: &JobPart,
    per_key_counts: bool,
    method: ReadMethod,
    (buffer_bytes, window_bytes): (usize, usize),
    buffer: &mut Vec<u8>,
) -> Result<Counter, String> {
    let mut file = open_regular(&part.path)?;
    match part.source {
        ChunkSource::Gzip => {
            let mut counter = Counter::new(per_key_counts, None);
            let mut chunk = ChunkScan::new(&mut counter, false, None);
            read_through(MultiGzDecoder::new(file), &mut chunk, buffer_bytes, buffer).map_err(
                |e| match e.kind() {
                    io::ErrorKind::InvalidInput
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::UnexpectedEof => format!("invalid gzip: {e}"),
                    _ => format!("read error: {e}"),
                },
            )?;
            chunk.finish();
            Ok(counter)
        }
        ChunkSource::Range { start, end } => {
            let mut counter = Counter::new(per_key_counts, Some(end.saturating_sub(start)));
            // Read from the byte before `start` to learn whether a line starts at `start`.
            let read_from = start.saturating_sub(1);
            let line_starts_before = end.saturating_sub(read_from);
            let mut chunk = ChunkScan::new(&mut counter, start > 0, Some(line_starts_before));
            let method = if end.saturating_sub(start) < MAP_FROM_BYTES {
                ReadMethod::Read
            } else {
                method
            };
            match method {
                ReadMethod::Read => {
                    if read_from > 0 {
                        file.seek(SeekFrom::Start(read_from))
                            .map_err(|e| format!("cannot seek: {e}"))?;
                    }
                    read_through(&mut file, &mut chunk, buffer_bytes, buffer)
                        .map_err(|e| format!("read error: {e}"))?;
                }
                ReadMethod::Map(consent) => {
                    map_through(consent, &file, read_from, end, &mut chunk, window_bytes)
                        .map_err(|e| format!("read error: {e}"))?
                }
            }
            chunk.finish();
            Ok(counter)
        }
    }
}

/// The distinct keys of a job's counted parts so far: packed keys piled up unsorted (and
/// sorted once, see [`KeyPile`]), byte-string and long keys moved into one map.
#[derive(Debug)]
struct JobKeys {
    ipv4: KeyPile<u32>,
    ipv6: KeyPile<u128>,
    other: ByteKeys,
    long: LongKeys,
    per_key_counts: bool,
}

impl JobKeys {
    fn new(per_key_counts: bool) -> Self {
        Self {
            ipv4: KeyPile::new(per_key_counts),
            ipv6: KeyPile::new(per_key_counts),
            other: ByteKeys::default(),
            long: LongKeys::default(),
            per_key_counts,
        }
    }

    fn finish(self) -> (DistinctKeys, Option<KeyCounts>) {
        let (ipv4, ipv4_counts) = self.ipv4.finish();
        let (ipv6, ipv6_counts) = self.ipv6.finish();
        let (other, other_counts) = self.other.into_sorted();
        let (long, long_counts, long_shown) = self.long.into_sorted();
        let counts = self.per_key_counts.then(|| KeyCounts {
            ipv4: ipv4_counts.unwrap_or_default(),
            ipv6: ipv6_counts.unwrap_or_default(),
            other: other_counts,
            long: long_counts,
            long_shown,
        });
        let keys = DistinctKeys {
            ipv4,
            ipv6,
            other,
            long,
        };
        (keys, counts)
    }
}

/// Opens a planned input for reading, making sure it is (still) a regular file. Planning saw a
/// regular file, but the name may have been swapped since: `open` of a FIFO blocks until a
/// writer comes, for ever if none does, and a device may block or never end. So the open is
/// non-blocking (which lets a FIFO's open return at once), the opened file must be a regular
/// file (fstat of the descriptor, not of the name, which could change again), and only then
/// are reads made blocking again.
fn open_regular(path: &std::path::Path) -> Result<File, String> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};

    use nix::fcntl::{fcntl, FcntlArg, OFlag};

    let file = loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
        {
            Ok(file) => break file,
            // A signal handled in the worker (SIGTERM: leave after this job) interrupted it.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot open: {e}")),
        }
    };
    let kind = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a plain file"
        };
        return Err(format!(
            "not a regular file any more: it is {what} (replaced after planning?)"
        ));
    }
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)
        .map_err(|e| format!("cannot read flags: {e}"))?;
    let blocking = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(blocking))
        .map_err(|e| format!("cannot set flags: {e}"))?;
    Ok(file)
}

/// Streams `source` through `buffer`, made `buffer_bytes` long, into `chunk`.
fn read_through<R: Read>(
    mut source: R,
    chunk: &mut ChunkScan<'_>,
    buffer_bytes: usize,
    buffer: &mut Vec<u8>,
) -> io::Result<()> {
    buffer.resize(buffer_bytes.max(1), 0);
    loop {
        let filled = match source.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !chunk.feed(&buffer[..filled]) {
            return Ok(());
        }
    }
}

/// Mapping window: a chunk is mapped a window at a time so that the file pages a worker has
/// mapped (and its RSS) stay bounded; at 16 MiB, map + unmap per window is noise (4, 16 and
/// 64 MiB measured the same CPU time).
const MAP_WINDOW_BYTES: usize = 16 << 20;

/// Once past the chunk's end only its last line is left: map that tail in small windows at
/// first, doubling up to the full window size, so that a long last line costs few mappings.
const TAIL_WINDOW_BYTES: usize = 64 * 1024;

/// Feeds `chunk` the file from `read_from` through mapped windows of up to `window_bytes`, the
/// last one ending at the chunk's `end`, then small windows until the last line ends. The file
/// size is taken (fstat) first and bounds every window, so a file that shrank since planning
/// is counted as it is now; only a truncation during the scan can fault (see `mapped.rs`).
fn map_through(
    consent: MapConsent,
    file: &File,
    read_from: u64,
    end: u64,
    chunk: &mut ChunkScan<'_>,
    window_bytes: usize,
) -> io::Result<()> {
    let size = file.metadata()?.len();
    let window_bytes = window_bytes.max(1) as u64;
    let mut offset = read_from;
    let mut tail_window = TAIL_WINDOW_BYTES as u64;
    while offset < size {
        let window = if offset < end {
            // Windows end on multiples of their size in the file, so that (with 2 MiB-aligned
            // chunk cuts, see `plan`) no window splits a 2 MiB block the kernel could map whole.
            let boundary = (offset / window_bytes + 1) * window_bytes;
            boundary.min(end) - offset
        } else {
            let window = window_bytes.min(tail_window);
            tail_window = tail_window.saturating_mul(2);
            window
        };
        let len = window.min(size - offset);
        let mapped = MappedWindow::map(consent, file, offset, len as usize)?;
        if !chunk.feed(mapped.bytes()) {
            return Ok(());
        }
        offset += len;
    }
    Ok(())
}

/// The state of one chunk's scan across the pieces (buffers or windows) of its stream: counts
/// every line that starts before stream offset `line_starts_before` (all lines if `None`).
/// With `skip_first`, the bytes up to and including the first `\n` belong to the previous chunk.
struct ChunkScan<'c> {
    counter: &'c mut Counter,
    skipping: bool,
    spanning: Option<SpanningLine>,
    /// Stream offset of the next piece's first byte.
    offset: u64,
    line_starts_before: Option<u64>,
}

impl<'c> ChunkScan<'c> {
    fn new(counter: &'c mut Counter, skip_first: bool, line_starts_before: Option<u64>) -> Self {
        Self {
            counter,
            skipping: skip_first,
            spanning: None,
            offset: 0,
            line_starts_before,
        }
    }

    /// The next piece of the stream. Returns whether later pieces can still hold lines of ours.
    fn feed(&mut self, data: &[u8]) -> bool {
        let filled = data.len();
        // A line starting at piece index `i` is ours iff `i < stop`.
        let stop = self
            .line_starts_before
            .map_or(u64::MAX, |limit| limit.saturating_sub(self.offset));
        let mut line_start = 0;
        if self.skipping {
            match memchr(b'\n', data) {
                Some(newline) => {
                    self.skipping = false;
                    line_start = newline + 1;
                }
                // Any later `\n` would start a line at or past the limit: nothing here is ours.
                None if filled as u64 >= stop => return false,
                None => {
                    self.offset += filled as u64;
                    return true;
                }
            }
        }
        if let Some(line) = self.spanning.as_mut() {
            match memchr(b'\n', data) {
                Some(newline) => {
                    line.feed(&data[..newline]);
                    if let Some(line) = self.spanning.take() {
                        line.finish(self.counter);
                    }
                    line_start = newline + 1;
                }
                None => {
                    line.feed(data);
                    self.offset += filled as u64;
                    return true;
                }
            }
        }
        let Some(line_start) = count_whole_lines(self.counter, data, line_start, stop) else {
            return false;
        };
        if line_start < filled {
            let mut line = SpanningLine::default();
            line.feed(&data[line_start..]);
            self.spanning = Some(line);
        }
        self.offset += filled as u64;
        true
    }

    /// The end of the stream: a last line without `\n` still counts.
    fn finish(self) {
        if let Some(line) = self.spanning {
            line.finish(self.counter);
        }
    }
}

/// Counts the lines that end in `data` and start at or after `line_start` and before `stop`.
/// Returns where the unfinished last line starts, or `None` once a line starts at `stop`.
/// Dispatches once per buffer to the loop compiled for the best newline-mask and octet-value
/// methods the CPU has.
fn count_whole_lines(
    counter: &mut Counter,
    data: &[u8],
    line_start: usize,
    stop: u64,
) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = counter.avx2 {
        return avx2.run(LineLoop {
            counter,
            data,
            line_start,
            stop,
        });
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(ssse3) = counter.ssse3 {
        return ssse3.run(LineLoop {
            counter,
            data,
            line_start,
            stop,
        });
    }
    line_loop(counter, data, line_start, stop, ScalarValues, Baseline)
}

/// [`line_loop`]'s arguments, to run it compiled for SSSE3 or AVX2.
#[cfg(target_arch = "x86_64")]
struct LineLoop<'a> {
    counter: &'a mut Counter,
    data: &'a [u8],
    line_start: usize,
    stop: u64,
}

#[cfg(target_arch = "x86_64")]
impl super::lanes::WithSsse3 for LineLoop<'_> {
    type Output = Option<usize>;

    #[inline(always)]
    fn call(self, ssse3: super::lanes::Ssse3) -> Option<usize> {
        line_loop(
            self.counter,
            self.data,
            self.line_start,
            self.stop,
            ssse3,
            Baseline,
        )
    }
}

#[cfg(target_arch = "x86_64")]
impl super::lanes::WithAvx2 for LineLoop<'_> {
    type Output = Option<usize>;

    #[inline(always)]
    fn call(self, avx2: super::lanes::Avx2) -> Option<usize> {
        line_loop(
            self.counter,
            self.data,
            self.line_start,
            self.stop,
            avx2.ssse3(),
            avx2,
        )
    }
}

#[inline(always)]
fn line_loop<V: QuadValues, M: NewlineMasks>(
    counter: &mut Counter,
    data: &[u8],
    mut line_start: usize,
    stop: u64,
    values: V,
    masks: M,
) -> Option<usize> {
    let first_line = line_start;
    // Usually every line that ends in `data` is ours; then the loop need not check.
    let all_ours = data.len() as u64 <= stop;
    for (block, mut mask) in NewlineBlocks::new(&data[first_line..], masks) {
        while mask != 0 {
            let newline = first_line + block + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if !all_ours && line_start as u64 >= stop {
                return None;
            }
            counter.line(&data[line_start..newline], values);
            line_start = newline + 1;
        }
        // At most 64 lines per block, so the batch (room for `BATCH + 64` keys) never
        // reallocates; checking here keeps the flush call out of the per-line path.
        counter.ipv4.flush_if_full();
    }
    ((line_start as u64) < stop).then_some(line_start)
}

/// A line that crosses the end of the buffer: holds only what decides its key and whether it is
/// blank, so memory stays bounded whatever the line's length: the key's bytes while it is at
/// most [`KEPT_KEY_BYTES`] long, then a running digest of it (see [`LONG_KEY_BYTES`]) plus its
/// last 3 bytes, which may still turn out to start the separator ` - -` or be the line's last
/// `\r`.
#[derive(Debug, Default)]
struct SpanningLine {
    /// The key's bytes not yet in `long` (all of them while `long` is `None`): once `long` is
    /// started, at least the last 3 bytes seen (or all, if fewer came).
    key: Vec<u8>,
    /// The key's digest so far, once the key is known to be longer than [`LONG_KEY_BYTES`].
    long: Option<LongKeyHasher>,
    /// A `,` or ` - -` has been seen: the key is final and later bytes only matter for
    /// blankness.
    key_closed: bool,
    /// A byte other than ASCII whitespace has been seen.
    non_blank: bool,
}

/// How many bytes of an open key a [`SpanningLine`] holds before it starts digesting: past
/// this, the key (which loses at most 3 bytes to a straddling ` - -` or 1 to a last `\r`) is
/// surely longer than [`LONG_KEY_BYTES`].
const KEPT_KEY_BYTES: usize = LONG_KEY_BYTES + 64;

/// The bytes a [`SpanningLine`] keeps undigested at the end of an open key: ` - -` is 4 long.
const OPEN_TAIL_BYTES: usize = 3;

impl SpanningLine {
    fn feed(&mut self, bytes: &[u8]) {
        if !self.non_blank {
            self.non_blank = !keys::is_blank(bytes);
        }
        if self.key_closed {
            return;
        }
        // A ` - -` that starts in the undigested tail and ends in `bytes`; a `,` in the tail
        // would have closed the key when it came.
        let tail = &self.key[self.key.len().saturating_sub(OPEN_TAIL_BYTES)..];
        let mut joint = [0u8; 2 * OPEN_TAIL_BYTES];
        joint[..tail.len()].copy_from_slice(tail);
        let head = bytes.len().min(OPEN_TAIL_BYTES);
        joint[tail.len()..tail.len() + head].copy_from_slice(&bytes[..head]);
        let joint = &joint[..tail.len() + head];
        if let Some(at) = joint
            .windows(4)
            .position(|window| window == b" - -")
            .filter(|&at| at < tail.len())
        {
            self.key.truncate(self.key.len() - (tail.len() - at));
            self.key_closed = true;
            return;
        }
        let end = keys::key_len(bytes);
        self.append(&bytes[..end]);
        self.key_closed = end < bytes.len();
    }

    /// Adds key bytes, digesting all but the last few once the key is surely long.
    fn append(&mut self, bytes: &[u8]) {
        if self.long.is_none() && self.key.len() + bytes.len() <= KEPT_KEY_BYTES {
            self.key.extend_from_slice(bytes);
            return;
        }
        let long = self.long.get_or_insert_with(LongKeyHasher::default);
        if bytes.len() >= OPEN_TAIL_BYTES {
            long.update(&self.key);
            self.key.clear();
            let (digest_now, keep) = bytes.split_at(bytes.len() - OPEN_TAIL_BYTES);
            long.update(digest_now);
            self.key.extend_from_slice(keep);
        } else {
            let keep_old = OPEN_TAIL_BYTES - bytes.len();
            let digest_now = self.key.len().saturating_sub(keep_old);
            long.update(&self.key[..digest_now]);
            self.key.drain(..digest_now);
            self.key.extend_from_slice(bytes);
        }
    }

    fn finish(mut self, counter: &mut Counter) {
        if !self.non_blank {
            return;
        }
        if !self.key_closed && self.key.last() == Some(&b'\r') {
            self.key.pop();
        }
        match self.long {
            None => counter.key(&self.key),
            Some(mut long) => {
                long.update(&self.key);
                let (digest, shown) = long.finish();
                counter.total += 1;
                counter.long.insert(digest, &shown);
            }
        }
    }
}

/// A chunk's running counts.
#[derive(Debug)]
struct Counter {
    total: u64,
    ipv4: PackedKeys,
    ipv6: WideKeys,
    other: ByteKeys,
    long: LongKeys,
    /// Present if the CPU has SSSE3 (asked once per chunk).
    #[cfg(target_arch = "x86_64")]
    ssse3: Option<super::lanes::Ssse3>,
    /// Present if the CPU has AVX2 and SSSE3 (asked once per chunk).
    #[cfg(target_arch = "x86_64")]
    avx2: Option<super::lanes::Avx2>,
}

impl Counter {
    /// A counter for at most `bytes` bytes of input, if known (see [`KeySet::sized_for`]).
    ///
    /// [`KeySet::sized_for`]: super::key_set::KeySet::sized_for
    fn new(per_key_counts: bool, bytes: Option<u64>) -> Self {
        Self {
            total: 0,
            ipv4: PackedKeys::sized_for(per_key_counts, bytes),
            ipv6: WideKeys::sized_for(per_key_counts, bytes),
            other: ByteKeys::default(),
            long: LongKeys::default(),
            #[cfg(target_arch = "x86_64")]
            ssse3: super::lanes::Ssse3::detect(),
            #[cfg(target_arch = "x86_64")]
            avx2: super::lanes::Avx2::detect(),
        }
    }

    /// One line, without its `\n` (its trailing `\r`, if any, still on).
    #[inline(always)]
    fn line<V: QuadValues>(&mut self, line: &[u8], values: V) {
        // A line starting with a dotted quad is not blank: count it without looking further.
        if let Some(ip) = keys::packed_ipv4_key(line, values) {
            self.total += 1;
            // The line loop checks the batch once per 64-byte block.
            self.ipv4.push(ip);
            return;
        }
        self.general_line(line.strip_suffix(b"\r").unwrap_or(line));
    }

    #[cold]
    fn general_line(&mut self, line: &[u8]) {
        if keys::is_blank(line) {
            return;
        }
        self.key(keys::client_key(line));
    }

    /// One counted line whose client key is `key`.
    fn key(&mut self, key: &[u8]) {
        self.total += 1;
        if key.len() > LONG_KEY_BYTES {
            self.long.insert(key_digest(key), key);
        } else if let Some(ip) = keys::parse_canonical_ipv4(key) {
            self.ipv4.insert(ip);
        } else if let Some(ip) = ipv6::parse_canonical_ipv6(key) {
            self.ipv6.insert(ip);
        } else {
            self.other.insert(key);
        }
    }

    /// Adds the keys to the job's, and gives this part's own lines and distinct keys.
    fn into_job(mut self, job: &mut JobKeys) -> FileCounts {
        let distinct = self.ipv4.len() + self.ipv6.len() + self.other.len() + self.long.len();
        let (keys, counts) = job.ipv4.parts();
        self.ipv4.append_to(keys, counts);
        job.ipv4.settle();
        let (keys, counts) = job.ipv6.parts();
        self.ipv6.append_to(keys, counts);
        job.ipv6.settle();
        job.other.absorb(self.other);
        job.long.absorb(self.long);
        FileCounts {
            total: self.total,
            ip: distinct,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spanning_line_keeps_only_its_key() {
        let mut line = SpanningLine::default();
        line.feed(b"203.0.113.7 -");
        line.feed(b" -");
        for _ in 0..1000 {
            line.feed(&[b'x'; 10_000]);
        }
        assert!(line.key_closed);
        assert_eq!(line.key, b"203.0.113.7");
        assert!(line.key.capacity() < 64 * 1024, "{}", line.key.capacity());
    }

    #[test]
    fn spanning_line_separator_split_across_feeds() {
        for split in 0..=6 {
            let text = b"ab - -cd";
            let mut line = SpanningLine::default();
            line.feed(&text[..split]);
            line.feed(&text[split..]);
            assert_eq!(line.key, b"ab", "split at {split}");
        }
        let mut line = SpanningLine::default();
        line.feed(b"x -");
        line.feed(b" y,z");
        assert_eq!(line.key, b"x - y");
    }

    /// The key a spanning line fed in `pieces` is counted under.
    fn spanning_key(pieces: &[&[u8]]) -> (KeyCounts, DistinctKeys) {
        let mut counter = Counter::new(true, None);
        let mut line = SpanningLine::default();
        for piece in pieces {
            line.feed(piece);
            assert!(line.key.len() <= KEPT_KEY_BYTES, "{}", line.key.len());
        }
        line.finish(&mut counter);
        let mut job = JobKeys::new(true);
        let counts = counter.into_job(&mut job);
        assert_eq!(counts, FileCounts { total: 1, ip: 1 });
        let (keys, counts) = job.finish();
        (counts.unwrap(), keys)
    }

    #[test]
    fn spanning_long_key_is_digested_as_a_whole_key_would_be() {
        let mut key: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 23) as u8).collect();
        key[4000] = b'-';
        for (line, expected) in [
            ([&key[..], b" - - rest\r"].concat(), &key[..]),
            ([&key[..], b",x - -"].concat(), &key[..]),
            ([&key[..], b"\r"].concat(), &key[..]),
            ([&key[..], b" -"].concat(), &[&key[..], b" -"].concat()[..]),
            (
                key[..LONG_KEY_BYTES + 1].to_vec(),
                &key[..LONG_KEY_BYTES + 1],
            ),
        ] {
            for piece in [1, 2, 3, 4, 5, 7, 64, 333, 10_000] {
                let pieces: Vec<&[u8]> = line.chunks(piece).collect();
                let (counts, keys) = spanning_key(&pieces);
                assert_eq!(keys.long, [key_digest(expected)], "piece {piece}");
                assert_eq!(counts.long_shown, [expected[..32].to_vec()]);
                assert!(keys.other.is_empty());
            }
        }
        // At the threshold a key is still kept byte for byte.
        let short = &key[..LONG_KEY_BYTES];
        let line = [short, b" - - x"].concat();
        for piece in [1, 3, 100, 1000] {
            let pieces: Vec<&[u8]> = line.chunks(piece).collect();
            let (_, keys) = spanning_key(&pieces);
            assert_eq!(keys.other, [short.to_vec()], "piece {piece}");
            assert!(keys.long.is_empty());
        }
    }

    #[test]
    fn spanning_blank_line_is_not_counted() {
        let mut counter = Counter::new(false, None);
        let mut line = SpanningLine::default();
        line.feed(b"   ");
        line.feed(b"\t\r");
        line.finish(&mut counter);
        assert_eq!(counter.total, 0);
    }
}
