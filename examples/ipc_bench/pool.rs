//! Pool: `map` (default chunk size and chunk size 1), `apply_async`, `imap_unordered` with chunk size
//! 64, each on an already-started pool of 2 forked workers running a trivial `x * x`, plus the cost of
//! a whole pool's life (start 2 workers, run one job, close, join) by forkserver and by fork.
//!
//! The throughput pool uses the fork start method, as Python's `multiprocessing.Pool` does by default
//! on Linux up to 3.13 (`python/pool_mp.py` uses it explicitly). A fork needs a single-threaded
//! process, so the fork figures run before the forkserver ones, whose pools have a thread of their own.
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use herd::supervisor::{Pool, StartMethod};

use crate::report;

herd::job! {
    /// The trivial job.
    fn square(x: u64) -> u64 { x * x }
}

/// Worker processes of every pool.
const WORKERS: usize = 2;
/// Items per round of `map` (default chunk size) and `imap_unordered` (chunk size 64).
const MAP_ITEMS: u64 = 100_000;
/// Items per round of `map` with chunk size 1.
const CHUNKSIZE1_ITEMS: u64 = 20_000;
/// `apply_async` calls per round.
const APPLY_CALLS: u64 = 20_000;
/// `imap_unordered`'s chunk size.
const IMAP_CHUNKSIZE: usize = 64;

/// Measures each throughput figure for about this long (at least `MIN_ROUNDS` rounds).
const BUDGET: Duration = Duration::from_secs(3);
const MIN_ROUNDS: u32 = 3;
/// Start + join: about this long per start method (at least `MIN_STARTS` pools).
const START_BUDGET: Duration = Duration::from_secs(3);
const MIN_STARTS: u32 = 10;

/// Items per second over as many rounds of `round` as fit in `BUDGET`, after one warm-up round;
/// every round handles `items` items.
fn rate(items: u64, mut round: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    round()?;
    let started = Instant::now();
    let mut rounds = 0u32;
    while rounds < MIN_ROUNDS || started.elapsed() < BUDGET {
        round()?;
        rounds += 1;
    }
    Ok((items * u64::from(rounds)) as f64 / started.elapsed().as_secs_f64())
}

/// The expected outputs for `0..count`, in order.
fn squares(count: u64) -> Vec<u64> {
    (0..count).map(|x| x * x).collect()
}

/// Mean milliseconds to start a pool by `method`, run one job, close and join, after one warm-up.
fn start_join_ms(method: StartMethod) -> anyhow::Result<f64> {
    let round = || -> anyhow::Result<()> {
        let pool = Pool::builder()
            .workers(WORKERS)
            .start_method(method)
            .build()?;
        ensure!(pool.apply(square, 3)? == 9, "apply(square, 3) != 9");
        pool.close();
        pool.join()?;
        Ok(())
    };
    round()?;
    let started = Instant::now();
    let mut rounds = 0u32;
    while rounds < MIN_STARTS || started.elapsed() < START_BUDGET {
        round()?;
        rounds += 1;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds))
}

pub fn run() -> anyhow::Result<()> {
    let pool = Pool::builder()
        .workers(WORKERS)
        .start_method(StartMethod::Fork)
        .build()
        .context("starting the pool")?;

    let expected = squares(MAP_ITEMS);
    let map = rate(MAP_ITEMS, || {
        ensure!(
            pool.map(square, 0..MAP_ITEMS)? == expected,
            "map: wrong outputs"
        );
        Ok(())
    })
    .context("map")?;
    report("pool_map_items_per_s", map, "items/s");

    let expected1 = squares(CHUNKSIZE1_ITEMS);
    let chunksize1 = rate(CHUNKSIZE1_ITEMS, || {
        let outputs = pool.map_chunked(square, 0..CHUNKSIZE1_ITEMS, 1)?;
        ensure!(outputs == expected1, "map chunksize 1: wrong outputs");
        Ok(())
    })
    .context("map, chunksize 1")?;
    report("pool_map_chunksize1_items_per_s", chunksize1, "items/s");

    let apply_async = rate(APPLY_CALLS, || {
        let pending = (0..APPLY_CALLS)
            .map(|x| pool.apply_async(square, x))
            .collect::<Result<Vec<_>, _>>()?;
        for (x, result) in (0..APPLY_CALLS).zip(pending) {
            ensure!(result.get()? == x * x, "apply_async: wrong output for {x}");
        }
        Ok(())
    })
    .context("apply_async")?;
    report("pool_apply_async_per_s", apply_async, "calls/s");

    let total: u64 = expected.iter().sum();
    let imap_unordered = rate(MAP_ITEMS, || {
        let mut sum = 0u64;
        let mut count = 0u64;
        for output in pool.imap_unordered_chunked(square, 0..MAP_ITEMS, IMAP_CHUNKSIZE) {
            sum += output?;
            count += 1;
        }
        ensure!(
            count == MAP_ITEMS && sum == total,
            "imap_unordered: wrong outputs"
        );
        Ok(())
    })
    .context("imap_unordered, chunksize 64")?;
    report("pool_imap_unordered_items_per_s", imap_unordered, "items/s");

    pool.close();
    pool.join().context("joining the pool")?;
    drop(pool);

    // Fork first: the forkserver pools run a thread of their own while they live.
    let fork = start_join_ms(StartMethod::Fork).context("fork pool start + join")?;
    // The first forkserver pool of the process starts the server (the warm-up round); the figure
    // is the steady state, as Python's (whose server also lives on once started).
    let forkserver =
        start_join_ms(StartMethod::Forkserver).context("forkserver pool start + join")?;
    report("pool_start_join_ms_forkserver", forkserver, "ms");
    report("pool_start_join_ms_fork", fork, "ms");
    Ok(())
}
