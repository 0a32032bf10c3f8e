"""multiprocessing counterpart of examples/ipc_bench/sync.rs: Value increments from 2 processes.

Prints `name value unit` lines. Time-based like the Rust side: both workers are released
together, increment for WINDOW seconds and stop when told. Python has no lock-free shared
integer, so only the locked figure (get_lock() + increment) has a counterpart.
"""
import multiprocessing as mp
import time

WORKERS = 2
WINDOW = 1.0
BATCH = 1024


def locked_worker(value, start, stop, tallies, index):
    start.wait()
    done = 0
    while not stop.is_set():
        for _ in range(BATCH):
            with value.get_lock():
                value.value += 1
        done += BATCH
    tallies[index] = done


def main():
    ctx = mp.get_context("fork")
    value = ctx.Value("q", 0)
    start, stop = ctx.Event(), ctx.Event()
    tallies = ctx.Array("q", WORKERS)
    workers = [
        ctx.Process(target=locked_worker, args=(value, start, stop, tallies, i))
        for i in range(WORKERS)
    ]
    for w in workers:
        w.start()
    time.sleep(0.05)
    clock = time.perf_counter()
    start.set()
    time.sleep(WINDOW)
    stop.set()
    elapsed = time.perf_counter() - clock
    for w in workers:
        w.join()
    total = sum(tallies)
    assert value.value == total, (value.value, total)
    print(f"value_locked_incr_per_s {total / elapsed:.1f} incr/s")


if __name__ == "__main__":
    main()
