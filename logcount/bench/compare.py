#!/usr/bin/env python3
"""logcount benchmark: side by side in one run, on N files x M lines (default 8 x
1,000,000, ~1.2 GB, page-cached) with 2 workers:
  - logcount (`supervisor run logcount DIR --workers W --format json`: the real worker pool),
  - the Python ProcessPoolExecutor counter (bench/logcount.py), and
  - `wc -l` on the same files (through xargs when the names would not fit one command line);
then, for the default shape, one 1.2 GB file (the N files concatenated) with 1 and with 2
workers. Prints one figure a line (`name value unit`) and the ratios against the targets;
checks that logcount and Python print the same JSON. Each timing is the best of --repeat runs
(the machine is shared).

--shape picks the input (its --files, --lines and --distinct; any of them given overrides it):
  big:   8 files x 1,000,000 lines, 100,000 clients (~1.2 GB; the default)
  many:  1,000 files x 10,000 lines, clients drawn from 10,000,000 (~1.5 GB, ~5.5M distinct)
  tiny:  50,000 files x 10 lines, 100,000 clients (~75 MB)

usage: compare.py [--shape big|many|tiny] [--dir /tmp/herd-logcount-bench-SHAPE] [--files N]
                  [--lines M] [--distinct K] [--seed 1] [--workers 2] [--repeat 7]
                  [--python-repeat 2] [--supervisor PATH] [--nice -10]
                  [--cache as-read|appended|as-is]
Without --supervisor, builds and times $CARGO_TARGET_DIR/release/supervisor (default target/).
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIME = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
# Set from --nice: every timed command (wc, Python, logcount alike) runs at this priority, so
# that other work on a shared machine disturbs the comparison less.
PRIORITY = []


def built_supervisor():
    """Builds the `supervisor` binary (release) and gives its path."""
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "-p", "herd-cli", "--bin", "supervisor"],
        cwd=ROOT, check=True,
    )
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "supervisor")


def cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd):
    """(wall seconds, peak RSS in MB of the largest process or None, stdout bytes, CPU seconds
    of the command and every process it waited for)."""
    with tempfile.NamedTemporaryFile("r") as rss_file:
        full = PRIORITY + ([TIME, "-f", "%M", "-o", rss_file.name] if TIME else []) + cmd
        cpu_before = cpu_of_children()
        start = time.perf_counter()
        result = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wall = time.perf_counter() - start
        cpu = cpu_of_children() - cpu_before
        if result.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.decode()[-500:]}")
        rss = None
        if TIME:
            text = rss_file.read().strip().splitlines()
            rss = int(text[-1]) / 1024 if text and text[-1].isdigit() else None
    return wall, rss, result.stdout, cpu


def best(cmds, repeat):
    """Runs the commands round-robin `repeat` times (so that a burst of load from other
    processes on this shared machine hits all of them alike) and returns, for each, the best
    wall time, the peak RSS and the first run's stdout."""
    runs = [[] for _ in cmds]
    for _ in range(repeat):
        for index, cmd in enumerate(cmds):
            runs[index].append(run(cmd))
    return [
        (
            min(r[0] for r in rs),
            max((r[1] for r in rs if r[1] is not None), default=None),
            rs[0][2],
            min(r[3] for r in rs),
        )
        for rs in runs
    ]


def prepare_cache(paths, state):
    """Puts the files in the page cache in a known state. Which state matters to a mapped scan:
    the kernel maps a 2 MiB folio of page cache with one page-table entry and a 4 KiB page with
    one each, and the per-page work (faults, rmap, teardown) is most of the kernel's share.
      as-read:  drop the files' cached pages, then read them sequentially: the cache as reading
                logs from disk leaves it (readahead fills it with large folios).
      appended: rewrite each file 4 KiB at a time, as a logger appending to it does: 4 KiB pages,
                the costliest state for a mapped scan.
      as-is:    leave the cache as it is (e.g. as gen-logs' 1 MiB writes left it).
    Every program timed reads the same cached files. See BENCHMARKS.md, "page-cache state"."""
    for path in paths:
        if state == "appended":
            with open(path, "rb") as source, open(path + ".appending", "wb", buffering=0) as out:
                while block := source.read(4096):
                    out.write(block)
            os.replace(path + ".appending", path)
        with open(path, "rb") as f:
            if state == "as-read":
                os.fsync(f.fileno())
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            while f.read(1 << 24):
                pass


SHAPES = {
    "big": (8, 1_000_000, 100_000),
    "many": (1_000, 10_000, 10_000_000),
    "tiny": (50_000, 10, 100_000),
}


def wc_command(files_dir, paths):
    """`wc -l` over the files: their names as arguments, or through xargs when they would not
    fit one command line (as a shell user would count 50,000 files)."""
    if sum(len(p) + 1 for p in paths) < 1 << 20:
        return ["wc", "-l"] + paths
    return ["sh", "-c", 'find "$1" -maxdepth 1 -type f -print0 | xargs -0 wc -l', "sh", files_dir]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=sorted(SHAPES), default="big")
    parser.add_argument("--dir")
    parser.add_argument("--files", type=int)
    parser.add_argument("--lines", type=int)
    parser.add_argument("--distinct", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--python-repeat", type=int, default=2)
    parser.add_argument("--nice", type=int, help="run every timed command under `nice -n N` (negative needs root)")
    parser.add_argument("--supervisor", help="the `supervisor` binary to time (default: build it)")
    parser.add_argument(
        "--cache", choices=["as-read", "appended", "as-is"], default="as-read",
        help="page-cache state of the input (see prepare_cache): as reading it from disk leaves "
        "it (default), as a logger appending 4 KiB at a time leaves it, or as it is",
    )
    args = parser.parse_args()
    files, lines, distinct = SHAPES[args.shape]
    args.files = args.files or files
    args.lines = args.lines or lines
    args.distinct = args.distinct or distinct
    args.dir = args.dir or (
        "/tmp/herd-logcount-bench" if args.shape == "big" else f"/tmp/herd-logcount-bench-{args.shape}"
    )
    # The 1-vs-2-workers check on one file of all the lines is about the big files' shape.
    single = args.shape == "big"
    if args.nice is not None:
        PRIORITY[:] = ["nice", "-n", str(args.nice)]

    supervisor = args.supervisor or built_supervisor()
    files_dir = os.path.join(args.dir, "files")
    single_dir = os.path.join(args.dir, "single")
    stamp = f"{args.files} {args.lines} {args.distinct} {args.seed}\n"
    stamp_path = os.path.join(args.dir, ".params")
    if not os.path.exists(stamp_path) or open(stamp_path).read() != stamp:
        shutil.rmtree(args.dir, ignore_errors=True)
        subprocess.run(
            [supervisor, "gen-logs", files_dir, "--files", str(args.files), "--lines", str(args.lines),
             "--distinct", str(args.distinct), "--seed", str(args.seed)],
            check=True,
        )
        os.makedirs(single_dir)
        if single:
            with open(os.path.join(single_dir, "all.log"), "wb") as out:
                for name in sorted(os.listdir(files_dir)):
                    with open(os.path.join(files_dir, name), "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 24)
        with open(stamp_path, "w") as f:
            f.write(stamp)
    paths = sorted(os.path.join(files_dir, n) for n in os.listdir(files_dir))
    size = sum(os.path.getsize(p) for p in paths)
    prepare_cache(paths + ([os.path.join(single_dir, "all.log")] if single else []), args.cache)

    w = str(args.workers)

    def logcount(directory, workers):
        return [supervisor, "run", "logcount", directory, "--workers", workers, "--format", "json"]

    python = [sys.executable, os.path.join(HERE, "logcount.py"), files_dir, "--workers", w]
    (py_wall, py_rss, py_out, py_cpu), = best([python], args.python_repeat)
    (wc_wall, wc_rss, _, wc_cpu), (lc_wall, lc_rss, lc_out, lc_cpu) = best(
        [wc_command(files_dir, paths), logcount(files_dir, w)], args.repeat
    )
    if single:
        (one_wall, one_rss, one_out, one_cpu), (two_wall, two_rss, two_out, two_cpu) = best(
            [logcount(single_dir, "1"), logcount(single_dir, w)], args.repeat
        )
        if one_out != two_out:
            sys.exit("1 and 2 workers disagree on the single file")

    if lc_out != py_out:
        sys.exit(f"logcount and Python disagree:\n{lc_out[:300]}\n{py_out[:300]}")

    print(f"logcount_runner {supervisor}")
    print(f"priority {' '.join(PRIORITY) or 'default'}")
    print(f"shape {args.shape} ({args.files} files x {args.lines} lines, clients drawn from {args.distinct})")
    print(f"page_cache {args.cache}")
    print(f"input_bytes {size} B")
    print(f"input_files {len(paths)} files")
    figures = [
        ("wc_l", wc_wall, wc_rss, wc_cpu),
        ("logcount", lc_wall, lc_rss, lc_cpu),
        ("python_pool", py_wall, py_rss, py_cpu),
    ]
    if single:
        figures += [
            ("logcount_single_file_1_worker", one_wall, one_rss, one_cpu),
            (f"logcount_single_file_{w}_workers", two_wall, two_rss, two_cpu),
        ]
    for name, wall, rss, cpu in figures:
        print(f"{name}_wall {wall:.3f} s")
        print(f"{name}_cpu {cpu:.3f} s")
        if rss is not None:
            print(f"{name}_peak_rss {rss:.1f} MB")
    print(f"logcount_throughput {size / lc_wall / 1e9:.2f} GB/s")
    ratios = [
        ("python_over_logcount", py_wall / lc_wall, ">= 20"),
        ("python_over_logcount_cpu", py_cpu / lc_cpu, "none: CPU seconds, less sensitive to other load"),
        ("logcount_over_wc_l", lc_wall / wc_wall, "<= 1.5"),
    ]
    if single:
        ratios.append(("single_file_1_over_2_workers", one_wall / two_wall, ">= 1.7"))
    for name, value, target in ratios:
        print(f"{name} {value:.2f} x (target {target})")
    print("outputs: logcount == python (byte for byte)")


if __name__ == "__main__":
    main()
