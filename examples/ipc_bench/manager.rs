//! Manager benchmarks: two processes incrementing one shared dict entry, either as the seed does
//! (acquire the manager lock, get, set, release: four round trips) or with the server-side
//! atomic increment (one round trip). Python's counterpart, python/manager_mp.py, does the locked
//! version with `multiprocessing.Manager`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use anyhow::{anyhow, Context};
use herd::ipc::{DictProxy, EventProxy, LockProxy, Manager, Process};

use crate::report;

const PROCESSES: usize = 2;
const LOCKED_INCREMENTS: i64 = 20_000;
const ATOMIC_INCREMENTS: i64 = 50_000;

pub(crate) fn run() -> anyhow::Result<()> {
    report("raw_unix_roundtrip_per_s", raw_roundtrips()?, "per_s");
    let manager = Manager::start().context("starting the manager")?;
    let counts: DictProxy<u32, i64> = manager.dict()?;
    let lock = manager.lock()?;

    let rate = increments(&manager, &counts, LOCKED_INCREMENTS, |counts| {
        locked_increment(counts, &lock)
    })?;
    report("manager_dict_locked_incr_per_s", rate, "per_s");

    let rate = increments(&manager, &counts, ATOMIC_INCREMENTS, |counts| {
        counts.increment(&1, 1).map(drop).map_err(|e| e.to_string())
    })?;
    report("manager_dict_atomic_incr_per_s", rate, "per_s");
    manager.shutdown()?;
    Ok(())
}

fn locked_increment(counts: &DictProxy<u32, i64>, lock: &LockProxy) -> Result<(), String> {
    let e = |e: herd::ipc::ManagerError| e.to_string();
    lock.acquire().map_err(e)?;
    let value = counts.get(&1).map_err(e)?.unwrap_or(0);
    counts.insert(&1, &(value + 1)).map_err(e)?;
    lock.release().map_err(e)
}

/// Increments per second with `PROCESSES` forked children doing `per_process` increments each,
/// timed from a common start signal (after they connected) to the last one's exit.
fn increments(
    manager: &Manager,
    counts: &DictProxy<u32, i64>,
    per_process: i64,
    increment: impl Fn(&DictProxy<u32, i64>) -> Result<(), String>,
) -> anyhow::Result<f64> {
    counts.insert(&1, &0)?;
    let go: EventProxy = manager.event()?;
    let ready = manager.semaphore(0)?;
    let children = (0..PROCESSES)
        .map(|_| {
            Process::new().fork(|| -> Result<(), String> {
                // Connect both proxies before the clock starts.
                counts.len().map_err(|e| e.to_string())?;
                increment(counts)?;
                ready.release().map_err(|e| e.to_string())?;
                go.wait().map_err(|e| e.to_string())?;
                for _ in 1..per_process {
                    increment(counts)?;
                }
                Ok(())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for _ in 0..PROCESSES {
        ready.acquire()?;
    }
    let started = Instant::now();
    go.set()?;
    for child in children {
        child
            .join()?
            .map_err(|e| anyhow!("benchmark child failed: {e}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = counts.get(&1)?.unwrap_or(0);
    let expected = per_process * PROCESSES as i64;
    anyhow::ensure!(total == expected, "lost increments: {total} of {expected}");
    Ok(((expected - PROCESSES as i64) as f64) / elapsed)
}

const RAW_ROUNDTRIPS: u32 = 50_000;

/// Baseline: round trips per second of a small message over a Unix socket between two
/// processes, the floor under every manager call (a locked increment takes four).
fn raw_roundtrips() -> anyhow::Result<f64> {
    let (mut here, mut there) = UnixStream::pair()?;
    // The child inherits `here` too, so it cannot wait for end-of-file: it echoes a known count.
    let echo = Process::new().fork(move || -> Result<(), String> {
        let mut buf = [0u8; 16];
        for _ in 0..RAW_ROUNDTRIPS {
            there.read_exact(&mut buf).map_err(|e| e.to_string())?;
            there.write_all(&buf).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    let mut buf = [0u8; 16];
    let started = Instant::now();
    for _ in 0..RAW_ROUNDTRIPS {
        here.write_all(&buf)?;
        here.read_exact(&mut buf)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    echo.join()?
        .map_err(|e| anyhow!("echo child failed: {e}"))?;
    Ok(f64::from(RAW_ROUNDTRIPS) / elapsed)
}
