#!/usr/bin/env python3
"""Runs the herd benchmark (`cargo run --release --example ipc_bench`) and its Python multiprocessing
counterparts (`python/<area>_mp.py`), then prints each figure side by side with the ratio.

    python3 examples/ipc_bench/compare.py [--only AREA]

Figures are `name value unit` lines. For times (ns, us, ms, s) lower is better and the speed-up is
python / rust; for rates (anything else, e.g. msg/s) higher is better and the speed-up is rust / python.
Names only one side prints (baselines, say) are listed without a ratio.
"""
import argparse
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TIME_UNITS = {"ns", "us", "ms", "s"}
# herd figure -> raw baseline measured by ipc_bench in the same run; printed as herd / baseline.
BASELINES = {
    "value_atomic_incr_per_s": "raw_atomic_incr_per_s",
    "pipe_roundtrip_us": "raw_socketpair_roundtrip_us",
    "manager_dict_atomic_incr_per_s": "raw_unix_roundtrip_per_s",
    # The locked increment against an ideal server speaking the same four-round-trip protocol.
    "manager_dict_locked_incr_per_s": "raw_4rt_locked_incr_per_s",
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


def run(cmd):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="AREA", help="one area: process, pipe, queue, sync, manager, pool")
    args = parser.parse_args()

    bench = ["cargo", "run", "--quiet", "--release", "--example", "ipc_bench", "--"]
    if args.only:
        bench += ["--only", args.only]
    rust = parse(run(bench))

    # python/<area>_mp.py: the suffix keeps a script from shadowing a standard module (queue.py would).
    scripts = sorted((HERE / "python").glob("*_mp.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removesuffix("_mp") == args.only]
    python = {}
    for script in scripts:
        python.update(parse(run([sys.executable, str(script)])))

    width = max((len(name) for name in {**rust, **python}), default=10)
    print(f"{'name':<{width}}  {'rust':>12}  {'python':>12}  unit   speed-up")
    for name in list(rust) + [n for n in python if n not in rust]:
        r = rust.get(name)
        p = python.get(name)
        unit = (r or p)[1]
        r_text = f"{r[0]:12.4f}" if r else f"{'-':>12}"
        p_text = f"{p[0]:12.4f}" if p else f"{'-':>12}"
        ratio = ""
        if r and p and r[0] > 0 and p[0] > 0:
            speedup = p[0] / r[0] if unit in TIME_UNITS else r[0] / p[0]
            ratio = f"{speedup:8.2f}x herd"
        print(f"{name:<{width}}  {r_text}  {p_text}  {unit:<5}  {ratio}")

    for name, baseline in BASELINES.items():
        if name in rust and baseline in rust and rust[baseline][0] > 0:
            print(f"{name} / {baseline}: {rust[name][0] / rust[baseline][0]:.2f}")


if __name__ == "__main__":
    main()
