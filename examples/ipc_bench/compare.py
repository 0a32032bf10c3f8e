"""Runs ipc_bench (release) and the Python multiprocessing counterparts; prints the ratios.

Usage: python3 examples/ipc_bench/compare.py [--only AREA]
Figures are `name value unit` lines; a ratio is herd / Python for names both print (for a time
per operation, where lower is better, Python / herd), so > 1 means herd is faster.
"""
import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def figures(command):
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    result = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3:
            result[parts[0]] = (float(parts[1]), parts[2])
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="one area (queue, pipe, process, sync, manager)")
    args = parser.parse_args()
    only = ["--only", args.only] if args.only else []
    subprocess.run(["cargo", "build", "--release", "--example", "ipc_bench"], cwd=ROOT, check=True)
    herd = figures(["cargo", "run", "-q", "--release", "--example", "ipc_bench", "--"] + only)
    scripts = [HERE / "python" / f"{args.only}.py"] if args.only else sorted((HERE / "python").glob("*.py"))
    python = {}
    for script in scripts:
        if script.exists():
            python.update(figures([sys.executable, str(script)]))
    print(f"{'name':40} {'herd':>14} {'python':>14} {'ratio':>8}")
    for name, (value, unit) in herd.items():
        if name in python:
            theirs = python[name][0]
            lower_is_better = unit.endswith("s") and not unit.endswith("/s")
            ratio = (theirs / value if lower_is_better else value / theirs) if value and theirs else float("nan")
            print(f"{name:40} {value:>14.0f} {theirs:>14.0f} {ratio:>7.1f}x  ({unit})")
        else:
            print(f"{name:40} {value:>14.0f} {'':>14} {'':>8}  ({unit})")


if __name__ == "__main__":
    main()
