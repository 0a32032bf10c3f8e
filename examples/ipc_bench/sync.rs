//! Shared Value increments from 2 processes: under the robust lock, lock-free atomic, and a raw
//! shared-memory atomic baseline (an anonymous MAP_SHARED page, no herd code involved).
//!
//! Each figure is time-based: both workers are released together, increment for WINDOW while
//! counting, and stop when told; the total (checked against the shared counter) divided by the
//! window is the rate. Fixed counts would let one worker finish inside a single time slice before
//! the other starts, measuring no contention at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use herd::ipc::{Event, Process, Value};

const WORKERS: usize = 2;
const WINDOW: Duration = Duration::from_secs(1);
/// Increments between two looks at the stop flag.
const BATCH: u64 = 1024;
const PATIENCE: Duration = Duration::from_secs(30);

pub fn run() -> anyhow::Result<()> {
    let value = Value::<u64>::new(0)?;
    let locked = per_second(|| value.load(), {
        let value = value.clone();
        move || {
            for _ in 0..BATCH {
                if value.with_lock(|v| *v += 1).is_err() {
                    return false;
                }
            }
            true
        }
    })?;
    super::report("value_locked_incr_per_s", locked, "incr/s");

    let value = Value::<u64>::new(0)?;
    let atomic = per_second(|| value.load(), {
        let value = value.clone();
        move || {
            for _ in 0..BATCH {
                value.fetch_add(1);
            }
            true
        }
    })?;
    super::report("value_atomic_incr_per_s", atomic, "incr/s");

    let counter = raw_shared_counter()?;
    let raw = per_second(
        || counter.load(Ordering::SeqCst),
        move || {
            for _ in 0..BATCH {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            true
        },
    )?;
    super::report("raw_atomic_incr_per_s", raw, "incr/s");
    Ok(())
}

/// The baseline's counter: one zeroed `AtomicU64` in an anonymous MAP_SHARED page that forked
/// workers inherit, with no herd code involved (that is the point of the baseline).
#[allow(unsafe_code)] // maps the page by hand, which is what the baseline measures against
fn raw_shared_counter() -> anyhow::Result<&'static AtomicU64> {
    let page = std::num::NonZeroUsize::new(4096).context("page size")?;
    // SAFETY: a fresh anonymous shared mapping at a kernel-chosen address aliases nothing; it is
    // zero-filled, page aligned (so an AtomicU64 at its start is valid), is never unmapped (the
    // reference below lives as long as the process) and is inherited by the forked workers.
    let base = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            page,
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
        )
    }?;
    // SAFETY: see above; only atomic operations ever touch this word.
    Ok(unsafe { base.cast::<AtomicU64>().as_ref() })
}

/// Runs `batch` (BATCH increments; false = failed) in WORKERS forked processes for WINDOW and
/// returns increments per second, after checking `counter()` equals the workers' own tallies.
fn per_second(counter: impl Fn() -> u64, batch: impl Fn() -> bool + Clone) -> anyhow::Result<f64> {
    let (start, stop) = (Event::new()?, Event::new()?);
    let workers = (0..WORKERS)
        .map(|_| {
            let (start, stop, batch) = (start.clone(), stop.clone(), batch.clone());
            Process::new().fork(move || -> Result<u64, String> {
                start.wait_timeout(PATIENCE).map_err(|e| e.to_string())?;
                let mut done = 0;
                while !stop.is_set() {
                    if !batch() {
                        return Err("increment failed".into());
                    }
                    done += BATCH;
                }
                Ok(done)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::sleep(Duration::from_millis(50)); // let the workers reach the start line
    let clock = Instant::now();
    start.set();
    std::thread::sleep(WINDOW);
    stop.set();
    let elapsed = clock.elapsed().as_secs_f64();
    let mut total = 0;
    for worker in workers {
        total += worker
            .join_timeout(PATIENCE)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map_err(anyhow::Error::msg)?;
    }
    ensure!(
        counter() == total,
        "counter {} != tallies {total}",
        counter()
    );
    Ok(total as f64 / elapsed)
}
