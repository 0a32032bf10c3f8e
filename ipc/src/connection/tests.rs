use std::thread;
use std::time::Duration;

use super::*;
use crate::Pipe;

const PATIENCE: Duration = Duration::from_secs(10);

fn key(bytes: &[u8]) -> Authkey {
    Authkey::from_bytes(bytes).unwrap()
}

/// A client thread sends `n` and expects `n + 1` back over each transport.
fn round_trip(address: Address) {
    let listener = Listener::bind(address, key(b"secret")).unwrap();
    let address = listener.address().clone();
    let client = thread::spawn(move || {
        let conn: Pipe<u64> = Client::connect(&address, &key(b"secret")).unwrap();
        conn.send(41).unwrap();
        conn.recv_timeout(PATIENCE).unwrap()
    });
    let conn = listener.accept_timeout::<u64>(PATIENCE).unwrap();
    let n = conn.recv_timeout(PATIENCE).unwrap();
    conn.send(n + 1).unwrap();
    assert_eq!(client.join().unwrap(), 42);
}

#[test]
fn unix_abstract_and_tcp_carry_messages_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(Address::Unix(dir.path().join("listener.sock")));
    round_trip(Address::Abstract(
        format!("herd-test-{}", std::process::id()).into_bytes(),
    ));
    round_trip("tcp:127.0.0.1:0".parse().unwrap());
}

#[test]
fn tcp_port_zero_reports_the_chosen_port() {
    let listener = Listener::bind("tcp:127.0.0.1:0".parse().unwrap(), key(b"k")).unwrap();
    match listener.address() {
        Address::Tcp(addr) => assert_ne!(addr.port(), 0),
        other => panic!("expected a TCP address, got {other}"),
    }
}

#[test]
fn wrong_key_is_an_authentication_error_on_both_sides() {
    let listener = Listener::bind("tcp:127.0.0.1:0".parse().unwrap(), key(b"right")).unwrap();
    let address = listener.address().clone();
    let client = thread::spawn(move || Client::connect::<u8>(&address, &key(b"wrong")));
    let accepted = listener.accept_timeout::<u8>(PATIENCE);
    let err = accepted.unwrap_err();
    assert!(err.is_authentication(), "{err}");
    assert!(err.to_string().contains("authkey"), "{err}");
    let err = client.join().unwrap().unwrap_err();
    assert!(err.is_authentication(), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn accept_timeout_times_out_without_a_client() {
    let listener = Listener::bind("tcp:127.0.0.1:0".parse().unwrap(), key(b"k")).unwrap();
    let err = listener
        .accept_timeout::<u8>(Duration::from_millis(50))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[test]
fn filesystem_socket_is_removed_on_drop_and_bind_twice_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = Listener::bind(Address::Unix(path.clone()), key(b"k")).unwrap();
    assert!(path.exists());
    let again = Listener::bind(Address::Unix(path.clone()), key(b"k")).unwrap_err();
    assert!(matches!(again, BindError::InUse { .. }), "{again}");
    drop(listener);
    assert!(!path.exists());
}

#[test]
fn listener_is_waitable_until_a_client_comes() {
    let listener = Listener::bind("tcp:127.0.0.1:0".parse().unwrap(), key(b"k")).unwrap();
    let none = crate::wait(&[&listener], Some(Duration::from_millis(20))).unwrap();
    assert!(none.is_empty());
    let address = listener.address().clone();
    let client = thread::spawn(move || {
        let conn: Pipe<u8> = Client::connect(&address, &key(b"k")).unwrap();
        conn.recv_timeout(PATIENCE).unwrap()
    });
    assert_eq!(crate::wait(&[&listener], Some(PATIENCE)).unwrap(), [0]);
    let conn = listener.accept::<u8>().unwrap();
    conn.send(7).unwrap();
    assert_eq!(client.join().unwrap(), 7);
}

#[test]
fn connecting_to_nothing_names_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let address = Address::Unix(dir.path().join("absent.sock"));
    let err = Client::connect::<u8>(&address, &key(b"k")).unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("absent.sock"), "{err}");
}
