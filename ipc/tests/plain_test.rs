//! Spawn and forkserver from ordinary `#[test]` functions (libtest's default harness, a thread per test, no
//! `main` of our own, no `herd_ipc::init()`): a spawned child and the forkserver run from herd-ipc's start-up
//! hook before libtest's `main`, so libtest never sees their command line. Works under `cargo test` and
//! `cargo nextest run`.

use std::time::Duration;

use herd_ipc::{Pipe, PipeSender, Process, StartMethod};

const PATIENCE: Duration = Duration::from_secs(20);

herd_ipc::entry! {
    /// Adds a pair in a child.
    fn add(pair: (i64, i64)) -> i64 {
        pair.0 + pair.1
    }
}

herd_ipc::entry! {
    /// Reports the child's pid and parent pid.
    fn ids(_unit: ()) -> (herd_ipc::Pid, herd_ipc::Pid) {
        (herd_ipc::Pid::this(), herd_ipc::Pid::parent())
    }
}

herd_ipc::entry! {
    /// Writes a line through the Pipe end it was given.
    fn say(sender: PipeSender<String>) {
        sender.send(format!("from {}", herd_ipc::current_process().name)).unwrap();
    }
}

herd_ipc::entry! {
    /// Panics.
    fn fail(message: String) {
        // Panics on purpose: without the hook's message and backtrace on stderr, which would
        // read like a failure of the test.
        std::panic::set_hook(Box::new(|_| {}));
        panic!("{message}")
    }
}

#[test]
fn spawn_from_a_test_thread() {
    // libtest runs this on a thread of its own: the process is multi-threaded.
    let child = Process::new().spawn(add, &(40, 2)).unwrap();
    assert_eq!(child.join_timeout(PATIENCE).unwrap(), 42);
}

#[test]
fn spawned_child_is_ours() {
    let child = Process::new().spawn(ids, &()).unwrap();
    let pid = child.pid();
    let (seen_pid, seen_ppid) = child.join_timeout(PATIENCE).unwrap();
    assert_eq!((seen_pid, seen_ppid), (pid, herd_ipc::Pid::this()));
}

#[test]
fn forkserver_from_a_test_thread() {
    let child = Process::new().forkserver(add, &(2, 3)).unwrap();
    assert_eq!(child.join_timeout(PATIENCE).unwrap(), 5);
    let server = herd_ipc::forkserver_pid().expect("a forkserver runs");
    let child = Process::new().forkserver(ids, &()).unwrap();
    let pid = child.pid();
    let (seen_pid, seen_ppid) = child.join_timeout(PATIENCE).unwrap();
    assert_eq!((seen_pid, seen_ppid), (pid, server));
}

#[test]
fn forkserver_passes_a_pipe_end() {
    let (sender, receiver) = Pipe::<String>::simplex().unwrap();
    let child = Process::new()
        .name("sayer")
        .forkserver(say, &sender)
        .unwrap();
    drop(sender);
    assert_eq!(receiver.recv_timeout(PATIENCE).unwrap(), "from sayer");
    child.join_timeout(PATIENCE).unwrap();
}

#[test]
fn panics_come_back_whatever_the_method() {
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        let child = Process::new()
            .start(method, fail, &format!("{method} boom"))
            .unwrap();
        let err = child.join_timeout(PATIENCE).unwrap_err();
        assert_eq!(
            err.panic_message(),
            Some(format!("{method} boom").as_str()),
            "{method}: expected a panic, got {err:?}"
        );
    }
}

#[test]
fn default_method_is_forkserver_here() {
    // Test threads make this process multi-threaded, where fork would be refused.
    assert_eq!(
        StartMethod::default_for_this_process(),
        StartMethod::Forkserver
    );
    let child = Process::new()
        .start(StartMethod::default_for_this_process(), add, &(1, 1))
        .unwrap();
    assert_eq!(child.join_timeout(PATIENCE).unwrap(), 2);
}
