#!/usr/bin/env python3
"""Runs ipc_bench and its Python multiprocessing counterparts side by side and
prints the ratios.

Usage: compare.py [--only AREA]...   (run from anywhere inside the repository)

Each side prints `name value unit` lines. A figure in `us` (or `ns`, `ms`) is a
time, lower is better; any other unit (`per_s`, ...) is a rate, higher is
better. "x python" is how many times better herd is than Python on the same
name; "x baseline" compares a herd figure with the raw baseline measured in the
same run, herd / baseline (for a time, 1.0 means as fast as the raw syscalls;
for a rate, 0.5 means half the raw rate).
"""

import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
AREAS = ["process", "pipe", "queue", "sync", "manager"]
TIME_UNITS = {"ns", "us", "ms", "s"}
# herd figure -> raw baseline measured in the same run.
BASELINES = {
    "pipe_roundtrip_us": "raw_socketpair_roundtrip_us",
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


def run_rust(areas):
    cmd = ["cargo", "run", "--quiet", "--release", "--example", "ipc_bench", "--", *areas]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return parse(out.stdout)


def run_python(areas):
    figures = {}
    for area in areas:
        script = HERE / "python" / f"{area}.py"
        if script.exists():
            out = subprocess.run([sys.executable, str(script)], check=True,
                                 capture_output=True, text=True)
            figures.update(parse(out.stdout))
    return figures


def better_ratio(herd, other, unit):
    """How many times better `herd` is than `other`."""
    if unit in TIME_UNITS:
        return other / herd if herd else float("inf")
    return herd / other if other else float("inf")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=AREAS,
                        help="run only this area (repeatable)")
    args = parser.parse_args()
    areas = args.only or [a for a in AREAS if (HERE / f"{a}.rs").exists()]
    rust = run_rust(areas)
    python = run_python(areas)
    print(f"{'name':40} {'herd':>12} {'python':>12} {'x python':>9} {'x baseline':>11}")
    for name, (value, unit) in rust.items():
        py = python.get(name)
        py_text = f"{py[0]:12.3f}" if py else f"{'-':>12}"
        vs_py = f"{better_ratio(value, py[0], unit):9.2f}" if py else f"{'-':>9}"
        base = BASELINES.get(name)
        if base in rust:
            vs_base = f"{value / rust[base][0]:11.2f}"
        else:
            vs_base = f"{'-':>11}"
        print(f"{name:40} {value:12.3f} {py_text} {vs_py} {vs_base}  {unit}")


if __name__ == "__main__":
    main()
