//! Pipe across real processes: typed and raw messages both ways, the
//! disconnection contract (peer exit, peer SIGKILL), timeouts, poll and wait,
//! the size limit, corrupt and truncated frames, type mismatches, and Pipe ends
//! travelling inside Pipe messages.
//!
//! harness = false: every trial runs on the main thread, so the process is
//! single-threaded whenever it forks.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::ipc::{
    wait, Pipe, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError, Waitable,
};
use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Failed>;

/// Longest any blocking step in these tests may take before it counts as a hang.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Request {
    Add(i64, i64),
    Echo(String),
    Stop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Reply {
    Sum(i64),
    Echoed(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Request(Request),
    Reply(Reply),
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Run trials on the main thread: the process stays single-threaded for fork.
    args.test_threads = Some(1);
    let trials = vec![
        Trial::test("typed_round_trip_both_ways", typed_round_trip_both_ways),
        Trial::test("bytes_round_trip", bytes_round_trip),
        Trial::test("disconnected_when_peer_exits", disconnected_when_peer_exits),
        Trial::test(
            "disconnected_when_peer_is_sigkilled",
            disconnected_when_peer_is_sigkilled,
        ),
        Trial::test("recv_timeout_and_try_recv", recv_timeout_and_try_recv),
        Trial::test("poll_sees_a_message_coming", poll_sees_a_message_coming),
        Trial::test("wait_over_several_ends", wait_over_several_ends),
        Trial::test(
            "oversize_message_refused_on_send",
            oversize_message_refused_on_send,
        ),
        Trial::test(
            "oversize_frame_refused_on_recv",
            oversize_frame_refused_on_recv,
        ),
        Trial::test("garbage_frame_is_an_error", garbage_frame_is_an_error),
        Trial::test("truncated_frame_is_an_error", truncated_frame_is_an_error),
        Trial::test(
            "type_mismatch_is_a_decode_error",
            type_mismatch_is_a_decode_error,
        ),
        Trial::test("pipe_end_sent_through_a_pipe", pipe_end_sent_through_a_pipe),
        Trial::test("simplex_pipe_across_fork", simplex_pipe_across_fork),
        Trial::test(
            "full_pipe_try_send_and_send_timeout",
            full_pipe_try_send_and_send_timeout,
        ),
        Trial::test("no_zombie_left", no_zombie_left),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

// --- helpers --------------------------------------------------------------

/// Forks a child that runs `body` and exits 0 on `Ok`, 1 (after printing the
/// error) on `Err` or panic. The parent gets the child's pid.
fn fork_child(body: impl FnOnce() -> Result<(), String>) -> Result<Pid, Failed> {
    // SAFETY: the trials run on the main thread of a single-threaded process
    // (test_threads = 1, and no trial leaves a thread running), so the child
    // is a faithful copy with no lock held by a vanished thread.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let code = match outcome {
                Ok(Ok(())) => 0,
                Ok(Err(message)) => {
                    eprintln!("child {}: {message}", std::process::id());
                    1
                }
                Err(_) => 1,
            };
            // SAFETY: _exit ends the child at once, skipping atexit handlers
            // and the stdio buffers copied from the parent (flushing them
            // would print the parent's pending output twice).
            unsafe { libc::_exit(code) }
        }
    }
}

/// Waits (bounded by PATIENCE) for `pid` to end; kills it if it does not.
fn join(pid: Pid) -> Result<WaitStatus, Failed> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::StillAlive if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            WaitStatus::StillAlive => {
                kill(pid, Signal::SIGKILL)?;
                waitpid(pid, None)?;
                return Err(format!("child {pid} did not finish within {PATIENCE:?}").into());
            }
            status => return Ok(status),
        }
    }
}

/// Joins `pid` and requires a clean exit.
fn join_ok(pid: Pid) -> TestResult {
    match join(pid)? {
        WaitStatus::Exited(_, 0) => Ok(()),
        status => Err(format!("child ended badly: {status:?}").into()),
    }
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> TestResult {
    if condition {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// In a forked child, closes its inherited copy of a descriptor the parent
/// keeps using (the parent's value is never touched or dropped in the child,
/// which ends with `_exit`), so that the child's copy does not keep the
/// parent's end of a pipe alive.
fn close_inherited(fd: RawFd) -> Result<(), String> {
    nix::unistd::close(fd).map_err(|e| format!("closing inherited fd {fd}: {e}"))
}

/// `Err(String)` for a child body.
fn child_ensure(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

// --- trials ---------------------------------------------------------------

fn typed_round_trip_both_ways() -> TestResult {
    let (parent, child_end) = Pipe::<Msg>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        loop {
            let reply = match child_end
                .recv_timeout(PATIENCE)
                .map_err(|e| e.to_string())?
            {
                Msg::Request(Request::Add(a, b)) => Reply::Sum(a + b),
                Msg::Request(Request::Echo(text)) => Reply::Echoed(text),
                Msg::Request(Request::Stop) => return Ok(()),
                Msg::Reply(other) => return Err(format!("child got a reply: {other:?}")),
            };
            child_end
                .send(Msg::Reply(reply))
                .map_err(|e| e.to_string())?;
        }
    })?;
    for i in 0..200i64 {
        parent.send(Msg::Request(Request::Add(i, i * 3)))?;
        let got = parent.recv_timeout(PATIENCE)?;
        ensure(got == Msg::Reply(Reply::Sum(4 * i)), || {
            format!("reply {i}: {got:?}")
        })?;
    }
    let long = "ünïcode ".repeat(10_000);
    parent.send(Msg::Request(Request::Echo(long.clone())))?;
    let got = parent.recv_timeout(PATIENCE)?;
    ensure(got == Msg::Reply(Reply::Echoed(long)), || {
        "long echo differs".into()
    })?;
    parent.send(Msg::Request(Request::Stop))?;
    join_ok(child)?;
    let after = parent.recv_timeout(PATIENCE);
    ensure(
        matches!(after, Err(RecvTimeoutError::Recv(RecvError::Disconnected))),
        || format!("after the child stopped: {after:?}"),
    )
}

fn bytes_round_trip() -> TestResult {
    let (parent, child_end) = Pipe::<()>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        // Echo each message reversed until the parent closes.
        loop {
            match child_end.recv_bytes() {
                Ok(mut bytes) => {
                    bytes.reverse();
                    child_end.send_bytes(&bytes).map_err(|e| e.to_string())?;
                }
                Err(RecvError::Disconnected) => return Ok(()),
                Err(err) => return Err(err.to_string()),
            }
        }
    })?;
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    for message in [Vec::new(), b"abc".to_vec(), big] {
        parent.send_bytes(&message)?;
        ensure(parent.poll(Some(PATIENCE))?, || "no echo".into())?;
        let mut echoed = parent.recv_bytes()?;
        echoed.reverse();
        ensure(echoed == message, || {
            format!("{}-byte echo differs", message.len())
        })?;
    }
    drop(parent);
    join_ok(child)
}

fn disconnected_when_peer_exits() -> TestResult {
    let (parent, child_end) = Pipe::<String>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        child_end
            .send("last words".to_owned())
            .map_err(|e| e.to_string())
    })?;
    join_ok(child)?;
    // What was sent before the exit is still delivered, then Disconnected.
    ensure(parent.recv()? == "last words", || {
        "lost the last message".into()
    })?;
    let err = parent.recv().unwrap_err();
    ensure(err.is_disconnected(), || {
        format!("recv after exit: {err:?}")
    })?;
    let again = parent.try_recv().unwrap_err();
    ensure(again.is_disconnected(), || {
        format!("try_recv after exit: {again:?}")
    })?;
    let err = parent.send("anyone?".to_owned()).unwrap_err();
    ensure(
        matches!(&err, SendError::Disconnected(v) if v == "anyone?"),
        || format!("send after exit: {err:?}"),
    )
}

fn disconnected_when_peer_is_sigkilled() -> TestResult {
    let (parent, child_end) = Pipe::<u32>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        child_end.send(1).map_err(|e| e.to_string())?;
        // Wait for a message that never comes; the parent kills us here.
        let _ = child_end.recv_timeout(PATIENCE);
        Err("was not killed".into())
    })?;
    ensure(parent.recv_timeout(PATIENCE)? == 1, || {
        "child did not start".into()
    })?;
    kill(child, Signal::SIGKILL)?;
    let started = Instant::now();
    let err = parent.recv_timeout(PATIENCE).unwrap_err();
    ensure(err.is_disconnected(), || {
        format!("recv after SIGKILL: {err:?}")
    })?;
    ensure(started.elapsed() < PATIENCE / 2, || {
        "disconnection noticed late".into()
    })?;
    match join(child)? {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => Ok(()),
        status => Err(format!("child status {status:?}").into()),
    }
}

fn recv_timeout_and_try_recv() -> TestResult {
    let (parent, child_end) = Pipe::<u64>::new()?;
    let (go_parent, go_child) = Pipe::<()>::new()?;
    let child = fork_child(move || {
        go_child.recv_timeout(PATIENCE).map_err(|e| e.to_string())?;
        child_end.send(42).map_err(|e| e.to_string())
    })?;
    ensure(
        matches!(parent.try_recv(), Err(TryRecvError::Empty)),
        || "try_recv on empty".into(),
    )?;
    let started = Instant::now();
    let err = parent.recv_timeout(Duration::from_millis(100)).unwrap_err();
    let waited = started.elapsed();
    ensure(matches!(err, RecvTimeoutError::Timeout), || {
        format!("expected Timeout: {err:?}")
    })?;
    ensure(waited >= Duration::from_millis(100), || {
        format!("returned early: {waited:?}")
    })?;
    go_parent.send(())?;
    ensure(parent.recv_timeout(PATIENCE)? == 42, || {
        "wrong value".into()
    })?;
    join_ok(child)
}

fn poll_sees_a_message_coming() -> TestResult {
    let (parent, child_end) = Pipe::<String>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        std::thread::sleep(Duration::from_millis(50));
        child_end.send("ping".into()).map_err(|e| e.to_string())?;
        child_end.send("pong".into()).map_err(|e| e.to_string())
    })?;
    ensure(!parent.poll(Some(Duration::ZERO))?, || {
        "poll true on an empty pipe".into()
    })?;
    ensure(parent.poll(Some(PATIENCE))?, || {
        "poll missed the message".into()
    })?;
    ensure(parent.recv()? == "ping", || "first".into())?;
    ensure(parent.poll(None)?, || {
        "poll missed the second message".into()
    })?;
    ensure(parent.recv()? == "pong", || "second".into())?;
    join_ok(child)?;
    // A closed peer makes poll true: recv will report Disconnected at once.
    ensure(parent.poll(Some(PATIENCE))?, || {
        "poll false after the peer closed".into()
    })?;
    ensure(parent.recv().unwrap_err().is_disconnected(), || {
        "expected Disconnected".into()
    })
}

fn wait_over_several_ends() -> TestResult {
    let ends: Vec<(Pipe<usize>, Pipe<usize>)> =
        (0..3).map(|_| Pipe::new()).collect::<Result<_, _>>()?;
    let (mine, theirs): (Vec<_>, Vec<_>) = ends.into_iter().unzip();
    let child = fork_child(move || {
        // Only end 1 speaks, twice (so one read may buffer both messages);
        // end 2 is closed.
        let mut theirs = theirs.into_iter();
        let _quiet = theirs.next();
        let speaker = theirs.next().ok_or("no end 1")?;
        drop(theirs);
        std::thread::sleep(Duration::from_millis(30));
        speaker.send(1).map_err(|e| e.to_string())?;
        speaker.send(11).map_err(|e| e.to_string())?;
        // Hold end 0 open until the parent is done.
        speaker
            .recv_timeout(PATIENCE)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    let objects: Vec<&dyn Waitable> = mine.iter().map(|end| end as &dyn Waitable).collect();
    let ready = wait(&objects[..1], Some(Duration::from_millis(20)))?;
    ensure(ready.is_empty(), || {
        format!("quiet end reported ready: {ready:?}")
    })?;
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while seen.len() < 2 && Instant::now() < deadline {
        for index in wait(&objects[..2], Some(PATIENCE))? {
            ensure(index == 1, || format!("end {index} reported ready"))?;
            seen.push(mine[1].recv()?);
        }
    }
    ensure(seen == [1, 11], || format!("received {seen:?}"))?;
    // Closed end 2 counts as ready (its recv says Disconnected at once).
    let ready = wait(&objects, Some(PATIENCE))?;
    ensure(ready == [2], || format!("after end 2 closed: {ready:?}"))?;
    ensure(mine[2].recv().unwrap_err().is_disconnected(), || {
        "end 2 not disconnected".into()
    })?;
    mine[1].send(0)?;
    join_ok(child)
}

fn oversize_message_refused_on_send() -> TestResult {
    let (mut parent, child_end) = Pipe::<Vec<u8>>::new()?;
    parent.set_max_message_size(1024);
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        let first = child_end
            .recv_timeout(PATIENCE)
            .map_err(|e| e.to_string())?;
        child_ensure(
            first == vec![7u8; 1000],
            "the small message after the refused one",
        )
    })?;
    let big = vec![9u8; 2000];
    match parent.send(big.clone()) {
        Err(SendError::TooLarge { value, size, limit }) => {
            ensure(value == big && size > 2000 && limit == 1024, || {
                format!("{size} {limit}")
            })?
        }
        other => return Err(format!("oversize send: {other:?}").into()),
    }
    let err = parent.send_bytes(&[0u8; 1025]).unwrap_err();
    ensure(err.to_string().contains("size limit of 1024"), || {
        format!("{err}")
    })?;
    // Nothing of the refused messages reached the peer: it gets this one first.
    parent.send(vec![7u8; 1000])?;
    join_ok(child)
}

fn oversize_frame_refused_on_recv() -> TestResult {
    let (sender, mut receiver) = Pipe::<Vec<u8>>::new()?;
    receiver.set_max_message_size(100);
    let child = fork_child(move || sender.send(vec![1u8; 5000]).map_err(|e| e.to_string()))?;
    let err = receiver.recv_timeout(PATIENCE).unwrap_err();
    ensure(
        matches!(
            err,
            RecvTimeoutError::Recv(RecvError::TooLarge { limit: 100, .. })
        ),
        || format!("{err:?}"),
    )?;
    join_ok(child)
}

/// Has a child write `raw` straight onto `end`'s peer socket, then exit.
fn peer_writes_raw(raw: &'static [u8]) -> Result<Pipe<String>, Failed> {
    let (parent, child_end) = Pipe::<String>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        nix::unistd::write(child_end.as_fd(), raw).map_err(|e| e.to_string())?;
        Ok(())
    })?;
    join_ok(child)?;
    Ok(parent)
}

fn garbage_frame_is_an_error() -> TestResult {
    let parent = peer_writes_raw(b"GET / HTTP/1.1\r\n\r\n")?;
    let err = parent.recv().unwrap_err();
    ensure(matches!(err, RecvError::BadFrame(_)), || {
        format!("garbage: {err:?}")
    })?;
    // The stream is out of step: later receives fail too, not misread.
    let again = parent.recv().unwrap_err();
    ensure(matches!(again, RecvError::BadFrame(_)), || {
        format!("again: {again:?}")
    })?;

    // A well-formed header claiming 4 GiB: refused before any allocation.
    let parent = peer_writes_raw(b"hd\x00\x00\xff\xff\xff\xff")?;
    let err = parent.recv().unwrap_err();
    ensure(
        matches!(
            err,
            RecvError::TooLarge {
                size: 0xffff_ffff,
                ..
            }
        ),
        || format!("{err:?}"),
    )?;

    // A header announcing descriptors that never came.
    let parent = peer_writes_raw(b"hd\x02\x00\x01\x00\x00\x00x")?;
    let err = parent.recv().unwrap_err();
    ensure(matches!(err, RecvError::BadFrame(_)), || {
        format!("missing fds: {err:?}")
    })
}

fn truncated_frame_is_an_error() -> TestResult {
    // Header announces 100 bytes; 10 arrive, then the peer exits.
    let parent = peer_writes_raw(b"hd\x00\x00\x64\x00\x00\x000123456789")?;
    let err = parent.recv().unwrap_err();
    ensure(
        matches!(
            err,
            RecvError::Truncated {
                received: 18,
                expected: 108
            }
        ),
        || format!("truncated body: {err:?}"),
    )?;
    // Half a header.
    let parent = peer_writes_raw(b"hd\x00")?;
    let err = parent.recv().unwrap_err();
    ensure(
        matches!(
            err,
            RecvError::Truncated {
                received: 3,
                expected: 8
            }
        ),
        || format!("truncated header: {err:?}"),
    )
}

fn type_mismatch_is_a_decode_error() -> TestResult {
    let (parent, child_end) = Pipe::<u64>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        // The peer speaks another type: a String where a u64 is expected,
        // then an empty body, then a valid u64.
        let text = postcard::to_allocvec(&"not a number".to_owned()).map_err(|e| e.to_string())?;
        child_end.send_bytes(&text).map_err(|e| e.to_string())?;
        child_end.send_bytes(&[]).map_err(|e| e.to_string())?;
        child_end.send(5).map_err(|e| e.to_string())
    })?;
    for what in ["a String", "an empty body"] {
        let err = parent.recv_timeout(PATIENCE).unwrap_err();
        ensure(
            matches!(err, RecvTimeoutError::Recv(RecvError::Decode(_))),
            || format!("{what} read as u64: {err:?}"),
        )?;
    }
    // A type mismatch consumes that message only; the stream stays usable.
    ensure(parent.recv_timeout(PATIENCE)? == 5, || {
        "valid message after mismatch".into()
    })?;
    join_ok(child)
}

#[derive(Debug, Serialize, Deserialize)]
enum Carrier {
    /// An end for the child to talk back on.
    Line(Pipe<String>),
    Done,
}

fn pipe_end_sent_through_a_pipe() -> TestResult {
    let (parent, child_end) = Pipe::<Carrier>::new()?;
    let parent_fd = parent.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(parent_fd)?;
        // Created after fork: the child can only know these ends by receiving them.
        while let Carrier::Line(line) = child_end
            .recv_timeout(PATIENCE)
            .map_err(|e| e.to_string())?
        {
            let question = line.recv_timeout(PATIENCE).map_err(|e| e.to_string())?;
            line.send(format!("{question}, answered"))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    for round in 0..3 {
        let (near, far) = Pipe::<String>::new()?;
        parent.send(Carrier::Line(far))?; // moved: our copy is closed
        near.send(format!("question {round}"))?;
        let answer = near.recv_timeout(PATIENCE)?;
        ensure(answer == format!("question {round}, answered"), || {
            answer.clone()
        })?;
        // The child drops its copy after answering; with ours gone too, the
        // far end is fully closed: proof no copy leaked along the way.
        let after = near.recv_timeout(PATIENCE);
        ensure(
            matches!(after, Err(RecvTimeoutError::Recv(RecvError::Disconnected))),
            || format!("round {round}: {after:?}"),
        )?;
    }
    parent.send(Carrier::Done)?;
    join_ok(child)
}

fn simplex_pipe_across_fork() -> TestResult {
    let (tx, rx) = Pipe::<(u32, String)>::simplex()?;
    let rx_fd = rx.as_fd().as_raw_fd();
    let child = fork_child(move || {
        close_inherited(rx_fd)?;
        for i in 0..100 {
            tx.send((i, i.to_string())).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    for i in 0..100 {
        let got = rx.recv_timeout(PATIENCE)?;
        ensure(got == (i, i.to_string()), || {
            format!("message {i}: {got:?}")
        })?;
    }
    ensure(rx.recv().unwrap_err().is_disconnected(), || {
        "no Disconnected".into()
    })?;
    join_ok(child)
}

fn full_pipe_try_send_and_send_timeout() -> TestResult {
    let (tx, rx) = Pipe::<Vec<u8>>::new()?;
    let chunk = vec![3u8; 16 * 1024];
    let mut sent = 0usize;
    let returned = loop {
        match tx.try_send(chunk.clone()) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(value)) => break value,
            Err(err) => return Err(format!("try_send: {err:?}").into()),
        }
        ensure(sent < 100_000, || "pipe never filled".into())?;
    };
    ensure(returned == chunk && sent > 0, || {
        format!("sent {sent} before Full")
    })?;
    let started = Instant::now();
    let err = tx
        .send_timeout(chunk.clone(), Duration::from_millis(50))
        .unwrap_err();
    ensure(
        matches!(&err, SendTimeoutError::Timeout(v) if *v == chunk),
        || format!("{err:?}"),
    )?;
    ensure(started.elapsed() >= Duration::from_millis(50), || {
        "timed out early".into()
    })?;
    // A child drains it all; everything queued arrives intact.
    let child = fork_child(move || {
        for i in 0..sent {
            let got = rx.recv_timeout(PATIENCE).map_err(|e| e.to_string())?;
            child_ensure(
                got.len() == 16 * 1024 && got.iter().all(|&b| b == 3),
                &format!("{i}"),
            )?;
        }
        Ok(())
    })?;
    join_ok(child)
}

fn no_zombie_left() -> TestResult {
    let me = std::process::id() as i32;
    let zombies: Vec<i32> = procfs::process::all_processes()?
        .filter_map(|p| p.ok()?.stat().ok())
        .filter(|stat| stat.ppid == me && stat.state == 'Z')
        .map(|stat| stat.pid)
        .collect();
    ensure(zombies.is_empty(), || {
        format!("zombie children: {zombies:?}")
    })
}
