#!/usr/bin/env python3
"""What scaling out costs on one host: the 8 x 1M-line benchmark set (compare.py's, page-cached)
counted by one `supervisor run logcount DIR`, against the same set split into N shards run one
after another (`--shard I/N --partial`) plus `supervisor merge` of their partials. The shards
and the merge together must cost at most 1.3x the single-host run (the overhead of splitting
and merging); prints the figures, the ratio, each partial's size, and checks that the merged
output equals the single-host output byte for byte.

usage: shards.py [--dir /tmp/herd-logcount-bench] [--files 8] [--lines 1000000]
                 [--distinct 100000] [--seed 1] [--shards 4] [--workers 2] [--repeat 5]
                 [--supervisor PATH] [--cache as-read|appended|as-is]
Without --supervisor, builds and times $CARGO_TARGET_DIR/release/supervisor (default target/).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import compare


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/tmp/herd-logcount-bench")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--supervisor", help="the `supervisor` binary to time (default: build it)")
    parser.add_argument("--cache", choices=["as-read", "appended", "as-is"], default="as-read")
    args = parser.parse_args()

    supervisor = args.supervisor or compare.built_supervisor()
    files_dir = os.path.join(args.dir, "shard-files")
    stamp = f"{args.files} {args.lines} {args.distinct} {args.seed}\n"
    stamp_path = os.path.join(args.dir, ".shard-params")
    if not os.path.exists(stamp_path) or open(stamp_path).read() != stamp:
        shutil.rmtree(files_dir, ignore_errors=True)
        os.makedirs(args.dir, exist_ok=True)
        subprocess.run(
            [supervisor, "gen-logs", files_dir, "--files", str(args.files), "--lines",
             str(args.lines), "--distinct", str(args.distinct), "--seed", str(args.seed)],
            check=True, stdout=subprocess.DEVNULL,
        )
        with open(stamp_path, "w") as f:
            f.write(stamp)
    paths = sorted(os.path.join(files_dir, n) for n in os.listdir(files_dir))
    size = sum(os.path.getsize(p) for p in paths)
    compare.prepare_cache(paths, args.cache)

    w = str(args.workers)
    single = [supervisor, "run", "logcount", files_dir, "-j", w, "--format", "json"]
    single_walls, shard_walls, merge_walls = [], [], []
    single_out = merged_out = None
    partial_sizes = []
    # Alternate the single run and the sharded one, so that load from others hits both alike.
    for _ in range(args.repeat):
        wall, _, out, _ = compare.run(single)
        single_walls.append(wall)
        single_out = single_out or out
        with tempfile.TemporaryDirectory(dir=args.dir) as parts:
            total = 0.0
            for index in range(args.shards):
                out_path = os.path.join(parts, f"part-{index}")
                wall, _, _, _ = compare.run(
                    [supervisor, "run", "logcount", files_dir, "-j", w, "--shard",
                     f"{index}/{args.shards}", "--partial", out_path]
                )
                total += wall
            shard_walls.append(total)
            partial_sizes = [os.path.getsize(os.path.join(parts, f"part-{i}"))
                             for i in range(args.shards)]
            wall, rss, out, _ = compare.run([supervisor, "merge", parts, "--format", "json"])
            merge_walls.append(wall)
            merged_out = merged_out or out

    if merged_out != single_out:
        sys.exit(f"the merge and the single-host run disagree:\n{merged_out[:300]}\n{single_out[:300]}")

    single_best, shards_best, merge_best = min(single_walls), min(shard_walls), min(merge_walls)
    print(f"logcount_runner {supervisor}")
    print(f"page_cache {args.cache}")
    print(f"input_bytes {size} B")
    print(f"input_files {len(paths)} files")
    print(f"single_host_wall {single_best:.3f} s")
    print(f"shards_{args.shards}_sequential_wall {shards_best:.3f} s")
    print(f"merge_wall {merge_best:.3f} s")
    for index, bytes_ in enumerate(partial_sizes):
        print(f"partial_{index}_size {bytes_} B")
    ratio = (shards_best + merge_best) / single_best
    print(f"shards_plus_merge_over_single {ratio:.2f} x (target <= 1.3)")
    print("outputs: merge == single host (byte for byte)")


if __name__ == "__main__":
    main()
