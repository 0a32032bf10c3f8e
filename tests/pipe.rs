//! Pipe across real processes: typed and raw messages both ways, the
//! disconnection contract (peer exit, peer SIGKILL), timeouts, poll and wait,
//! the size limit, corrupt and truncated frames, type mismatches, and Pipe ends
//! travelling inside Pipe messages.
//!
//! Every scenario runs twice, with the child started by `Process::fork` (the
//! ends move into the closure) and by `Process::spawn` (the ends travel as
//! serialised arguments, their descriptors inherited through exec). The child
//! side of each scenario is an entry, so both starts run the same code.
//!
//! harness = false: trials run on the main thread, so the process is
//! single-threaded whenever it forks, and `init()` lets spawn re-execute us.

use herd_testkit as support;

use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::ipc::pipe::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
use herd::ipc::{
    wait, Child, Entry, JoinTimeoutError, Pipe, PipeSender, Process, RecvError, SendError, Waitable,
};
use libtest_mimic::{Arguments, Failed};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Failed>;
/// What every child entry returns: `Err` says what went wrong on its side.
type ChildResult = Result<(), String>;

/// Longest any blocking step in these tests may take before it counts as a hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// A test body, run once per way of starting the child.
type Scenario = fn(Start) -> TestResult;

/// How a scenario starts its child.
#[derive(Clone, Copy, Debug)]
enum Start {
    Fork,
    Spawn,
}

fn main() -> ExitCode {
    herd::ipc::init();
    let mut args = Arguments::from_args();
    // Run trials on the main thread: the process stays single-threaded for fork.
    args.test_threads = Some(1);
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("typed_round_trip_both_ways", typed_round_trip_both_ways),
        ("bytes_round_trip", bytes_round_trip),
        ("disconnected_when_peer_exits", disconnected_when_peer_exits),
        (
            "disconnected_when_peer_exits_with_unread_input",
            disconnected_when_peer_exits_with_unread_input,
        ),
        (
            "disconnected_when_peer_is_sigkilled",
            disconnected_when_peer_is_sigkilled,
        ),
        ("recv_timeout_and_try_recv", recv_timeout_and_try_recv),
        ("poll_sees_a_message_coming", poll_sees_a_message_coming),
        ("wait_over_several_ends", wait_over_several_ends),
        ("wait_ignores_half_a_message", wait_ignores_half_a_message),
        (
            "oversize_message_refused_on_send",
            oversize_message_refused_on_send,
        ),
        (
            "oversize_frame_refused_on_recv",
            oversize_frame_refused_on_recv,
        ),
        ("garbage_frame_is_an_error", garbage_frame_is_an_error),
        ("truncated_frame_is_an_error", truncated_frame_is_an_error),
        (
            "type_mismatch_is_a_decode_error",
            type_mismatch_is_a_decode_error,
        ),
        ("pipe_end_sent_through_a_pipe", pipe_end_sent_through_a_pipe),
        ("simplex_pipe", simplex_pipe),
        (
            "full_pipe_try_send_and_send_timeout",
            full_pipe_try_send_and_send_timeout,
        ),
    ];
    let mut trials = Vec::new();
    for (name, scenario) in scenarios {
        for start in [Start::Fork, Start::Spawn] {
            let label = format!("{name}::{}", format!("{start:?}").to_lowercase());
            trials.push(support::trial(label, move || scenario(start)));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}

// --- helpers --------------------------------------------------------------

/// Starts `entry` on `args` in a child. With fork the arguments move into the
/// child's closure; with spawn they are serialised (descriptors and all) and
/// the parent's copies are dropped, so in both cases the parent keeps no
/// handle it gave away.
fn start<E>(how: Start, entry: E, args: E::Args) -> Result<Child<E::Output>, Failed>
where
    E: Entry,
    E::Output: Serialize,
{
    let name = E::NAME.rsplit("::").next().unwrap_or(E::NAME).to_owned();
    let child = match how {
        Start::Fork => Process::new().name(name).fork(move || E::run(args))?,
        Start::Spawn => {
            let child = Process::new().name(name).spawn(entry, &args)?;
            drop(args);
            child
        }
    };
    Ok(child)
}

/// Joins a child (bounded by PATIENCE) and requires it to report success.
fn finish(child: Child<ChildResult>) -> TestResult {
    match child.join_timeout(PATIENCE) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => Err(format!("child failed: {message}").into()),
        Err(JoinTimeoutError::Timeout(child)) => {
            let _ = child.kill();
            Err(format!("child {} did not finish within {PATIENCE:?}", child.name()).into())
        }
        Err(err) => Err(format!("child: {err}").into()),
    }
}

fn ensure(condition: bool, what: impl FnOnce() -> String) -> TestResult {
    if condition {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// For a child: turns any error into the child's failure message.
fn fail<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err}")
}

// --- typed and raw round trips --------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Add(i64, i64),
    Echo(String),
    Sum(i64),
    Echoed(String),
    Stop,
}

herd::ipc::entry! {
    /// Answers requests until told to stop.
    fn answer_requests(end: Pipe<Msg>) -> ChildResult {
        loop {
            let reply = match end.recv_timeout(PATIENCE).map_err(fail("recv"))? {
                Msg::Add(a, b) => Msg::Sum(a + b),
                Msg::Echo(text) => Msg::Echoed(text),
                Msg::Stop => return Ok(()),
                other => return Err(format!("child got a reply: {other:?}")),
            };
            end.send(reply).map_err(fail("send"))?;
        }
    }
}

fn typed_round_trip_both_ways(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<Msg>::new()?;
    let child = start(how, answer_requests, theirs)?;
    for i in 0..200i64 {
        parent.send(Msg::Add(i, i * 3))?;
        let got = parent.recv_timeout(PATIENCE)?;
        ensure(got == Msg::Sum(4 * i), || format!("reply {i}: {got:?}"))?;
    }
    let long = "ünïcode ".repeat(10_000);
    parent.send(Msg::Echo(long.clone()))?;
    let got = parent.recv_timeout(PATIENCE)?;
    ensure(got == Msg::Echoed(long), || "long echo differs".into())?;
    parent.send(Msg::Stop)?;
    finish(child)?;
    let after = parent.recv_timeout(PATIENCE);
    ensure(matches!(after, Err(RecvTimeoutError::Disconnected)), || {
        format!("after the child stopped: {after:?}")
    })
}

herd::ipc::entry! {
    /// Echoes `count` raw messages back reversed.
    fn reverse_bytes(args: (Pipe<()>, usize)) -> ChildResult {
        let (end, count) = args;
        for _ in 0..count {
            let mut bytes = end.recv_bytes().map_err(fail("recv_bytes"))?;
            bytes.reverse();
            end.send_bytes(&bytes).map_err(fail("send_bytes"))?;
        }
        Ok(())
    }
}

fn bytes_round_trip(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<()>::new()?;
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let messages = [Vec::new(), b"abc".to_vec(), big];
    let child = start(how, reverse_bytes, (theirs, messages.len()))?;
    for message in messages {
        parent.send_bytes(&message)?;
        ensure(parent.poll(Some(PATIENCE))?, || "no echo".into())?;
        let mut echoed = parent.recv_bytes()?;
        echoed.reverse();
        ensure(echoed == message, || {
            format!("{}-byte echo differs", message.len())
        })?;
    }
    finish(child)
}

// --- disconnection ----------------------------------------------------------

herd::ipc::entry! {
    /// Sends one message and exits.
    fn say_last_words(end: Pipe<String>) -> ChildResult {
        end.send("last words".to_owned()).map_err(fail("send"))
    }
}

fn disconnected_when_peer_exits(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<String>::new()?;
    finish(start(how, say_last_words, theirs)?)?;
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

herd::ipc::entry! {
    /// Waits until the parent's message has arrived, leaves it unread, sends
    /// one message and exits: closing with unread input makes Linux reset the
    /// connection (ECONNRESET) rather than just close it.
    fn exit_leaving_input_unread(end: Pipe<String>) -> ChildResult {
        let mut fds = [PollFd::new(end.as_fd(), PollFlags::POLLIN)];
        let ready = nix::poll::poll(&mut fds, PollTimeout::from(10_000u16)).map_err(fail("poll"))?;
        if ready != 1 {
            return Err("the parent's message never arrived".into());
        }
        end.send("last words".to_owned()).map_err(fail("send"))
    }
}

fn disconnected_when_peer_exits_with_unread_input(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<String>::new()?;
    let child = start(how, exit_leaving_input_unread, theirs)?;
    parent.send("never read".to_owned())?;
    finish(child)?;
    ensure(parent.recv_timeout(PATIENCE)? == "last words", || {
        "lost the last message".into()
    })?;
    let err = parent.recv_timeout(PATIENCE).unwrap_err();
    ensure(err.is_disconnected(), || {
        format!("recv after reset: {err:?}")
    })?;
    let err = parent.send("anyone?".to_owned()).unwrap_err();
    ensure(err.is_disconnected(), || {
        format!("send after reset: {err:?}")
    })
}

herd::ipc::entry! {
    /// Says it is up, then waits (to be killed).
    fn wait_to_be_killed(end: Pipe<u32>) -> ChildResult {
        end.send(1).map_err(fail("send"))?;
        let _ = end.recv_timeout(PATIENCE);
        Err("was not killed".into())
    }
}

fn disconnected_when_peer_is_sigkilled(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<u32>::new()?;
    let child = start(how, wait_to_be_killed, theirs)?;
    ensure(parent.recv_timeout(PATIENCE)? == 1, || {
        "child did not start".into()
    })?;
    child.kill()?;
    let started = Instant::now();
    let err = parent.recv_timeout(PATIENCE).unwrap_err();
    ensure(err.is_disconnected(), || {
        format!("recv after SIGKILL: {err:?}")
    })?;
    ensure(started.elapsed() < PATIENCE / 2, || {
        "disconnection noticed late".into()
    })?;
    match child.join_timeout(PATIENCE) {
        Err(JoinTimeoutError::Killed { status, .. }) => {
            ensure(status.signal() == Some(libc::SIGKILL), || {
                format!("{status:?}")
            })
        }
        other => Err(format!("child after SIGKILL: {other:?}").into()),
    }
}

// --- timeouts, poll, wait ---------------------------------------------------

herd::ipc::entry! {
    /// Sends 42 once the parent says go.
    fn send_on_go(args: (Pipe<()>, Pipe<u64>)) -> ChildResult {
        let (go, end) = args;
        go.recv_timeout(PATIENCE).map_err(fail("go"))?;
        end.send(42).map_err(fail("send"))
    }
}

fn recv_timeout_and_try_recv(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<u64>::new()?;
    let (go, their_go) = Pipe::<()>::new()?;
    let child = start(how, send_on_go, (their_go, theirs))?;
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
    // `Duration::MAX` is no deadline: these wait for the child instead of overflowing.
    go.send_timeout((), Duration::MAX)?;
    ensure(parent.poll(Some(Duration::MAX))?, || {
        "poll(Duration::MAX) returned without a message".into()
    })?;
    ensure(wait(&[&parent], Some(Duration::MAX))? == [0], || {
        "wait(Duration::MAX) returned without a message".into()
    })?;
    ensure(parent.recv_timeout(Duration::MAX)? == 42, || {
        "wrong value".into()
    })?;
    finish(child)
}

herd::ipc::entry! {
    /// Sends "ping" and "pong" after a short pause.
    fn ping_pong_later(end: Pipe<String>) -> ChildResult {
        std::thread::sleep(Duration::from_millis(50));
        end.send("ping".into()).map_err(fail("send"))?;
        end.send("pong".into()).map_err(fail("send"))
    }
}

fn poll_sees_a_message_coming(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<String>::new()?;
    let child = start(how, ping_pong_later, theirs)?;
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
    finish(child)?;
    // A closed peer makes poll true: recv will report Disconnected at once.
    ensure(parent.poll(Some(PATIENCE))?, || {
        "poll false after the peer closed".into()
    })?;
    ensure(parent.recv().unwrap_err().is_disconnected(), || {
        "expected Disconnected".into()
    })
}

herd::ipc::entry! {
    /// Of three ends: closes end 2, says 1 and 11 on end 1 (so one read may
    /// buffer both), stays quiet on end 0 until the parent says done on end 1.
    fn speak_on_end_one(ends: Vec<Pipe<usize>>) -> ChildResult {
        let mut ends = ends.into_iter();
        let quiet = ends.next().ok_or("no end 0")?;
        let speaker = ends.next().ok_or("no end 1")?;
        drop(ends);
        std::thread::sleep(Duration::from_millis(30));
        speaker.send(1).map_err(fail("send"))?;
        speaker.send(11).map_err(fail("send"))?;
        speaker.recv_timeout(PATIENCE).map_err(fail("done"))?;
        drop(quiet);
        Ok(())
    }
}

fn wait_over_several_ends(how: Start) -> TestResult {
    let pairs: Vec<(Pipe<usize>, Pipe<usize>)> =
        (0..3).map(|_| Pipe::new()).collect::<Result<_, _>>()?;
    let (mine, theirs): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let child = start(how, speak_on_end_one, theirs)?;
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
    finish(child)?;
    let ready = wait(&objects, Some(Duration::ZERO))?;
    ensure(ready == [0, 1, 2], || {
        format!("after the child exited: {ready:?}")
    })
}

herd::ipc::entry! {
    /// Writes the first half of `frame` onto the socket, waits for a go, writes the rest, and
    /// waits for a second go before it exits (so the parent never sees the end close early).
    fn write_in_two_halves(args: (Pipe<String>, Pipe<()>, Vec<u8>)) -> ChildResult {
        let (end, go, frame) = args;
        let (first, rest) = frame.split_at(frame.len() / 2);
        for (half, part) in [("first", first), ("second", rest)] {
            let written = nix::unistd::write(end.as_fd(), part).map_err(fail("write"))?;
            if written != part.len() {
                return Err(format!("wrote {written} of the {} bytes of the {half} half", part.len()));
            }
            go.recv_timeout(PATIENCE).map_err(fail("wait for go"))?;
        }
        Ok(())
    }
}

/// `wait` and `poll` agree: an end with only part of a message is not ready for either (so a
/// receive after `wait` never blocks on the rest), and is once the rest has come.
fn wait_ignores_half_a_message(how: Start) -> TestResult {
    // A real frame, as a Pipe writes it, read off the socket raw.
    let (writer, reader) = Pipe::<String>::new()?;
    writer.send("a message in two halves".to_owned())?;
    let mut frame = vec![0u8; 4096];
    let len = nix::unistd::read(reader.as_fd().as_raw_fd(), &mut frame)?;
    frame.truncate(len);
    ensure(len > 8, || format!("a frame of {len} bytes"))?;

    let (parent, theirs) = Pipe::<String>::new()?;
    let (go, their_go) = Pipe::<()>::new()?;
    let child = start(how, write_in_two_halves, (theirs, their_go, frame))?;
    let started = Instant::now();
    let ready = wait(&[&parent], Some(Duration::from_millis(300)))?;
    ensure(ready.is_empty(), || {
        format!("half a message reported ready: {ready:?}")
    })?;
    ensure(started.elapsed() >= Duration::from_millis(300), || {
        format!("wait returned early, after {:?}", started.elapsed())
    })?;
    ensure(wait(&[&parent], Some(Duration::ZERO))?.is_empty(), || {
        "half a message ready for a zero wait".into()
    })?;
    ensure(!parent.poll(Some(Duration::ZERO))?, || {
        "half a message ready for poll".into()
    })?;
    go.send(())?;
    ensure(wait(&[&parent], Some(PATIENCE))? == [0], || {
        "the whole message never made the end ready".into()
    })?;
    // Ready means a receive returns at once.
    ensure(parent.try_recv()? == "a message in two halves", || {
        "wrong message".into()
    })?;
    go.send(())?;
    finish(child)
}

// --- the size limit -----------------------------------------------------------

herd::ipc::entry! {
    /// Expects exactly one message: 1000 sevens.
    fn expect_small(end: Pipe<Vec<u8>>) -> ChildResult {
        let first = end.recv_timeout(PATIENCE).map_err(fail("recv"))?;
        if first != vec![7u8; 1000] {
            return Err(format!("first message is {} bytes, not the small one", first.len()));
        }
        Ok(())
    }
}

fn oversize_message_refused_on_send(how: Start) -> TestResult {
    let (mut parent, theirs) = Pipe::<Vec<u8>>::new()?;
    parent.set_max_message_size(1024);
    let child = start(how, expect_small, theirs)?;
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
    finish(child)
}

herd::ipc::entry! {
    /// Sends 5000 bytes, over the parent's limit.
    fn send_5000_bytes(end: Pipe<Vec<u8>>) -> ChildResult {
        end.send(vec![1u8; 5000]).map_err(fail("send"))
    }
}

fn oversize_frame_refused_on_recv(how: Start) -> TestResult {
    let (mut parent, theirs) = Pipe::<Vec<u8>>::new()?;
    parent.set_max_message_size(100);
    let child = start(how, send_5000_bytes, theirs)?;
    let err = parent.recv_timeout(PATIENCE).unwrap_err();
    ensure(
        matches!(err, RecvTimeoutError::TooLarge { limit: 100, .. }),
        || format!("{err:?}"),
    )?;
    finish(child)
}

// --- corrupt streams ----------------------------------------------------------

herd::ipc::entry! {
    /// Writes raw bytes straight onto the socket, bypassing the framing.
    fn write_raw(args: (Pipe<String>, Vec<u8>)) -> ChildResult {
        let (end, raw) = args;
        let written = nix::unistd::write(end.as_fd(), &raw).map_err(fail("write"))?;
        if written != raw.len() {
            return Err(format!("wrote {written} of {} bytes", raw.len()));
        }
        Ok(())
    }
}

/// Has a child write `raw` onto the peer socket of the returned end and exit.
fn peer_writes_raw(how: Start, raw: &[u8]) -> Result<Pipe<String>, Failed> {
    let (parent, theirs) = Pipe::<String>::new()?;
    finish(start(how, write_raw, (theirs, raw.to_vec()))?)?;
    Ok(parent)
}

fn garbage_frame_is_an_error(how: Start) -> TestResult {
    let parent = peer_writes_raw(how, b"GET / HTTP/1.1\r\n\r\n")?;
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
    let parent = peer_writes_raw(how, b"hd\x00\x00\xff\xff\xff\xff")?;
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
    let parent = peer_writes_raw(how, b"hd\x02\x00\x01\x00\x00\x00x")?;
    let err = parent.recv().unwrap_err();
    ensure(matches!(err, RecvError::BadFrame(_)), || {
        format!("missing fds: {err:?}")
    })
}

fn truncated_frame_is_an_error(how: Start) -> TestResult {
    // Header announces 100 bytes; 10 arrive, then the peer exits.
    let parent = peer_writes_raw(how, b"hd\x00\x00\x64\x00\x00\x000123456789")?;
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
    let parent = peer_writes_raw(how, b"hd\x00")?;
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

herd::ipc::entry! {
    /// Believes the pipe carries Strings: sends one, then an empty raw
    /// message, then (as raw bytes) the postcard encoding of the u64 5.
    fn speak_strings(end: Pipe<String>) -> ChildResult {
        end.send("not a number".to_owned()).map_err(fail("send"))?;
        end.send_bytes(&[]).map_err(fail("send_bytes"))?;
        end.send_bytes(&[5]).map_err(fail("send_bytes"))
    }
}

herd::ipc::entry! {
    /// The same messages as `speak_strings`, on an end typed Pipe<u64>.
    fn speak_strings_as_bytes(end: Pipe<u64>) -> ChildResult {
        let text = postcard::to_allocvec("not a number").map_err(fail("encode"))?;
        end.send_bytes(&text).map_err(fail("send_bytes"))?;
        end.send_bytes(&[]).map_err(fail("send_bytes"))?;
        end.send(5).map_err(fail("send"))
    }
}

fn type_mismatch_is_a_decode_error(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<u64>::new()?;
    // Through spawn, the child's end really is typed Pipe<String>: the entry
    // is named at run time and decodes the argument as its own type (an end
    // serialises to its descriptor and limit only). Through fork the end keeps
    // its type, so the child writes a String's encoding as raw bytes.
    let child = match how {
        Start::Spawn => {
            let child = Process::new().spawn_named(speak_strings::NAME, &theirs)?;
            drop(theirs);
            child
        }
        Start::Fork => start(how, speak_strings_as_bytes, theirs)?,
    };
    for what in ["a String", "an empty body"] {
        let err = parent.recv_timeout(PATIENCE).unwrap_err();
        ensure(matches!(err, RecvTimeoutError::Decode(_)), || {
            format!("{what} read as u64: {err:?}")
        })?;
    }
    // A type mismatch consumes that message only; the stream stays usable.
    ensure(parent.recv_timeout(PATIENCE)? == 5, || {
        "valid message after mismatch".into()
    })?;
    finish(child)
}

// --- handles inside messages ------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
enum Carrier {
    /// An end for the child to talk back on.
    Line(Pipe<String>),
    Done,
}

herd::ipc::entry! {
    /// Answers one question on each end it receives, until Done.
    fn answer_on_received_ends(end: Pipe<Carrier>) -> ChildResult {
        while let Carrier::Line(line) = end.recv_timeout(PATIENCE).map_err(fail("recv"))? {
            let question = line.recv_timeout(PATIENCE).map_err(fail("question"))?;
            line.send(format!("{question}, answered")).map_err(fail("answer"))?;
        }
        Ok(())
    }
}

fn pipe_end_sent_through_a_pipe(how: Start) -> TestResult {
    let (parent, theirs) = Pipe::<Carrier>::new()?;
    let child = start(how, answer_on_received_ends, theirs)?;
    for round in 0..3 {
        // Created after the child started: it can only know these ends by
        // receiving them.
        let (near, far) = Pipe::<String>::new()?;
        parent.send(Carrier::Line(far))?; // moved: our copy is closed
        near.send(format!("question {round}"))?;
        let answer = near.recv_timeout(PATIENCE)?;
        ensure(answer == format!("question {round}, answered"), || {
            answer.clone()
        })?;
        // The child drops its copy after answering; with ours gone too the
        // far end is fully closed: proof no copy leaked along the way.
        let after = near.recv_timeout(PATIENCE);
        ensure(matches!(after, Err(RecvTimeoutError::Disconnected)), || {
            format!("round {round}: {after:?}")
        })?;
    }
    parent.send(Carrier::Done)?;
    finish(child)
}

// --- simplex and a full pipe ------------------------------------------------

herd::ipc::entry! {
    /// Sends 100 numbered messages.
    fn send_hundred(tx: PipeSender<(u32, String)>) -> ChildResult {
        for i in 0..100 {
            tx.send((i, i.to_string())).map_err(fail("send"))?;
        }
        Ok(())
    }
}

fn simplex_pipe(how: Start) -> TestResult {
    let (tx, rx) = Pipe::<(u32, String)>::simplex()?;
    let child = start(how, send_hundred, tx)?;
    for i in 0..100 {
        let got = rx.recv_timeout(PATIENCE)?;
        ensure(got == (i, i.to_string()), || {
            format!("message {i}: {got:?}")
        })?;
    }
    finish(child)?;
    ensure(rx.recv().unwrap_err().is_disconnected(), || {
        "no Disconnected".into()
    })
}

herd::ipc::entry! {
    /// Receives `count` 16 KiB messages of threes.
    fn drain_chunks(args: (Pipe<Vec<u8>>, usize)) -> ChildResult {
        let (rx, count) = args;
        for i in 0..count {
            let got = rx.recv_timeout(PATIENCE).map_err(fail("recv"))?;
            if got.len() != 16 * 1024 || got.iter().any(|&b| b != 3) {
                return Err(format!("chunk {i} is corrupt"));
            }
        }
        Ok(())
    }
}

fn full_pipe_try_send_and_send_timeout(how: Start) -> TestResult {
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
    // A child drains it all; everything queued arrives intact, then a
    // blocking send that had no room goes through.
    let child = start(how, drain_chunks, (rx, sent + 1))?;
    tx.send_timeout(chunk, PATIENCE)?;
    finish(child)
}
