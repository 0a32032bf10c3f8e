#!/usr/bin/env python3
"""Differential check: logcount (`supervisor run logcount` on its worker pool, random tiny
--chunk-bytes so that chunk boundaries fall everywhere) and the Python counter (bench/logcount.py) must print the same
JSON, byte for byte, for directories of random files built from the rules' edge cases
(canonical and non-canonical quads, separators, CR, whitespace, invalid UTF-8, gzip).

usage: crosscheck.py [--trials 200]
"""
import argparse
import gzip
import os
import random
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FRAGMENTS = [
    b"1.2.3.4", b"01.2.3.4", b"255.255.255.255", b"256.0.0.1", b"0.0.0.0", b"1.2.3.45",
    b"10.0.0.1, 10.0.0.2", b" - -", b" -", b"-", b",", b" ", b"\t", b"\r", b"\n", b"\n",
    b"\r\n", b"x", b"\xff", b"::1", b"\x0b", b"\x0c", b"123.45.67.89 - - [24/Nov/2026] \"GET /\"",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    subprocess.run(
        ["cargo", "build", "--quiet", "--release", "-p", "herd-cli", "--bin", "supervisor"],
        cwd=ROOT, check=True,
    )
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    supervisor = os.path.join(target, "release", "supervisor")
    mismatches = 0
    with tempfile.TemporaryDirectory() as scratch:
        for trial in range(args.trials):
            rnd = random.Random(trial)
            d = os.path.join(scratch, str(trial))
            os.makedirs(d)
            for index in range(rnd.randint(0, 4)):
                data = b"".join(rnd.choice(FRAGMENTS) for _ in range(rnd.randint(0, 400)))
                name = f"f{index}.log"
                if rnd.random() < 0.3:
                    name += ".gz"
                    data = gzip.compress(data)
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            python = subprocess.run([sys.executable, os.path.join(HERE, "logcount.py"), d, "--workers", "2"], capture_output=True).stdout
            rust = subprocess.run(
                [supervisor, "run", "logcount", d, "--format", "json", "--workers", "2",
                 "--chunk-bytes", str(rnd.randint(1, 50))],
                capture_output=True,
            ).stdout
            if python != rust:
                mismatches += 1
                print(f"trial {trial}:\n  python {python[:300]!r}\n  rust   {rust[:300]!r}")
            shutil.rmtree(d)
    print(f"{args.trials - mismatches} passed, {mismatches} failed")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
