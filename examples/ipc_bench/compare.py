"""Runs ipc_bench (Rust, release) and the Python multiprocessing counterparts, prints ratios.

Usage: python3 examples/ipc_bench/compare.py [--only AREA]

Figures are `name value unit` lines. For each name both sides print, the ratio is how many times
better herd is (higher is better for per-second figures, lower for microseconds). BASELINES pairs a
herd figure with a raw baseline measured in the same run (the ratio says how close herd gets).
"""
import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# herd figure -> raw baseline measured by ipc_bench in the same run.
BASELINES = {
    "value_atomic_incr_per_s": "raw_atomic_incr_per_s",
}


def parse(text):
    figures = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            try:
                figures[parts[0]] = (float(parts[1]), parts[2])
            except ValueError:
                pass
    return figures


def higher_is_better(name):
    return not name.endswith("_us")


def ratio(name, ours, theirs):
    if ours == 0 or theirs == 0:
        return float("nan")
    return ours / theirs if higher_is_better(name) else theirs / ours


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="run one area (process, pipe, queue, sync, manager)")
    args = parser.parse_args()
    cmd = ["cargo", "run", "--quiet", "--release", "--example", "ipc_bench", "--"]
    if args.only:
        cmd += ["--only", args.only]
    rust = parse(subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    python = {}
    scripts = sorted((HERE / "python").glob("*.py"))
    for script in scripts:
        if args.only and script.stem != args.only:
            continue
        out = subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True)
        python.update(parse(out.stdout))
    print(f"{'name':36} {'herd':>16} {'python':>16} {'ratio':>8}")
    for name, (value, unit) in rust.items():
        if name in python:
            theirs = python[name][0]
            print(f"{name:36} {value:16.1f} {theirs:16.1f} {ratio(name, value, theirs):7.1f}x  ({unit})")
        else:
            print(f"{name:36} {value:16.1f} {'-':>16} {'':8}  ({unit})")
    for name, baseline in BASELINES.items():
        if name in rust and baseline in rust:
            r = ratio(name, rust[name][0], rust[baseline][0])
            print(f"{name} / {baseline}: {r:.2f}")


if __name__ == "__main__":
    main()
