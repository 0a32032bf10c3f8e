//! The examples of Python's `multiprocessing.Pool` documentation, with herd's `Pool`.
//!
//! ```sh
//! cargo run --example pool
//! ```
//!
//! Each step prints what it does and what it got; the program exits non-zero if an answer is
//! wrong. The Python original, for comparison:
//!
//! ```python
//! with Pool(processes=4) as pool:
//!     print(pool.map(f, range(10)))
//!     for i in pool.imap_unordered(f, range(10)):
//!         print(i)
//!     res = pool.apply_async(f, (20,))
//!     print(res.get(timeout=1))
//!     res = pool.apply_async(os.getpid, ())
//!     print(res.get(timeout=1))
//!     multiple_results = [pool.apply_async(os.getpid, ()) for i in range(4)]
//!     print([res.get(timeout=1) for res in multiple_results])
//!     res = pool.apply_async(time.sleep, (10,))
//!     try:
//!         print(res.get(timeout=1))
//!     except TimeoutError:
//!         print("We lacked patience and got a multiprocessing.TimeoutError")
//! ```
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::supervisor::{Pool, PoolError};

herd::supervisor::job! {
    /// Python's `f`.
    fn f(x: u64) -> u64 { x * x }

    /// Python's `os.getpid()`: the pid of the worker that runs it.
    fn getpid(_unit: ()) -> u32 { std::process::id() }

    /// Python's `time.sleep`.
    fn sleep(seconds: u64) { std::thread::sleep(Duration::from_secs(seconds)) }
}

/// Python's `get(timeout=1)`.
const ONE_SECOND: Duration = Duration::from_secs(1);

/// Counts the answers that were not what they should be.
#[derive(Debug, Default)]
struct Checks {
    wrong: usize,
}

impl Checks {
    fn expect(&mut self, ok: bool, what: &str) {
        if !ok {
            eprintln!("WRONG: {what}");
            self.wrong += 1;
        }
    }
}

fn main() -> Result<ExitCode, PoolError> {
    let mut checks = Checks::default();
    let squares: Vec<u64> = (0..10).map(|x| x * x).collect();

    // with Pool(5) as p: print(p.map(f, [1, 2, 3]))
    {
        let pool = Pool::new(5)?;
        let answer = pool.map(f, [1, 2, 3])?;
        println!("Pool::new(5), map(f, [1, 2, 3]): {answer:?}");
        checks.expect(answer == [1, 4, 9], "map(f, [1, 2, 3]) is [1, 4, 9]");
    } // dropped: terminated, as at the end of Python's `with` block

    // start 4 worker processes
    let pool = Pool::new(4)?;
    println!("Pool::new(4): {pool:?}");

    // print "[0, 1, 4,..., 81]"
    let answer = pool.map(f, 0..10)?;
    println!("map(f, 0..10): {answer:?}");
    checks.expect(answer == squares, "map(f, 0..10) is the squares in order");

    // print same numbers in arbitrary order
    print!("imap_unordered(f, 0..10):");
    let mut unordered = Vec::new();
    for square in pool.imap_unordered(f, 0..10) {
        let square = square?;
        print!(" {square}");
        unordered.push(square);
    }
    println!();
    unordered.sort_unstable();
    checks.expect(
        unordered == squares,
        "imap_unordered gives every square once",
    );

    // evaluate "f(20)" asynchronously: runs in *only* one process
    let res = pool.apply_async(f, 20)?;
    let answer = res.get_timeout(ONE_SECOND)?;
    println!("apply_async(f, 20).get_timeout(1 s): {answer}");
    checks.expect(answer == 400, "f(20) is 400");

    // evaluate "os.getpid()" asynchronously: runs in *only* one process
    let res = pool.apply_async(getpid, ())?;
    let worker = res.get_timeout(ONE_SECOND)?;
    println!(
        "apply_async(getpid).get_timeout(1 s): {worker} (this process is {})",
        std::process::id()
    );
    checks.expect(worker != std::process::id(), "getpid runs in a worker");

    // launching multiple evaluations asynchronously *may* use more processes
    let multiple_results = (0..4)
        .map(|_| pool.apply_async(getpid, ()))
        .collect::<Result<Vec<_>, _>>()?;
    let pids = multiple_results
        .iter()
        .map(|res| res.get_timeout(ONE_SECOND))
        .collect::<Result<Vec<u32>, _>>()?;
    println!("4 x apply_async(getpid): {pids:?}");
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    checks.expect(
        !pids.contains(&std::process::id()) && distinct.len() <= 4,
        "the pids are those of at most 4 workers",
    );

    // evaluating in a loop: one job per input, each answer waited for in turn
    let pending = (0..10)
        .map(|x| pool.apply_async(f, x))
        .collect::<Result<Vec<_>, _>>()?;
    let mut answers = Vec::new();
    for res in &pending {
        answers.push(res.get_timeout(ONE_SECOND)?);
    }
    println!("10 x apply_async(f, x) in a loop: {answers:?}");
    checks.expect(answers == squares, "the loop gives the squares in order");

    // make a single worker sleep for 10 seconds
    let res = pool.apply_async(sleep, 10)?;
    match res.get_timeout(ONE_SECOND) {
        Err(PoolError::Timeout(waited)) => {
            println!("We lacked patience and got a PoolError::Timeout after {waited:?}")
        }
        other => checks.expect(false, &format!("a 10 s sleep within 1 s: {other:?}")),
    }

    println!("For the moment, the pool remains available for more work");
    let answer = pool.apply(f, 3)?;
    checks.expect(answer == 9, "f(3) is 9 while a worker sleeps");

    // exiting the `with` block: dropping the pool terminates it, the sleeping worker included
    let started = Instant::now();
    drop(pool);
    let took = started.elapsed();
    println!("Now the pool is terminated and no longer available (took {took:?})");
    checks.expect(
        took < Duration::from_secs(5),
        "dropping the pool does not wait for the sleep",
    );

    if checks.wrong == 0 {
        println!("All answers are right.");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} answer(s) wrong", checks.wrong);
        Ok(ExitCode::FAILURE)
    }
}
