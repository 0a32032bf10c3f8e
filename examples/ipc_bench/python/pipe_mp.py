"""Python multiprocessing counterpart of ipc_bench's pipe area.

A parent sends an int to a forked echo child over multiprocessing.Pipe and
waits for it to come back; the best of many short batches (as ipc_bench
does), in microseconds per round trip, printed as `pipe_roundtrip_us VALUE us`.
"""

import multiprocessing as mp
import statistics
import time

ROUND_TRIPS = 3_000
BATCHES = 21


def echo(conn, parent_end):
    # The forked child inherits the parent's end too; close it so the parent
    # closing its copy reaches us as EOFError.
    parent_end.close()
    try:
        while True:
            conn.send(conn.recv())
    except EOFError:
        pass


def batch():
    parent, child_end = mp.Pipe()
    child = mp.Process(target=echo, args=(child_end, parent))
    child.start()
    child_end.close()
    started = time.perf_counter()
    for i in range(ROUND_TRIPS):
        parent.send(i)
        if parent.recv() != i:
            raise SystemExit("pipe echoed the wrong value")
    elapsed = time.perf_counter() - started
    parent.close()
    child.join()
    return elapsed * 1e6 / ROUND_TRIPS


def main():
    mp.set_start_method("fork")
    figures = [batch() for _ in range(BATCHES)]
    # The median, as the Rust side reports (round trips are bimodal: same core or cross-core).
    print(f"pipe_roundtrip_us {statistics.median(figures):.3f} us")


if __name__ == "__main__":
    main()
