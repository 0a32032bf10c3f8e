"""multiprocessing.Queue counterparts of examples/ipc_bench/queue.rs (same figure names).

Prints `name value unit` lines. Every producer and consumer is a process of its own (fork).
"""
import multiprocessing as mp
import time

SMALL_MESSAGES = 200_000
LARGE_MESSAGES = 50_000
LARGE_BYTES = 4096


def produce(queue, items):
    for item in items:
        queue.put(item)


def consume(queue, done):
    got = 0
    while queue.get() is not None:
        got += 1
    done.put(got)


def one_to_one(count, make):
    queue = mp.Queue()
    start = time.perf_counter()
    producer = mp.Process(target=produce, args=(queue, (make(i) for i in range(count))))
    producer.start()
    for _ in range(count):
        queue.get()
    elapsed = time.perf_counter() - start
    producer.join()
    return count / elapsed


def two_by_two(count):
    queue, done = mp.Queue(), mp.Queue()
    start = time.perf_counter()
    producers = [mp.Process(target=produce, args=(queue, range(half, count, 2))) for half in (0, 1)]
    consumers = [mp.Process(target=consume, args=(queue, done)) for _ in range(2)]
    for process in producers + consumers:
        process.start()
    for producer in producers:
        producer.join()
    for _ in consumers:
        queue.put(None)
    total = sum(done.get() for _ in consumers)
    for consumer in consumers:
        consumer.join()
    elapsed = time.perf_counter() - start
    assert total == count, f"consumers got {total} of {count}"
    return count / elapsed


def main():
    mp.set_start_method("fork")
    print(f"queue_1x1_small_msgs_per_s {one_to_one(SMALL_MESSAGES, lambda i: i):.0f} msgs/s", flush=True)
    print(f"queue_2x2_small_msgs_per_s {two_by_two(SMALL_MESSAGES):.0f} msgs/s", flush=True)
    payload = bytes(LARGE_BYTES)
    print(f"queue_1x1_4KiB_msgs_per_s {one_to_one(LARGE_MESSAGES, lambda i: payload):.0f} msgs/s", flush=True)


if __name__ == "__main__":
    main()
