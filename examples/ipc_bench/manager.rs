//! Manager benchmarks: two processes incrementing one shared dict entry, either the usual way
//! (acquire the manager lock, get, set, release: four round trips) or with the server-side
//! atomic increment (one round trip). Python's counterpart, python/manager_mp.py, does the locked
//! version with `multiprocessing.Manager`.
//!
//! Baselines measured in the same run put the locked figure against the machine's limit: raw
//! models of exactly its protocol (same processes, same messages, same serialised critical
//! section) against an ideal server of a few lines, built as an event loop (the limit,
//! `raw_4rt_locked_incr_per_s`) or with the manager's own structure, and with set and release
//! pipelined (what that protocol change could buy at most).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use herd::ipc::manager::{DictProxy, EventProxy, LockProxy};
use herd::ipc::{Manager, Process};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::report;

const PROCESSES: usize = 2;
const LOCKED_INCREMENTS: i64 = 20_000;
const ATOMIC_INCREMENTS: i64 = 50_000;

pub(crate) fn run() -> anyhow::Result<()> {
    report("raw_unix_roundtrip_per_s", raw_roundtrips()?, "per_s");
    let limit = raw_locked_increments(RawServer::EventLoop, false)?;
    report("raw_4rt_locked_incr_per_s", limit, "per_s");
    let threaded = raw_locked_increments(RawServer::ThreadPerConnection, false)?;
    report("raw_4rt_threaded_locked_incr_per_s", threaded, "per_s");
    let pipelined = raw_locked_increments(RawServer::EventLoop, true)?;
    report("raw_3rt_pipelined_locked_incr_per_s", pipelined, "per_s");
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
    report(
        "manager_dict_create_drop_per_s",
        create_drop(&manager)?,
        "per_s",
    );
    manager.shutdown()?;
    Ok(())
}

const CREATE_DROPS: u32 = 5_000;

/// Dicts created and dropped per second by one process: the cost of an object's life cycle with
/// reference counting (create, which holds it, and the release that frees it).
fn create_drop(manager: &Manager) -> anyhow::Result<f64> {
    let before = manager.object_count()?;
    let started = Instant::now();
    for _ in 0..CREATE_DROPS {
        let dict: DictProxy<u32, u32> = manager.dict()?;
        drop(dict);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Not equal: objects held only by the children of the runs before are freed as the server
    // sees their connections close, which may be now.
    anyhow::ensure!(
        manager.object_count()? <= before,
        "dropped dicts were not freed"
    );
    Ok(f64::from(CREATE_DROPS) / elapsed)
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

/// Increments per client in the raw models of the locked increment.
const RAW_LOCKED_INCREMENTS: u64 = 20_000;

/// How long a raw model process waits for a message before giving up.
const RAW_PATIENCE: Duration = Duration::from_secs(10);

/// The raw models' wire format: every request and every answer is one fixed-size message, an
/// operation byte and an `i64` (the value read or written).
const MSG: usize = 9;
const ACQUIRE: u8 = b'A';
const GET: u8 = b'G';
const SET: u8 = b'S';
const RELEASE: u8 = b'R';

/// How the raw model's server is built: the limit (one thread polling every connection and
/// writing a grant straight to the waiter's socket) or the manager's structure (a thread per
/// connection, a freed lock handed to the waiter's thread through a condvar).
#[derive(Clone, Copy)]
enum RawServer {
    EventLoop,
    ThreadPerConnection,
}

/// The machine's limit for the locked increment: `PROCESSES` client processes doing exactly the
/// manager's protocol (acquire, get, set, release: four round trips, the lock's critical section
/// serialised) against an ideal server process that does nothing but keep a counter and a lock.
/// With `pipelined`, a client writes set and release together and then reads both answers.
fn raw_locked_increments(server: RawServer, pipelined: bool) -> anyhow::Result<f64> {
    let pairs = (0..PROCESSES)
        .map(|_| {
            let (client, server) = UnixStream::pair()?;
            // A model process that dies makes the others fail instead of waiting forever.
            client.set_read_timeout(Some(RAW_PATIENCE))?;
            server.set_read_timeout(Some(RAW_PATIENCE))?;
            Ok((client, server))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let (clients, server_ends): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let server = Process::new().fork(move || match server {
        RawServer::EventLoop => raw_event_loop_server(server_ends),
        RawServer::ThreadPerConnection => raw_threaded_server(server_ends),
    })?;
    let started = Instant::now();
    let children = clients
        .into_iter()
        .map(|stream| Process::new().fork(move || raw_locked_client(stream, pipelined)))
        .collect::<Result<Vec<_>, _>>()?;
    for child in children {
        child
            .join()?
            .map_err(|e| anyhow!("raw client failed: {e}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = server
        .join()?
        .map_err(|e| anyhow!("raw server failed: {e}"))?;
    let expected = RAW_LOCKED_INCREMENTS * PROCESSES as u64;
    anyhow::ensure!(
        total == expected as i64,
        "raw model lost increments: {total} of {expected}"
    );
    Ok(expected as f64 / elapsed)
}

fn raw_locked_client(mut stream: UnixStream, pipelined: bool) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    let call = |stream: &mut UnixStream, op: u8, value: i64| -> std::io::Result<i64> {
        let mut msg = [0u8; MSG];
        msg[0] = op;
        msg[1..].copy_from_slice(&value.to_le_bytes());
        stream.write_all(&msg)?;
        stream.read_exact(&mut msg)?;
        Ok(i64::from_le_bytes(msg[1..].try_into().expect("8 bytes")))
    };
    for _ in 0..RAW_LOCKED_INCREMENTS {
        call(&mut stream, ACQUIRE, 0).map_err(e)?;
        let value = call(&mut stream, GET, 0).map_err(e)?;
        if pipelined {
            let mut both = [0u8; 2 * MSG];
            both[0] = SET;
            both[1..MSG].copy_from_slice(&(value + 1).to_le_bytes());
            both[MSG] = RELEASE;
            stream.write_all(&both).map_err(e)?;
            stream.read_exact(&mut both).map_err(e)?;
        } else {
            call(&mut stream, SET, value + 1).map_err(e)?;
            call(&mut stream, RELEASE, 0).map_err(e)?;
        }
    }
    Ok(())
}

fn answer(stream: &mut UnixStream, value: i64) -> std::io::Result<()> {
    let mut msg = [0u8; MSG];
    msg[1..].copy_from_slice(&value.to_le_bytes());
    stream.write_all(&msg)
}

/// The ideal server: one thread, `poll` over every connection, a released lock granted by
/// writing straight to the next waiter's socket. Returns the counter once every client has done
/// its increments.
fn raw_event_loop_server(mut streams: Vec<UnixStream>) -> Result<i64, String> {
    let e = |e: std::io::Error| e.to_string();
    let (mut counter, mut holder, mut waiters) = (0i64, None, VecDeque::new());
    let mut releases = 0;
    while releases < RAW_LOCKED_INCREMENTS * streams.len() as u64 {
        let mut fds: Vec<PollFd<'_>> = streams
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        let timeout = PollTimeout::try_from(RAW_PATIENCE).map_err(|e| e.to_string())?;
        if poll(&mut fds, timeout).map_err(|e| e.to_string())? == 0 {
            return Err("raw model: no client request within the patience".into());
        }
        let ready: Vec<usize> = (0..fds.len())
            .filter(|&i| fds[i].revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for i in ready {
            let mut msg = [0u8; MSG];
            streams[i].read_exact(&mut msg).map_err(e)?;
            match msg[0] {
                ACQUIRE if holder.is_none() => {
                    holder = Some(i);
                    answer(&mut streams[i], 0).map_err(e)?;
                }
                ACQUIRE => waiters.push_back(i),
                GET => answer(&mut streams[i], counter).map_err(e)?,
                SET => {
                    counter = i64::from_le_bytes(msg[1..].try_into().expect("8 bytes"));
                    answer(&mut streams[i], 0).map_err(e)?;
                }
                _ => {
                    releases += 1;
                    answer(&mut streams[i], 0).map_err(e)?;
                    holder = waiters.pop_front();
                    if let Some(next) = holder {
                        answer(&mut streams[next], 0).map_err(e)?;
                    }
                }
            }
        }
    }
    Ok(counter)
}

/// The manager's structure with nothing else: a thread per connection blocked in `read`, one
/// mutex over the counter and the lock, a waiter sleeping on a condvar until a release wakes it.
fn raw_threaded_server(streams: Vec<UnixStream>) -> Result<i64, String> {
    let state = Mutex::new((0i64, false));
    let freed = Condvar::new();
    std::thread::scope(|scope| {
        for mut stream in streams {
            let (state, freed) = (&state, &freed);
            scope.spawn(move || -> std::io::Result<()> {
                for _ in 0..RAW_LOCKED_INCREMENTS * 4 {
                    let mut msg = [0u8; MSG];
                    stream.read_exact(&mut msg)?;
                    let mut guard = state.lock().expect("raw state");
                    let value = match msg[0] {
                        ACQUIRE => {
                            guard = freed
                                .wait_while(guard, |(_, held)| *held)
                                .expect("raw state");
                            guard.1 = true;
                            0
                        }
                        GET => guard.0,
                        SET => {
                            guard.0 = i64::from_le_bytes(msg[1..].try_into().expect("8 bytes"));
                            0
                        }
                        _ => {
                            guard.1 = false;
                            drop(guard);
                            freed.notify_one();
                            answer(&mut stream, 0)?;
                            continue;
                        }
                    };
                    drop(guard);
                    answer(&mut stream, value)?;
                }
                Ok(())
            });
        }
    });
    let (counter, _) = *state.lock().map_err(|e| e.to_string())?;
    Ok(counter)
}
