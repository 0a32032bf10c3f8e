//! Tests of logcount's semantics end to end in one process: plan, count every chunk, merge,
//! compared with the counting rules (see `keys.rs`) and with a naive reference counter.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sha2::Digest as _;

use super::mapped::MapConsent;
use super::scan::{count_chunk_with_buffer, ReadMethod};
use super::*;

/// The issue's rules, written as plainly as possible and independently of the engine.
fn reference(data: &[u8]) -> (u64, BTreeSet<Vec<u8>>) {
    let mut total = 0;
    let mut keys = BTreeSet::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r'))
        {
            continue;
        }
        total += 1;
        let ident = line
            .windows(4)
            .position(|w| w == b" - -")
            .unwrap_or(line.len());
        let key = &line[..ident];
        let comma = key.iter().position(|&b| b == b',').unwrap_or(key.len());
        let key = &key[..comma];
        keys.insert(if key.len() > 256 {
            long_key_entry(&sha2::Sha256::digest(key).into())
        } else {
            key.to_vec()
        });
    }
    (total, keys)
}

/// How a key longer than 256 bytes, counted by its SHA-256 digest, stands in a set of keys:
/// longer than any key kept byte for byte, so the two kinds never meet.
fn long_key_entry(digest: &[u8; 32]) -> Vec<u8> {
    [&[0xFF; 257][..], digest].concat()
}

/// Distinct keys as byte strings (packed keys written back as their canonical text). Also
/// checks that no key is in two lists, which would make the distinct count wrong.
fn key_bytes(keys: &DistinctKeys) -> BTreeSet<Vec<u8>> {
    let all: Vec<Vec<u8>> = keys
        .ipv4
        .iter()
        .map(|&ip| std::net::Ipv4Addr::from(ip).to_string().into_bytes())
        .chain(
            keys.ipv6
                .iter()
                .map(|&ip| super::ipv6::format_ipv6(ip).into_bytes()),
        )
        .chain(keys.other.iter().cloned())
        .chain(keys.long.iter().map(long_key_entry))
        .collect();
    let set: BTreeSet<Vec<u8>> = all.iter().cloned().collect();
    assert_eq!(set.len() as u64, keys.len(), "a key in two lists");
    set
}

/// Consent to mapped scans in these tests: every file they map is a temporary file of their own,
/// and none is truncated while a scan runs (the truncation test cuts the file between scans).
#[allow(unsafe_code)] // the test side of the mapped-scan contract
fn map_consent() -> MapConsent {
    // SAFETY: see above: no file is cut while it is mapped, so no read can fault.
    unsafe { MapConsent::new() }
}

/// Counts `data` (as a file) cut at `cuts`, reading through a buffer of `buffer` bytes, and
/// again mapping windows of `buffer` bytes: both ways must agree exactly.
fn count_cut(data: &[u8], cuts: &[u64], buffer: usize) -> (u64, BTreeSet<Vec<u8>>) {
    let read = count_cut_with(data, cuts, ReadMethod::Read, buffer);
    let mapped = count_cut_with(data, cuts, ReadMethod::Map(map_consent()), buffer);
    assert_eq!(read, mapped, "read and mapped scans disagree");
    read
}

fn count_cut_with(
    data: &[u8],
    cuts: &[u64],
    method: ReadMethod,
    buffer: usize,
) -> (u64, BTreeSet<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    fs::write(&path, data).unwrap();
    let mut bounds: Vec<u64> = cuts.iter().map(|&c| c.min(data.len() as u64)).collect();
    bounds.extend([0, data.len() as u64]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut total = 0;
    let mut keys = BTreeSet::new();
    for range in bounds.windows(2) {
        let job = one_part(
            &path,
            ChunkSource::Range {
                start: range[0],
                end: range[1],
            },
        );
        let counts = count_chunk_with_buffer(&job, method, buffer);
        total += counted_total(&counts);
        keys.extend(key_bytes(&counts.keys));
    }
    (total, keys)
}

/// A job of one part, file 0.
fn one_part(path: &Path, source: ChunkSource) -> ChunkJob {
    ChunkJob {
        parts: vec![JobPart {
            path: path.to_path_buf(),
            file_index: 0,
            source,
        }],
        per_key_counts: false,
        may_map: false,
    }
}

/// The lines of a job's parts, every one of which must have been counted.
fn counted_total(counts: &ChunkCounts) -> u64 {
    counts
        .parts
        .iter()
        .map(|part| part.outcome.as_ref().expect("counted").total)
        .sum()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, data).unwrap();
    path
}

fn count(dir: &Path) -> Report {
    count_dir(dir, &Options::default()).unwrap()
}

fn one_file(data: &[u8]) -> FileCounts {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "f.log", data);
    let report = count(dir.path());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.files["f.log"]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

const TRICKY: &[u8] = concat!(
    "1.2.3.4 - - [a]\n",
    "01.2.3.4 - - [b]\n",
    "1.2.3.4\r\n",
    "1.2.3.4, 9.9.9.9 - - [c]\n",
    " 1.2.3.4 - - [d]\n",
    "\u{1}\u{2} - - [e]\n",
    "\u{1}\u{2}\r\r\n",
    "\r\n",
    " \t \u{c}\n",
    "\u{b}\n",
    "host - frank [f]\n",
    ", - - [g]\n",
    "1.2.3.4 - x",
)
.as_bytes();

#[test]
fn tricky_lines_follow_the_rules() {
    let (total, keys) = reference(TRICKY);
    let expected: BTreeSet<Vec<u8>> = [
        &b"1.2.3.4"[..],
        b"01.2.3.4",
        b" 1.2.3.4",
        b"\x01\x02",
        b"\x01\x02\r",
        b"\x0b",
        b"host - frank [f]",
        b"",
        b"1.2.3.4 - x",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    assert_eq!(keys, expected, "the reference itself");
    assert_eq!(total, 11);
    assert_eq!(one_file(TRICKY), FileCounts { total: 11, ip: 9 });
    assert_eq!(count_cut(TRICKY, &[], 4096), (total, keys));
}

#[test]
fn one_trailing_cr_is_removed() {
    assert_eq!(one_file(b"a\r\na\n").ip, 1);
    assert_eq!(one_file(b"a\r\r\na\n").ip, 2);
    assert_eq!(one_file(b"1.2.3.4\r\n1.2.3.4 - -\n").ip, 1);
}

#[test]
fn blank_lines_are_skipped() {
    assert_eq!(
        one_file(b"\n\n \t\r\n\x0c\na\n   "),
        FileCounts { total: 1, ip: 1 }
    );
    // Vertical tab is not ASCII whitespace in the WHATWG/Rust sense: it is data.
    assert_eq!(one_file(b"\x0b\n"), FileCounts { total: 1, ip: 1 });
}

#[test]
fn last_line_without_newline_counts() {
    assert_eq!(one_file(b"a\nb"), FileCounts { total: 2, ip: 2 });
    assert_eq!(one_file(b"b"), FileCounts { total: 1, ip: 1 });
    assert_eq!(one_file(b""), FileCounts { total: 0, ip: 0 });
}

#[test]
fn invalid_utf8_is_data() {
    assert_eq!(
        one_file(b"\xff - - x\n\xfe - - x\n\xff, y\n"),
        FileCounts { total: 3, ip: 2 }
    );
}

#[test]
fn keys_are_byte_exact() {
    // Leading zeros, spaces and case make different keys; a quad and the same quad as a whole
    // line are one key.
    let data = b"1.2.3.4 - -\n01.2.3.4 - -\n1.2.3.4 \n1.2.3.4\nAB - -\nab - -\n1.2.3.4,x\n";
    assert_eq!(one_file(data), FileCounts { total: 7, ip: 5 });
}

#[test]
fn forwarded_for_prefix_keys_the_client() {
    let data =
        b"203.0.113.7, 10.0.0.1 - - [x]\n203.0.113.7 - - [y]\n2001:db8::1, 10.0.0.1 - - [z]\n";
    assert_eq!(one_file(data), FileCounts { total: 3, ip: 2 });
}

#[test]
fn chunk_cut_at_every_boundary_equals_whole() {
    let whole = reference(TRICKY);
    for cut in 0..=TRICKY.len() as u64 {
        for buffer in [1, 3, 7, 64, 4096] {
            assert_eq!(
                count_cut(TRICKY, &[cut], buffer),
                whole,
                "cut {cut} buffer {buffer}"
            );
        }
    }
}

/// Line material that hits the rules' edges: quads canonical and not, separators, CRs,
/// whitespace, invalid UTF-8.
fn fragment() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(vec![
        &b"1.2.3.4"[..],
        b"01.2.3.4",
        b"255.255.255.255",
        b"256.0.0.1",
        b"0.0.0.0",
        b"1.2.3.45",
        b" - -",
        b" -",
        b"-",
        b",",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\n",
        b"\r\n",
        b"x",
        b"\xff",
        b"::1",
        b"::",
        b"2001:db8::1",
        b"2001:0db8::1",
        b"2001:db8:0:0:0:0:0:1",
        b"fe80::",
        b":",
        // Keys around the 256-byte threshold beyond which a key is counted by its digest.
        &[b'k'; 130],
        &[b'w'; 255],
        b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn chunking_never_changes_the_counts(
        fragments in prop::collection::vec(fragment(), 0..60),
        cuts in prop::collection::vec(0u64..400, 0..8),
        buffer in 1usize..40,
    ) {
        let data = fragments.concat();
        prop_assert_eq!(count_cut(&data, &cuts, buffer), reference(&data));
    }
}

#[test]
fn long_lines_work_with_a_small_buffer() {
    let mut data = b"9.9.9.9 - - ".to_vec();
    data.extend(std::iter::repeat_n(b'x', 10 << 20));
    data.extend_from_slice(b"\n");
    data.extend(std::iter::repeat_n(b'k', 3 << 20)); // a 3 MB key: the whole line
    data.extend_from_slice(b"\r\n1.2.3.4 - -\n");
    let whole = reference(&data);
    assert_eq!(whole.0, 3);
    assert_eq!(count_cut(&data, &[], 1 << 16), whole);
    assert_eq!(
        count_cut(&data, &[5, 7 << 20, (10 << 20) + 13, 12 << 20], 1 << 16),
        whole
    );
    assert_eq!(one_file(&data), FileCounts { total: 3, ip: 3 });
}

#[test]
fn long_keys_count_exactly_by_digest_and_show_their_first_bytes() {
    // Keys of 256 bytes are kept whole; longer ones differing only in their last byte, or only
    // in length, stay distinct; the same long key in two files (whole lines in one, a line
    // across read buffers in the other) is one key.
    let base = vec![b'h'; 300];
    let mut data = Vec::new();
    for key in [
        &base[..256],
        &base[..257],
        &base[..],
        &[&base[..299], b"i"].concat(),
    ] {
        for _ in 0..2 {
            data.extend_from_slice(key);
            data.extend_from_slice(b" - - [x]\n");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.log", &data);
    let mut long_line = base.clone();
    long_line.extend(std::iter::repeat_n(b'h', 3 << 20));
    long_line.extend_from_slice(b",x\n");
    write(
        dir.path(),
        "b.log",
        &[&base[..], b"\n", &long_line].concat(),
    );
    let options = Options {
        top: Some(2),
        ..Options::default()
    };
    let report = count_dir(dir.path(), &options).unwrap();
    assert_eq!(report.files["a.log"], FileCounts { total: 8, ip: 4 });
    assert_eq!(report.files["b.log"], FileCounts { total: 2, ip: 2 });
    assert_eq!(report.all, FileCounts { total: 10, ip: 5 });
    let top = report.top.unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(&base).into();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(top[0].key, format!("{}\\...sha256:{hex}", "h".repeat(32)));
    assert_eq!(top[0].count, 3);
    assert_eq!(count_cut(&data, &[7, 700], 100), reference(&data));
}

#[test]
fn distinct_across_files_is_a_union() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.log", b"1.1.1.1 - -\n2.2.2.2 - -\nx - -\n");
    write(
        dir.path(),
        "b.log",
        b"2.2.2.2 - -\n3.3.3.3 - -\nx - -\ny - -\n",
    );
    let report = count(dir.path());
    assert_eq!(report.files["a.log"], FileCounts { total: 3, ip: 3 });
    assert_eq!(report.files["b.log"], FileCounts { total: 4, ip: 4 });
    assert_eq!(report.all, FileCounts { total: 7, ip: 5 });
}

#[test]
fn big_file_in_many_chunks_equals_one_chunk() {
    let dir = tempfile::tempdir().unwrap();
    crate::genlogs::generate(
        dir.path(),
        &crate::genlogs::GenOptions {
            files: 1,
            lines: 20_000,
            distinct: 5_000,
            seed: 3,
        },
    )
    .unwrap();
    let whole = count(dir.path());
    let options = Options {
        chunk_bytes: 10_007,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    assert!(plan.jobs.len() > 100, "{} jobs", plan.jobs.len());
    let chunked = count_dir(dir.path(), &options).unwrap();
    assert_eq!(chunked, whole);
    let data = fs::read(dir.path().join("access-000.log")).unwrap();
    let (total, keys) = reference(&data);
    assert_eq!(
        whole.all,
        FileCounts {
            total,
            ip: keys.len() as u64
        }
    );
}

#[test]
fn sample_files_in_the_repo() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../files");
    let report = count(&dir);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.files["access-a.log"], FileCounts { total: 7, ip: 4 });
    assert_eq!(report.files["access-b.log"], FileCounts { total: 5, ip: 4 });
    assert_eq!(
        report.files["access-c.log.gz"],
        FileCounts { total: 4, ip: 3 }
    );
    assert_eq!(report.all, FileCounts { total: 16, ip: 7 });
}

#[test]
fn gzip_is_read_decompressed_as_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"1.1.1.1 - -\n\n2.2.2.2, 3.3.3.3 - -\nz";
    write(dir.path(), "plain.log", data);
    write(dir.path(), "packed.log.gz", &gzip(data));
    // Two gzip members back to back decompress as their concatenation (as `gzip -d` does).
    let mut members = gzip(b"1.1.1.1 - -\n");
    members.extend(gzip(b"4.4.4.4 - -\n"));
    write(dir.path(), "multi.gz", &members);
    let options = Options {
        chunk_bytes: 5,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    let gz_jobs = plan
        .jobs
        .iter()
        .flat_map(|j| &j.parts)
        .filter(|part| part.source == ChunkSource::Gzip)
        .count();
    assert_eq!(gz_jobs, 2);
    let report = count_dir(dir.path(), &options).unwrap();
    assert_eq!(report.files["plain.log"], FileCounts { total: 3, ip: 3 });
    assert_eq!(report.files["packed.log.gz"], report.files["plain.log"]);
    assert_eq!(report.files["multi.gz"], FileCounts { total: 2, ip: 2 });
}

#[test]
fn unreadable_files_are_errors_and_the_rest_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.log", b"1.1.1.1 - -\n");
    write(dir.path(), "bad.gz", b"this is not gzip\n");
    let mut truncated = gzip(&b"1.1.1.1 - - [x]\n".repeat(1000));
    truncated.truncate(truncated.len() / 2);
    write(dir.path(), "truncated.gz", &truncated);
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("dangling.log"))
        .unwrap();
    let report = count(dir.path());
    assert_eq!(report.files.keys().collect::<Vec<_>>(), ["good.log"]);
    assert_eq!(report.all, FileCounts { total: 1, ip: 1 });
    assert!(report.has_errors());
    assert!(
        report.errors["bad.gz"].starts_with("invalid gzip"),
        "{:?}",
        report.errors
    );
    assert!(
        report.errors["truncated.gz"].starts_with("invalid gzip"),
        "{:?}",
        report.errors
    );
    assert!(
        report.errors["dangling.log"].starts_with("broken symlink"),
        "{:?}",
        report.errors
    );
}

#[test]
fn file_vanishing_after_planning_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gone.log", b"1.1.1.1 - -\n");
    write(dir.path(), "kept.log", b"1.1.1.1 - -\n");
    let plan = plan(dir.path(), &Options::default()).unwrap();
    fs::remove_file(path).unwrap();
    let mut merger = Merger::new(&plan);
    for job in &plan.jobs {
        merger.add(count_chunk(job));
    }
    let report = merger.finish();
    assert!(
        report.errors["gone.log"].contains("No such file"),
        "{:?}",
        report.errors
    );
    assert_eq!(report.files.len(), 1);
}

#[test]
fn a_file_replaced_by_a_fifo_after_planning_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "swapped.log", b"1.1.1.1 - -\n");
    write(dir.path(), "kept.log", b"1.1.1.1 - -\n");
    let plan = plan(dir.path(), &Options::default()).unwrap();
    fs::remove_file(&path).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // No writer ever comes: a blocking open would wait for ever, here and in the mapped path.
    for method in [ReadMethod::Read, ReadMethod::Map(map_consent())] {
        let mut merger = Merger::new(&plan);
        for job in &plan.jobs {
            merger.add(count_chunk_with_buffer(job, method, 4096));
        }
        let report = merger.finish();
        assert!(
            report.errors["swapped.log"].contains("not a regular file any more: it is a FIFO"),
            "{:?}",
            report.errors
        );
        assert_eq!(report.files.len(), 1);
    }
    // A device in its place is refused the same way.
    let job = one_part(
        Path::new("/dev/zero"),
        ChunkSource::Range { start: 0, end: 10 },
    );
    let error = count_chunk(&job).parts[0].outcome.clone().unwrap_err();
    assert!(error.contains("character device"), "{error:?}");
}

#[test]
fn unreadable_permissions_are_an_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "secret.log", b"1.1.1.1 - -\n");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    let report = count(dir.path());
    if nix::unistd::geteuid().is_root() {
        // root reads anything: the file is simply counted.
        assert_eq!(report.files["secret.log"].total, 1);
    } else {
        assert!(
            report.errors["secret.log"].contains("Permission denied"),
            "{:?}",
            report.errors
        );
    }
}

#[test]
fn a_failed_chunk_makes_the_whole_file_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.log", &b"1.1.1.1 - -\n".repeat(100));
    let plan = plan(
        dir.path(),
        &Options {
            chunk_bytes: 100,
            ..Options::default()
        },
    )
    .unwrap();
    let mut merger = Merger::new(&plan);
    merger.add(count_chunk(&plan.jobs[0]));
    merger.add_failure(0, "job failed after 3 attempts: worker killed".into());
    let report = merger.finish();
    assert!(report.files.is_empty());
    assert_eq!(
        report.errors["a.log"],
        "job failed after 3 attempts: worker killed"
    );
    assert_eq!(report.all, FileCounts::default());
}

#[test]
fn a_file_whose_chunks_did_not_all_come_in_is_an_error_not_a_partial_count() {
    // A run stopped early (drain, restart intensity) hands the merger only some chunks.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.log", &b"1.1.1.1 - -\n".repeat(100));
    write(dir.path(), "b.log", b"2.2.2.2 - -\n");
    let options = Options {
        chunk_bytes: 300,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    let a_chunks = plan
        .jobs
        .iter()
        .flat_map(ChunkJob::file_indices)
        .filter(|&i| i == 0)
        .count();
    assert!(a_chunks > 2, "{a_chunks}");
    let mut merger = Merger::new(&plan);
    for job in plan.jobs.iter().skip(1) {
        merger.add(count_chunk(job));
    }
    let report = merger.finish();
    assert_eq!(
        report.errors["a.log"],
        "not counted: the run stopped with 1 of its chunks uncounted"
    );
    assert_eq!(report.files.keys().collect::<Vec<_>>(), ["b.log"]);
    assert_eq!(report.all, FileCounts { total: 1, ip: 1 });
}

#[test]
fn a_file_failing_after_all_its_chunks_leaves_the_overall_union() {
    let dir = tempfile::tempdir().unwrap();
    // a's byte-string key, like its packed ones, must leave the union with it.
    write(dir.path(), "a.log", b"1.1.1.1 - -\nhost-a - -\n");
    write(dir.path(), "b.log", b"2.2.2.2 - -\n1.1.1.1 - -\n");
    // Files cut into chunks: each chunk is a job of its own, which can fail on its own.
    let options = Options {
        chunk_bytes: 12,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    assert_eq!(plan.jobs.len(), 4);
    let mut merger = Merger::new(&plan);
    for job in &plan.jobs {
        merger.add(count_chunk(job));
    }
    merger.add_failure(0, "failed late".into());
    let report = merger.finish();
    assert_eq!(report.errors["a.log"], "failed late");
    assert_eq!(report.all, FileCounts { total: 2, ip: 2 });
}

#[test]
fn a_batch_that_failed_makes_each_of_its_files_an_error_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.log", b"1.1.1.1 - -\n3.3.3.3 - -\n");
    write(dir.path(), "b.log", b"2.2.2.2 - -\n1.1.1.1 - -\n");
    write(dir.path(), "c.log", &b"4.4.4.4 - -\n".repeat(10));
    // Each file weighs 16 KiB more than its bytes: a and b share a batch, c is in another.
    let options = Options {
        chunk_bytes: 40_000,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    let batches: Vec<Vec<usize>> = plan
        .jobs
        .iter()
        .map(|job| job.file_indices().collect())
        .collect();
    assert_eq!(batches, [vec![0, 1], vec![2]]);
    let mut merger = Merger::new(&plan);
    merger.add_job_failure(&plan.jobs[0], "not counted: worker killed");
    for job in &plan.jobs[1..] {
        merger.add(count_chunk(job));
    }
    // A file counted whole keeps its counts: a job has a result or a failure, never both.
    merger.add_failure(2, "ignored".into());
    let report = merger.finish();
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert_eq!(report.errors["a.log"], "not counted: worker killed");
    assert_eq!(report.errors["b.log"], "not counted: worker killed");
    assert_eq!(report.files["c.log"], FileCounts { total: 10, ip: 1 });
    assert_eq!(report.all, FileCounts { total: 10, ip: 1 });
}

#[test]
fn bad_dir_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = plan(&missing, &Options::default()).unwrap_err();
    assert!(matches!(err, PlanError::Missing(_)));
    assert!(
        err.to_string()
            .contains("missing: no such file or directory"),
        "{err}"
    );
    let file = write(dir.path(), "plain", b"x");
    let err = plan(&file, &Options::default()).unwrap_err();
    assert!(matches!(err, PlanError::NotADirectory(_)));
    assert!(err.to_string().contains("plain: not a directory"), "{err}");
    let zero = Options {
        chunk_bytes: 0,
        ..Options::default()
    };
    assert!(matches!(
        plan(dir.path(), &zero),
        Err(PlanError::ZeroChunkSize)
    ));
}

#[test]
fn empty_dir_gives_an_empty_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = count(dir.path());
    assert_eq!(report, Report::default());
    assert_eq!(
        report.render(Format::Json),
        "{\"files\": {}, \"all\": {\"total\": 0, \"ip\": 0}, \"errors\": {}}\n"
    );
}

#[test]
fn listing_rules_dots_symlinks_subdirs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.log", b"1.1.1.1 - -\n");
    write(d, ".hidden.log", b"9.9.9.9 - -\n");
    fs::create_dir(d.join("sub")).unwrap();
    write(&d.join("sub"), "b.log", b"2.2.2.2 - -\n");
    write(&d.join("sub"), ".c.log", b"3.3.3.3 - -\n");
    fs::create_dir(d.join(".git")).unwrap();
    write(&d.join(".git"), "d.log", b"4.4.4.4 - -\n");
    std::os::unix::fs::symlink(d.join("a.log"), d.join("link.log")).unwrap();
    std::os::unix::fs::symlink(d, d.join("sub").join("loop")).unwrap();
    let flat = count(d);
    assert_eq!(flat.files.keys().collect::<Vec<_>>(), ["a.log", "link.log"]);
    assert_eq!(flat.all, FileCounts { total: 2, ip: 1 });
    let deep = count_dir(
        d,
        &Options {
            recursive: true,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(
        deep.files.keys().collect::<Vec<_>>(),
        ["a.log", "link.log", "sub/b.log"]
    );
    assert_eq!(deep.all, FileCounts { total: 3, ip: 2 });
}

#[test]
fn non_utf8_file_names_travel_and_are_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.log");
    fs::write(dir.path().join(name), b"1.1.1.1 - -\n").unwrap();
    let plan = plan(dir.path(), &Options::default()).unwrap();
    assert_eq!(plan.files[0].name, "caf\\xE9.log");
    let bytes = postcard::to_stdvec(&plan.jobs[0]).unwrap();
    let job: ChunkJob = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(job, plan.jobs[0]);
    assert_eq!(counted_total(&count_chunk(&job)), 1);
}

#[test]
fn results_are_small_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    crate::genlogs::generate(
        dir.path(),
        &crate::genlogs::GenOptions {
            files: 1,
            lines: 50_000,
            distinct: 2_000,
            seed: 9,
        },
    )
    .unwrap();
    let plan = plan(dir.path(), &Options::default()).unwrap();
    let counts = count_chunk(&plan.jobs[0]);
    let bytes = postcard::to_stdvec(&counts).unwrap();
    assert_eq!(postcard::from_bytes::<ChunkCounts>(&bytes).unwrap(), counts);
    // ~2,000 keys from a ~7 MB chunk: a few bytes per key, nothing per line.
    assert!(counts.keys.len() > 1_900);
    assert!(
        bytes.len() < 8 * counts.keys.len() as usize,
        "{} bytes",
        bytes.len()
    );
    assert!(counts.counts.is_none());
}

#[test]
fn top_keys_sum_over_chunks_and_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.log",
        b"1.1.1.1 - -\n2.2.2.2 - -\n1.1.1.1 - -\nb - -\n",
    );
    write(
        dir.path(),
        "b.log",
        b"2.2.2.2 - -\n2.2.2.2 - -\nb - -\na - -\n1.1.1.1\n",
    );
    let options = Options {
        top: Some(3),
        chunk_bytes: 7,
        ..Options::default()
    };
    let report = count_dir(dir.path(), &options).unwrap();
    let top: Vec<(&str, u64)> = report
        .top
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| (t.key.as_str(), t.count))
        .collect();
    // 1.1.1.1 and 2.2.2.2 tie at 3 (the whole-line `1.1.1.1` is the same key): bytewise order.
    assert_eq!(top, [("1.1.1.1", 3), ("2.2.2.2", 3), ("b", 2)]);
    let json = report.render(Format::Json);
    assert!(json.ends_with(
        ", \"top\": [{\"key\": \"1.1.1.1\", \"count\": 3}, {\"key\": \"2.2.2.2\", \"count\": 3}, {\"key\": \"b\", \"count\": 2}]}\n"
    ), "{json}");
}

#[test]
fn ipv6_spellings_are_distinct_keys_and_the_canonical_one_is_packed() {
    let dir = tempfile::tempdir().unwrap();
    let lines: &[&[u8]] = &[
        b"2001:db8::1 - - [a]",
        b"2001:0db8::1 - - [b]",
        b"2001:db8:0:0:0:0:0:1 - - [c]",
        b"2001:DB8::1 - - [d]",
        b"2001:db8::1, 10.0.0.1 - - [e]",
        b"::1 - - [f]",
        b"2001:db8::1\r",
    ];
    write(
        dir.path(),
        "a.log",
        &[lines.join(&b'\n'), b"\n".to_vec()].concat(),
    );
    let plan = plan(
        dir.path(),
        &Options {
            top: Some(2),
            ..Options::default()
        },
    )
    .unwrap();
    let counts = count_chunk(&plan.jobs[0]);
    assert_eq!(
        counts.keys.ipv6,
        [1, 0x2001_0db8_0000_0000_0000_0000_0000_0001]
    );
    assert_eq!(counts.keys.other.len(), 3);
    assert_eq!(counts.counts.as_ref().unwrap().ipv6, [1, 3]);
    let mut merger = Merger::new(&plan);
    merger.add(counts);
    let report = merger.finish();
    assert_eq!(report.all, FileCounts { total: 7, ip: 5 });
    let top = &report.top.unwrap()[0];
    assert_eq!((top.key.as_str(), top.count), ("2001:db8::1", 3));
}

#[test]
fn renders_json_csv_and_table() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.log", b"1.1.1.1 - -\n2.2.2.2 - -\n");
    write(dir.path(), "a,1.log", b"1.1.1.1 - -\n");
    write(dir.path(), "bad.gz", b"plain text, not gzip\n");
    let report = count(dir.path());
    assert_eq!(
        report.render(Format::Json),
        "{\"files\": {\"a,1.log\": {\"total\": 1, \"ip\": 1}, \"b.log\": {\"total\": 2, \"ip\": 2}}, \
         \"all\": {\"total\": 3, \"ip\": 2}, \"errors\": {\"bad.gz\": \"invalid gzip: invalid gzip header\"}}\n"
    );
    assert_eq!(
        report.render(Format::Csv),
        "file,total,ip,error\n\"a,1.log\",1,1,\nb.log,2,2,\nbad.gz,,,invalid gzip: invalid gzip header\n,3,2,\n"
    );
    let table = report.render(Format::Table);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "file     requests  distinct clients");
    assert_eq!(lines[1], "a,1.log         1                 1");
    assert_eq!(lines[2], "b.log           2                 2");
    assert_eq!(lines[4], "TOTAL           3                 2");
    assert_eq!(
        lines[5],
        "(TOTAL distinct clients counts each client once over all files: not the sum of the rows)"
    );
    assert!(
        table.contains("errors:\n  bad.gz: invalid gzip: invalid gzip header\n"),
        "{table}"
    );
}

#[test]
fn a_file_truncated_after_planning_counts_what_is_left() {
    // Planned at full size, then cut short (logrotate's copytruncate): both ways count the
    // lines still there. The mapped scan clamps its windows to the size it finds, so it never
    // touches pages past the end (which would raise SIGBUS and kill this test process).
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    for i in 0..50_000u32 {
        writeln!(
            data,
            "10.0.{}.{} - - [x] \"GET / HTTP/1.1\" 200",
            i % 200,
            i % 250
        )
        .unwrap();
    }
    let path = write(dir.path(), "log", &data);
    let plan = plan(
        dir.path(),
        &Options {
            chunk_bytes: 300_000,
            ..Options::default()
        },
    )
    .unwrap();
    assert!(plan.jobs.len() > 4, "{} jobs", plan.jobs.len());
    for keep in [data.len() / 2 + 7, 100, 0] {
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(keep as u64).unwrap();
        let expected = reference(&data[..keep]);
        for method in [ReadMethod::Read, ReadMethod::Map(map_consent())] {
            let mut total = 0;
            let mut keys = BTreeSet::new();
            for job in &plan.jobs {
                let counts = count_chunk_with(job, method);
                total += counted_total(&counts);
                keys.extend(key_bytes(&counts.keys));
            }
            assert_eq!((total, keys), expected, "{method:?}, {keep} bytes left");
        }
    }
}

#[test]
fn results_merge_the_same_in_any_order() {
    // A file's chunks are merged as soon as its last one arrives: any arrival order (files
    // interleaved, reversed) gives the same report, with `--top` counts too.
    let dir = tempfile::tempdir().unwrap();
    for (name, seed) in [("a.log", 1u32), ("b.log", 2), ("c.log", 3)] {
        let mut data = Vec::new();
        for i in 0..3000u32 {
            let x = i.wrapping_mul(seed * 7919) % 500;
            writeln!(data, "10.{seed}.{}.{} - - [x]", x / 250, x % 250).unwrap();
            if i % 97 == 0 {
                writeln!(data, "host{x}, 1.1.1.1 - - [y]").unwrap();
            }
        }
        write(dir.path(), name, &data);
    }
    let options = Options {
        chunk_bytes: 4000,
        top: Some(5),
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    let outcomes: Vec<_> = plan.jobs.iter().map(count_chunk).collect();
    let in_order = count_dir(dir.path(), &options).unwrap();
    let orders: [Vec<usize>; 3] = [
        (0..outcomes.len()).rev().collect(),
        (0..outcomes.len())
            .step_by(2)
            .chain((1..outcomes.len()).step_by(2))
            .collect(),
        (0..outcomes.len())
            .map(|i| (i * 7) % outcomes.len())
            .collect(),
    ];
    assert!(
        outcomes.len() > 20 && outcomes.len() % 7 != 0,
        "{}",
        outcomes.len()
    );
    for order in orders {
        let mut merger = Merger::new(&plan);
        for &i in &order {
            merger.add(outcomes[i].clone());
        }
        assert_eq!(merger.finish(), in_order, "order {order:?}");
    }
    assert_eq!(in_order.files.len(), 3);
}

/// Small log texts of every kind of key (dotted quads, IPv6, host names, a long key, blank
/// lines, no final newline), different per `seed`.
fn small_log(seed: u64) -> Vec<u8> {
    let mut data = Vec::new();
    let lines = seed % 13;
    for line in 0..lines {
        let x = seed.wrapping_mul(2_654_435_761).wrapping_add(line * 40_503) % 5000;
        match (seed + line) % 7 {
            0 => writeln!(data, "10.0.{}.{} - - [x]", x / 250, x % 250),
            1 => writeln!(data, "2001:db8::{x:x} - - [x]"),
            2 => writeln!(data, "host-{x}.example, 10.0.0.1 - - [x]"),
            3 => writeln!(data, "   "),
            4 => writeln!(data, "{}{x} - - [x]", "k".repeat(300)),
            5 => writeln!(data, "10.1.0.{} - - [x]\r", x % 250),
            _ => write!(data, "192.0.2.{}", x % 250),
        }
        .unwrap();
        if (seed + line) % 7 == 6 && line + 1 < lines {
            data.push(b'\n');
        }
    }
    data
}

#[test]
fn thousands_of_small_files_in_one_job_are_each_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_keys = BTreeSet::new();
    let mut all_total = 0;
    let mut expected = std::collections::BTreeMap::new();
    for seed in 0..3000u64 {
        let data = small_log(seed);
        let name = format!("f{seed:05}.log");
        write(dir.path(), &name, &data);
        let (total, keys) = reference(&data);
        all_total += total;
        expected.insert(
            name,
            FileCounts {
                total,
                ip: keys.len() as u64,
            },
        );
        all_keys.extend(keys);
    }
    let options = Options {
        chunk_bytes: 1 << 30,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    assert_eq!(plan.jobs.len(), 1);
    assert_eq!(plan.jobs[0].parts.len(), 3000);
    let counts = count_chunk(&plan.jobs[0]);
    // The job's keys are the union of its files', each key once.
    assert_eq!(key_bytes(&counts.keys), all_keys);
    for method in [ReadMethod::Read, ReadMethod::Map(map_consent())] {
        let mut merger = Merger::new(&plan);
        merger.add(count_chunk_with(&plan.jobs[0], method));
        let report = merger.finish();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.files.len(), expected.len());
        for (name, counts) in &expected {
            assert_eq!(&report.files[name], counts, "{name}, {method:?}");
        }
        let all = FileCounts {
            total: all_total,
            ip: all_keys.len() as u64,
        };
        assert_eq!(report.all, all, "{method:?}");
    }
    // The default planning batches them too, and so does the small-chunk planning of tests.
    assert_eq!(count(dir.path()).files, expected);
    let small = count_dir(
        dir.path(),
        &Options {
            chunk_bytes: 100_000,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(small.files, expected);
    assert_eq!(small.all.ip, all_keys.len() as u64);
}

#[test]
fn unreadable_files_inside_a_batch_are_errors_and_the_others_exact() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut expected_keys = BTreeSet::new();
    let mut expected_total = 0;
    for seed in 0..200u64 {
        let data = small_log(seed);
        write(dir.path(), &format!("ok{seed:03}.log"), &data);
        let (total, keys) = reference(&data);
        expected_total += total;
        expected_keys.extend(keys);
    }
    // Each of these has a key no other file has: counted, it would show in the union.
    let unique = |name: &str| format!("{name}-only - - [x]\n").into_bytes();
    let gone = write(dir.path(), "gone.log", &unique("gone"));
    let fifo = write(dir.path(), "fifo.log", &unique("fifo"));
    let swapped_dir = write(dir.path(), "dir.log", &unique("dir"));
    let secret = write(dir.path(), "secret.log", &unique("secret"));
    let plan = plan(dir.path(), &Options::default()).unwrap();
    assert_eq!(plan.jobs.len(), 1, "one batch");
    // Between planning and counting: one vanishes, one becomes a FIFO (no writer: a
    // blocking open would hang), one a directory, one unreadable.
    fs::remove_file(&gone).unwrap();
    fs::remove_file(&fifo).unwrap();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    fs::remove_file(&swapped_dir).unwrap();
    fs::create_dir(&swapped_dir).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let root = nix::unistd::geteuid().is_root();
    for method in [ReadMethod::Read, ReadMethod::Map(map_consent())] {
        let mut merger = Merger::new(&plan);
        merger.add(count_chunk_with(&plan.jobs[0], method));
        let report = merger.finish();
        let errors = &report.errors;
        assert!(errors["gone.log"].contains("No such file"), "{errors:?}");
        assert!(errors["fifo.log"].contains("it is a FIFO"), "{errors:?}");
        assert!(
            errors["dir.log"].contains("Is a directory")
                || errors["dir.log"].contains("it is a directory"),
            "{errors:?}"
        );
        let mut keys = expected_keys.clone();
        let mut total = expected_total;
        if root {
            // root reads anything: the file is simply counted.
            assert_eq!(report.files["secret.log"], FileCounts { total: 1, ip: 1 });
            keys.insert(b"secret-only".to_vec());
            total += 1;
            assert_eq!(errors.len(), 3, "{errors:?}");
        } else {
            assert!(
                errors["secret.log"].contains("Permission denied"),
                "{errors:?}"
            );
            assert_eq!(errors.len(), 4, "{errors:?}");
        }
        for seed in 0..200u64 {
            let (total, keys) = reference(&small_log(seed));
            let counts = FileCounts {
                total,
                ip: keys.len() as u64,
            };
            assert_eq!(report.files[&format!("ok{seed:03}.log")], counts);
        }
        let all = FileCounts {
            total,
            ip: keys.len() as u64,
        };
        assert_eq!(report.all, all, "{method:?}");
    }
}

#[test]
fn non_utf8_names_inside_a_batch_travel_and_count() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    for (index, name) in [
        &b"caf\xe9.log"[..],
        b"\xff\xfe.log",
        b"plain.log",
        b"\\xFF\\xFE.log",
    ]
    .into_iter()
    .enumerate()
    {
        let data = format!("10.0.0.{index} - - x\n10.0.0.9 - - y\n").repeat(index + 1);
        fs::write(dir.path().join(std::ffi::OsStr::from_bytes(name)), data).unwrap();
    }
    let plan = plan(dir.path(), &Options::default()).unwrap();
    assert_eq!(plan.jobs.len(), 1);
    assert_eq!(plan.jobs[0].parts.len(), 4);
    let bytes = postcard::to_stdvec(&plan.jobs[0]).unwrap();
    let job: ChunkJob = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(job, plan.jobs[0]);
    let mut merger = Merger::new(&plan);
    merger.add(count_chunk(&job));
    let report = merger.finish();
    let files: Vec<(&str, u64)> = report
        .files
        .iter()
        .map(|(name, counts)| (name.as_str(), counts.total))
        .collect();
    assert_eq!(
        files,
        [
            ("\\\\xFF\\\\xFE.log", 8),
            ("\\xFF\\xFE.log", 4),
            ("caf\\xE9.log", 2),
            ("plain.log", 6)
        ]
    );
    assert_eq!(report.all, FileCounts { total: 20, ip: 5 });
}

#[test]
fn small_files_are_batched_by_weight_and_large_ones_cut() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.log", &[b'x'; 10]);
    write(dir.path(), "b.log", &[b'x'; 10]);
    write(dir.path(), "c.log", &vec![b'x'; 100_000]);
    write(dir.path(), "d.log.gz", &[b'x'; 2_000]);
    write(dir.path(), "e.log", &[b'x'; 10]);
    let options = Options {
        chunk_bytes: 40_000,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    let jobs: Vec<Vec<(usize, ChunkSource)>> = plan
        .jobs
        .iter()
        .map(|job| {
            job.parts
                .iter()
                .map(|part| (part.file_index, part.source))
                .collect()
        })
        .collect();
    let range = |start, end| ChunkSource::Range { start, end };
    assert_eq!(
        jobs,
        [
            // A file larger than a chunk is cut into equal chunks, one job each.
            vec![(2, range(0, 33_334))],
            vec![(2, range(33_334, 66_668))],
            vec![(2, range(66_668, 100_000))],
            // 16 KiB + 10 bytes each: two fit in 40,000.
            vec![(0, range(0, 10)), (1, range(0, 10))],
            // A .gz weighs 10 times its size: 20,000 + 16 KiB, alone.
            vec![(3, ChunkSource::Gzip)],
            vec![(4, range(0, 10))],
        ]
    );
    let mut recut = plan.clone();
    recut.recut(1 << 30);
    assert_eq!(recut.jobs.len(), 1);
    assert_eq!(recut.jobs[0].parts.len(), 5);
}

#[test]
fn batches_shrink_towards_the_end() {
    let dir = tempfile::tempdir().unwrap();
    for index in 0..400 {
        write(dir.path(), &format!("f{index:03}.log"), b"1.1.1.1 - -\n");
    }
    // Each file weighs 16 KiB + 12 bytes; a chunk holds 20 of them.
    let chunk_bytes = 20 * ((16 << 10) + 12);
    let options = Options {
        chunk_bytes,
        ..Options::default()
    };
    let plan = plan(dir.path(), &options).unwrap();
    let sizes: Vec<usize> = plan.jobs.iter().map(|job| job.parts.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 400);
    // Full chunks while more than half is left, then twice a chunk's share of what is left,
    // down to a quarter of a chunk (5 files): never growing again.
    assert_eq!(sizes[..10], [20; 10], "{sizes:?}");
    assert!(sizes.windows(2).all(|pair| pair[0] >= pair[1]), "{sizes:?}");
    assert!(*sizes.last().unwrap() <= 5, "{sizes:?}");
    assert!(sizes.len() < 35, "{sizes:?}");
    let report = count_dir(dir.path(), &options).unwrap();
    assert_eq!(report.files.len(), 400);
    assert_eq!(report.all, FileCounts { total: 400, ip: 1 });
}

/// Lists `dir` with a [`Lister`] `step` entries at a time into a [`GrowingPlan`], making up to
/// `eager` jobs after each step as free workers would ask for them, then the rest; counts every
/// job in process and merges as `supervisor run logcount` does.
fn count_while_listing(
    dir: &Path,
    chunk_bytes: Option<u64>,
    step: usize,
    eager: usize,
    top: Option<usize>,
) -> (Report, Plan) {
    let mut lister = Lister::new(&[Input::Path(dir.to_path_buf())], true).unwrap();
    let mut plan = GrowingPlan::new(top, chunk_bytes, 2);
    let mut merger = Merger::growing(top);
    let mut counted = 0;
    let mut count_new = |plan: &GrowingPlan, merger: &mut Merger, jobs: std::ops::Range<usize>| {
        merger.add_planned(plan.plan(), jobs.clone());
        for job in &plan.plan().jobs[jobs] {
            merger.add(count_chunk(job));
            counted += 1;
        }
    };
    while !lister.is_done() {
        plan.add_files(lister.list(step));
        for _ in 0..eager {
            let Some(job) = plan.plan_next() else { break };
            count_new(&plan, &mut merger, job..job + 1);
        }
    }
    let rest = plan.plan_rest(lister.errors());
    count_new(&plan, &mut merger, rest);
    assert_eq!(plan.unplanned().count(), 0);
    (merger.finish(), plan.plan().clone())
}

/// Every byte of every file of `plan` is in exactly one job: a file is whole in one batch, or
/// cut into chunks that cover it end to end.
fn assert_every_file_covered_once(plan: &Plan) {
    let mut ranges: Vec<Vec<(u64, u64)>> = vec![Vec::new(); plan.files.len()];
    for job in &plan.jobs {
        for part in &job.parts {
            let file = &plan.files[part.file_index];
            let range = match part.source {
                ChunkSource::Range { start, end } => (start, end),
                ChunkSource::Gzip => (0, file.len),
            };
            if job.parts.len() > 1 {
                assert_eq!(range, (0, file.len), "a batched file is whole");
            }
            ranges[part.file_index].push(range);
        }
    }
    for (file, mut ranges) in plan.files.iter().zip(ranges) {
        ranges.sort_unstable();
        let mut at = 0;
        for (start, end) in &ranges {
            assert_eq!(*start, at, "{}: {ranges:?}", file.name);
            at = *end;
        }
        assert_eq!(at, file.len, "{}: {ranges:?}", file.name);
        assert!(!ranges.is_empty(), "{} is in no job", file.name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// However the listing is stepped and however many jobs are made before it ends, the
    /// counts are those of the plan made after listing everything.
    #[test]
    fn a_plan_made_while_listing_counts_as_one_made_after(
        sizes in prop::collection::vec((0usize..400, any::<bool>()), 1..40),
        chunk_bytes in prop::option::of(1024u64..16_384),
        step in 1usize..50,
        eager in 0usize..4,
        top in prop::option::of(1usize..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        for (index, (lines, gzipped)) in sizes.iter().enumerate() {
            let text: String = (0..*lines)
                .map(|line| format!("10.0.{}.{} - - [x] \"GET / HTTP/1.1\" 200 1\n", index % 7, line % 97))
                .collect();
            let sub = if index % 3 == 0 { "sub/" } else { "" };
            if *gzipped {
                write(dir.path(), &format!("{sub}f{index}.log.gz"), &gzip(text.as_bytes()));
            } else {
                write(dir.path(), &format!("{sub}f{index}.log"), text.as_bytes());
            }
        }
        let options = Options {
            recursive: true,
            chunk_bytes: chunk_bytes.unwrap_or(DEFAULT_CHUNK_BYTES),
            top,
        };
        let expected = count_dir(dir.path(), &options).unwrap();
        let (report, plan) = count_while_listing(dir.path(), chunk_bytes, step, eager, top);
        prop_assert_eq!(report, expected);
        assert_every_file_covered_once(&plan);
    }
}

#[test]
fn large_files_wait_for_the_end_of_the_listing_and_are_cut_for_the_whole_input() {
    let dir = tempfile::tempdir().unwrap();
    let line = b"192.168.1.1 - - [x] \"GET / HTTP/1.1\" 200 1\n";
    // Listed in any order: two large files and twenty small ones.
    for index in 0..2 {
        write(dir.path(), &format!("big{index}.log"), &line.repeat(2_000));
    }
    for index in 0..20 {
        write(dir.path(), &format!("small{index}.log"), &line.repeat(3));
    }
    let chunk = 16 * 1024;
    let mut lister = Lister::new(&[Input::Path(dir.path().to_path_buf())], false).unwrap();
    let mut plan = GrowingPlan::new(None, Some(chunk), 2);
    while !lister.is_done() {
        plan.add_files(lister.list(1));
        while plan.plan_next().is_some() {}
    }
    // Before the end: only small files are in jobs, each whole.
    let early = plan.plan().jobs.len();
    assert!(early >= 1, "small files were batched while listing");
    for job in &plan.plan().jobs {
        for part in &job.parts {
            assert!(plan.plan().files[part.file_index].name.starts_with("small"));
        }
    }
    assert_eq!(plan.unplanned().count(), 2, "the large files wait");
    let rest = plan.plan_rest(lister.errors());
    let big_chunks = plan.plan().jobs[rest].len();
    let big_len = line.len() as u64 * 2_000;
    assert_eq!(big_chunks as u64, 2 * big_len.div_ceil(chunk));
    assert_every_file_covered_once(plan.plan());
}

#[test]
fn a_lister_in_steps_finds_what_inputs_finds_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("logs/deeper")).unwrap();
    write(d, "logs/a.log", b"1.1.1.1 - -\n");
    write(d, "logs/deeper/b.log", b"2.2.2.2 - -\n");
    write(d, "logs/.hidden", b"3.3.3.3 - -\n");
    write(d, "c.log", b"4.4.4.4 - -\n");
    std::os::unix::fs::symlink(d.join("missing"), d.join("logs/broken.log")).unwrap();
    // The same file named twice (directly, and inside a directory) is listed once.
    let inputs = [
        Input::Path(d.join("c.log")),
        Input::Path(d.join("logs")),
        Input::Path(d.to_path_buf()),
    ];
    for recursive in [false, true] {
        let at_once = Inputs::new(&inputs, recursive).unwrap();
        for step in [1, 2, 1000] {
            let mut lister = Lister::new(&inputs, recursive).unwrap();
            let mut files = Vec::new();
            while !lister.is_done() {
                files.extend(lister.list(step));
            }
            files.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(files, at_once.files(), "recursive {recursive}, step {step}");
            assert_eq!(lister.errors(), at_once.errors());
        }
    }
    let names: Vec<String> = Inputs::new(&inputs, false)
        .unwrap()
        .files()
        .iter()
        .map(|file| file.name.clone())
        .collect();
    let top = d.to_str().unwrap();
    assert_eq!(names, [format!("{top}/c.log"), format!("{top}/logs/a.log")]);
}

#[test]
fn a_lister_names_every_unusable_input_before_listing() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let error = Lister::new(&[Input::Path(gone), Input::Path(fifo)], false).unwrap_err();
    let each: Vec<String> = error.each().iter().map(ToString::to_string).collect();
    assert_eq!(each.len(), 2, "{each:?}");
    assert!(
        each[0].ends_with("gone: no such file or directory"),
        "{each:?}"
    );
    assert!(
        each[1].contains("fifo: not a regular file or directory"),
        "{each:?}"
    );
}
