//! The `Pool` API across real worker processes: map, imap_unordered, apply_async with callbacks,
//! close/join, terminate, and a map that survives its workers being SIGKILLed.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use herd_supervisor::{Pool, PoolError, StartMethod, SupervisorConfig};
use herd_testkit::cli::*;
use herd_testkit::proc::*;
use herd_testkit::{check, run_trials};
use herd_worker::{JobError, JobKind, Registry};
use libtest_mimic::Trial;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Squares a number after a short nap; refuses 13.
struct Square;
impl JobKind for Square {
    const NAME: &'static str = "square";
    type Input = u64;
    type Output = u64;
    fn run(&self, n: u64) -> Result<u64, JobError> {
        std::thread::sleep(Duration::from_millis(n % 5));
        if n == 13 {
            return Err(JobError::failed("unlucky"));
        }
        Ok(n * n)
    }
}

/// Sleeps `ms`, answers the worker's pid.
struct NapPid;
impl JobKind for NapPid {
    const NAME: &'static str = "nap-pid";
    type Input = u64;
    type Output = u32;
    fn run(&self, ms: u64) -> Result<u32, JobError> {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(std::process::id())
    }
}

/// Kills its worker, every time.
struct Poison;
impl JobKind for Poison {
    const NAME: &'static str = "poison";
    type Input = ();
    type Output = ();
    fn run(&self, _: ()) -> Result<(), JobError> {
        std::process::abort()
    }
}

/// Starts a `sleep 600` child of the worker, answers its pid, then naps `ms`.
struct Spawner;
impl JobKind for Spawner {
    const NAME: &'static str = "spawner";
    type Input = u64;
    type Output = u32;
    fn run(&self, ms: u64) -> Result<u32, JobError> {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .map_err(JobError::failed)?;
        let pid = child.id();
        std::mem::forget(child); // left running: it must die with the worker's group
        std::thread::sleep(Duration::from_millis(ms));
        Ok(pid)
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Square).unwrap();
    registry.register(NapPid).unwrap();
    registry.register(Poison).unwrap();
    registry.register(Spawner).unwrap();
    registry
}

fn this_pid() -> i32 {
    std::process::id() as i32
}

fn live_children() -> Vec<i32> {
    live_children_of(this_pid())
}

fn no_children_left() -> Result<(), String> {
    retry_until(Instant::now() + Duration::from_secs(2), || {
        let all = children_of(this_pid());
        if all.is_empty() {
            Ok(())
        } else {
            Err(format!("children left after the pool ended: {all:?}"))
        }
    })
}

/// Ends the test as most do: the pool joins cleanly and leaves no child behind.
fn join_leaving_no_children(pool: Pool) -> TestResult {
    pool.join()?;
    no_children_left()?;
    Ok(())
}

fn map_returns_outputs_in_order() -> TestResult {
    let mut pool = Pool::new(3, registry)?;
    let inputs: Vec<u64> = (0..40).filter(|&n| n != 13).collect();
    let squares = pool.map::<Square>(inputs.clone())?;
    check!(
        squares == inputs.iter().map(|n| n * n).collect::<Vec<_>>(),
        "{squares:?}"
    );
    check!(
        live_children().len() == 3,
        "a pool of 3 has children {:?}",
        live_children()
    );
    // A failing job makes map fail with that job's error.
    let err = pool.map::<Square>([12, 13, 14]).unwrap_err();
    check!(
        matches!(&err, PoolError::Failed { .. }) && err.to_string().contains("unlucky"),
        "{err}"
    );
    join_leaving_no_children(pool)
}

fn imap_unordered_yields_every_output() -> TestResult {
    let mut pool = Pool::new(2, registry)?;
    let mut got: Vec<u64> = pool
        .imap_unordered::<Square>(0..30u64)?
        .map(|r| r.unwrap_or(0))
        .collect();
    got.sort_unstable();
    let mut expected: Vec<u64> = (0..30u64)
        .map(|n| if n == 13 { 0 } else { n * n })
        .collect();
    expected.sort_unstable();
    check!(got == expected, "{got:?}");
    join_leaving_no_children(pool)
}

fn apply_async_with_callbacks() -> TestResult {
    let mut pool = Pool::new(2, registry)?;
    let seen = Rc::new(RefCell::new(Vec::new()));
    let errors = Rc::new(RefCell::new(Vec::new()));
    let mut handles = Vec::new();
    for n in [3u64, 13, 7] {
        let (seen, errors) = (Rc::clone(&seen), Rc::clone(&errors));
        handles.push(pool.apply_async_with::<Square>(
            &n,
            move |out| seen.borrow_mut().push(out),
            move |err| errors.borrow_mut().push(err.to_string()),
        )?);
    }
    let plain = pool.apply_async::<Square>(&9)?;
    check!(plain.get(&mut pool)? == 81, "apply_async get");
    check!(handles[0].get(&mut pool)? == 9, "get");
    check!(handles[1].get(&mut pool).is_err(), "job 13 must fail");
    pool.wait_idle();
    let mut seen = seen.borrow().clone();
    seen.sort_unstable();
    check!(seen == [9, 49], "callbacks saw {seen:?}");
    check!(
        errors.borrow().len() == 1 && errors.borrow()[0].contains("unlucky"),
        "{:?}",
        errors.borrow()
    );
    // A timeout leaves the job pending.
    let slow = pool.apply_async::<NapPid>(&400)?;
    check!(
        matches!(
            slow.get_timeout(&mut pool, Duration::from_millis(50)),
            Err(PoolError::Timeout(_))
        ),
        "no timeout"
    );
    check!(slow.get(&mut pool)? > 0, "slow job");
    pool.close();
    check!(
        matches!(pool.apply_async::<Square>(&1), Err(PoolError::Closed)),
        "submit after close"
    );
    join_leaving_no_children(pool)
}

fn terminate_kills_workers_mid_job() -> TestResult {
    let mut pool = Pool::new(2, registry)?;
    let handle = pool.apply_async::<NapPid>(&20_000)?;
    check!(!handle.ready(&mut pool), "a 20 s job is not ready");
    let deadline = Instant::now() + Duration::from_secs(5);
    while live_children().len() < 2 {
        check!(Instant::now() < deadline, "workers did not start");
        handle.ready(&mut pool);
    }
    let started = Instant::now();
    pool.terminate();
    check!(
        started.elapsed() < Duration::from_secs(2),
        "terminate took {:?}",
        started.elapsed()
    );
    no_children_left()?;
    Ok(())
}

fn map_survives_workers_killed() -> TestResult {
    let config = SupervisorConfig {
        workers: 2,
        max_restarts: 50,
        ..SupervisorConfig::default()
    };
    let mut pool = Pool::with_config(config, StartMethod::Fork, registry)?;
    // Warm up, then kill both workers while a map runs.
    pool.map::<Square>([1, 2])?;
    let victims = live_children();
    let handles: Vec<_> = (0..20u64)
        .map(|_| pool.apply_async::<NapPid>(&30))
        .collect::<Result<_, _>>()?;
    for &pid in &victims {
        kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    }
    let pids: Vec<u32> = handles
        .iter()
        .map(|h| h.get(&mut pool))
        .collect::<Result<_, _>>()?;
    check!(pids.len() == 20, "{pids:?}");
    check!(
        pids.iter().all(|pid| !victims.contains(&(*pid as i32))),
        "a killed worker answered after death: {pids:?}"
    );
    join_leaving_no_children(pool)
}

fn the_hosts_own_children_are_left_to_it() -> TestResult {
    let mut own = std::process::Command::new("true").spawn()?;
    let mut pool = Pool::new(2, registry)?;
    sleep_ms(100); // `true` has exited by now: a stray-reaping pool would take its status
    check!(pool.map::<Square>(0..10u64)?.len() == 10, "map");
    let status = own.wait()?;
    check!(
        status.success(),
        "the host's child status was taken: {status:?}"
    );
    join_leaving_no_children(pool)
}

fn a_poison_job_cannot_sink_the_run() -> TestResult {
    let mut pool = Pool::new(2, registry)?;
    let poison = pool.apply_async::<Poison>(&())?;
    let squares = pool.map::<Square>(20..40u64)?;
    check!(
        squares == (20..40u64).map(|n| n * n).collect::<Vec<_>>(),
        "{squares:?}"
    );
    let err = poison.get(&mut pool).unwrap_err();
    check!(
        err.to_string().contains("gave up after 3 attempt(s)")
            && err.to_string().contains("SIGABRT"),
        "{err}"
    );
    check!(
        pool.map::<Square>([3])? == [9],
        "the pool still works after the poison"
    );
    join_leaving_no_children(pool)
}

fn dropping_the_pool_kills_its_workers_and_their_children() -> TestResult {
    let grandchild;
    {
        let mut pool = Pool::new(1, registry)?;
        // The first job answers at once with its child's pid; the second keeps the worker busy.
        grandchild = pool.apply_async::<Spawner>(&0)?.get(&mut pool)? as i32;
        let busy = pool.apply_async::<NapPid>(&20_000)?;
        check!(!busy.ready(&mut pool), "a 20 s job is not ready");
        check!(is_alive(grandchild), "the worker's child is not running");
    }
    no_children_left()?;
    retry_until(Instant::now() + Duration::from_secs(2), || {
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

fn main() -> std::process::ExitCode {
    // Pool waits have no timeout of their own: a pool bug must fail this binary, not hang it.
    // SIGALRM's default action ends the process; the workers die with it.
    nix::unistd::alarm::set(120);
    run_trials(vec![
        Trial::test("map_returns_outputs_in_order", map_returns_outputs_in_order),
        Trial::test(
            "imap_unordered_yields_every_output",
            imap_unordered_yields_every_output,
        ),
        Trial::test("apply_async_with_callbacks", apply_async_with_callbacks),
        Trial::test(
            "terminate_kills_workers_mid_job",
            terminate_kills_workers_mid_job,
        ),
        Trial::test("map_survives_workers_killed", map_survives_workers_killed),
        Trial::test(
            "a_poison_job_cannot_sink_the_run",
            a_poison_job_cannot_sink_the_run,
        ),
        Trial::test(
            "the_hosts_own_children_are_left_to_it",
            the_hosts_own_children_are_left_to_it,
        ),
        Trial::test(
            "dropping_the_pool_kills_its_workers_and_their_children",
            dropping_the_pool_kills_its_workers_and_their_children,
        ),
    ])
}
