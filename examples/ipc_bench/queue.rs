//! Queue throughput: small messages 1 producer x 1 consumer and 2 x 2, and 4 KiB messages 1 x 1,
//! each producer and consumer a process of its own (forked). Counterpart: python/queue_mp.py.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use herd::ipc::{GetError, Process, Queue};
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

const SMALL_MESSAGES: u64 = 2_000_000;
const LARGE_MESSAGES: u64 = 200_000;
const LARGE_BYTES: usize = 4096;
const PATIENCE: Duration = Duration::from_secs(120);

pub fn run() -> anyhow::Result<()> {
    let rate = one_to_one(SMALL_MESSAGES, |i| i)?;
    super::report("queue_1x1_small_msgs_per_s", rate, "msgs/s");
    let rate = two_by_two(SMALL_MESSAGES)?;
    super::report("queue_2x2_small_msgs_per_s", rate, "msgs/s");
    // Like Python's benchmark, the producer sends one immutable buffer again and again.
    let payload = Payload(Arc::from(vec![7u8; LARGE_BYTES]));
    let rate = one_to_one(LARGE_MESSAGES, |_| payload.clone())?;
    super::report("queue_1x1_4KiB_msgs_per_s", rate, "msgs/s");
    Ok(())
}

/// An immutable byte string, like Python's `bytes`: encoded as one length and a copy (serde's
/// `Vec<u8>` goes byte by byte), cloned by reference count.
#[derive(Debug, Clone, PartialEq)]
struct Payload(Arc<[u8]>);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Arc::from(bytes)))
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

/// Messages per second from one producer process to one consumer (this process).
fn one_to_one<T>(count: u64, make: impl Fn(u64) -> T) -> anyhow::Result<f64>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let queue: Queue<T> = Queue::new()?;
    let start = Instant::now();
    let producer = Process::new().name("bench-producer").fork(|| {
        for i in 0..count {
            if queue.put(make(i)).is_err() {
                return false;
            }
        }
        true
    })?;
    for _ in 0..count {
        queue
            .get_timeout(PATIENCE)
            .map_err(|e| anyhow!("consumer: {e}"))?;
    }
    let elapsed = start.elapsed();
    ensure!(
        producer.join().context("producer")?,
        "producer could not put"
    );
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Messages per second through 2 producer and 2 consumer processes.
fn two_by_two(count: u64) -> anyhow::Result<f64> {
    let queue: Queue<u64> = Queue::new()?;
    let start = Instant::now();
    let producers = (0..2)
        .map(|half| {
            Process::new().name("bench-producer").fork(|| {
                for i in (half..count).step_by(2) {
                    if queue.put(i).is_err() {
                        return false;
                    }
                }
                true
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let consumers = (0..2)
        .map(|_| {
            Process::new().name("bench-consumer").fork(|| {
                let mut got = 0u64;
                loop {
                    match queue.get_timeout(PATIENCE) {
                        Ok(_) => got += 1,
                        Err(herd::ipc::queue::GetTimeoutError::Closed) => return Ok(got),
                        Err(error) => return Err(error.to_string()),
                    }
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for producer in producers {
        ensure!(
            producer.join().context("producer")?,
            "producer could not put"
        );
    }
    queue.close()?;
    let mut total = 0;
    for consumer in consumers {
        total += consumer
            .join()
            .context("consumer")?
            .map_err(|e| anyhow!("consumer: {e}"))?;
    }
    let elapsed = start.elapsed();
    ensure!(total == count, "consumers got {total} of {count} messages");
    // A closed, drained queue reports Closed: the benchmark's own sanity check.
    ensure!(
        matches!(queue.get(), Err(GetError::Closed)),
        "queue not drained"
    );
    Ok(count as f64 / elapsed.as_secs_f64())
}
