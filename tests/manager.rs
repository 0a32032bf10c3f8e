//! Manager across real processes: shared objects used from forked and spawned children, the
//! 20 x 1000 increments (with the manager lock and with the server-side atomic op), the authkey
//! handshake, bad frames from a raw client, server death, a client SIGKILLed holding a lock, an
//! owner SIGKILLed, and the TCP transport.
//!
//! `harness = false`: trials run one by one on the main thread, so this process stays
//! single-threaded and may fork; `herd_ipc::init()` lets spawn re-execute this binary (which is
//! also how the manager server itself starts). Every trial ends by checking no zombie is left.

use herd_testkit as support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::ipc::manager::{Address, Authkey, DictProxy, QueueProxy};
use herd::ipc::{Child, Manager, ManagerError, Pid, Process};
use hmac::{Hmac, Mac};
use libtest_mimic::Failed;
use nix::sys::signal::{kill, Signal};
use sha2::Sha256;
use support::eventually;

type TestResult = Result<(), Failed>;
type TrialFn = fn() -> TestResult;

/// Upper bound for any wait in these tests: a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

herd::ipc::entry! {
    /// A spawned child given proxies as arguments: counts into the dict, reports on the queue.
    fn spawned_worker(args: (DictProxy<String, i64>, QueueProxy<String>, u32)) -> Result<(), String> {
        let (counts, report, n) = args;
        for _ in 0..n {
            counts.increment("spawned", 1).map_err(|e| e.to_string())?;
        }
        report.put(&format!("done {}", std::process::id())).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let trials: Vec<(&str, TrialFn)> = vec![
        ("increments_with_manager_lock", increments_with_manager_lock),
        ("increments_with_atomic_op", increments_with_atomic_op),
        (
            "dict_list_namespace_across_forks",
            dict_list_namespace_across_forks,
        ),
        (
            "proxies_passed_to_spawned_children",
            proxies_passed_to_spawned_children,
        ),
        (
            "borrowed_keys_across_processes",
            borrowed_keys_across_processes,
        ),
        (
            "sync_objects_across_processes",
            sync_objects_across_processes,
        ),
        ("queue_across_processes", queue_across_processes),
        ("wrong_authkey_is_refused", wrong_authkey_is_refused),
        (
            "bad_frames_close_only_that_connection",
            bad_frames_close_only_that_connection,
        ),
        (
            "server_death_gives_errors_not_hangs",
            server_death_gives_errors_not_hangs,
        ),
        (
            "client_killed_holding_lock_releases_it",
            client_killed_holding_lock_releases_it,
        ),
        (
            "owner_killed_takes_server_down",
            owner_killed_takes_server_down,
        ),
        (
            "shutdown_stops_server_and_cleans_up",
            shutdown_stops_server_and_cleans_up,
        ),
        ("tcp_transport_and_connect", tcp_transport_and_connect),
    ];
    support::run(trials)
}

fn fail(message: impl Into<String>) -> Failed {
    message.into().into()
}

/// Joins a child whose body returns `Result<(), String>`, within PATIENCE.
fn join_ok(child: Child<Result<(), String>>) -> TestResult {
    let pid = child.pid();
    match child.join_timeout(PATIENCE) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(fail(format!("child {pid} failed: {message}"))),
        Err(e) => Err(fail(format!("child {pid}: {e}"))),
    }
}

fn join_all(children: Vec<Child<Result<(), String>>>) -> TestResult {
    children.into_iter().try_for_each(join_ok)
}

/// Whether `pid` is gone (or a zombie, which runs no more).
fn is_gone(pid: Pid) -> bool {
    procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.stat())
        .map_or(true, |stat| stat.state == 'Z')
}

fn check(condition: bool, what: impl Into<String>) -> TestResult {
    if condition {
        Ok(())
    } else {
        Err(fail(what))
    }
}

const PROCESSES: usize = 20;
const INCREMENTS: i64 = 1000;

/// Forks PROCESSES children that each call `increment` INCREMENTS times, then requires the count
/// under key 1 of `counts` to be exactly their total.
fn count_in_children(
    counts: &DictProxy<u32, i64>,
    increment: impl Fn() -> Result<(), ManagerError>,
) -> TestResult {
    let children = (0..PROCESSES)
        .map(|_| {
            Process::new().fork(|| -> Result<(), String> {
                for _ in 0..INCREMENTS {
                    increment().map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    join_all(children)?;
    let total = counts.get(&1)?;
    check(
        total == Some(PROCESSES as i64 * INCREMENTS),
        format!("expected exactly 20000, got {total:?}"),
    )
}

fn increments_with_manager_lock() -> TestResult {
    let manager = Manager::start()?;
    let counts = manager.dict::<u32, i64>()?;
    let lock = manager.lock()?;
    counts.insert(&1, &0)?;
    count_in_children(&counts, || {
        lock.acquire()?;
        let value = counts.get(&1)?.unwrap_or(0);
        counts.insert(&1, &(value + 1))?;
        lock.release()
    })?;
    manager.shutdown()?;
    Ok(())
}

fn increments_with_atomic_op() -> TestResult {
    let manager = Manager::start()?;
    let counts = manager.dict::<u32, i64>()?;
    count_in_children(&counts, || counts.increment(&1, 1).map(drop))
}

fn dict_list_namespace_across_forks() -> TestResult {
    let manager = Manager::start()?;
    let seen = manager.dict::<u32, Vec<u32>>()?;
    let names = manager.dict::<String, u32>()?;
    let list = manager.list::<u32>()?;
    let ns = manager.namespace()?;
    ns.set("greeting", &"hello".to_string())?;
    let children = (0..4u32)
        .map(|i| {
            Process::new().fork(|| -> Result<(), String> {
                let e = |e: ManagerError| e.to_string();
                let greeting: String = ns.get("greeting").map_err(e)?;
                list.push(&i).map_err(e)?;
                seen.append(&0, &i).map_err(e)?;
                // Exactly one child wins each of these.
                names.set_if_absent("first", &i).map_err(e)?;
                names.compare_and_swap("cas", None, &i).map_err(e)?;
                ns.set(&format!("child{i}"), &format!("{greeting} from {i}"))
                    .map_err(e)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    join_all(children)?;
    let mut items = list.snapshot()?;
    items.sort();
    check(items == vec![0, 1, 2, 3], format!("list holds {items:?}"))?;
    let mut appended = seen.get(&0)?.unwrap_or_default();
    appended.sort();
    check(
        appended == vec![0, 1, 2, 3],
        format!("appended {appended:?}"),
    )?;
    check(
        names.len()? == 2,
        "set_if_absent and compare_and_swap each set one key",
    )?;
    let first = names.get("first")?.ok_or_else(|| fail("no first"))?;
    check(first < 4, "first is some child's index")?;
    for i in 0..4 {
        let said: String = ns.get(&format!("child{i}"))?;
        check(
            said == format!("hello from {i}"),
            format!("child{i} said {said:?}"),
        )?;
    }
    Ok(())
}

fn proxies_passed_to_spawned_children() -> TestResult {
    let manager = Manager::start()?;
    let counts = manager.dict::<String, i64>()?;
    let report = manager.queue::<String>()?;
    let children = (0..3)
        .map(|_| Process::new().spawn(spawned_worker, &(counts.clone(), report.clone(), 100)))
        .collect::<Result<Vec<_>, _>>()?;
    let pids: Vec<Pid> = children.iter().map(Child::pid).collect();
    join_all(children)?;
    let mut reported = Vec::new();
    for _ in 0..3 {
        reported.push(report.get_timeout(PATIENCE)?);
    }
    reported.sort();
    let mut expected: Vec<String> = pids.iter().map(|p| format!("done {p}")).collect();
    expected.sort();
    check(reported == expected, format!("reports {reported:?}"))?;
    check(
        counts.get("spawned")? == Some(300),
        "300 increments from spawned children",
    )
}

/// Keys written through their borrowed form in one process (`&str` for `String`, `&[u8]` for
/// `Vec<u8>`) are the same keys, in the owned form, in another: both serialise alike.
fn borrowed_keys_across_processes() -> TestResult {
    let manager = Manager::start()?;
    let by_name = manager.dict::<String, i64>()?;
    let by_bytes = manager.dict::<Vec<u8>, u32>()?;
    let child = Process::new().fork(|| -> Result<(), String> {
        let e = |e: ManagerError| e.to_string();
        by_name.insert("ada", &36).map_err(e)?;
        by_name.increment("ada", 1).map_err(e)?;
        by_bytes.insert(&b"\x00key"[..], &7).map_err(e)?;
        Ok(())
    })?;
    join_ok(child)?;
    check(
        by_name.get(&"ada".to_owned())? == Some(37),
        "String key read back",
    )?;
    check(by_name.get("ada")? == Some(37), "&str key read back")?;
    check(by_name.keys()? == vec!["ada".to_owned()], "one owned key")?;
    check(
        by_bytes.get(&b"\x00key".to_vec())? == Some(7),
        "Vec<u8> key read back",
    )?;
    check(by_bytes.take(&b"\x00key"[..])? == Some(7), "[u8] key taken")?;
    check(!by_bytes.contains(&b"\x00key".to_vec())?, "key gone")?;
    let child = Process::new().spawn(spawned_worker, &(by_name.clone(), manager.queue()?, 2))?;
    join_ok(child)?;
    check(
        by_name.get("spawned")? == Some(2),
        "spawned child's &str increments",
    )
}

/// Forks a child that must find `what` taken (`try_acquire` gives false), then must get it with
/// `acquire_timeout` within PATIENCE once the parent releases it.
fn fork_waiting_acquirer(
    what: &'static str,
    try_acquire: impl FnOnce() -> Result<bool, ManagerError>,
    acquire_timeout: impl FnOnce(Duration) -> Result<bool, ManagerError>,
) -> Result<Child<Result<(), String>>, Failed> {
    let child = Process::new().fork(move || -> Result<(), String> {
        if try_acquire().map_err(|e| e.to_string())? {
            return Err(format!("{what} taken while held"));
        }
        acquire_timeout(PATIENCE)
            .map_err(|e| e.to_string())?
            .then_some(())
            .ok_or(format!("never got {what}"))
    })?;
    Ok(child)
}

fn sync_objects_across_processes() -> TestResult {
    let manager = Manager::start()?;
    let event = manager.event()?;
    let go = manager.event()?;
    let semaphore = manager.semaphore(2)?;
    let rlock = manager.rlock()?;
    let condition = manager.condition()?;
    let state = manager.namespace()?;
    state.set("stage", &0u32)?;

    // Event: the child waits for `go`, then sets `event`.
    let child = Process::new().fork(|| -> Result<(), String> {
        if !go.wait_timeout(PATIENCE).map_err(|e| e.to_string())? {
            return Err("never saw go".into());
        }
        event.set().map_err(|e| e.to_string())
    })?;
    check(
        !event.wait_timeout(Duration::from_millis(50))?,
        "event set too early",
    )?;
    go.set()?;
    check(
        event.wait_timeout(PATIENCE)?,
        "event never set by the child",
    )?;
    join_ok(child)?;

    // Semaphore: two permits, the third acquirer waits until a release.
    semaphore.acquire()?;
    semaphore.acquire()?;
    let child = fork_waiting_acquirer(
        "a third permit",
        || semaphore.try_acquire(),
        |timeout| semaphore.acquire_timeout(timeout),
    )?;
    std::thread::sleep(Duration::from_millis(50));
    semaphore.release()?;
    join_ok(child)?;
    check(semaphore.value()? == 0, "both permits taken")?;

    // RLock: held twice by the parent, the child waits until both releases.
    rlock.acquire()?;
    rlock.acquire()?;
    let child = fork_waiting_acquirer(
        "the rlock",
        || rlock.try_acquire(),
        |timeout| rlock.acquire_timeout(timeout),
    )?;
    rlock.release()?;
    std::thread::sleep(Duration::from_millis(50));
    check(
        child.is_alive(),
        "child got the rlock after one release of two",
    )?;
    rlock.release()?;
    join_ok(child)?;

    // Condition: the child waits for stage 1, the parent sets it and notifies.
    let child = Process::new().fork(|| -> Result<(), String> {
        let e = |e: ManagerError| e.to_string();
        let guard = condition.lock().map_err(e)?;
        while state.get::<u32>("stage").map_err(e)? != 1 {
            if !condition.wait_timeout(PATIENCE).map_err(e)? {
                return Err("never notified".into());
            }
        }
        state.set("stage", &2u32).map_err(e)?;
        guard.unlock().map_err(e)
    })?;
    std::thread::sleep(Duration::from_millis(50));
    {
        let _guard = condition.lock()?;
        state.set("stage", &1u32)?;
        condition.notify_all()?;
    }
    join_ok(child)?;
    check(
        state.get::<u32>("stage")? == 2,
        "child saw the notification",
    )
}

fn queue_across_processes() -> TestResult {
    let manager = Manager::start()?;
    let queue = manager.bounded_queue::<(u32, String)>(4)?;
    let producers = (0..3u32)
        .map(|p| {
            Process::new().fork(|| -> Result<(), String> {
                for i in 0..50u32 {
                    queue
                        .put(&(p * 1000 + i, format!("item {i}")))
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut received = Vec::new();
    for _ in 0..150 {
        received.push(queue.get_timeout(PATIENCE)?.0);
    }
    join_all(producers)?;
    received.sort();
    let mut expected: Vec<u32> = (0..3)
        .flat_map(|p| (0..50).map(move |i| p * 1000 + i))
        .collect();
    expected.sort();
    check(received == expected, "every item arrived exactly once")?;
    check(queue.is_empty()?, "queue drained")
}

fn wrong_authkey_is_refused() -> TestResult {
    let manager = Manager::start()?;
    let wrong = Authkey::from_bytes(b"not the key".to_vec())?;
    match Manager::connect(manager.address().clone(), wrong) {
        Err(ManagerError::AuthRefused { .. }) => {}
        other => return Err(fail(format!("expected AuthRefused, got {other:?}"))),
    }
    // A raw client with the wrong key gets the refusal byte and a close, nothing else.
    let Address::Unix(path) = manager.address() else {
        return Err(fail("default transport should be a Unix socket"));
    };
    let mut raw = UnixStream::connect(path)?;
    raw.set_read_timeout(Some(PATIENCE))?;
    let server_nonce = read_greeting(&mut raw)?;
    raw.write_all(&answer(b"not the key", &server_nonce))?;
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest)?;
    check(
        rest == [0],
        format!("expected just the refusal byte, got {rest:?}"),
    )?;
    // The right key still works.
    let again = Manager::connect(manager.address().clone(), manager.authkey().clone())?;
    again.dict::<u8, u8>()?.insert(&1, &1)?;
    Ok(())
}

/// Reads the server's greeting and returns its nonce.
fn read_greeting(stream: &mut impl Read) -> Result<[u8; 32], Failed> {
    let mut greeting = [0u8; 40];
    stream.read_exact(&mut greeting)?;
    check(&greeting[..8] == b"HERDMGR1", "greeting magic")?;
    let mut nonce = [0u8; 32];
    nonce.copy_from_slice(&greeting[8..]);
    Ok(nonce)
}

/// The client's answer to the challenge: HMAC(key, label + nonce) and a client nonce of zeros.
fn answer(key: &[u8], server_nonce: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(b"herd-manager client");
    mac.update(server_nonce);
    let mut out = mac.finalize().into_bytes().to_vec();
    out.extend_from_slice(&[0u8; 32]);
    out
}

/// A raw connection that passed the handshake.
fn authenticated_raw(manager: &Manager) -> Result<UnixStream, Failed> {
    let Address::Unix(path) = manager.address() else {
        return Err(fail("default transport should be a Unix socket"));
    };
    let mut raw = UnixStream::connect(path)?;
    raw.set_read_timeout(Some(PATIENCE))?;
    let nonce = read_greeting(&mut raw)?;
    raw.write_all(&answer(&authkey_bytes(manager)?, &nonce))?;
    let mut verdict = [0u8; 33];
    raw.read_exact(&mut verdict)?;
    check(verdict[0] == 1, "handshake accepted")?;
    Ok(raw)
}

fn authkey_bytes(manager: &Manager) -> Result<Vec<u8>, Failed> {
    let hex = manager.authkey().to_hex();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| fail(e.to_string())))
        .collect()
}

fn bad_frames_close_only_that_connection() -> TestResult {
    let manager = Manager::start()?;
    let dict = manager.dict::<u8, u8>()?;
    dict.insert(&1, &1)?;
    let bad_frames: [(&str, Vec<u8>, bool); 4] = [
        (
            "garbage",
            vec![5, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb],
            false,
        ),
        ("oversized", vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3], false),
        ("truncated", vec![100, 0, 0, 0, 1, 2, 3], true),
        ("trailing bytes", vec![3, 0, 0, 0, 2, 0, 0], false),
    ];
    for (what, bytes, close_write) in bad_frames {
        let mut raw = authenticated_raw(&manager)?;
        raw.write_all(&bytes)?;
        if close_write {
            raw.shutdown(std::net::Shutdown::Write)?;
        }
        let mut rest = Vec::new();
        let read = raw.read_to_end(&mut rest);
        check(
            matches!(read, Ok(0)),
            format!("{what}: the server should close with nothing sent, got {read:?} {rest:?}"),
        )?;
        // The others are still served.
        check(
            dict.get(&1)? == Some(1),
            format!("{what}: dict still served"),
        )?;
    }
    // And garbage instead of a handshake answer is refused.
    let Address::Unix(path) = manager.address() else {
        return Err(fail("default transport should be a Unix socket"));
    };
    let mut raw = UnixStream::connect(path)?;
    raw.set_read_timeout(Some(PATIENCE))?;
    read_greeting(&mut raw)?;
    raw.write_all(&[0x42; 64])?;
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest)?;
    check(rest == [0], "garbage handshake refused")?;
    check(dict.len()? == 1, "dict still served")
}

fn server_death_gives_errors_not_hangs() -> TestResult {
    let manager = Manager::start()?;
    let server = manager.server_pid().ok_or_else(|| fail("no server pid"))?;
    let dict = manager.dict::<u8, u8>()?;
    let lock = manager.lock()?;
    let queue = manager.queue::<u8>()?;
    lock.acquire()?;
    // A child blocked on the lock and one blocked on an empty queue, when the server dies.
    let blocked = [
        Process::new().fork(|| -> Result<(), String> {
            match lock.acquire() {
                Err(e) => Err(format!("as expected: {e}")),
                Ok(()) => Ok(()),
            }
        })?,
        Process::new().fork(|| -> Result<(), String> {
            match queue.get() {
                Err(e) => Err(format!("as expected: {e}")),
                Ok(_) => Ok(()),
            }
        })?,
    ];
    std::thread::sleep(Duration::from_millis(200));
    kill(server.into(), Signal::SIGKILL)?;
    let started = Instant::now();
    let err = match dict.get(&1) {
        Err(e) => e,
        Ok(v) => return Err(fail(format!("call after server death succeeded: {v:?}"))),
    };
    check(
        matches!(err, ManagerError::ConnectionLost { .. }),
        format!("expected ConnectionLost, got {err:?}"),
    )?;
    // Later calls fail at once too, with a clear error naming the address.
    let err = match dict.insert(&1, &2) {
        Err(e) => e,
        Ok(()) => return Err(fail("second call after server death succeeded")),
    };
    check(
        err.to_string().contains(&manager.address().to_string()),
        format!("error should name the address: {err}"),
    )?;
    for child in blocked {
        let pid = child.pid();
        match child.join_timeout(PATIENCE) {
            Ok(Err(message)) if message.starts_with("as expected") => {}
            other => return Err(fail(format!("blocked child {pid}: {other:?}"))),
        }
    }
    check(
        started.elapsed() < Duration::from_secs(5),
        format!("errors took {:?}", started.elapsed()),
    )?;
    // Shutting down a dead server reports it died.
    check(
        manager.shutdown().is_err(),
        "shutdown should report the killed server",
    )
}

fn client_killed_holding_lock_releases_it() -> TestResult {
    let manager = Manager::start()?;
    let lock = manager.lock()?;
    let holding = manager.event()?;
    let child = Process::new().fork(|| -> Result<(), String> {
        lock.acquire().map_err(|e| e.to_string())?;
        holding.set().map_err(|e| e.to_string())?;
        std::thread::sleep(PATIENCE * 2);
        Ok(())
    })?;
    check(holding.wait_timeout(PATIENCE)?, "child never took the lock")?;
    check(!lock.try_acquire()?, "lock should be held by the child")?;
    child.kill()?;
    check(
        lock.acquire_timeout(PATIENCE)?,
        "lock not released after the holder's death",
    )?;

    // A client killed while blocked in acquire (mid-request) does not take the lock with it.
    let waiter = Process::new()
        .fork(|| -> Result<(), String> { lock.acquire().map_err(|e| e.to_string()) })?;
    std::thread::sleep(Duration::from_millis(200));
    waiter.kill()?;
    drop(waiter.join_timeout(PATIENCE));
    lock.release()?;
    let other = lock.clone();
    check(
        other.acquire_timeout(PATIENCE)?,
        "lock taken by a dead waiter",
    )?;
    drop(child);
    Ok(())
}

fn owner_killed_takes_server_down() -> TestResult {
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("server");
    let owner = Process::new().fork(|| -> Result<(), String> {
        let manager = Manager::start().map_err(|e| e.to_string())?;
        let pid = manager.server_pid().ok_or("no server pid")?;
        std::fs::write(&report, format!("{pid}\n{}", manager.address()))
            .map_err(|e| e.to_string())?;
        std::thread::sleep(PATIENCE * 2);
        Ok(())
    })?;
    let mut text = String::new();
    eventually("the owner reports its server", PATIENCE, || {
        text = std::fs::read_to_string(&report).unwrap_or_default();
        text.contains('\n')
    })?;
    let (pid, address) = text.split_once('\n').ok_or_else(|| fail("bad report"))?;
    let server: Pid = pid.parse()?;
    let address: Address = address.parse()?;
    check(!is_gone(server), "server should run while its owner lives")?;
    owner.kill()?;
    drop(owner.join_timeout(PATIENCE));
    eventually("the server dies with its owner", PATIENCE, || {
        is_gone(server)
    })?;
    let Address::Unix(socket) = address else {
        return Err(fail("default transport should be a Unix socket"));
    };
    eventually("the socket directory is removed", PATIENCE, || {
        socket.parent().is_some_and(|d| !d.exists())
    })?;
    Ok(())
}

/// How many fds this process has open.
fn open_fds() -> Result<usize, Failed> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

fn shutdown_stops_server_and_cleans_up() -> TestResult {
    let fds_before = open_fds()?;
    let manager = Manager::start()?;
    let server = manager.server_pid().ok_or_else(|| fail("no server pid"))?;
    let Address::Unix(socket) = manager.address().clone() else {
        return Err(fail("default transport should be a Unix socket"));
    };
    let dir = socket
        .parent()
        .ok_or_else(|| fail("socket has no directory"))?
        .to_owned();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir)?.permissions());
    check(mode & 0o777 == 0o700, format!("directory mode {mode:o}"))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket)?.permissions());
    check(mode & 0o077 == 0, format!("socket mode {mode:o}"))?;
    let dict = manager.dict::<u8, u8>()?;
    dict.insert(&1, &1)?;
    manager.shutdown()?;
    check(is_gone(server), "server still running after shutdown")?;
    check(!dir.exists(), "socket directory left behind")?;
    match dict.get(&1) {
        Err(ManagerError::ConnectionLost { .. } | ManagerError::Unreachable { .. }) => {}
        other => {
            return Err(fail(format!(
                "expected an error after shutdown, got {other:?}"
            )))
        }
    }
    // Dropping an owner also stops its server.
    let manager = Manager::start()?;
    let server = manager.server_pid().ok_or_else(|| fail("no server pid"))?;
    drop(manager);
    check(is_gone(server), "server still running after drop")?;
    let fds_after = open_fds()?;
    check(
        fds_after == fds_before,
        format!("fds leaked: {fds_before} open before, {fds_after} after"),
    )
}

fn tcp_transport_and_connect() -> TestResult {
    let key = Authkey::random()?;
    let manager = Manager::builder()
        .tcp("127.0.0.1:0".parse()?)
        .authkey(key.clone())
        .start()?;
    let Address::Tcp(addr) = manager.address() else {
        return Err(fail("expected a TCP address"));
    };
    check(addr.port() != 0, "a real port was chosen")?;
    let counts = manager.named("counts").dict::<String, i64>()?;
    // Children reach it as unrelated processes would: by address and key, and the object's name.
    let text = manager.address().to_string();
    let hex = key.to_hex();
    let children = (0..4)
        .map(|_| {
            Process::new().fork(|| -> Result<(), String> {
                let e = |e: ManagerError| e.to_string();
                let address: Address = text.parse().map_err(e)?;
                let key = Authkey::from_hex(&hex).map_err(e)?;
                let remote = Manager::connect(address, key).map_err(e)?;
                let counts = remote.named("counts").dict::<String, i64>().map_err(e)?;
                for _ in 0..250 {
                    counts.increment("tcp", 1).map_err(e)?;
                }
                Ok(())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    join_all(children)?;
    check(counts.get("tcp")? == Some(1000), "1000 increments over TCP")?;
    // A wrong key over TCP is refused as well.
    let mut raw = TcpStream::connect(addr)?;
    raw.set_read_timeout(Some(PATIENCE))?;
    let nonce = read_greeting(&mut raw)?;
    raw.write_all(&answer(b"wrong", &nonce))?;
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest)?;
    check(rest == [0], "wrong key refused over TCP")?;
    manager.shutdown()?;
    Ok(())
}
