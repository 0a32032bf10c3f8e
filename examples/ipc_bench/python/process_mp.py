"""Python multiprocessing counterpart of examples/ipc_bench/process.rs: start a trivial child and join it,
with the fork, spawn and forkserver start methods (mean over many). Prints `name value unit` lines."""
import multiprocessing
import time

BUDGET_S = 2.0
MIN_ROUNDS = 20


def noop():
    pass


def mean_ms(method):
    ctx = multiprocessing.get_context(method)

    def round_trip():
        child = ctx.Process(target=noop)
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"{method} child exited with {child.exitcode}")

    round_trip()  # warm-up
    started = time.perf_counter()
    rounds = 0
    while rounds < MIN_ROUNDS or time.perf_counter() - started < BUDGET_S:
        round_trip()
        rounds += 1
    return (time.perf_counter() - started) * 1000.0 / rounds


if __name__ == "__main__":
    print(f"process_start_join_ms_fork {mean_ms('fork'):.4f} ms", flush=True)
    print(f"process_start_join_ms_spawn {mean_ms('spawn'):.4f} ms", flush=True)
    print(f"process_start_join_ms_forkserver {mean_ms('forkserver'):.4f} ms", flush=True)
