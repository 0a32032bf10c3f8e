#!/usr/bin/env python3
"""The logcount counter in Python: requests and distinct client keys per access log, one file per
task on a concurrent.futures.ProcessPoolExecutor. Same semantics and same JSON as logcount,
so the benchmark compares like with like and checks that both agree.

usage: logcount.py DIR [--workers N]
"""
import argparse
import gzip
import json
import os
import stat
import sys
from concurrent.futures import ProcessPoolExecutor

WHITESPACE = b" \t\n\x0c\r"  # ASCII whitespace as logcount defines it (vertical tab is data)


def count_file(path):
    """(total, set of keys) for one file, or an error string."""
    total = 0
    keys = set()
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as lines:
            for line in lines:
                if line.endswith(b"\n"):
                    line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not line.strip(WHITESPACE):
                    continue
                total += 1
                keys.add(line.split(b" - -", 1)[0].split(b",", 1)[0])
    except (OSError, EOFError) as error:
        return str(error)
    return total, keys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if not os.path.isdir(args.dir):
        print(f"{args.dir}: no such directory", file=sys.stderr)
        return 2
    files, errors, every_key = {}, {}, set()
    names = []
    for entry in os.scandir(args.dir):
        if entry.name.startswith("."):
            continue
        try:
            if stat.S_ISREG(os.stat(entry.path).st_mode):  # follows symlinks
                names.append(entry.name)
        except OSError as error:  # a broken symlink, a vanished file
            errors[entry.name] = str(error)
    names.sort()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        paths = [os.path.join(args.dir, name) for name in names]
        for name, result in zip(names, pool.map(count_file, paths)):
            if isinstance(result, str):
                errors[name] = result
                continue
            total, keys = result
            files[name] = {"total": total, "ip": len(keys)}
            every_key |= keys
    all_total = sum(counts["total"] for counts in files.values())
    print(json.dumps({"files": files, "all": {"total": all_total, "ip": len(every_key)}, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
