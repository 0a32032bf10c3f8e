//! End-to-end tests that a `supervisor run logcount` stays small whatever the shape of its
//! input: a single line of 2 GiB (a sparse file of NULs, which costs no disk) and a gzip bomb
//! (1 GiB of zeros in ~1 MB), each one line and so one client key of the whole line. A worker
//! keeps no more of a line than its key's first bytes and a running digest, so the whole
//! process tree must stay far below the input's size.
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::Trial;

/// The bound on the process tree's memory: the supervisor and its workers together.
const TREE_LIMIT_KIB: u64 = 256 * 1024;

/// Long enough for 2 GiB scanned by 2 workers on a loaded machine, in a debug build.
const TIMEOUT: Duration = Duration::from_secs(300);

/// `VmHWM` (peak resident set) of `pid` in KiB, if it is still there to ask.
fn peak_rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// `pid` and all its live descendants.
fn tree_of(pid: i32) -> Vec<i32> {
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        tree.extend(live_children_of(tree[next]));
        next += 1;
    }
    tree
}

/// The largest peak RSS of any child this process has waited for, and their descendants the
/// children waited for (`getrusage(RUSAGE_CHILDREN)`), in KiB: exact, whenever the peak came.
fn children_max_rss_kib() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0, |usage| usage.max_rss() as u64)
}

/// Runs `supervisor run logcount DIR --workers 2 --format json EXTRA...` and checks its output and that
/// the process tree's memory stayed under [`TREE_LIMIT_KIB`].
///
/// Two measures, because each alone has a gap. Every 5 ms the test reads `VmHWM` (the kernel's
/// peak RSS of a process, which only grows) of the supervisor and each of its descendants, and
/// keeps the last value seen per pid; their sum bounds the tree's memory at any moment (the
/// sum of peaks is at least the peak of the sum). Pool workers live until the run ends, well
/// after their job's peak, so a poll sees it; a peak in a process's very last moments could be
/// missed, so the check also takes `getrusage(RUSAGE_CHILDREN)`'s `ru_maxrss` after the run,
/// which the kernel keeps exactly for every process this test (and, through it, the
/// supervisor) reaped: no single process may have peaked above the bound either.
fn count_within_bound(dir: &Path, extra: &[&str], expected: &str) -> TestResult {
    let mut args = vec![
        "run",
        "logcount",
        path_str(dir),
        "--workers",
        "2",
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let running = start(&args);
    let supervisor = running.pid();
    let deadline = Instant::now() + TIMEOUT;
    let mut peaks: BTreeMap<i32, u64> = BTreeMap::new();
    while is_alive(supervisor) && Instant::now() < deadline {
        for pid in tree_of(supervisor) {
            if let Some(kib) = peak_rss_kib(pid) {
                let peak = peaks.entry(pid).or_insert(0);
                *peak = (*peak).max(kib);
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    let finished = running.finish(Duration::from_secs(10))?;
    finished.expect_success_printing(expected)?;
    check!(
        peaks.len() >= 3,
        "saw only {peaks:?}: not the supervisor and 2 workers"
    );
    let tree_kib: u64 = peaks.values().sum();
    let max_kib = children_max_rss_kib();
    eprintln!(
        "peak RSS: tree {} KiB (per process: {peaks:?}); largest reaped process {max_kib} KiB; {:?}",
        tree_kib, finished.elapsed
    );
    check!(
        tree_kib < TREE_LIMIT_KIB,
        "the process tree peaked at {tree_kib} KiB: {peaks:?}"
    );
    check!(
        max_kib < TREE_LIMIT_KIB,
        "a process peaked at {max_kib} KiB"
    );
    Ok(())
}

/// One line of 2 GiB of NULs, no newline: one request, one (long) client key. Scanned through
/// mapped windows (the default `--max-attempts` allows a retry, so the first attempt maps), or
/// with `read(2)` when `extra` is `--max-attempts 1`.
fn a_two_gib_line(extra: &'static [&'static str]) -> impl FnOnce() -> TestResult {
    move || {
        let dir = tempfile::tempdir()?;
        let file = fs::File::create(dir.path().join("zeros.log"))?;
        // Sparse: no block is written, reads see zeros.
        file.set_len(2 << 30)?;
        count_within_bound(
            dir.path(),
            extra,
            "{\"files\": {\"zeros.log\": {\"total\": 1, \"ip\": 1}}, \
             \"all\": {\"total\": 1, \"ip\": 1}, \"errors\": {}}\n",
        )
    }
}

/// 1 GiB of zeros gzipped (~1 MB on disk), then a short line: two requests, two keys.
fn a_gzip_bomb_is_counted_in_bounded_memory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = fs::File::create(dir.path().join("bomb.log.gz"))?;
    let mut encoder = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        encoder.write_all(&zeros)?;
    }
    encoder.write_all(b"\n203.0.113.9 - - [x]\n")?;
    encoder.finish()?.flush()?;
    let size = fs::metadata(dir.path().join("bomb.log.gz"))?.len();
    check!(size < 4 << 20, "the gzip bomb is {size} bytes");
    count_within_bound(
        dir.path(),
        &[],
        "{\"files\": {\"bomb.log.gz\": {\"total\": 2, \"ip\": 2}}, \
         \"all\": {\"total\": 2, \"ip\": 2}, \"errors\": {}}\n",
    )
}

fn main() -> std::process::ExitCode {
    run_trials(vec![
        Trial::test(
            "a_two_gib_line_is_counted_in_bounded_memory_mapped",
            a_two_gib_line(&[]),
        ),
        Trial::test(
            "a_two_gib_line_is_counted_in_bounded_memory_read",
            a_two_gib_line(&["--max-attempts", "1"]),
        ),
        Trial::test(
            "a_gzip_bomb_is_counted_in_bounded_memory",
            a_gzip_bomb_is_counted_in_bounded_memory,
        ),
    ])
}
