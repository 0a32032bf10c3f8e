//! A pool from ordinary `#[test]` functions (libtest's default harness, each test on a thread of
//! its own) and from inside a multi-threaded tokio runtime: the process has several threads, so
//! the default start method is the forkserver, and nothing needs a custom `main`.
use std::time::Duration;

use herd_supervisor::{job, Pool, PoolError, StartMethod};

const PATIENCE: Duration = Duration::from_secs(30);

job! {
    fn cube(x: u64) -> u64 { x * x * x }

    fn describe(name: String, count: u32) -> String { format!("{count} x {name}") }

    fn worker_pid(_unit: ()) -> u32 { std::process::id() }
}

#[test]
fn the_default_in_a_test_is_the_forkserver_and_it_works() {
    assert_eq!(
        StartMethod::default_for_this_process(),
        StartMethod::Forkserver
    );
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(cube, 1..=5u64).unwrap(), [1, 8, 27, 64, 125]);
    assert_eq!(
        pool.starmap(describe, [("apple".to_owned(), 3)]).unwrap(),
        ["3 x apple"]
    );
    let pids = pool.map_chunked(worker_pid, vec![(); 8], 1).unwrap();
    assert!(
        pids.iter().all(|&pid| pid != std::process::id()),
        "jobs ran in workers: {pids:?}"
    );
    pool.close();
    pool.join_timeout(PATIENCE).unwrap();
}

#[test]
fn spawned_workers_work_from_a_test_too() {
    let pool = Pool::builder()
        .workers(1)
        .start_method(StartMethod::Spawn)
        .build()
        .unwrap();
    let answer = pool.apply_async(cube, 4).unwrap();
    assert_eq!(answer.get_timeout(PATIENCE).unwrap(), 64);
    pool.close();
    pool.join_timeout(PATIENCE).unwrap();
}

#[test]
fn fork_is_refused_with_the_fix_named() {
    let error = Pool::builder()
        .workers(1)
        .start_method(StartMethod::Fork)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, PoolError::Setup(message) if message.contains("Forkserver")),
        "{error}"
    );
}

#[test]
fn inside_a_tokio_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let tasks: Vec<_> = (0..4u64)
            .map(|task| {
                let pool = std::sync::Arc::clone(&pool);
                // The pool's calls block: run them where blocking is allowed.
                tokio::task::spawn_blocking(move || pool.map(cube, task * 10..task * 10 + 10))
            })
            .collect();
        for (task, handle) in tasks.into_iter().enumerate() {
            let cubes = handle.await.unwrap().unwrap();
            let first = task as u64 * 10;
            assert_eq!(cubes[0], first * first * first);
            assert_eq!(cubes.len(), 10);
        }
        let pool = std::sync::Arc::try_unwrap(pool).unwrap();
        tokio::task::spawn_blocking(move || {
            pool.close();
            pool.join_timeout(PATIENCE)
        })
        .await
        .unwrap()
        .unwrap();
    });
}
