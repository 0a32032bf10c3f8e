"""multiprocessing.Pool counterparts of examples/ipc_bench/pool.rs (same figure names and counts).

Prints `name value unit` lines. The throughput figures use one pool of 2 workers started by fork
(Python's default on Linux up to 3.13), measured once it is running; the start + join figures start
a pool of 2 workers, run one job, close and join it, by forkserver and by fork.
"""
import multiprocessing as mp
import time

WORKERS = 2
MAP_ITEMS = 100_000
CHUNKSIZE1_ITEMS = 20_000
APPLY_CALLS = 20_000
IMAP_CHUNKSIZE = 64

BUDGET_S = 3.0
MIN_ROUNDS = 3
START_BUDGET_S = 3.0
MIN_STARTS = 10


def square(x):
    return x * x


def rate(items, round_):
    """Items per second over as many rounds as fit in BUDGET_S, after one warm-up round."""
    round_()
    started = time.perf_counter()
    rounds = 0
    while rounds < MIN_ROUNDS or time.perf_counter() - started < BUDGET_S:
        round_()
        rounds += 1
    return items * rounds / (time.perf_counter() - started)


def start_join_ms(method):
    ctx = mp.get_context(method)

    def round_():
        pool = ctx.Pool(WORKERS)
        assert pool.apply(square, (3,)) == 9
        pool.close()
        pool.join()

    round_()  # warm-up (for forkserver: starts the server, which lives on)
    started = time.perf_counter()
    rounds = 0
    while rounds < MIN_STARTS or time.perf_counter() - started < START_BUDGET_S:
        round_()
        rounds += 1
    return (time.perf_counter() - started) * 1000.0 / rounds


def main():
    with mp.get_context("fork").Pool(WORKERS) as pool:
        expected = [x * x for x in range(MAP_ITEMS)]

        def map_default():
            assert pool.map(square, range(MAP_ITEMS)) == expected

        print(f"pool_map_items_per_s {rate(MAP_ITEMS, map_default):.4f} items/s", flush=True)

        expected1 = expected[:CHUNKSIZE1_ITEMS]

        def map_chunksize1():
            assert pool.map(square, range(CHUNKSIZE1_ITEMS), chunksize=1) == expected1

        print(f"pool_map_chunksize1_items_per_s {rate(CHUNKSIZE1_ITEMS, map_chunksize1):.4f} items/s", flush=True)

        def apply_async():
            pending = [pool.apply_async(square, (x,)) for x in range(APPLY_CALLS)]
            for x, result in enumerate(pending):
                assert result.get() == x * x

        print(f"pool_apply_async_per_s {rate(APPLY_CALLS, apply_async):.4f} calls/s", flush=True)

        total = sum(expected)

        def imap_unordered():
            count = 0
            acc = 0
            for output in pool.imap_unordered(square, range(MAP_ITEMS), chunksize=IMAP_CHUNKSIZE):
                acc += output
                count += 1
            assert count == MAP_ITEMS and acc == total

        print(f"pool_imap_unordered_items_per_s {rate(MAP_ITEMS, imap_unordered):.4f} items/s", flush=True)
        pool.close()
        pool.join()

    print(f"pool_start_join_ms_forkserver {start_join_ms('forkserver'):.4f} ms", flush=True)
    print(f"pool_start_join_ms_fork {start_join_ms('fork'):.4f} ms", flush=True)


if __name__ == "__main__":
    main()
