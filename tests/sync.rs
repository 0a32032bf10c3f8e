//! Process-shared locks, semaphores, event, condition, barrier, Value and Array, exercised
//! across real forked processes, including SIGKILL of a lock holder.

use herd_testkit as support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::ipc::shared::AccessError;
use herd::ipc::sync::{
    BarrierWaitError, ConditionWaitError, LockFailure, LockTimeoutError, TryLockError,
};
use herd::ipc::{
    Array, Barrier, BoundedSemaphore, Condition, Entry, Event, Lock, LockError, RLock, Semaphore,
    Value,
};
use support::{ensure, fork_child, run, spawn_child, wait_until, TestChild, Verdict};

const JOIN: Duration = Duration::from_secs(20);
const SHORT: Duration = Duration::from_secs(5);

/// Every primitive, as one spawn argument: each travels as its segment's fd.
#[derive(serde::Serialize, serde::Deserialize)]
struct Handles {
    lock: Lock,
    rlock: RLock,
    semaphore: Semaphore,
    bounded: BoundedSemaphore,
    event: Event,
    condition: Condition,
    barrier: Barrier,
    value: Value<u64>,
    array: Array<i32>,
}

herd::ipc::entry! {
    /// Uses every primitive received from the parent, in step with it.
    fn use_every_primitive(handles: Handles) -> Verdict {
        let h = handles;
        h.barrier.wait_timeout(SHORT).map_err(err)?;
        h.event.wait_timeout(SHORT).map_err(err)?;
        h.semaphore.acquire_timeout(SHORT).map_err(err)?;
        {
            let _guard = h.lock.lock().map_err(err)?;
            h.value.with_lock(|v| *v += 1).map_err(err)?;
        }
        {
            let _outer = h.rlock.lock().map_err(err)?;
            let _inner = h.rlock.lock().map_err(err)?;
        }
        h.array.copy_from_slice(0, &[1, 2, 3]).map_err(err)?;
        h.bounded.release().map_err(err)?;
        ensure(h.bounded.release().is_err(), || "over-release accepted".into())?;
        h.value.fetch_add(10);
        let _guard = h.condition.lock().map_err(err)?;
        h.array.set(3, 4).map_err(err)?;
        h.condition.notify_all();
        Ok(())
    }
}

herd::ipc::entry! {
    /// Takes the lock, says so, and sleeps until killed.
    fn hold_lock_until_killed(args: (Lock, Event)) -> Verdict {
        let (lock, locked) = args;
        let _guard = lock.lock().map_err(err)?;
        locked.set();
        std::thread::sleep(Duration::from_secs(60));
        Ok(())
    }
}

herd::ipc::entry! {
    /// Expects a Value<i64>; the parent sends a Value<u64> to check the type check.
    fn expect_i64_value(value: Value<i64>) -> Verdict {
        value.set(-1).map_err(err)
    }
}

/// What the parent hands the child in the shared-lock condition test.
type SharedLockArgs = (Lock, Condition, Condition, Value<u64>, Event);

herd::ipc::entry! {
    /// The child's side of `conditions_share_one_lock_across_processes`, when spawned.
    fn answer_under_a_shared_lock(args: SharedLockArgs) -> Verdict {
        answer_under_shared_lock(args)
    }
}

/// Shows that `ping` waits under the parent's `lock` (it cannot be taken while the parent holds
/// the lock directly), then waits on `ping` for 1 and answers 2 on `pong`.
fn answer_under_shared_lock(args: SharedLockArgs) -> Verdict {
    let (_lock, ping, pong, value, tried) = args;
    let refused = matches!(
        ping.lock_timeout(Duration::from_millis(50)),
        Err(LockTimeoutError::Timeout)
    );
    tried.set();
    ensure(refused, || {
        "the condition's lock was free while the parent held the Lock".into()
    })?;
    let mut guard = ping.lock().map_err(err)?;
    guard.wait_for(|| value.load() == 1, SHORT).map_err(err)?;
    value.store(2);
    pong.notify_all();
    Ok(())
}

/// The counter the barrier action below bumps: each party stores the handle it was given here
/// before it waits, which is how an action reaches shared state in any process.
static TRIPS: std::sync::OnceLock<Value<u64>> = std::sync::OnceLock::new();

herd::ipc::entry! {
    /// A barrier action: counts trips in the shared counter, slowly, so a party released before
    /// it finished would see the old count.
    fn count_trip(_unit: ()) {
        std::thread::sleep(Duration::from_millis(30));
        TRIPS.get().expect("the counter is set before waiting").fetch_add(1);
    }
}

herd::ipc::entry! {
    /// A barrier action that fails.
    fn failing_action(_unit: ()) {
        herd_testkit::quiet_panic_hook();
        panic!("the action failed on purpose")
    }
}

herd::ipc::entry! {
    /// A barrier action whose process is SIGKILLed while it runs (holding the barrier's lock).
    fn killed_in_action(_unit: ()) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::thread::sleep(Duration::from_secs(60));
    }
}

herd::ipc::entry! {
    /// A party of `barrier_action_runs_once_per_trip_before_release`, when spawned.
    fn barrier_party(args: (Barrier, Value<u64>)) -> Verdict {
        let (barrier, trips) = args;
        cross_barrier_rounds(&barrier, trips)
    }
}

const BARRIER_ROUNDS: u64 = 3;

/// Crosses the barrier BARRIER_ROUNDS times, checking after each that the action ran exactly
/// once per trip and before this party was released.
fn cross_barrier_rounds(barrier: &Barrier, trips: Value<u64>) -> Verdict {
    let _ = TRIPS.set(trips);
    let trips = TRIPS.get().expect("just set");
    for round in 1..=BARRIER_ROUNDS {
        barrier.wait_timeout(SHORT).map_err(err)?;
        // The next trip needs this party, so the count cannot move past `round` yet.
        let seen = trips.load();
        ensure(seen == round, || {
            format!("released in round {round} with {seen} trips counted")
        })?;
    }
    Ok(())
}

fn main() -> ExitCode {
    run(vec![
        (
            "spawned_children_share_every_primitive_by_fd",
            spawned_children_share_every_primitive_by_fd,
        ),
        (
            "spawned_lock_holder_killed_gives_owner_died",
            spawned_lock_holder_killed_gives_owner_died,
        ),
        (
            "spawned_child_rejects_a_segment_of_the_wrong_type",
            spawned_child_rejects_a_segment_of_the_wrong_type,
        ),
        (
            "lock_excludes_across_processes",
            lock_excludes_across_processes,
        ),
        (
            "lock_timeout_and_try_lock_across_processes",
            lock_timeout_and_try_lock_across_processes,
        ),
        (
            "lock_relock_by_holder_is_an_error",
            lock_relock_by_holder_is_an_error,
        ),
        (
            "killed_lock_holder_gives_owner_died_within_1s",
            killed_lock_holder_gives_owner_died_within_1s,
        ),
        (
            "blocked_waiter_gets_owner_died_when_holder_is_killed",
            blocked_waiter_gets_owner_died_when_holder_is_killed,
        ),
        (
            "owner_died_not_marked_consistent_makes_lock_unrecoverable",
            owner_died_not_marked_consistent_makes_lock_unrecoverable,
        ),
        (
            "question_mark_on_lock_across_processes",
            question_mark_on_lock_across_processes,
        ),
        (
            "rlock_is_reentrant_in_its_owner_only",
            rlock_is_reentrant_in_its_owner_only,
        ),
        (
            "semaphore_limits_concurrency_across_processes",
            semaphore_limits_concurrency_across_processes,
        ),
        (
            "semaphore_release_wakes_other_process_and_times_out",
            semaphore_release_wakes_other_process_and_times_out,
        ),
        (
            "bounded_semaphore_over_release_is_an_error",
            bounded_semaphore_over_release_is_an_error,
        ),
        (
            "endless_timeouts_wait_without_overflow",
            endless_timeouts_wait_without_overflow,
        ),
        (
            "event_wakes_waiters_in_other_processes",
            event_wakes_waiters_in_other_processes,
        ),
        (
            "condition_notify_wakes_waiters_in_other_processes",
            condition_notify_wakes_waiters_in_other_processes,
        ),
        (
            "condition_notify_one_hands_each_token_to_one_waiter",
            condition_notify_one_hands_each_token_to_one_waiter,
        ),
        (
            "condition_wait_times_out_holding_the_lock",
            condition_wait_times_out_holding_the_lock,
        ),
        (
            "barrier_releases_all_parties_with_distinct_indices",
            barrier_releases_all_parties_with_distinct_indices,
        ),
        (
            "conditions_share_one_lock_across_processes",
            conditions_share_one_lock_across_processes,
        ),
        (
            "condition_over_rlock_releases_every_level",
            condition_over_rlock_releases_every_level,
        ),
        (
            "barrier_action_runs_once_per_trip_before_release",
            barrier_action_runs_once_per_trip_before_release,
        ),
        (
            "barrier_action_panic_breaks_the_barrier",
            barrier_action_panic_breaks_the_barrier,
        ),
        (
            "barrier_action_killed_wakes_untimed_waiters_broken",
            barrier_action_killed_wakes_untimed_waiters_broken,
        ),
        (
            "barrier_breaks_when_a_party_never_arrives",
            barrier_breaks_when_a_party_never_arrives,
        ),
        (
            "value_atomic_increments_from_two_processes_sum_exactly",
            value_atomic_increments_from_two_processes_sum_exactly,
        ),
        (
            "value_locked_increments_from_two_processes_sum_exactly",
            value_locked_increments_from_two_processes_sum_exactly,
        ),
        (
            "array_atomics_and_slices_across_processes",
            array_atomics_and_slices_across_processes,
        ),
        ("array_bad_indices_are_errors", array_bad_indices_are_errors),
        (
            "value_lock_recovers_from_a_killed_holder",
            value_lock_recovers_from_a_killed_holder,
        ),
    ])
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// How a test starts a child: forked, or spawned (this binary re-executed).
#[derive(Clone, Copy, Debug)]
enum Start {
    Fork,
    Spawn,
}

/// Starts a child running `hold_lock_until_killed` on `lock` and returns once it holds the lock.
fn start_lock_holder(lock: &Lock, how: Start) -> Result<TestChild, String> {
    let locked = Event::new().map_err(err)?;
    let args = (lock.clone(), locked.clone());
    let holder = match how {
        Start::Fork => fork_child(move || hold_lock_until_killed::run(args)),
        Start::Spawn => spawn_child(hold_lock_until_killed, &args),
    };
    locked
        .wait_timeout(SHORT)
        .map_err(|_| format!("{how:?} holder never locked"))?;
    Ok(holder)
}

fn spawned_children_share_every_primitive_by_fd() -> Verdict {
    let h = Handles {
        lock: Lock::new().map_err(err)?,
        rlock: RLock::new().map_err(err)?,
        semaphore: Semaphore::new(0).map_err(err)?,
        bounded: BoundedSemaphore::new(1).map_err(err)?,
        event: Event::new().map_err(err)?,
        condition: Condition::new().map_err(err)?,
        barrier: Barrier::new(2).map_err(err)?,
        value: Value::new(0).map_err(err)?,
        array: Array::new(4).map_err(err)?,
    };
    h.bounded.acquire_timeout(SHORT).map_err(err)?;
    let child = spawn_child(use_every_primitive, &h);
    h.barrier.wait_timeout(SHORT).map_err(err)?;
    h.event.set();
    h.semaphore.release();
    {
        let mut guard = h.condition.lock().map_err(err)?;
        guard
            .wait_for(
                || {
                    h.array
                        .atomic(3)
                        .map(|a| a.load(std::sync::atomic::Ordering::SeqCst))
                        .ok()
                        == Some(4)
                },
                SHORT,
            )
            .map_err(err)?;
    }
    child.join(JOIN)?;
    ensure(h.value.get().map_err(err)? == 11, || "value".into())?;
    ensure(h.array.to_vec().map_err(err)? == [1, 2, 3, 4], || {
        "array".into()
    })?;
    ensure(h.bounded.value() == 1 && h.semaphore.value() == 0, || {
        "semaphores".into()
    })?;
    ensure(
        h.lock.try_lock().is_ok() && h.rlock.try_lock().is_ok(),
        || "locks left held".into(),
    )
}

fn spawned_lock_holder_killed_gives_owner_died() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let holder = start_lock_holder(&lock, Start::Spawn)?;
    holder.kill()?;
    let start = Instant::now();
    match lock.lock_timeout(Duration::from_secs(1)) {
        Err(LockTimeoutError::OwnerDied(died)) => died.into_inner().mark_consistent(),
        Err(other) => return Err(format!("expected OwnerDied, got {other}")),
        Ok(_) => return Err("expected OwnerDied, got a clean lock".into()),
    }
    ensure(start.elapsed() < Duration::from_secs(1), || {
        format!("took {:?}", start.elapsed())
    })
}

fn spawned_child_rejects_a_segment_of_the_wrong_type() -> Verdict {
    let value = Value::<u64>::new(5).map_err(err)?;
    let child = herd::ipc::Process::new()
        .spawn_named::<_, Verdict>(<expect_i64_value as herd::ipc::Entry>::NAME, &value)
        .map_err(err)?;
    match child.join_timeout(JOIN) {
        Err(failure @ herd::ipc::JoinTimeoutError::Failed { .. }) => {
            let message = failure.to_string();
            ensure(message.contains("Value<i64>"), || message)?;
        }
        Err(other) => return Err(format!("expected a decode failure, got {other}")),
        Ok(verdict) => return Err(format!("child accepted the wrong type: {verdict:?}")),
    }
    ensure(value.get().map_err(err)? == 5, || "value changed".into())
}

/// Two processes do a deliberately racy read-yield-write under the Lock; no update is lost.
fn lock_excludes_across_processes() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let counter = Value::<u64>::new(0).map_err(err)?;
    const ROUNDS: u64 = 2000;
    let worker = || {
        let (lock, counter) = (lock.clone(), counter.clone());
        fork_child(move || {
            for _ in 0..ROUNDS {
                let _guard = lock.lock().map_err(err)?;
                let seen = counter.load();
                std::thread::yield_now();
                counter.store(seen + 1);
            }
            Ok(())
        })
    };
    let (a, b) = (worker(), worker());
    a.join(JOIN)?;
    b.join(JOIN)?;
    ensure(counter.load() == 2 * ROUNDS, || {
        format!("lost updates: {} != {}", counter.load(), 2 * ROUNDS)
    })
}

fn lock_timeout_and_try_lock_across_processes() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let guard = lock.lock().map_err(err)?;
    let child = {
        let lock = lock.clone();
        fork_child(move || {
            ensure(
                matches!(lock.try_lock(), Err(TryLockError::WouldBlock)),
                || "try_lock on a held lock did not report WouldBlock".into(),
            )?;
            let start = Instant::now();
            ensure(
                matches!(
                    lock.lock_timeout(Duration::from_millis(100)),
                    Err(LockTimeoutError::Timeout)
                ),
                || "lock_timeout on a held lock did not time out".into(),
            )?;
            ensure(start.elapsed() >= Duration::from_millis(100), || {
                format!("timed out early: {:?}", start.elapsed())
            })?;
            // The parent releases after we exit with 0 from this phase; then we can lock.
            Ok(())
        })
    };
    child.join(JOIN)?;
    drop(guard);
    let child = {
        let lock = lock.clone();
        fork_child(move || lock.lock_timeout(SHORT).map(drop).map_err(err))
    };
    child.join(JOIN)
}

fn lock_relock_by_holder_is_an_error() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let _guard = lock.lock().map_err(err)?;
    let relock = lock.lock();
    let already_held = matches!(relock, Err(LockError::AlreadyHeld));
    drop(relock);
    ensure(already_held, || {
        "relocking a held Lock in its holder did not report AlreadyHeld".into()
    })
}

/// The holder is SIGKILLed; the next acquirer gets the lock within 1 s, told the owner died.
fn killed_lock_holder_gives_owner_died_within_1s() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let holder = start_lock_holder(&lock, Start::Fork)?;
    ensure(
        matches!(lock.try_lock(), Err(TryLockError::WouldBlock)),
        || "lock not held by the child".into(),
    )?;
    holder.kill()?;
    let start = Instant::now();
    let mut guard = match lock.lock_timeout(Duration::from_secs(1)) {
        Err(LockTimeoutError::OwnerDied(died)) => died.into_inner(),
        Err(other) => return Err(format!("expected OwnerDied, got {other}")),
        Ok(_) => return Err("expected OwnerDied, got a clean lock".into()),
    };
    ensure(start.elapsed() < Duration::from_secs(1), || {
        format!("took {:?}", start.elapsed())
    })?;
    ensure(guard.is_inconsistent(), || "guard not inconsistent".into())?;
    guard.mark_consistent();
    drop(guard);
    let guard = lock.lock_timeout(SHORT).map_err(err)?;
    ensure(!guard.is_inconsistent(), || {
        "lock still inconsistent".into()
    })
}

/// A waiter already blocked in another process is woken by the kernel when the holder dies.
fn blocked_waiter_gets_owner_died_when_holder_is_killed() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let holder = start_lock_holder(&lock, Start::Fork)?;
    let trying = Event::new().map_err(err)?;
    let waiter = {
        let (lock, trying) = (lock.clone(), trying.clone());
        fork_child(move || {
            trying.set();
            match lock.lock_timeout(Duration::from_secs(10)) {
                Err(LockTimeoutError::OwnerDied(mut died)) => {
                    died.get_mut().mark_consistent();
                    Ok(())
                }
                Err(other) => Err(format!("expected OwnerDied, got {other}")),
                Ok(_) => Err("expected OwnerDied, got a clean lock".into()),
            }
        })
    };
    trying
        .wait_timeout(SHORT)
        .map_err(|_| "waiter never started".to_string())?;
    // The waiter must be asleep in the kernel on the held lock before the holder dies, so
    // that this test covers the hand-over to a blocked waiter (not a lock taken afterwards).
    wait_until_sleeping(waiter.pid())?;
    let kill_time = Instant::now();
    holder.kill()?;
    waiter.join(JOIN)?;
    ensure(kill_time.elapsed() < Duration::from_secs(1), || {
        format!("waiter needed {:?} after the kill", kill_time.elapsed())
    })
}

/// Waits until process `pid` is in state S (interruptible sleep), as read from /proc.
fn wait_until_sleeping(pid: herd::ipc::Pid) -> Verdict {
    let deadline = Instant::now() + SHORT;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(err)?;
        // The state follows the parenthesised command name, which may itself hold spaces.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if state == Some('S') {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("process {pid} never blocked (state {state:?})"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn owner_died_not_marked_consistent_makes_lock_unrecoverable() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let holder = {
        let lock = lock.clone();
        fork_child(move || {
            std::mem::forget(lock.lock().map_err(err)?);
            // Exiting while holding the lock counts as dying while holding it.
            Ok(())
        })
    };
    holder.join(JOIN)?;
    match lock.lock() {
        Err(LockError::OwnerDied(died)) => drop(died.into_inner()),
        other => return Err(format!("expected OwnerDied, got {:?}", other.map(drop))),
    }
    let child = {
        let lock = lock.clone();
        fork_child(move || {
            ensure(matches!(lock.lock(), Err(LockError::Unrecoverable)), || {
                "expected Unrecoverable in another process".into()
            })
        })
    };
    child.join(JOIN)
}

/// Adds one under the lock, propagating a lock error with `?` into a `Box<dyn Error>`.
fn locked_increment(lock: &Lock, total: &Value<u64>) -> Result<u64, Box<dyn std::error::Error>> {
    let _guard = lock.lock()?;
    let n = total.load() + 1;
    total.store(n);
    Ok(n)
}

/// The lock failure inside a boxed error, as `?` left it there.
fn lock_failure(result: Result<u64, Box<dyn std::error::Error>>) -> Result<LockFailure, String> {
    match result {
        Ok(n) => Err(format!("expected a lock error, got Ok({n})")),
        Err(boxed) => boxed
            .downcast::<LockFailure>()
            .map(|failure| *failure)
            .map_err(|other| format!("expected a LockFailure, got {other}")),
    }
}

fn question_mark_on_lock_across_processes() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let total = Value::<u64>::new(0).map_err(err)?;
    let child = {
        let (lock, total) = (lock.clone(), total.clone());
        fork_child(move || locked_increment(&lock, &total).map(drop).map_err(err))
    };
    locked_increment(&lock, &total).map_err(err)?;
    child.join(JOIN)?;
    ensure(total.load() == 2, || format!("total {}", total.load()))?;

    // A holder that exits holding the lock: `?` drops the owner-died guard on the way out.
    let holder = {
        let lock = lock.clone();
        fork_child(move || {
            std::mem::forget(lock.lock().map_err(err)?);
            Ok(())
        })
    };
    holder.join(JOIN)?;
    let failure = lock_failure(locked_increment(&lock, &total))?;
    ensure(failure.is_owner_died(), || format!("{failure:?}"))?;
    let child = {
        let (lock, total) = (lock.clone(), total.clone());
        fork_child(move || {
            let failure = lock_failure(locked_increment(&lock, &total))?;
            ensure(matches!(failure, LockFailure::Unrecoverable), || {
                format!("expected Unrecoverable in another process, got {failure:?}")
            })
        })
    };
    child.join(JOIN)
}

fn rlock_is_reentrant_in_its_owner_only() -> Verdict {
    let rlock = RLock::new().map_err(err)?;
    let outer = rlock.lock().map_err(err)?;
    let inner = rlock.try_lock().map_err(err)?;
    let probe = |expect_free: bool| {
        let rlock = rlock.clone();
        fork_child(move || match rlock.try_lock() {
            Ok(_) if expect_free => Ok(()),
            Err(TryLockError::WouldBlock) if !expect_free => Ok(()),
            other => Err(format!(
                "expect_free={expect_free}, got {:?}",
                other.map(drop)
            )),
        })
    };
    probe(false).join(JOIN)?;
    drop(inner);
    probe(false).join(JOIN)?;
    drop(outer);
    probe(true).join(JOIN)
}

fn semaphore_limits_concurrency_across_processes() -> Verdict {
    let semaphore = Semaphore::new(2).map_err(err)?;
    let inside = Value::<u32>::new(0).map_err(err)?;
    let most = Value::<u32>::new(0).map_err(err)?;
    let children: Vec<_> = (0..4)
        .map(|_| {
            let (semaphore, inside, most) = (semaphore.clone(), inside.clone(), most.clone());
            fork_child(move || {
                for _ in 0..20 {
                    semaphore.acquire_timeout(SHORT).map_err(err)?;
                    let now = inside.fetch_add(1) + 1;
                    let mut seen = most.load();
                    while now > seen {
                        match most.compare_exchange(seen, now) {
                            Ok(_) => break,
                            Err(actual) => seen = actual,
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                    inside.fetch_sub(1);
                    semaphore.release();
                }
                Ok(())
            })
        })
        .collect();
    for child in children {
        child.join(JOIN)?;
    }
    ensure(most.load() <= 2, || {
        format!("{} inside at once", most.load())
    })?;
    ensure(semaphore.value() == 2, || {
        format!("value {}", semaphore.value())
    })
}

fn semaphore_release_wakes_other_process_and_times_out() -> Verdict {
    let semaphore = Semaphore::new(0).map_err(err)?;
    let start = Instant::now();
    ensure(
        semaphore
            .acquire_timeout(Duration::from_millis(50))
            .is_err(),
        || "acquire on an empty semaphore did not time out".into(),
    )?;
    ensure(start.elapsed() >= Duration::from_millis(50), || {
        "timed out early".into()
    })?;
    ensure(!semaphore.try_acquire(), || {
        "try_acquire on empty succeeded".into()
    })?;
    let child = {
        let semaphore = semaphore.clone();
        fork_child(move || semaphore.acquire_timeout(SHORT).map_err(err))
    };
    std::thread::sleep(Duration::from_millis(50));
    semaphore.release();
    child.join(JOIN)?;
    ensure(semaphore.value() == 0, || {
        "the child did not take the unit".into()
    })
}

fn bounded_semaphore_over_release_is_an_error() -> Verdict {
    let semaphore = BoundedSemaphore::new(1).map_err(err)?;
    let child = {
        let semaphore = semaphore.clone();
        fork_child(move || {
            semaphore.acquire_timeout(SHORT).map_err(err)?;
            semaphore.release().map_err(err)?;
            match semaphore.release() {
                Err(over) if over.bound == 1 => Ok(()),
                other => Err(format!("over-release gave {other:?}")),
            }
        })
    };
    child.join(JOIN)?;
    ensure(semaphore.value() == 1, || {
        format!("value {}", semaphore.value())
    })
}

/// `Duration::MAX` is "no deadline" for every `*_timeout` wait: each one blocks until a child
/// lets it through, instead of panicking on the deadline arithmetic or returning at once.
fn endless_timeouts_wait_without_overflow() -> Verdict {
    let lock = Lock::new().map_err(err)?;
    let rlock = RLock::new().map_err(err)?;
    let condition = Condition::new().map_err(err)?;
    let value = Value::<u64>::new(0).map_err(err)?;
    let array = Array::<u64>::new(1).map_err(err)?;
    let event = Event::new().map_err(err)?;
    let semaphore = Semaphore::new(0).map_err(err)?;
    let bounded = BoundedSemaphore::new(1).map_err(err)?;
    bounded.acquire_timeout(SHORT).map_err(err)?;
    let barrier = Barrier::new(2).map_err(err)?;
    let held = Event::new().map_err(err)?;
    let child = {
        let (lock, rlock, condition, value, array) = (
            lock.clone(),
            rlock.clone(),
            condition.clone(),
            value.clone(),
            array.clone(),
        );
        let (event, semaphore, bounded, barrier, held) = (
            event.clone(),
            semaphore.clone(),
            bounded.clone(),
            barrier.clone(),
            held.clone(),
        );
        fork_child(move || {
            let guards = (
                lock.lock().map_err(err)?,
                rlock.lock().map_err(err)?,
                condition.lock().map_err(err)?,
                value.lock().map_err(err)?,
                array.lock().map_err(err)?,
            );
            held.set();
            std::thread::sleep(Duration::from_millis(50));
            drop(guards);
            std::thread::sleep(Duration::from_millis(20));
            event.set();
            semaphore.release();
            bounded.release().map_err(err)?;
            barrier.wait_timeout(Duration::MAX).map_err(err)?;
            Ok(())
        })
    };
    held.wait_timeout(Duration::MAX).map_err(err)?;
    let started = Instant::now();
    drop(lock.lock_timeout(Duration::MAX).map_err(err)?);
    ensure(started.elapsed() >= Duration::from_millis(20), || {
        "lock_timeout(Duration::MAX) did not wait for the holder".into()
    })?;
    drop(rlock.lock_timeout(Duration::MAX).map_err(err)?);
    drop(value.lock_timeout(Duration::MAX).map_err(err)?);
    drop(array.lock_timeout(Duration::MAX).map_err(err)?);
    {
        let mut guard = condition.lock_timeout(Duration::MAX).map_err(err)?;
        // Nobody notifies, so only a child that is gone would end this wait: check that an
        // endless wait_for still returns once its predicate holds.
        guard.wait_for(|| true, Duration::MAX).map_err(err)?;
    }
    event.wait_timeout(Duration::MAX).map_err(err)?;
    semaphore.acquire_timeout(Duration::MAX).map_err(err)?;
    bounded.acquire_timeout(Duration::MAX).map_err(err)?;
    barrier.wait_timeout(Duration::MAX).map_err(err)?;
    child.join(JOIN)
}

fn event_wakes_waiters_in_other_processes() -> Verdict {
    let event = Event::new().map_err(err)?;
    ensure(
        event.wait_timeout(Duration::from_millis(20)).is_err(),
        || "wait on a clear event did not time out".into(),
    )?;
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let event = event.clone();
            fork_child(move || event.wait_timeout(SHORT).map_err(err))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    event.set();
    for waiter in waiters {
        waiter.join(JOIN)?;
    }
    ensure(event.is_set(), || "event not set".into())?;
    event.clear();
    let child = {
        let event = event.clone();
        fork_child(move || {
            ensure(!event.is_set(), || "clear not visible".into())?;
            ensure(
                event.wait_timeout(Duration::from_millis(20)).is_err(),
                || "cleared event did not time out".into(),
            )
        })
    };
    child.join(JOIN)
}

fn condition_notify_wakes_waiters_in_other_processes() -> Verdict {
    let condition = Condition::new().map_err(err)?;
    let ready = Value::<u32>::new(0).map_err(err)?;
    let waiting = Semaphore::new(0).map_err(err)?;
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (condition, ready, waiting) = (condition.clone(), ready.clone(), waiting.clone());
            fork_child(move || {
                let mut guard = condition.lock().map_err(err)?;
                waiting.release();
                guard.wait_for(|| ready.load() == 1, SHORT).map_err(err)
            })
        })
        .collect();
    for _ in 0..2 {
        waiting.acquire_timeout(SHORT).map_err(err)?;
    }
    {
        let _guard = condition.lock().map_err(err)?;
        ready.store(1);
        condition.notify_all();
    }
    for waiter in waiters {
        waiter.join(JOIN)?;
    }
    Ok(())
}

/// Producer/consumer over a Condition: each token, announced by notify_one, is taken by exactly
/// one of two waiting processes; both finish once two tokens have been handed out.
fn condition_notify_one_hands_each_token_to_one_waiter() -> Verdict {
    let condition = Condition::new().map_err(err)?;
    let tokens = Value::<u32>::new(0).map_err(err)?;
    let taken = Value::<u32>::new(0).map_err(err)?;
    let waiting = Semaphore::new(0).map_err(err)?;
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (condition, tokens, taken, waiting) = (
                condition.clone(),
                tokens.clone(),
                taken.clone(),
                waiting.clone(),
            );
            fork_child(move || {
                let mut guard = condition.lock().map_err(err)?;
                waiting.release();
                guard.wait_for(|| tokens.load() > 0, SHORT).map_err(err)?;
                tokens.fetch_sub(1);
                taken.fetch_add(1);
                Ok(())
            })
        })
        .collect();
    for _ in 0..2 {
        waiting.acquire_timeout(SHORT).map_err(err)?;
    }
    for round in 1..=2 {
        {
            let _guard = condition.lock().map_err(err)?;
            tokens.fetch_add(1);
            condition.notify_one();
        }
        ensure(wait_until(SHORT, || taken.load() == round), || {
            format!("token {round} not taken: taken={}", taken.load())
        })?;
        std::thread::sleep(Duration::from_millis(20));
        ensure(taken.load() == round && tokens.load() == 0, || {
            format!("one token taken twice: taken={}", taken.load())
        })?;
    }
    for consumer in consumers {
        consumer.join(JOIN)?;
    }
    Ok(())
}

fn condition_wait_times_out_holding_the_lock() -> Verdict {
    let condition = Condition::new().map_err(err)?;
    let mut guard = condition.lock().map_err(err)?;
    let start = Instant::now();
    match guard.wait_timeout(Duration::from_millis(50)) {
        Err(ConditionWaitError::Timeout) => {}
        other => return Err(format!("expected TimedOut, got {other:?}")),
    }
    ensure(start.elapsed() >= Duration::from_millis(50), || {
        "early".into()
    })?;
    let child = {
        let condition = condition.clone();
        fork_child(move || {
            ensure(
                matches!(
                    condition.lock_timeout(Duration::from_millis(20)),
                    Err(LockTimeoutError::Timeout)
                ),
                || "condition lock not held after a timed-out wait".into(),
            )
        })
    };
    child.join(JOIN)
}

fn barrier_releases_all_parties_with_distinct_indices() -> Verdict {
    let barrier = Barrier::new(3).map_err(err)?;
    let indices = Array::<u32>::new(3).map_err(err)?;
    let children: Vec<_> = (0..2)
        .map(|_| {
            let (barrier, indices) = (barrier.clone(), indices.clone());
            fork_child(move || {
                let index = barrier.wait_timeout(SHORT).map_err(err)?;
                indices
                    .atomic(index as usize)
                    .map_err(err)?
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
        })
        .collect();
    let index = barrier.wait_timeout(SHORT).map_err(err)?;
    indices
        .atomic(index as usize)
        .map_err(err)?
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    for child in children {
        child.join(JOIN)?;
    }
    let seen = indices.to_vec().map_err(err)?;
    ensure(seen == [1, 1, 1], || format!("arrival indices {seen:?}"))?;
    ensure(!barrier.is_broken() && barrier.n_waiting() == 0, || {
        "barrier state".into()
    })
}

/// Two conditions over one `Lock`, used by a forked and by a spawned child: the lock excludes
/// across processes whichever handle takes it, and a notification on one condition reaches a
/// waiter that holds the lock through the other.
fn conditions_share_one_lock_across_processes() -> Verdict {
    for how in [Start::Fork, Start::Spawn] {
        let lock = Lock::new().map_err(err)?;
        let ping = Condition::with_lock(lock.clone()).map_err(err)?;
        let pong = Condition::with_lock(lock.clone()).map_err(err)?;
        let value = Value::<u64>::new(0).map_err(err)?;
        let tried = Event::new().map_err(err)?;
        let held = lock.lock().map_err(err)?;
        let args = (
            lock.clone(),
            ping.clone(),
            pong.clone(),
            value.clone(),
            tried.clone(),
        );
        let child = match how {
            Start::Fork => fork_child(move || answer_under_shared_lock(args)),
            Start::Spawn => spawn_child(answer_under_a_shared_lock, &args),
        };
        tried.wait_timeout(JOIN).map_err(err)?;
        drop(held);
        {
            let mut guard = pong.lock().map_err(err)?;
            ensure(
                matches!(lock.try_lock(), Err(TryLockError::AlreadyHeld)),
                || format!("{how:?}: the Lock is not the one the condition holds"),
            )?;
            value.store(1);
            ping.notify_all();
            guard
                .wait_for(|| value.load() == 2, SHORT)
                .map_err(|e| format!("{how:?}: no answer on pong: {e}"))?;
        }
        child.join(JOIN)?;
    }
    Ok(())
}

/// A condition over an `RLock` held at two levels: a wait releases both (so a child can take the
/// lock and notify) and takes both back.
fn condition_over_rlock_releases_every_level() -> Verdict {
    let rlock = RLock::new().map_err(err)?;
    let condition = Condition::with_lock(rlock.clone()).map_err(err)?;
    let value = Value::<u64>::new(0).map_err(err)?;
    let outer = rlock.lock().map_err(err)?;
    let mut guard = condition.lock().map_err(err)?;
    let child = {
        let (rlock, condition, value) = (rlock.clone(), condition.clone(), value.clone());
        fork_child(move || {
            let _guard = rlock.lock_timeout(SHORT).map_err(err)?;
            value.store(1);
            condition.notify_all();
            Ok(())
        })
    };
    guard
        .wait_for(|| value.load() == 1, SHORT)
        .map_err(|e| format!("the waiter kept the RLock: {e}"))?;
    child.join(JOIN)?;
    drop(guard);
    // `outer` still holds one level: another process cannot take the lock.
    let probe = {
        let rlock = rlock.clone();
        fork_child(move || {
            ensure(
                matches!(rlock.try_lock(), Err(TryLockError::WouldBlock)),
                || "the RLock was free while the parent still held a level".into(),
            )
        })
    };
    probe.join(JOIN)?;
    drop(outer);
    let probe = {
        let rlock = rlock.clone();
        fork_child(move || rlock.try_lock().map(drop).map_err(err))
    };
    probe.join(JOIN)
}

/// Three parties (this process, a forked child, a spawned child) cross a barrier whose action is
/// a registered entry: it runs once per trip, in whichever party arrives last, before any party is
/// released.
fn barrier_action_runs_once_per_trip_before_release() -> Verdict {
    let barrier = Barrier::with_action(3, count_trip).map_err(err)?;
    ensure(
        barrier.action().as_deref() == Some(count_trip::NAME),
        || format!("action {:?}", barrier.action()),
    )?;
    let trips = Value::<u64>::new(0).map_err(err)?;
    let forked = {
        let (barrier, trips) = (barrier.clone(), trips.clone());
        fork_child(move || cross_barrier_rounds(&barrier, trips))
    };
    let spawned = spawn_child(barrier_party, &(barrier.clone(), trips.clone()));
    cross_barrier_rounds(&barrier, trips.clone())?;
    forked.join(JOIN)?;
    spawned.join(JOIN)?;
    ensure(trips.load() == BARRIER_ROUNDS, || {
        format!("{} trips counted for {BARRIER_ROUNDS}", trips.load())
    })
}

/// An action that panics breaks the barrier: the party that ran it is told why, the other gets
/// `Broken`.
fn barrier_action_panic_breaks_the_barrier() -> Verdict {
    let barrier = Barrier::with_action(2, failing_action).map_err(err)?;
    let child = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait_timeout(SHORT) {
            Err(BarrierWaitError::Broken) => Ok(()),
            Err(BarrierWaitError::Action { message, .. }) => {
                ensure(message.contains("on purpose"), || message)
            }
            other => Err(format!("child: {other:?}")),
        })
    };
    let outcome = barrier.wait_timeout(SHORT);
    child.join(JOIN)?;
    match outcome {
        Err(BarrierWaitError::Broken) => {}
        Err(BarrierWaitError::Action { message, .. }) if message.contains("on purpose") => {}
        other => return Err(format!("parent: {other:?}")),
    }
    ensure(barrier.is_broken(), || "barrier not broken".into())
}

/// The process running the action is SIGKILLed in it: a party asleep in an untimed `wait` is
/// woken with `Broken` instead of sleeping for ever.
fn barrier_action_killed_wakes_untimed_waiters_broken() -> Verdict {
    let barrier = Barrier::with_action(2, killed_in_action).map_err(err)?;
    let waiter = {
        let barrier = barrier.clone();
        fork_child(move || match barrier.wait() {
            Err(BarrierWaitError::Broken) => Ok(()),
            other => Err(format!("untimed waiter: {other:?}")),
        })
    };
    ensure(wait_until(SHORT, || barrier.n_waiting() == 1), || {
        "the first party never arrived".into()
    })?;
    let tripper = {
        let barrier = barrier.clone();
        herd::ipc::Process::new()
            .fork(move || barrier.wait().map(drop).map_err(err))
            .map_err(err)?
    };
    match tripper.join_timeout(JOIN) {
        Err(e) if e.is_killed() => {}
        other => return Err(format!("the party running the action: {other:?}")),
    }
    waiter.join(JOIN)?;
    ensure(barrier.is_broken(), || "barrier not broken".into())?;
    barrier.reset().map_err(err)?;
    ensure(!barrier.is_broken(), || "reset did not repair it".into())
}

fn barrier_breaks_when_a_party_never_arrives() -> Verdict {
    let barrier = Barrier::new(3).map_err(err)?;
    let patient = {
        let barrier = barrier.clone();
        fork_child(
            move || match barrier.wait_timeout(Duration::from_secs(10)) {
                Err(BarrierWaitError::Broken) => Ok(()),
                other => Err(format!("patient party: expected Broken, got {other:?}")),
            },
        )
    };
    ensure(wait_until(SHORT, || barrier.n_waiting() == 1), || {
        "the patient party never arrived".into()
    })?;
    let start = Instant::now();
    let impatient = {
        let barrier = barrier.clone();
        fork_child(
            move || match barrier.wait_timeout(Duration::from_millis(200)) {
                Err(BarrierWaitError::Timeout) => Ok(()),
                other => Err(format!("impatient party: expected TimedOut, got {other:?}")),
            },
        )
    };
    impatient.join(JOIN)?;
    patient.join(JOIN)?;
    ensure(start.elapsed() < Duration::from_secs(5), || {
        format!(
            "broken barrier took {:?} to release the patient party",
            start.elapsed()
        )
    })?;
    ensure(barrier.is_broken(), || "barrier not broken".into())?;
    ensure(
        matches!(barrier.wait_timeout(SHORT), Err(BarrierWaitError::Broken)),
        || "wait on a broken barrier did not fail at once".into(),
    )?;
    barrier.reset().map_err(err)?;
    let children: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            fork_child(move || barrier.wait_timeout(SHORT).map(drop).map_err(err))
        })
        .collect();
    barrier.wait_timeout(SHORT).map_err(err)?;
    for child in children {
        child.join(JOIN)?;
    }
    Ok(())
}

fn value_atomic_increments_from_two_processes_sum_exactly() -> Verdict {
    let value = Value::<u64>::new(0).map_err(err)?;
    const ROUNDS: u64 = 200_000;
    let children: Vec<_> = (0..2)
        .map(|_| {
            let value = value.clone();
            fork_child(move || {
                for _ in 0..ROUNDS {
                    value.fetch_add(1);
                }
                Ok(())
            })
        })
        .collect();
    for child in children {
        child.join(JOIN)?;
    }
    ensure(value.get().map_err(err)? == 2 * ROUNDS, || {
        format!("sum {}", value.load())
    })?;
    ensure(
        value.compare_exchange(2 * ROUNDS, 7) == Ok(2 * ROUNDS),
        || "cas".into(),
    )?;
    ensure(value.compare_exchange(0, 9) == Err(7), || {
        "failed cas".into()
    })
}

fn value_locked_increments_from_two_processes_sum_exactly() -> Verdict {
    let value = Value::<i64>::new(-5).map_err(err)?;
    const ROUNDS: i64 = 20_000;
    let children: Vec<_> = (0..2)
        .map(|_| {
            let value = value.clone();
            fork_child(move || {
                for _ in 0..ROUNDS {
                    value.with_lock(|v| *v += 1).map_err(err)?;
                }
                Ok(())
            })
        })
        .collect();
    for child in children {
        child.join(JOIN)?;
    }
    let total = value.get().map_err(err)?;
    ensure(total == 2 * ROUNDS - 5, || format!("sum {total}"))
}

fn array_atomics_and_slices_across_processes() -> Verdict {
    let array = Array::<u32>::from_slice(&[10, 20, 30, 40]).map_err(err)?;
    const ROUNDS: u32 = 50_000;
    let children: Vec<_> = (0..2)
        .map(|_| {
            let array = array.clone();
            fork_child(move || {
                for round in 0..ROUNDS {
                    let index = (round % 4) as usize;
                    array
                        .atomic(index)
                        .map_err(err)?
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for child in children {
        child.join(JOIN)?;
    }
    let per_slot = 2 * ROUNDS / 4;
    let seen = array.to_vec().map_err(err)?;
    ensure(
        seen == [10 + per_slot, 20 + per_slot, 30 + per_slot, 40 + per_slot],
        || format!("{seen:?}"),
    )?;
    let child = {
        let array = array.clone();
        fork_child(move || {
            array.copy_from_slice(1, &[7, 8]).map_err(err)?;
            array.set(3, 9).map_err(err)
        })
    };
    child.join(JOIN)?;
    let mut out = [0u32; 3];
    array.copy_to_slice(1, &mut out).map_err(err)?;
    ensure(out == [7, 8, 9], || format!("{out:?}"))?;
    ensure(array.get(0).map_err(err)? == 10 + per_slot, || {
        "element 0".into()
    })
}

fn array_bad_indices_are_errors() -> Verdict {
    let array = Array::<f64>::new(3).map_err(err)?;
    ensure(
        array.len() == 3 && array.get(2).map_err(err)? == 0.0,
        || "zeroed".into(),
    )?;
    ensure(
        matches!(
            array.get(3),
            Err(AccessError::IndexOutOfRange { index: 3, len: 3 })
        ),
        || "get(3)".into(),
    )?;
    ensure(
        matches!(
            array.set(usize::MAX, 1.0),
            Err(AccessError::IndexOutOfRange { .. })
        ),
        || "set(MAX)".into(),
    )?;
    let mut out = [0.0; 2];
    ensure(
        matches!(
            array.copy_to_slice(2, &mut out),
            Err(AccessError::RangeOutOfRange { .. })
        ),
        || "copy_to".into(),
    )?;
    ensure(
        matches!(
            array.copy_from_slice(usize::MAX, &[1.0]),
            Err(AccessError::RangeOutOfRange { .. })
        ),
        || "copy_from".into(),
    )?;
    let _guard = array.lock().map_err(err)?;
    ensure(
        matches!(array.get(0), Err(AccessError::AlreadyLocked)),
        || "relock".into(),
    )?;
    let empty = Array::<u8>::new(0).map_err(err)?;
    ensure(
        empty.is_empty() && empty.to_vec().map_err(err)?.is_empty(),
        || "empty".into(),
    )
}

fn value_lock_recovers_from_a_killed_holder() -> Verdict {
    let value = Value::<[u64; 2]>::new([1, 1]).map_err(err)?;
    let locked = Event::new().map_err(err)?;
    let holder = {
        let (value, locked) = (value.clone(), locked.clone());
        fork_child(move || {
            let mut guard = value.lock().map_err(err)?;
            guard[0] = 2; // half of an update that must keep both halves equal
            locked.set();
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        })
    };
    locked
        .wait_timeout(SHORT)
        .map_err(|_| "holder never locked".to_string())?;
    holder.kill()?;
    let start = Instant::now();
    let guard = value.lock_timeout(Duration::from_secs(1)).map_err(err)?;
    ensure(start.elapsed() < Duration::from_secs(1), || {
        "slow recovery".into()
    })?;
    ensure(guard.previous_owner_died(), || {
        "owner death not reported".into()
    })?;
    ensure(*guard == [2, 1], || format!("torn state {:?}", *guard))?;
    drop(guard);
    let guard = value.lock().map_err(err)?;
    ensure(!guard.previous_owner_died(), || {
        "recovery not sticky".into()
    })
}
