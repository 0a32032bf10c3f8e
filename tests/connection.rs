//! `herd::ipc::connection` across real processes: unrelated processes (a spawned client gets
//! only the address and the key, as text) exchange typed messages both ways over filesystem and
//! abstract Unix sockets and TCP; a wrong key is refused on both sides; accept waits with a
//! timeout; the listener's socket file goes away with it, and only with it.

use herd_testkit as support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::ipc::connection::{AcceptError, Address, Authkey, Client, Listener};
use herd::ipc::Pipe;
use serde::{Deserialize, Serialize};
use support::{ensure, fork_child, run, spawn_child, Verdict};

const PATIENCE: Duration = Duration::from_secs(20);

/// One message type both ways, as with any `Pipe<T>`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Message {
    Add(Vec<i64>),
    Sum(i64),
    ClientPid(u32),
}

herd::ipc::entry! {
    /// An unrelated client: it knows nothing but the address and the key, both as text.
    fn adding_client(args: (String, String)) -> Verdict {
        let (address, key) = args;
        let address: Address = address.parse().map_err(err)?;
        let key = Authkey::from_hex(&key).map_err(err)?;
        let conn: Pipe<Message> = Client::connect(&address, &key).map_err(err)?;
        client_side(&conn)
    }
}

herd::ipc::entry! {
    /// A client with the wrong key: succeeds only if it is refused as an authentication error.
    fn wrong_key_client(args: (String, String)) -> Verdict {
        let (address, key) = args;
        let address: Address = address.parse().map_err(err)?;
        let key = Authkey::from_hex(&key).map_err(err)?;
        match Client::connect::<Message>(&address, &key) {
            Err(e) if e.is_authentication() => Ok(()),
            Err(e) => Err(format!("expected an authentication error, got: {e}")),
            Ok(_) => Err("connected with the wrong key".into()),
        }
    }
}

fn main() -> ExitCode {
    run(vec![
        (
            "spawned_client_with_only_address_and_key_over_unix_path",
            spawned_client_over_unix_path,
        ),
        (
            "spawned_client_over_abstract_socket",
            spawned_client_over_abstract_socket,
        ),
        (
            "forked_client_over_tcp_port_zero",
            forked_client_over_tcp_port_zero,
        ),
        (
            "wrong_key_refused_on_both_sides",
            wrong_key_refused_on_both_sides,
        ),
        (
            "accept_timeout_then_late_client",
            accept_timeout_then_late_client,
        ),
        (
            "socket_file_removed_by_the_binding_process_only",
            socket_file_removed_by_the_binding_process_only,
        ),
    ])
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn client_side(conn: &Pipe<Message>) -> Verdict {
    conn.send(Message::Add(vec![1, 2, 3, 36])).map_err(err)?;
    let sum = conn.recv_timeout(PATIENCE).map_err(err)?;
    ensure(sum == Message::Sum(42), || format!("got {sum:?}"))?;
    conn.send(Message::ClientPid(std::process::id()))
        .map_err(err)
}

/// Accepts one client, answers its sum, and returns the pid it reports.
fn serve_one(listener: &Listener) -> Result<u32, String> {
    let conn = listener.accept_timeout::<Message>(PATIENCE).map_err(err)?;
    let Message::Add(numbers) = conn.recv_timeout(PATIENCE).map_err(err)? else {
        return Err("expected Add first".into());
    };
    conn.send(Message::Sum(numbers.iter().sum())).map_err(err)?;
    match conn.recv_timeout(PATIENCE).map_err(err)? {
        Message::ClientPid(pid) => Ok(pid),
        other => Err(format!("expected the client's pid, got {other:?}")),
    }
}

fn spawned_client(address: Address) -> Verdict {
    let key = Authkey::random().map_err(err)?;
    let listener = Listener::bind(address, key.clone()).map_err(err)?;
    let child = spawn_child(
        adding_client,
        &(listener.address().to_string(), key.to_hex()),
    );
    let pid = serve_one(&listener)?;
    ensure(pid == child.pid().as_raw() as u32, || {
        format!("the client said it is pid {pid}, not {}", child.pid())
    })?;
    child.join(PATIENCE)
}

fn spawned_client_over_unix_path() -> Verdict {
    let dir = tempfile::tempdir().map_err(err)?;
    spawned_client(Address::Unix(dir.path().join("herd.sock")))
}

fn spawned_client_over_abstract_socket() -> Verdict {
    spawned_client(Address::Abstract(
        format!("herd-connection-test-{}", std::process::id()).into_bytes(),
    ))
}

fn forked_client_over_tcp_port_zero() -> Verdict {
    let key = Authkey::random().map_err(err)?;
    let listener =
        Listener::bind("tcp:127.0.0.1:0".parse().map_err(err)?, key.clone()).map_err(err)?;
    let address = listener.address().clone();
    match &address {
        Address::Tcp(addr) if addr.port() != 0 && addr.ip().is_loopback() => {}
        other => return Err(format!("expected 127.0.0.1 with a real port, got {other}")),
    }
    let child = fork_child(move || {
        let conn: Pipe<Message> = Client::connect(&address, &key).map_err(err)?;
        client_side(&conn)
    });
    let child_pid = child.pid();
    let pid = serve_one(&listener)?;
    ensure(pid == child_pid.as_raw() as u32, || {
        format!("the client said it is pid {pid}, not {child_pid}")
    })?;
    child.join(PATIENCE)
}

fn wrong_key_refused_on_both_sides() -> Verdict {
    let dir = tempfile::tempdir().map_err(err)?;
    let listener = Listener::bind(
        Address::Unix(dir.path().join("guarded.sock")),
        Authkey::from_bytes(*b"the right key").map_err(err)?,
    )
    .map_err(err)?;
    let wrong = Authkey::from_bytes(*b"a wrong key").map_err(err)?;
    let child = spawn_child(
        wrong_key_client,
        &(listener.address().to_string(), wrong.to_hex()),
    );
    match listener.accept_timeout::<Message>(PATIENCE) {
        Err(e @ AcceptError::Authentication { .. }) => {
            let text = e.to_string();
            ensure(
                text.contains("guarded.sock") && text.contains("authkey"),
                || format!("the error should name the listener and the key: {text}"),
            )?;
        }
        Err(e) => return Err(format!("expected an authentication error, got: {e}")),
        Ok(_) => return Err("accepted a client with the wrong key".into()),
    }
    child.join(PATIENCE)
}

fn accept_timeout_then_late_client() -> Verdict {
    let key = Authkey::random().map_err(err)?;
    let listener = Listener::bind(
        Address::Abstract(format!("herd-late-{}", std::process::id()).into_bytes()),
        key.clone(),
    )
    .map_err(err)?;
    let started = Instant::now();
    match listener.accept_timeout::<Message>(Duration::from_millis(100)) {
        Err(e) if e.is_timeout() => {}
        other => return Err(format!("expected a timeout, got {other:?}")),
    }
    let waited = started.elapsed();
    ensure(
        waited >= Duration::from_millis(100) && waited < PATIENCE,
        || format!("a 100 ms accept timeout took {waited:?}"),
    )?;
    let address = listener.address().clone();
    let child = fork_child(move || {
        std::thread::sleep(Duration::from_millis(200));
        let conn: Pipe<Message> = Client::connect(&address, &key).map_err(err)?;
        client_side(&conn)
    });
    serve_one(&listener)?;
    child.join(PATIENCE)
}

fn socket_file_removed_by_the_binding_process_only() -> Verdict {
    let dir = tempfile::tempdir().map_err(err)?;
    let path = dir.path().join("owned.sock");
    let listener = Listener::bind(Address::Unix(path.clone()), Authkey::random().map_err(err)?)
        .map_err(err)?;
    // A forked child that drops its copy of the listener must leave the socket in place.
    let mut slot = Some(listener);
    fork_child(|| {
        drop(slot.take()); // the child's copy of the memory: the parent's slot keeps its listener
        Ok(())
    })
    .join(PATIENCE)?;
    let listener = slot.ok_or("the parent's listener is gone")?;
    ensure(path.exists(), || {
        "a forked child's drop removed the parent's socket".into()
    })?;
    drop(listener);
    ensure(!path.exists(), || {
        format!("{} is still there after drop", path.display())
    })
}
