#!/usr/bin/env python3
"""Python counterpart of ipc_bench's manager area: two processes increment one entry of a
multiprocessing.Manager dict under the manager's Lock (acquire, get, set, release), the usual
way to update shared state; and one process creates and drops dicts (each proxy increfs and
decrefs its object). Prints `manager_dict_locked_incr_per_s value per_s` and
`manager_dict_create_drop_per_s value per_s`."""

import multiprocessing as mp
import time

PROCESSES = 2
INCREMENTS = 3000
CREATE_DROPS = 1000


def worker(counts, lock, ready, go, n):
    with lock:
        counts[1] = counts[1] + 1
    ready.release()
    go.wait()
    for _ in range(n - 1):
        with lock:
            counts[1] = counts[1] + 1


def main():
    with mp.Manager() as manager:
        counts = manager.dict()
        counts[1] = 0
        lock = manager.Lock()
        ready = manager.Semaphore(0)
        go = manager.Event()
        procs = [mp.Process(target=worker, args=(counts, lock, ready, go, INCREMENTS))
                 for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.acquire()
        started = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started
        assert counts[1] == PROCESSES * INCREMENTS, counts[1]
        rate = (PROCESSES * INCREMENTS - PROCESSES) / elapsed
        print(f"manager_dict_locked_incr_per_s {rate:.3f} per_s")

        started = time.perf_counter()
        for _ in range(CREATE_DROPS):
            d = manager.dict()
            del d
        elapsed = time.perf_counter() - started
        print(f"manager_dict_create_drop_per_s {CREATE_DROPS / elapsed:.3f} per_s")


if __name__ == "__main__":
    main()
