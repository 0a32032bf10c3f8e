//! The `Pool` across real worker processes, by fork, spawn and forkserver: every method of Python's
//! `multiprocessing.Pool`, job failures of every kind, killed workers, terminate and drop.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use herd_ipc::Pid;
use herd_supervisor::{job, Pool, PoolError, StartMethod, SupervisorConfig};
use herd_testkit::cli::{retry_until, sleep_ms};
use herd_testkit::proc::{children_of, is_alive, live_children_of};
use herd_testkit::{check, run_trials};
use libtest_mimic::Trial;
use nix::sys::signal::{kill, Signal};

type TestResult = Result<(), libtest_mimic::Failed>;

/// What the initializer recorded in this worker process.
static INITIALIZED_WITH: AtomicU64 = AtomicU64::new(0);

job! {
    /// Squares a number.
    fn square(x: u64) -> u64 { x * x }

    /// Adds two numbers.
    fn add(a: u64, b: u64) -> u64 { a + b }

    /// Refuses 13.
    fn picky(x: u64) -> Result<u64, String> {
        if x == 13 { Err("unlucky 13".to_owned()) } else { Ok(x) }
    }

    /// Panics on 7.
    fn fragile(x: u64) -> u64 {
        if x == 7 {
            herd_testkit::quiet_panic_hook();
        }
        assert!(x != 7, "seven is not allowed");
        x
    }

    /// Sleeps `ms`, answers the worker's pid.
    fn nap_pid(ms: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }

    /// Kills its worker, every time.
    fn poison(_unit: ()) -> () { std::process::abort() }

    /// Starts a `sleep 600` child of the worker, answers its pid.
    fn spawner(_unit: ()) -> Result<u32, std::io::Error> {
        let child = std::process::Command::new("sleep").arg("600").spawn()?;
        let pid = child.id();
        std::mem::forget(child); // left running: it must die with the worker's group
        Ok(pid)
    }

    /// The initializer: records its argument in the worker.
    fn remember(value: u64) -> () { INITIALIZED_WITH.store(value, Ordering::SeqCst) }

    /// What the initializer recorded, and the worker's pid.
    fn recalled(_unit: ()) -> (u64, u32) { (INITIALIZED_WITH.load(Ordering::SeqCst), std::process::id()) }

    /// An output that cannot be serialised.
    fn unsendable(_unit: ()) -> Refuses { Refuses }

    /// The length and digest of an input, which may be larger than a pipe message.
    fn measure(bytes: serde_bytes::ByteBuf) -> (u64, u64) { (bytes.len() as u64, digest(&bytes)) }
}

/// An order-sensitive digest of `bytes` (FNV-1a), so a reassembled input that was cut or
/// shuffled is told from the original.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A job input of 70 MiB, over the 64 MiB a pipe message may hold, reaches its worker in parts
/// and whole; the worker goes on with the next job.
fn a_job_input_over_the_pipe_message_limit_arrives_whole(method: StartMethod) -> TestResult {
    let size = 70 << 20;
    check!(
        size > herd_ipc::pipe::DEFAULT_PIPE_MESSAGE_LIMIT,
        "the input must be over the pipe's message limit"
    );
    let input: Vec<u8> = (0..size).map(|i| (i * 31 + i / 4099) as u8).collect();
    let expected = (size as u64, digest(&input));
    let pool = pool(method, 1)?;
    let measured = pool.apply(measure, serde_bytes::ByteBuf::from(input))?;
    check!(
        measured == expected,
        "measured {measured:?}, expected {expected:?}"
    );
    check!(
        pool.apply(square, 9)? == 81,
        "the worker goes on after the large job"
    );
    close_and_join(pool)
}

/// A value whose serialisation always fails.
#[derive(Debug, serde::Deserialize)]
struct Refuses;

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value cannot be sent"))
    }
}

fn this_pid() -> i32 {
    Pid::this().as_raw()
}

/// This process's forkserver, which lives as long as the process once started.
fn forkserver() -> Option<i32> {
    herd_ipc::forkserver_pid().map(Pid::as_raw)
}

/// The pool's live workers: this process's children, or the forkserver's.
fn live_workers() -> Vec<i32> {
    let mut workers: Vec<i32> = live_children_of(this_pid())
        .into_iter()
        .filter(|&pid| Some(pid) != forkserver())
        .collect();
    if let Some(server) = forkserver() {
        workers.extend(live_children_of(server));
    }
    workers
}

fn no_children_left() -> Result<(), String> {
    retry_until(Instant::now() + Duration::from_secs(5), || {
        let mut all: Vec<(i32, char)> = children_of(this_pid())
            .into_iter()
            .filter(|&(pid, _)| Some(pid) != forkserver())
            .collect();
        if let Some(server) = forkserver() {
            all.extend(children_of(server));
        }
        if all.is_empty() {
            Ok(())
        } else {
            Err(format!("processes left after the pool ended: {all:?}"))
        }
    })
}

fn pool(method: StartMethod, workers: usize) -> Result<Pool, PoolError> {
    Pool::builder()
        .workers(workers)
        .start_method(method)
        .build()
}

/// Ends a test as most do: the pool closes, joins cleanly and leaves no child behind.
fn close_and_join(pool: Pool) -> TestResult {
    pool.close();
    pool.join()?;
    drop(pool);
    no_children_left()?;
    Ok(())
}

fn every_method_gives_python_s_answers(method: StartMethod) -> TestResult {
    let pool = pool(method, 2)?;
    let inputs: Vec<u64> = (0..100).collect();
    let squares: Vec<u64> = inputs.iter().map(|n| n * n).collect();
    check!(pool.map(square, inputs.clone())? == squares, "map");
    check!(
        pool.map_chunked(square, inputs.clone(), 7)? == squares,
        "map_chunked"
    );
    check!(
        pool.map_async(square, inputs.clone())?.get()? == squares,
        "map_async"
    );
    check!(pool.map(square, Vec::new())?.is_empty(), "map of nothing");
    check!(pool.apply(square, 12)? == 144, "apply");
    check!(pool.apply_async(square, 5)?.get()? == 25, "apply_async");
    check!(pool.starmap(add, [(1, 2), (30, 40)])? == [3, 70], "starmap");
    check!(
        pool.starmap_async(add, [(5, 5)])?.get()? == [10],
        "starmap_async"
    );
    let ordered: Vec<u64> = pool.imap(square, 0..50u64).collect::<Result<_, _>>()?;
    check!(ordered == squares[..50], "imap: {ordered:?}");
    let chunked: Vec<u64> = pool
        .imap_chunked(square, 0..50u64, 8)
        .collect::<Result<_, _>>()?;
    check!(chunked == squares[..50], "imap_chunked");
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..50u64)
        .collect::<Result<_, _>>()?;
    unordered.sort_unstable();
    check!(unordered == squares[..50], "imap_unordered");
    let mut unordered: Vec<u64> = pool
        .imap_unordered_chunked(square, 0..50u64, 16)
        .collect::<Result<_, _>>()?;
    unordered.sort_unstable();
    check!(unordered == squares[..50], "imap_unordered_chunked");
    check!(
        live_workers().len() == 2,
        "a pool of 2 has children {:?}",
        live_workers()
    );
    close_and_join(pool)
}

fn imap_is_lazy_over_an_endless_iterator(method: StartMethod) -> TestResult {
    let pool = pool(method, 2)?;
    let pulled = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&pulled);
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let first: Vec<u64> = pool
        .imap(square, endless)
        .take(20)
        .collect::<Result<_, _>>()?;
    check!(
        first == (0..20u64).map(|n| n * n).collect::<Vec<_>>(),
        "{first:?}"
    );
    let pulled = pulled.load(Ordering::SeqCst);
    check!(pulled < 100, "imap pulled {pulled} inputs for 20 outputs");
    close_and_join(pool)
}

fn callbacks_run_once_with_the_outputs(method: StartMethod) -> TestResult {
    let pool = pool(method, 2)?;
    let (tx, rx) = mpsc::channel::<String>();
    let ok = tx.clone();
    let failed = tx.clone();
    let one = pool.apply_async_with(
        picky,
        4,
        move |value| ok.send(format!("ok {value}")).unwrap(),
        move |error| failed.send(format!("error {error}")).unwrap(),
    )?;
    let ok = tx.clone();
    let failed = tx.clone();
    let bad = pool.apply_async_with(
        picky,
        13,
        move |value| ok.send(format!("ok {value}")).unwrap(),
        move |error| failed.send(format!("error {error}")).unwrap(),
    )?;
    let all = tx.clone();
    let failed = tx;
    let many = pool.map_async_with(
        square,
        0..10u64,
        move |values| all.send(format!("map {values:?}")).unwrap(),
        move |error| failed.send(format!("map error {error}")).unwrap(),
    )?;
    check!(one.get()? == 4, "one");
    check!(bad.get().is_err(), "bad");
    check!(many.get()?.len() == 10, "many");
    check!(
        bad.successful() == Some(false) && one.successful() == Some(true),
        "successful"
    );
    // Driven by the waits above (fork) or by the pool's thread (spawn): all three have run.
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 3 {
        seen.push(
            rx.recv_timeout(Duration::from_secs(10))
                .map_err(|_| format!("callbacks so far: {seen:?}"))?,
        );
    }
    seen.sort();
    check!(
        seen[0] == "error job 1 failed: unlucky 13"
            && seen[1] == "map [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
            && seen[2] == "ok 4",
        "{seen:?}"
    );
    close_and_join(pool)
}

fn a_callback_runs_though_its_result_was_dropped(method: StartMethod) -> TestResult {
    let pool = pool(method, 2)?;
    let (tx, rx) = mpsc::channel::<u64>();
    let failed = tx.clone();
    // As in Python: the handle may be dropped at once, the callback still runs.
    drop(pool.apply_async_with(
        square,
        9,
        move |value| tx.send(value).unwrap(),
        move |_| failed.send(0).unwrap(),
    )?);
    // Drive the pool (forked workers: the caller drives) until the callback has run.
    let answer = pool.apply(square, 2)?;
    check!(answer == 4, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let value = loop {
        if let Ok(value) = rx.try_recv() {
            break value;
        }
        check!(Instant::now() < deadline, "the callback never ran");
        pool.apply(square, 1)?;
    };
    check!(value == 81, "{value}");
    close_and_join(pool)
}

fn job_failures_come_back_as_errors_and_the_pool_goes_on(method: StartMethod) -> TestResult {
    let pool = pool(method, 2)?;
    let error = pool.map(picky, 0..20u64).unwrap_err();
    check!(
        error.is_job_failure() && error.to_string().contains("unlucky 13"),
        "{error}"
    );
    let items: Vec<_> = pool.imap(picky, 12..15u64).collect();
    check!(
        items.len() == 3 && items[0].is_ok() && items[1].is_err() && items[2].is_ok(),
        "imap gives each item its own outcome: {items:?}"
    );
    let error = pool.apply(fragile, 7).unwrap_err();
    check!(
        error.to_string().contains("seven is not allowed"),
        "a panic's message comes back: {error}"
    );
    let workers = live_workers();
    for round in 0..20 {
        let error = pool.apply(unsendable, ()).unwrap_err();
        check!(
            error.to_string().contains("encoding output"),
            "round {round}: {error}"
        );
    }
    check!(pool.map(fragile, [1, 2, 3])? == [1, 2, 3], "still working");
    check!(
        live_workers() == workers,
        "failing jobs cost workers: {workers:?} then {:?}",
        live_workers()
    );
    close_and_join(pool)
}

fn a_worker_killed_mid_map_loses_no_result(method: StartMethod) -> TestResult {
    let config = SupervisorConfig {
        max_restarts: 50,
        ..SupervisorConfig::default()
    };
    let pool = Pool::builder()
        .workers(2)
        .start_method(method)
        .supervision(config)
        .build()?;
    pool.map(square, [1, 2])?;
    let victims = live_workers();
    let handle = pool.map_async_chunked(nap_pid, vec![30u64; 40], 1)?;
    sleep_ms(100);
    for &pid in &victims {
        kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)?;
    }
    let pids = handle.get_timeout(Duration::from_secs(60))?;
    check!(pids.len() == 40, "one result per input: {}", pids.len());
    check!(live_workers().len() == 2, "replaced: {:?}", live_workers());
    close_and_join(pool)
}

fn a_poison_job_cannot_sink_the_pool(method: StartMethod) -> TestResult {
    let pool = pool(method, 2)?;
    let poisoned = pool.apply_async(poison, ())?;
    let squares = pool.map(square, 20..40u64)?;
    check!(
        squares == (20..40u64).map(|n| n * n).collect::<Vec<_>>(),
        "{squares:?}"
    );
    let error = poisoned.get().unwrap_err();
    check!(
        error.to_string().contains("gave up after 3 attempt(s)")
            && error.to_string().contains("SIGABRT"),
        "{error}"
    );
    check!(pool.apply(square, 3)? == 9, "the pool still works");
    check!(!pool.incidents().is_empty(), "the deaths are recorded");
    close_and_join(pool)
}

fn terminate_with_ten_thousand_queued_jobs_is_quick(method: StartMethod) -> TestResult {
    let pool = pool(method, 2)?;
    let pending = pool.map_async_chunked(nap_pid, vec![50u64; 10_000], 1)?;
    sleep_ms(200);
    let started = Instant::now();
    pool.terminate();
    check!(
        started.elapsed() < Duration::from_secs(3),
        "terminate took {:?}",
        started.elapsed()
    );
    let error = pending.get_timeout(Duration::from_secs(5)).unwrap_err();
    check!(matches!(error, PoolError::Stopped(_)), "{error}");
    check!(
        matches!(pool.apply_async(square, 1), Err(PoolError::Closed)),
        "no jobs after terminate"
    );
    pool.join()?;
    drop(pool);
    no_children_left()?;
    Ok(())
}

fn the_initializer_runs_in_every_worker(method: StartMethod) -> TestResult {
    let pool = Pool::builder()
        .workers(2)
        .start_method(method)
        .initializer(remember, 42)
        .max_tasks_per_child(3)
        .build()?;
    let answers = pool.map_chunked(recalled, vec![(); 12], 1)?;
    check!(answers.iter().all(|&(value, _)| value == 42), "{answers:?}");
    let mut pids: Vec<u32> = answers.iter().map(|&(_, pid)| pid).collect();
    pids.sort_unstable();
    pids.dedup();
    check!(
        pids.len() >= 4,
        "3 tasks per child, 12 tasks: at least 4 workers, saw {pids:?}"
    );
    close_and_join(pool)
}

fn waits_time_out_and_long_timeouts_mean_forever(method: StartMethod) -> TestResult {
    let pool = pool(method, 1)?;
    let slow = pool.apply_async(nap_pid, 400)?;
    check!(!slow.ready(), "a 400 ms job is not ready at once");
    let error = slow.get_timeout(Duration::from_millis(20)).unwrap_err();
    check!(error.is_timeout(), "{error}");
    check!(
        !slow.wait_timeout(Duration::from_millis(10)),
        "wait_timeout"
    );
    check!(slow.get_timeout(Duration::MAX)? > 0, "Duration::MAX waits");
    check!(slow.ready() && slow.get()? > 0, "get again");
    check!(
        matches!(pool.join(), Err(PoolError::StillOpen)),
        "join before close"
    );
    pool.close();
    check!(
        matches!(pool.apply_async(square, 1), Err(PoolError::Closed)),
        "submit after close"
    );
    pool.join_timeout(Duration::MAX)?;
    drop(pool);
    no_children_left()?;
    Ok(())
}

fn bad_settings_are_refused() -> TestResult {
    check!(
        matches!(Pool::new(0), Err(PoolError::NoWorkers)),
        "zero workers"
    );
    let pool = pool(StartMethod::Fork, 1)?;
    check!(
        matches!(
            pool.map_chunked(square, [1], 0),
            Err(PoolError::ZeroChunksize)
        ),
        "chunk size 0"
    );
    close_and_join(pool)
}

fn dropping_the_pool_kills_its_workers_and_their_children(method: StartMethod) -> TestResult {
    let grandchild;
    {
        let pool = pool(method, 1)?;
        grandchild = pool.apply(spawner, ())? as i32;
        let _busy = pool.apply_async(nap_pid, 20_000)?;
        check!(is_alive(grandchild), "the worker's child is not running");
    }
    no_children_left()?;
    retry_until(Instant::now() + Duration::from_secs(3), || {
        if is_alive(grandchild) {
            Err(format!(
                "the worker's child {grandchild} outlived the dropped pool"
            ))
        } else {
            Ok(())
        }
    })?;
    Ok(())
}

fn the_host_s_own_children_are_left_to_it(method: StartMethod) -> TestResult {
    let mut own = std::process::Command::new("true").spawn()?;
    let pool = pool(method, 2)?;
    sleep_ms(100); // `true` has exited by now: a stray-reaping pool would take its status
    check!(pool.map(square, 0..10u64)?.len() == 10, "map");
    let status = own.wait()?;
    check!(
        status.success(),
        "the host's child status was taken: {status:?}"
    );
    close_and_join(pool)
}

fn many_threads_share_one_pool() -> TestResult {
    let pool = pool(StartMethod::Forkserver, 2)?;
    let totals = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let (pool, totals) = (&pool, &totals);
            scope.spawn(move || {
                let inputs = (thread * 100)..(thread * 100 + 100);
                let sum: u64 = pool.map(square, inputs).unwrap().into_iter().sum();
                let one = pool.apply(add, (thread, 1)).unwrap();
                totals.lock().unwrap().push((thread, sum, one));
            });
        }
    });
    let mut totals = totals.into_inner().unwrap();
    totals.sort_unstable();
    for (thread, sum, one) in totals {
        let expected: u64 = ((thread * 100)..(thread * 100 + 100)).map(|n| n * n).sum();
        check!(sum == expected && one == thread + 1, "thread {thread}");
    }
    close_and_join(pool)
}

fn fork_is_refused_in_a_multi_threaded_process() -> TestResult {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let _ = stopped.recv();
    });
    let refused = pool(StartMethod::Fork, 1);
    stop.send(())?;
    thread.join().map_err(|_| "the helper thread panicked")?;
    let error = refused.unwrap_err();
    check!(
        matches!(&error, PoolError::Setup(message) if message.contains("single-threaded")),
        "{error}"
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    herd_ipc::init();
    // Every wait in these trials is bounded by the trial itself, but a pool bug must fail this
    // binary, not hang it: SIGALRM's default action ends the process, the workers die with it.
    nix::unistd::alarm::set(300);
    type PerMethod = (&'static str, fn(StartMethod) -> TestResult);
    let per_method: [PerMethod; 13] = [
        (
            "every_method_gives_python_s_answers",
            every_method_gives_python_s_answers,
        ),
        (
            "imap_is_lazy_over_an_endless_iterator",
            imap_is_lazy_over_an_endless_iterator,
        ),
        (
            "callbacks_run_once_with_the_outputs",
            callbacks_run_once_with_the_outputs,
        ),
        (
            "a_callback_runs_though_its_result_was_dropped",
            a_callback_runs_though_its_result_was_dropped,
        ),
        (
            "job_failures_come_back_as_errors_and_the_pool_goes_on",
            job_failures_come_back_as_errors_and_the_pool_goes_on,
        ),
        (
            "a_worker_killed_mid_map_loses_no_result",
            a_worker_killed_mid_map_loses_no_result,
        ),
        (
            "a_poison_job_cannot_sink_the_pool",
            a_poison_job_cannot_sink_the_pool,
        ),
        (
            "terminate_with_ten_thousand_queued_jobs_is_quick",
            terminate_with_ten_thousand_queued_jobs_is_quick,
        ),
        (
            "the_initializer_runs_in_every_worker",
            the_initializer_runs_in_every_worker,
        ),
        (
            "waits_time_out_and_long_timeouts_mean_forever",
            waits_time_out_and_long_timeouts_mean_forever,
        ),
        (
            "dropping_the_pool_kills_its_workers_and_their_children",
            dropping_the_pool_kills_its_workers_and_their_children,
        ),
        (
            "the_host_s_own_children_are_left_to_it",
            the_host_s_own_children_are_left_to_it,
        ),
        (
            "a_job_input_over_the_pipe_message_limit_arrives_whole",
            a_job_input_over_the_pipe_message_limit_arrives_whole,
        ),
    ];
    let mut trials = Vec::new();
    for (name, test) in per_method {
        for method in StartMethod::ALL {
            let label = method.as_str();
            trials.push(Trial::test(format!("{name}::{label}"), move || {
                test(method)
            }));
        }
    }
    trials.push(Trial::test(
        "bad_settings_are_refused",
        bad_settings_are_refused,
    ));
    trials.push(Trial::test(
        "many_threads_share_one_pool",
        many_threads_share_one_pool,
    ));
    trials.push(Trial::test(
        "fork_is_refused_in_a_multi_threaded_process",
        fork_is_refused_in_a_multi_threaded_process,
    ));
    run_trials(trials)
}
