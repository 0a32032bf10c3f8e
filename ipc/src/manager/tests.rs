//! In-process tests of the server and the proxies: the server runs on a thread of the test and
//! clients connect over TCP loopback or a Unix socket. Cross-process behaviour is tested in the
//! root package's `tests/manager.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::address::{Address, Authkey};
use super::error::{ManagerError, RemoteError, TryGetError, TryPutError};
use super::frame::{read_frame, FrameError, MAX_FRAME_LEN, READ_STEP};
use super::manager::Manager;
use super::server::{Limits, Server};
use super::stream::Listener;

/// A server on a loopback port, served by a thread for the rest of the test process.
fn serve(authkey: &Authkey) -> Address {
    serve_with(authkey, Limits::default())
}

fn serve_with(authkey: &Authkey, limits: Limits) -> Address {
    let listener = Listener::bind(&Address::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let server = Server::with_limits(listener, authkey.clone(), limits).unwrap();
    let address = server.address().clone();
    std::thread::spawn(move || server.serve());
    address
}

fn connected() -> Manager {
    let key = Authkey::random().unwrap();
    Manager::connect(serve(&key), key).unwrap()
}

#[test]
fn dict_operations_round_trip() {
    let m = connected();
    let d = m.dict::<String, i64>().unwrap();
    assert_eq!(d.get("a").unwrap(), None);
    d.insert("a", &1).unwrap();
    d.update(&[("b".into(), 2), ("c".into(), 3)]).unwrap();
    assert_eq!(d.len().unwrap(), 3);
    assert!(d.contains("b").unwrap());
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec!["a", "b", "c"]);
    assert_eq!(d.take("c").unwrap(), Some(3));
    assert!(d.remove("b").unwrap());
    assert!(!d.remove("b").unwrap());
    assert_eq!(d.items().unwrap(), vec![("a".to_string(), 1)]);
    assert_eq!(d.increment("a", 41).unwrap(), 42);
    assert_eq!(d.increment("new", -5).unwrap(), -5);
    assert_eq!(d.set_if_absent("a", &0).unwrap(), Some(42));
    assert_eq!(d.set_if_absent("z", &7).unwrap(), None);
    assert!(!d.compare_and_swap("z", Some(&8), &9).unwrap());
    assert!(d.compare_and_swap("z", Some(&7), &9).unwrap());
    assert!(d.compare_and_swap("y", None, &1).unwrap());
    assert_eq!(d.get("z").unwrap(), Some(9));
    d.insert("max", &i64::MAX).unwrap();
    match d.increment("max", 1) {
        Err(ManagerError::Remote(RemoteError::Overflow)) => {}
        other => panic!("expected overflow, got {other:?}"),
    }
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
}

#[test]
fn append_at_key_builds_a_vec() {
    let m = connected();
    let d = m.dict::<u32, Vec<String>>().unwrap();
    assert_eq!(d.append(&1, &"x".into()).unwrap(), 1);
    assert_eq!(d.append(&1, &"y".into()).unwrap(), 2);
    assert_eq!(
        d.get(&1).unwrap(),
        Some(vec!["x".to_string(), "y".to_string()])
    );
}

#[test]
fn increment_of_a_non_integer_names_the_problem() {
    let m = connected();
    let named = m.named("shape");
    let strings = named.dict::<String, String>().unwrap();
    strings.insert("k", &"text".into()).unwrap();
    let ints = named.dict::<String, i64>().unwrap();
    let err = ints.increment("k", 1).unwrap_err();
    assert!(err.to_string().contains("not an i64"), "{err}");
}

#[test]
fn list_and_namespace() {
    let m = connected();
    let l = m.list::<(u8, String)>().unwrap();
    l.push(&(1, "a".into())).unwrap();
    l.extend(&[(2, "b".into()), (3, "c".into())]).unwrap();
    assert_eq!(l.len().unwrap(), 3);
    assert_eq!(l.get(1).unwrap(), (2, "b".into()));
    assert!(l.get(9).unwrap_err().is_index_error());
    l.set(0, &(0, "z".into())).unwrap();
    let err = l.set(5, &(0, "z".into())).unwrap_err();
    assert!(
        err.to_string()
            .contains("index 5 out of range for length 3"),
        "{err}"
    );
    assert_eq!(l.pop().unwrap(), (3, "c".into()));
    assert_eq!(
        l.snapshot().unwrap(),
        vec![(0, "z".into()), (2, "b".into())]
    );

    let ns = m.namespace().unwrap();
    ns.set("answer", &42u32).unwrap();
    ns.set("name", &"herd").unwrap();
    assert_eq!(ns.get::<u32>("answer").unwrap(), 42);
    assert_eq!(ns.get::<String>("name").unwrap(), "herd");
    let err = ns.get::<u32>("missing").unwrap_err();
    assert!(err.to_string().contains("\"missing\""), "{err}");
    assert!(ns.remove("answer").unwrap());
    assert_eq!(ns.names().unwrap(), vec!["name".to_string()]);
}

/// Runs `body` on another thread: another thread is another lock owner.
fn on_other_thread<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(body).join().unwrap()
}

#[test]
fn locks_track_their_owner() {
    let m = connected();
    let lock = m.lock().unwrap();
    lock.acquire().unwrap();
    let other = lock.clone();
    on_other_thread(move || {
        assert!(!other.try_acquire().unwrap());
        assert!(!other.acquire_timeout(Duration::from_millis(50)).unwrap());
        assert!(other
            .release()
            .unwrap_err()
            .to_string()
            .contains("not held"));
    });
    assert!(lock
        .acquire()
        .unwrap_err()
        .to_string()
        .contains("not reentrant"));
    lock.release().unwrap();
    {
        let _guard = lock.lock().unwrap();
        let other = lock.clone();
        assert!(!on_other_thread(move || other.try_acquire().unwrap()));
    }
    // A thread that exits holding the lock closes its connection: the server releases the lock.
    let other = lock.clone();
    on_other_thread(move || other.acquire().unwrap());
    assert!(lock.acquire_timeout(Duration::from_secs(5)).unwrap());

    let rlock = m.rlock().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    rlock.release().unwrap();
    let other = rlock.clone();
    assert!(!on_other_thread(move || other.try_acquire().unwrap()));
    rlock.release().unwrap();
    let other = rlock.clone();
    assert!(on_other_thread(move || {
        let got = other.try_acquire().unwrap();
        other.release().unwrap();
        got
    }));
}

#[test]
fn semaphore_event_condition_queue() {
    let m = connected();
    let sem = m.semaphore(2).unwrap();
    assert!(sem.try_acquire().unwrap());
    assert!(sem.try_acquire().unwrap());
    assert!(!sem.try_acquire().unwrap());
    sem.release().unwrap();
    assert_eq!(sem.value().unwrap(), 1);

    let event = m.event().unwrap();
    assert!(!event.wait_timeout(Duration::from_millis(20)).unwrap());
    let setter = event.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        setter.set().unwrap();
    });
    assert!(event.wait_timeout(Duration::from_secs(5)).unwrap());
    t.join().unwrap();
    event.clear().unwrap();
    assert!(!event.is_set().unwrap());

    let cond = m.condition().unwrap();
    let flag = m.namespace().unwrap();
    flag.set("ready", &false).unwrap();
    let (c2, f2) = (cond.clone(), flag.clone());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let _g = c2.lock().unwrap();
        f2.set("ready", &true).unwrap();
        c2.notify_all().unwrap();
    });
    cond.acquire().unwrap();
    while !flag.get::<bool>("ready").unwrap() {
        assert!(
            cond.wait_timeout(Duration::from_secs(5)).unwrap(),
            "not notified"
        );
    }
    cond.release().unwrap();
    t.join().unwrap();
    assert!(cond.notify(1).unwrap_err().to_string().contains("not held"));

    let q = m.bounded_queue::<String>(1).unwrap();
    q.put(&"one".into()).unwrap();
    assert!(matches!(q.try_put(&"two".into()), Err(TryPutError::Full)));
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!(q.get().unwrap(), "one");
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    let q2 = q.clone();
    let t = std::thread::spawn(move || q2.put(&"late".into()).unwrap());
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "late");
    t.join().unwrap();
}

#[test]
fn proxies_travel_as_tokens() {
    let m = connected();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(&1, &2).unwrap();
    let token = postcard::to_stdvec(&d).unwrap();
    let back: super::DictProxy<u8, u8> = postcard::from_bytes(&token).unwrap();
    assert_eq!(back.get(&1).unwrap(), Some(2));
    // A dict's token does not make a list proxy.
    assert!(postcard::from_bytes::<super::ListProxy<u8>>(&token).is_err());
}

#[test]
fn wrong_key_is_refused_and_nothing_read() {
    let key = Authkey::random().unwrap();
    let address = serve(&key);
    let err =
        Manager::connect(address.clone(), Authkey::from_bytes(*b"wrong").unwrap()).unwrap_err();
    assert!(matches!(err, ManagerError::AuthRefused { .. }), "{err}");
    // The server still serves the right key.
    Manager::connect(address, key)
        .unwrap()
        .dict::<u8, u8>()
        .unwrap();
}

#[test]
fn garbage_after_handshake_closes_only_that_connection() {
    let key = Authkey::random().unwrap();
    let address = serve(&key);
    let m = Manager::connect(address.clone(), key.clone()).unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let Address::Tcp(addr) = &address else {
        unreachable!()
    };
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    super::auth::authenticate_to_server(&mut raw, &key).unwrap();
    raw.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        raw.read_to_end(&mut rest).unwrap(),
        0,
        "the server closed it"
    );
    d.insert(&1, &1).unwrap();
}

#[test]
fn named_objects_are_shared_and_kind_checked() {
    let m = connected();
    let first = m.named("jobs").queue::<u32>().unwrap();
    let again = m.named("jobs").queue::<u32>().unwrap();
    first.put(&7).unwrap();
    assert_eq!(again.try_get().unwrap(), 7);
    let err = m.named("jobs").dict::<u32, u32>().unwrap_err();
    assert!(err.to_string().contains("is a queue, not a dict"), "{err}");
    assert!(m.bounded_queue::<u8>(0).is_err());
}

fn tcp(address: &Address) -> std::net::SocketAddr {
    match address {
        Address::Tcp(addr) => *addr,
        Address::Unix(_) => unreachable!("these servers listen on TCP"),
    }
}

/// Reads until the server closes (EOF or reset) or `patience` runs out; returns how long it took.
fn time_to_close(raw: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    raw.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut sink = [0u8; 64];
    while started.elapsed() < patience {
        match raw.read(&mut sink) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed())
            }
            Err(_) => {}
        }
    }
    None
}

#[test]
fn handshake_deadline_covers_the_whole_handshake() {
    let key = Authkey::random().unwrap();
    let limits = Limits {
        deadline: Duration::from_millis(600),
        ..Limits::default()
    };
    let address = serve_with(&key, limits);
    let mut raw = TcpStream::connect(tcp(&address)).unwrap();
    let mut greeting = [0u8; 40];
    raw.read_exact(&mut greeting).unwrap();
    // One byte every 100 ms: each read gets something, but the whole answer never comes.
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..30 {
        if raw.write_all(&[0]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = closed || time_to_close(&mut raw, Duration::from_secs(2)).is_some();
    assert!(closed, "a trickling handshake was never closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Legitimate clients are still served.
    Manager::connect(address, key)
        .unwrap()
        .dict::<u8, u8>()
        .unwrap();
}

#[test]
fn connections_over_the_handshake_cap_are_closed_at_once() {
    let key = Authkey::random().unwrap();
    let limits = Limits {
        deadline: Duration::from_secs(2),
        max_pending: 8,
        max_pending_per_peer: 3,
    };
    let address = serve_with(&key, limits);
    let mut idle: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut raw = TcpStream::connect(tcp(&address)).unwrap();
            let mut greeting = [0u8; 40];
            raw.read_exact(&mut greeting).unwrap();
            raw
        })
        .collect();
    // The peer's share is taken: the next connection is closed without a greeting.
    let mut over = TcpStream::connect(tcp(&address)).unwrap();
    let took = time_to_close(&mut over, Duration::from_secs(1));
    assert!(
        took.is_some(),
        "a connection over the per-peer cap was kept"
    );
    // Once the held ones end, the peer is admitted again.
    idle.clear();
    let started = Instant::now();
    loop {
        match Manager::connect(address.clone(), key.clone()) {
            Ok(m) => {
                m.dict::<u8, u8>().unwrap();
                break;
            }
            Err(e) if started.elapsed() < Duration::from_secs(3) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("never admitted again: {e}"),
        }
    }
}

/// A reader that gives a frame header, then a few bytes, then EOF.
struct Announcing {
    bytes: Vec<u8>,
    at: usize,
}

impl Read for Announcing {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.bytes.len() - self.at);
        out[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn an_announced_length_is_not_allocated_up_front() {
    let mut bytes = (MAX_FRAME_LEN as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[7; 100_000]);
    let mut reader = Announcing { bytes, at: 0 };
    let mut buf = Vec::new();
    match read_frame::<Vec<u8>>(&mut reader, &mut buf) {
        Err(FrameError::Truncated { got, expected }) => {
            assert_eq!((got, expected), (4 + 100_000, 4 + MAX_FRAME_LEN));
        }
        other => panic!("expected a truncated frame, got {other:?}"),
    }
    assert!(
        buf.capacity() <= 4 * READ_STEP,
        "the buffer grew to {} bytes for 100000 received",
        buf.capacity()
    );
}

#[test]
fn a_ticket_holds_its_object_until_redeemed_once() {
    let m = connected();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(&1, &2).unwrap();
    let token = postcard::to_stdvec(&d).unwrap();
    drop(d);
    assert_eq!(m.object_count().unwrap(), 1, "held by the token's ticket");
    let back: super::DictProxy<u8, u8> = postcard::from_bytes(&token).unwrap();
    assert_eq!(back.get(&1).unwrap(), Some(2));
    let again: super::DictProxy<u8, u8> = postcard::from_bytes(&token).unwrap();
    drop(back);
    assert_eq!(m.object_count().unwrap(), 1, "the second receiver holds it");
    drop(again);
    assert_eq!(m.object_count().unwrap(), 0, "the ticket was redeemed once");
    let error = crate::codec::decode::<super::DictProxy<u8, u8>>(&token, Vec::new()).unwrap_err();
    assert!(
        error.to_string().contains("no shared object with id"),
        "{error}"
    );
}

#[test]
fn stored_references_self_and_cycles() {
    let m = connected();
    let me = m.namespace().unwrap();
    me.set("me", &me).unwrap();
    drop(me);
    assert_eq!(
        m.object_count().unwrap(),
        0,
        "a namespace holding itself is freed"
    );
    let a = m.list::<super::ListProxy<u8>>().unwrap();
    let b = m.list::<u8>().unwrap();
    let c = m
        .dict::<u8, super::ListProxy<super::ListProxy<u8>>>()
        .unwrap();
    a.push(&b).unwrap();
    c.insert(&0, &a).unwrap();
    drop((a, b));
    assert_eq!(m.object_count().unwrap(), 3, "c holds a, which holds b");
    // A lookup by a proxy value stores nothing: it adds no reference.
    let a: super::ListProxy<super::ListProxy<u8>> = c.get(&0).unwrap().unwrap();
    let probe = m.list::<u8>().unwrap();
    assert!(!a.contains(&probe).unwrap());
    drop(probe);
    assert_eq!(m.object_count().unwrap(), 3, "the probe is freed");
    drop((a, c));
    assert_eq!(m.object_count().unwrap(), 0, "freed in a chain");
}

#[test]
fn a_proxy_outlives_the_thread_that_made_it() {
    let m = connected();
    let made = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let d = m.dict::<u8, u8>().unwrap();
                d.insert(&1, &1).unwrap();
                d
            })
            .join()
            .unwrap()
    });
    // The thread's own connection closed with it; the reference belongs to the process.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(m.object_count().unwrap(), 1);
    assert_eq!(made.get(&1).unwrap(), Some(1));
    drop(made);
    assert_eq!(m.object_count().unwrap(), 0);
}
