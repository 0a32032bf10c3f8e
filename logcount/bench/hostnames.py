#!/usr/bin/env python3
"""Logs whose client keys are host names, all distinct: the worst case for the merge of
byte-string keys (every key is a string, none packs into an integer, no two chunks share one).

    python3 logcount/bench/hostnames.py DIR [--files 8] [--keys 5600000]
    python3 logcount/bench/hostnames.py --measure BINARY DIR [--top 3]

The first form writes FILES logs with KEYS lines in all, one per key (~47 bytes a line, 262 MB
for the default 5.6M keys), in a scrambled order. The second runs `BINARY run logcount DIR
--workers 2 --format json` and prints its wall time, the supervisor's own CPU time and peak RSS
(VmHWM, polled from /proc every 10 ms), and the largest peak RSS of any process of the run
(getrusage of the reaped children).
"""
import argparse
import os
import resource
import subprocess
import time


def generate(directory, files, keys):
    os.makedirs(directory, exist_ok=True)
    per_file = -(-keys // files)
    # A multiplier coprime with any key count that is not a multiple of its prime factor:
    # i -> i * M mod keys is then a permutation, scrambling the order of the keys.
    multiplier = 2654435761
    for index in range(files):
        lines = []
        for i in range(index * per_file, min(keys, (index + 1) * per_file)):
            n = (i * multiplier) % keys
            lines.append(
                f"client-{n:08d}.isp{n % 47}.example - - [04/Dec/2026]\n"
            )
        with open(os.path.join(directory, f"hosts-{index:03d}.log"), "w") as out:
            out.write("".join(lines))


def status_field(pid, field):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def measure(binary, directory, top):
    args = [binary, "run", "logcount", directory, "--workers", "2", "--format", "json"]
    if top:
        args += ["--top", str(top)]
    started = time.monotonic()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = cpu = 0
    while child.poll() is None:
        peak = max(peak, status_field(child.pid, "VmHWM") or 0)
        cpu = cpu_seconds(child.pid) or cpu
        time.sleep(0.01)
    wall = time.monotonic() - started
    output = child.stdout.read().decode()
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(output[-200:].strip())
    print(f"wall {wall:.2f} s; supervisor cpu {cpu:.2f} s, peak rss {peak / 1024:.0f} MiB; "
          f"largest process peak rss {largest / 1024:.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--keys", type=int, default=5_600_000)
    parser.add_argument("--measure", metavar="BINARY")
    parser.add_argument("--top", type=int)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.dir, args.top)
    else:
        generate(args.dir, args.files, args.keys)


if __name__ == "__main__":
    main()
