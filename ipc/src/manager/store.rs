//! `Store`: the server's shared objects and the semantics of every operation on them, including
//! the blocking ones (locks, events, conditions, queues), the references that keep objects alive
//! (held by connections, by tickets for proxies in transit, by names and by the objects that
//! store proxies), and the release of what a connection held when it went away. One mutex guards all objects (operations are short byte-map edits);
//! blocked operations sleep on their object's condition variable, which is signalled only when
//! someone sleeps there, after the mutex is released, and only as widely as needed (a released
//! lock wakes one waiter, not all twenty).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::error::RemoteError;
use super::protocol::{Bytes, ObjectId, ObjectKind, ObjectSpec, Op, Response, TicketId, Wait};
use super::shared::{self, SharedInstance};

/// Identity of one client connection: the owner of the locks it acquires.
pub(crate) type ConnId = u64;

/// How often a blocked operation checks that its client is still connected.
const PEER_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// How long a ticket outlives the connection that took it: a proxy sent by a process that exits
/// at once (a child returning a proxy as its result, a last message before exiting) still
/// reaches its receiver, if it is received within this time.
pub(crate) const TICKET_GRACE: Duration = Duration::from_secs(60);

/// A lock's holder and how many times it acquired it (always 1 for a plain Lock).
#[derive(Debug, Default)]
struct Ownership {
    owner: Option<ConnId>,
    depth: u64,
}

#[derive(Debug)]
enum Object {
    /// A dict or a namespace: both map encoded keys to encoded values.
    Map(HashMap<Bytes, Bytes>),
    List(Vec<Bytes>),
    Lock(Ownership),
    RLock(Ownership),
    Semaphore(u64),
    Event(bool),
    Condition {
        lock: Ownership,
        waiting: VecDeque<u64>,
        notified: Vec<u64>,
    },
    Queue {
        items: VecDeque<Bytes>,
        maxsize: Option<u64>,
    },
    /// An object of a registered type. Its methods run outside the store's mutex, one at a
    /// time per object, under its own (so its type id is kept here too: the store never waits
    /// for an object's mutex while holding its own).
    Shared {
        typeid: &'static str,
        instance: Arc<Mutex<SharedInstance>>,
    },
}

#[derive(Debug)]
struct Entry {
    kind: ObjectKind,
    object: Object,
    waiters: Waiters,
    refs: Refs,
}

/// What keeps an object alive; it is freed when none of these is left.
#[derive(Debug, Default)]
struct Refs {
    /// Connections (one per client process) with at least one proxy of it.
    holders: HashSet<ConnId>,
    /// Tickets not yet redeemed: proxies serialised by one process for another.
    tickets: u64,
    /// How many times a proxy of it was stored into another object (each such reference lasts
    /// as long as the object it was stored into).
    stored_in: u64,
    /// A name keeps its object until the server stops.
    named: bool,
    /// The objects whose proxies were stored into this one (with repeats), released when this
    /// one is freed.
    contains: Vec<ObjectId>,
}

impl Refs {
    fn unreferenced(&self) -> bool {
        self.holders.is_empty() && self.tickets == 0 && self.stored_in == 0 && !self.named
    }
}

/// The threads sleeping on one object.
#[derive(Debug, Default)]
struct Waiters {
    changed: Arc<Condvar>,
    sleeping: usize,
}

/// Whom an operation may have unblocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Nobody,
    /// One waiter can proceed (a lock was freed, a semaphore unit released).
    One,
    /// Every waiter must look (an event set, a queue changed, a condition notified).
    All,
}

#[derive(Debug, Default)]
struct Objects {
    entries: HashMap<ObjectId, Entry>,
    names: HashMap<String, ObjectId>,
    next_id: ObjectId,
    next_ticket: u64,
    /// Unredeemed tickets: the object each refers to and the connection that took it.
    transit: HashMap<TicketId, (ObjectId, ConnId)>,
    next_transit: TicketId,
    /// Tickets whose connection closed, with when they expire, oldest first.
    orphans: VecDeque<(Instant, TicketId)>,
}

impl Objects {
    /// Drops the orphaned tickets that expired by `now`; returns the objects they held.
    fn expire_orphans(&mut self, now: Instant) -> Vec<ObjectId> {
        let mut candidates = Vec::new();
        while let Some(&(expiry, ticket)) = self.orphans.front() {
            if expiry > now {
                break;
            }
            self.orphans.pop_front();
            // Redeemed meanwhile: already gone from `transit`.
            if let Some((id, _)) = self.transit.remove(&ticket) {
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.refs.tickets -= 1;
                    candidates.push(id);
                }
            }
        }
        candidates
    }

    /// Expires orphaned tickets and frees what only they held.
    fn sweep(&mut self) -> Vec<Entry> {
        if self.orphans.is_empty() {
            return Vec::new();
        }
        let candidates = self.expire_orphans(Instant::now());
        self.free_unreferenced(candidates)
    }

    /// Frees the objects of `candidates` that nothing references any more, and then those that
    /// only they held. The freed entries are returned to be dropped once the store's mutex is
    /// released: dropping an object of a registered type runs the program's code, which may
    /// itself call this server.
    fn free_unreferenced(&mut self, mut candidates: Vec<ObjectId>) -> Vec<Entry> {
        let mut freed = Vec::new();
        while let Some(id) = candidates.pop() {
            if !self.entries.get(&id).is_some_and(|e| e.refs.unreferenced()) {
                continue;
            }
            let Some(entry) = self.entries.remove(&id) else {
                continue;
            };
            for &held in &entry.refs.contains {
                if let Some(held_entry) = self.entries.get_mut(&held) {
                    held_entry.refs.stored_in = held_entry.refs.stored_in.saturating_sub(1);
                    candidates.push(held);
                }
            }
            freed.push(entry);
        }
        freed
    }
}

/// Drops freed objects (outside the store's mutex) and wakes anyone still sleeping on them, so
/// they see at once that the object is gone.
fn dispose(freed: Vec<Entry>) {
    for entry in freed {
        if entry.waiters.sleeping > 0 {
            entry.waiters.changed.notify_all();
        }
    }
}

/// All shared objects of one server.
#[derive(Debug)]
pub(crate) struct Store {
    objects: Mutex<Objects>,
    /// How long a ticket outlives its connection ([`TICKET_GRACE`], shorter in tests).
    ticket_grace: Duration,
}

impl Default for Store {
    fn default() -> Self {
        Store::with_ticket_grace(TICKET_GRACE)
    }
}

/// A blocking operation's terms: on which object, how long, what to answer on timeout, and whom
/// its success may unblock.
struct Waiting {
    id: ObjectId,
    wait: Wait,
    on_timeout: Response,
    on_ready: Wake,
}

impl Waiting {
    fn new(id: ObjectId, wait: Wait, on_timeout: Response, on_ready: Wake) -> Waiting {
        Waiting {
            id,
            wait,
            on_timeout,
            on_ready,
        }
    }
}

/// Result of trying a blocking operation once.
enum Attempt {
    Ready(Response),
    Blocked,
}

/// The condition variable of `id` if `wake` asks for a wake-up and someone sleeps there.
fn sleepers_to_wake(objects: &Objects, id: ObjectId, wake: Wake) -> Option<Arc<Condvar>> {
    if wake == Wake::Nobody {
        return None;
    }
    let waiters = &objects.entries.get(&id)?.waiters;
    (waiters.sleeping > 0).then(|| Arc::clone(&waiters.changed))
}

fn notify(target: Option<Arc<Condvar>>, wake: Wake) {
    match (target, wake) {
        (Some(changed), Wake::One) => changed.notify_one(),
        (Some(changed), Wake::All) => changed.notify_all(),
        _ => {}
    }
}

fn error(e: RemoteError) -> Response {
    Response::Error(e)
}

fn not_owner(kind: ObjectKind, id: ObjectId) -> Response {
    error(RemoteError::NotOwner {
        kind: kind.to_string(),
        id,
    })
}

fn unsupported(kind: ObjectKind, op: &Op) -> Response {
    error(RemoteError::Invalid(format!(
        "a {kind} does not support {}",
        op.name()
    )))
}

impl Store {
    pub(crate) fn with_ticket_grace(ticket_grace: Duration) -> Store {
        Store {
            objects: Mutex::default(),
            ticket_grace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        // A panic while holding the lock leaves objects consistent (every edit is one step).
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unlocks, then wakes sleepers of `id`: a sleeper woken while the mutex is still held would
    /// only wake to block on the mutex (two context switches instead of one).
    fn unlock_and_wake(&self, objects: MutexGuard<'_, Objects>, id: ObjectId, wake: Wake) {
        let target = sleepers_to_wake(&objects, id, wake);
        drop(objects);
        notify(target, wake);
    }

    /// Creates an object held by `conn`, or with a name returns the one already created under
    /// that name (now held by `conn` too).
    pub(crate) fn create(&self, conn: ConnId, spec: ObjectSpec, name: Option<String>) -> Response {
        let mut objects = self.lock();
        if let Some(name) = &name {
            if let Some(&id) = objects.names.get(name) {
                let Some(entry) = objects.entries.get_mut(&id) else {
                    return error(RemoteError::NoSuchObject(id));
                };
                let expected = match &spec {
                    ObjectSpec::Shared { typeid, .. } => typeid.clone(),
                    spec => spec.kind().to_string(),
                };
                let actual = match &entry.object {
                    Object::Shared { typeid, .. } => (*typeid).to_owned(),
                    _ => entry.kind.to_string(),
                };
                if actual != expected {
                    return error(RemoteError::WrongKind {
                        id,
                        expected,
                        actual,
                    });
                }
                entry.refs.holders.insert(conn);
                return Response::Created(id);
            }
        }
        let kind = spec.kind();
        let object = match spec {
            ObjectSpec::Dict | ObjectSpec::Namespace => Object::Map(HashMap::new()),
            ObjectSpec::List => Object::List(Vec::new()),
            ObjectSpec::Lock => Object::Lock(Ownership::default()),
            ObjectSpec::RLock => Object::RLock(Ownership::default()),
            ObjectSpec::Semaphore { value } => Object::Semaphore(value),
            ObjectSpec::Event => Object::Event(false),
            ObjectSpec::Condition => Object::Condition {
                lock: Ownership::default(),
                waiting: VecDeque::new(),
                notified: Vec::new(),
            },
            ObjectSpec::Queue { maxsize } => Object::Queue {
                items: VecDeque::new(),
                maxsize,
            },
            ObjectSpec::Shared { typeid, init } => match shared::construct(&typeid, &init) {
                Ok(instance) => Object::Shared {
                    typeid: instance.typeid(),
                    instance: Arc::new(Mutex::new(instance)),
                },
                Err(e) => return error(e),
            },
        };
        let id = objects.next_id;
        objects.next_id += 1;
        let mut refs = Refs::default();
        refs.holders.insert(conn);
        refs.named = name.is_some();
        objects.entries.insert(
            id,
            Entry {
                kind,
                object,
                waiters: Waiters::default(),
                refs,
            },
        );
        if let Some(name) = name {
            objects.names.insert(name, id);
        }
        Response::Created(id)
    }

    /// `conn` holds `id` (its process's first proxy of it); redeems `ticket` if it is one.
    pub(crate) fn hold(&self, conn: ConnId, id: ObjectId, ticket: Option<TicketId>) -> Response {
        let mut objects = self.lock();
        if let Some(ticket) = ticket {
            if objects
                .transit
                .get(&ticket)
                .is_some_and(|&(of, _)| of == id)
            {
                objects.transit.remove(&ticket);
                if let Some(entry) = objects.entries.get_mut(&id) {
                    entry.refs.tickets -= 1;
                }
            }
        }
        match objects.entries.get_mut(&id) {
            Some(entry) => {
                entry.refs.holders.insert(conn);
                Response::Done
            }
            None => error(RemoteError::NoSuchObject(id)),
        }
    }

    /// `conn` holds every object of `ids` that still exists; answers how many.
    pub(crate) fn hold_all(&self, conn: ConnId, ids: &[ObjectId]) -> Response {
        let mut objects = self.lock();
        let mut held = 0;
        for id in ids {
            if let Some(entry) = objects.entries.get_mut(id) {
                entry.refs.holders.insert(conn);
                held += 1;
            }
        }
        Response::Len(held)
    }

    /// `conn` no longer holds `id`: freed if nothing else does.
    pub(crate) fn release(&self, conn: ConnId, id: ObjectId) -> Response {
        let mut objects = self.lock();
        if let Some(entry) = objects.entries.get_mut(&id) {
            entry.refs.holders.remove(&conn);
        }
        let mut freed = objects.free_unreferenced(vec![id]);
        freed.extend(objects.sweep());
        drop(objects);
        dispose(freed);
        Response::Done
    }

    /// A ticket on `id` taken by `conn`, for a proxy leaving its process.
    pub(crate) fn ticket(&self, conn: ConnId, id: ObjectId) -> Response {
        let mut objects = self.lock();
        let ticket = objects.next_transit;
        match objects.entries.get_mut(&id) {
            Some(entry) => entry.refs.tickets += 1,
            None => return error(RemoteError::NoSuchObject(id)),
        }
        objects.next_transit += 1;
        objects.transit.insert(ticket, (id, conn));
        Response::Ticket(ticket)
    }

    /// Makes `container` hold each object of `holds` (proxies stored into it) while it lives.
    fn store_holds(&self, container: ObjectId, holds: Vec<ObjectId>) {
        let mut objects = self.lock();
        if !objects.entries.contains_key(&container) {
            return;
        }
        let mut kept = Vec::with_capacity(holds.len());
        for id in holds {
            // An object holding itself would never be freed.
            if id == container {
                continue;
            }
            if let Some(entry) = objects.entries.get_mut(&id) {
                entry.refs.stored_in += 1;
                kept.push(id);
            }
        }
        if let Some(entry) = objects.entries.get_mut(&container) {
            entry.refs.contains.extend(kept);
        }
    }

    /// Runs one operation for connection `conn`. Blocking operations wait here (on this server
    /// thread), checking `client_gone` now and then so a dead client does not hold the thread.
    pub(crate) fn execute(
        &self,
        conn: ConnId,
        id: ObjectId,
        kind: ObjectKind,
        op: Op,
        holds: Vec<ObjectId>,
        client_gone: &dyn Fn() -> bool,
    ) -> Response {
        let stores = op.stores();
        let response = self.execute_op(conn, id, kind, op, client_gone);
        if stores && !holds.is_empty() && !matches!(response, Response::Error(_)) {
            self.store_holds(id, holds);
        }
        response
    }

    fn execute_op(
        &self,
        conn: ConnId,
        id: ObjectId,
        kind: ObjectKind,
        op: Op,
        client_gone: &dyn Fn() -> bool,
    ) -> Response {
        let mut objects = self.lock();
        let entry = match objects.entries.get(&id) {
            Some(entry) => entry,
            None => return error(RemoteError::NoSuchObject(id)),
        };
        if entry.kind != kind {
            return error(RemoteError::WrongKind {
                id,
                expected: kind.to_string(),
                actual: entry.kind.to_string(),
            });
        }
        match op {
            // Taking a lock, a semaphore unit or seeing an event unblocks nobody.
            Op::Acquire(wait) | Op::WaitEvent(wait) => self.wait_until(
                objects,
                Waiting::new(id, wait, Response::Bool(false), Wake::Nobody),
                client_gone,
                |objects| attempt(objects, conn, id, kind, &op),
            ),
            // Getters and putters of a queue sleep on the same object: any change wakes all.
            Op::Take(wait) => self.wait_until(
                objects,
                Waiting::new(id, wait, Response::Value(None), Wake::All),
                client_gone,
                |objects| attempt(objects, conn, id, kind, &op),
            ),
            Op::Put { item, wait } => {
                let mut item = Some(item);
                self.wait_until(
                    objects,
                    Waiting::new(id, wait, Response::Bool(false), Wake::All),
                    client_gone,
                    |objects| put(objects, id, kind, &mut item),
                )
            }
            Op::WaitNotified(wait) => self.wait_notified(objects, conn, id, wait, client_gone),
            Op::Method {
                typeid,
                method,
                args,
            } => {
                let Object::Shared { instance, .. } = &entry.object else {
                    return unsupported(
                        kind,
                        &Op::Method {
                            typeid,
                            method,
                            args,
                        },
                    );
                };
                let instance = Arc::clone(instance);
                // The method runs under its object's own mutex only: a slow one holds up no
                // other object.
                drop(objects);
                let mut instance = instance.lock().unwrap_or_else(|p| p.into_inner());
                match shared::dispatch(&mut instance, id, &typeid, &method, &args) {
                    Ok(reply) => Response::Value(Some(reply)),
                    Err(e) => error(e),
                }
            }
            op => {
                let (response, wake) = execute_now(&mut objects, conn, id, kind, op);
                self.unlock_and_wake(objects, id, wake);
                response
            }
        }
    }

    /// Retries `try_once` until it is ready, the wait runs out (answering `on_timeout`), or the
    /// client is gone.
    fn wait_until(
        &self,
        mut objects: MutexGuard<'_, Objects>,
        waiting: Waiting,
        client_gone: &dyn Fn() -> bool,
        mut try_once: impl FnMut(&mut Objects) -> Attempt,
    ) -> Response {
        let Waiting {
            id,
            wait,
            on_timeout,
            on_ready,
        } = waiting;
        let deadline = match wait {
            Wait::Timeout(d) => Instant::now().checked_add(d),
            _ => None,
        };
        // A waiter that leaves without acting may have been the one a `Wake::One` chose: it
        // passes the wake-up on, so no other waiter sleeps through a freed lock.
        let mut slept = false;
        let pass_on = |slept: bool| if slept { Wake::One } else { Wake::Nobody };
        loop {
            match try_once(&mut objects) {
                Attempt::Ready(response) => {
                    self.unlock_and_wake(objects, id, on_ready);
                    return response;
                }
                Attempt::Blocked => {}
            }
            let slice = match (wait, deadline) {
                (Wait::No, _) => None,
                (Wait::Timeout(_), Some(deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    (!left.is_zero()).then(|| left.min(PEER_CHECK_INTERVAL))
                }
                _ => Some(PEER_CHECK_INTERVAL),
            };
            let Some(slice) = slice else {
                self.unlock_and_wake(objects, id, pass_on(slept));
                return on_timeout;
            };
            let Some(entry) = objects.entries.get_mut(&id) else {
                return error(RemoteError::NoSuchObject(id));
            };
            entry.waiters.sleeping += 1;
            let changed = Arc::clone(&entry.waiters.changed);
            let (guard, _) = changed
                .wait_timeout(objects, slice)
                .unwrap_or_else(|p| p.into_inner());
            objects = guard;
            slept = true;
            if let Some(entry) = objects.entries.get_mut(&id) {
                entry.waiters.sleeping -= 1;
            }
            // Checked on every wake, not only on timeouts, so a client killed while waiting is
            // never handed the lock it asked for.
            if client_gone() {
                self.unlock_and_wake(objects, id, pass_on(slept));
                return error(RemoteError::Invalid(
                    "client went away while waiting".into(),
                ));
            }
        }
    }

    /// Condition wait: release the condition's lock, sleep until notified (or timeout), then take
    /// the lock back at its former depth, as `threading.Condition.wait` does.
    fn wait_notified(
        &self,
        mut objects: MutexGuard<'_, Objects>,
        conn: ConnId,
        id: ObjectId,
        wait: Wait,
        client_gone: &dyn Fn() -> bool,
    ) -> Response {
        let ticket = objects.next_ticket;
        objects.next_ticket += 1;
        let saved_depth = match condition(&mut objects, id) {
            Some((lock, waiting, _)) if lock.owner == Some(conn) => {
                let depth = lock.depth;
                *lock = Ownership::default();
                waiting.push_back(ticket);
                depth
            }
            _ => return not_owner(ObjectKind::Condition, id),
        };
        // The lock is free now: its waiters (and the condition's) sleep on this object.
        let target = sleepers_to_wake(&objects, id, Wake::All);
        notify(target, Wake::All);
        let notified = self.wait_until(
            objects,
            Waiting::new(id, wait, Response::Bool(false), Wake::Nobody),
            client_gone,
            |objects| match condition(objects, id) {
                Some((_, _, notified)) if notified.contains(&ticket) => {
                    notified.retain(|&t| t != ticket);
                    Attempt::Ready(Response::Bool(true))
                }
                _ => Attempt::Blocked,
            },
        );
        let mut objects = self.lock();
        if let Some((_, waiting, _)) = condition(&mut objects, id) {
            waiting.retain(|&t| t != ticket);
        }
        if let Response::Error(_) = notified {
            return notified;
        }
        let reacquired = self.wait_until(
            objects,
            Waiting::new(id, Wait::Forever, Response::Bool(false), Wake::Nobody),
            client_gone,
            |objects| match condition(objects, id) {
                Some((lock, _, _)) if lock.owner.is_none() => {
                    *lock = Ownership {
                        owner: Some(conn),
                        depth: saved_depth,
                    };
                    Attempt::Ready(Response::Done)
                }
                _ => Attempt::Blocked,
            },
        );
        match reacquired {
            Response::Done => notified,
            other => other,
        }
    }

    /// How many objects exist (a diagnostic for leaks), once expired tickets are dropped.
    pub(crate) fn object_count(&self) -> u64 {
        let mut objects = self.lock();
        let freed = objects.sweep();
        let count = objects.entries.len() as u64;
        drop(objects);
        dispose(freed);
        count
    }

    /// Releases every lock `conn` holds and its references, and starts the grace period of its
    /// tickets: called when its connection closes, however it closed. Returns how many locks were
    /// released (for the log).
    pub(crate) fn disconnect(&self, conn: ConnId) -> usize {
        let mut objects = self.lock();
        let mut released = 0;
        let mut wakes = Vec::new();
        let mut candidates = Vec::new();
        // Its tickets are orphaned: they hold their objects a while longer (see TICKET_GRACE).
        let now = Instant::now();
        let expiry = now.checked_add(self.ticket_grace).unwrap_or(now);
        let mut orphaned: Vec<TicketId> = objects
            .transit
            .iter()
            .filter(|(_, &(_, by))| by == conn)
            .map(|(&ticket, _)| ticket)
            .collect();
        orphaned.sort_unstable();
        objects
            .orphans
            .extend(orphaned.into_iter().map(|ticket| (expiry, ticket)));
        candidates.extend(objects.expire_orphans(now));
        for (&id, entry) in objects.entries.iter_mut() {
            if entry.refs.holders.remove(&conn) {
                candidates.push(id);
            }
        }
        for entry in objects.entries.values_mut() {
            let (lock, wake) = match &mut entry.object {
                Object::Lock(lock) | Object::RLock(lock) => (lock, Wake::One),
                Object::Condition { lock, .. } => (lock, Wake::All),
                _ => continue,
            };
            if lock.owner == Some(conn) {
                *lock = Ownership::default();
                released += 1;
                if entry.waiters.sleeping > 0 {
                    wakes.push((Arc::clone(&entry.waiters.changed), wake));
                }
            }
        }
        let freed = objects.free_unreferenced(candidates);
        drop(objects);
        for (changed, wake) in wakes {
            notify(Some(changed), wake);
        }
        dispose(freed);
        released
    }
}

type ConditionParts<'a> = (&'a mut Ownership, &'a mut VecDeque<u64>, &'a mut Vec<u64>);

fn condition(objects: &mut Objects, id: ObjectId) -> Option<ConditionParts<'_>> {
    match objects.entries.get_mut(&id).map(|e| &mut e.object) {
        Some(Object::Condition {
            lock,
            waiting,
            notified,
        }) => Some((lock, waiting, notified)),
        _ => None,
    }
}

/// One try of a blocking operation other than put.
fn attempt(
    objects: &mut Objects,
    conn: ConnId,
    id: ObjectId,
    kind: ObjectKind,
    op: &Op,
) -> Attempt {
    let Some(entry) = objects.entries.get_mut(&id) else {
        return Attempt::Ready(error(RemoteError::NoSuchObject(id)));
    };
    let ready = |r| Attempt::Ready(r);
    match (&mut entry.object, op) {
        (Object::Lock(lock), Op::Acquire(_)) => match lock.owner {
            None => {
                lock.owner = Some(conn);
                lock.depth = 1;
                ready(Response::Bool(true))
            }
            Some(owner) if owner == conn => ready(error(RemoteError::Invalid(format!(
                "lock {id} is already held by this thread; a Lock is not reentrant (use an RLock)"
            )))),
            Some(_) => Attempt::Blocked,
        },
        (Object::RLock(lock) | Object::Condition { lock, .. }, Op::Acquire(_)) => {
            match lock.owner {
                None => {
                    *lock = Ownership {
                        owner: Some(conn),
                        depth: 1,
                    };
                    ready(Response::Bool(true))
                }
                Some(owner) if owner == conn => {
                    lock.depth += 1;
                    ready(Response::Bool(true))
                }
                Some(_) => Attempt::Blocked,
            }
        }
        (Object::Semaphore(value), Op::Acquire(_)) => {
            if *value > 0 {
                *value -= 1;
                ready(Response::Bool(true))
            } else {
                Attempt::Blocked
            }
        }
        (Object::Event(set), Op::WaitEvent(_)) => {
            if *set {
                ready(Response::Bool(true))
            } else {
                Attempt::Blocked
            }
        }
        (Object::Queue { items, .. }, Op::Take(_)) => match items.pop_front() {
            Some(item) => ready(Response::Value(Some(item))),
            None => Attempt::Blocked,
        },
        (_, op) => ready(unsupported(kind, op)),
    }
}

fn put(objects: &mut Objects, id: ObjectId, kind: ObjectKind, item: &mut Option<Bytes>) -> Attempt {
    let Some(entry) = objects.entries.get_mut(&id) else {
        return Attempt::Ready(error(RemoteError::NoSuchObject(id)));
    };
    match &mut entry.object {
        Object::Queue { items, maxsize } => {
            if maxsize.is_some_and(|max| items.len() as u64 >= max) {
                return Attempt::Blocked;
            }
            if let Some(item) = item.take() {
                items.push_back(item);
            }
            Attempt::Ready(Response::Bool(true))
        }
        _ => Attempt::Ready(error(RemoteError::Invalid(format!(
            "a {kind} does not support put"
        )))),
    }
}

/// Runs an operation that never waits. Returns the response and whether it may unblock waiters.
fn execute_now(
    objects: &mut Objects,
    conn: ConnId,
    id: ObjectId,
    kind: ObjectKind,
    op: Op,
) -> (Response, Wake) {
    let Some(entry) = objects.entries.get_mut(&id) else {
        return (error(RemoteError::NoSuchObject(id)), Wake::Nobody);
    };
    match (&mut entry.object, op) {
        (Object::Map(map), op) => (map_op(map, kind, op), Wake::Nobody),
        (Object::List(list), op) => (list_op(list, kind, op), Wake::Nobody),
        // A freed lock lets one waiter in; the condition's lock also has condition waiters.
        (Object::Lock(lock) | Object::RLock(lock), Op::Release) => {
            release(lock, kind, id, conn, Wake::One)
        }
        (Object::Condition { lock, .. }, Op::Release) => release(lock, kind, id, conn, Wake::All),
        (
            Object::Condition {
                lock,
                waiting,
                notified,
            },
            op @ (Op::Notify(_) | Op::NotifyAll),
        ) => {
            if lock.owner != Some(conn) {
                return (not_owner(kind, id), Wake::Nobody);
            }
            let count = match op {
                Op::Notify(n) => usize::try_from(n).unwrap_or(usize::MAX),
                _ => waiting.len(),
            };
            let moved = count.min(waiting.len());
            notified.extend(waiting.drain(..moved));
            (Response::Done, Wake::All)
        }
        (Object::Semaphore(value), Op::Release) => match value.checked_add(1) {
            Some(v) => {
                *value = v;
                (Response::Done, Wake::One)
            }
            None => (
                error(RemoteError::Invalid("semaphore value overflow".into())),
                Wake::Nobody,
            ),
        },
        (Object::Semaphore(value), Op::SemaphoreValue) => (
            Response::Int(i64::try_from(*value).unwrap_or(i64::MAX)),
            Wake::Nobody,
        ),
        (Object::Event(set), Op::Set) => {
            *set = true;
            (Response::Done, Wake::All)
        }
        (Object::Event(set), Op::Clear) => {
            *set = false;
            (Response::Done, Wake::Nobody)
        }
        (Object::Event(set), Op::IsSet) => (Response::Bool(*set), Wake::Nobody),
        (Object::Queue { items, .. }, Op::Len) => (Response::Len(items.len() as u64), Wake::Nobody),
        (Object::Queue { items, .. }, Op::Clear) => {
            items.clear();
            (Response::Done, Wake::All)
        }
        (_, op) => (unsupported(kind, &op), Wake::Nobody),
    }
}

/// Releases `lock` once for `conn`; `freed` is whom to wake when it becomes free.
fn release(
    lock: &mut Ownership,
    kind: ObjectKind,
    id: ObjectId,
    conn: ConnId,
    freed: Wake,
) -> (Response, Wake) {
    if lock.owner != Some(conn) {
        return (not_owner(kind, id), Wake::Nobody);
    }
    lock.depth -= 1;
    if lock.depth > 0 {
        return (Response::Done, Wake::Nobody);
    }
    lock.owner = None;
    (Response::Done, freed)
}

fn map_op(map: &mut HashMap<Bytes, Bytes>, kind: ObjectKind, op: Op) -> Response {
    match op {
        Op::Get(key) => Response::Value(map.get(&key).cloned()),
        Op::Insert(key, value) => {
            map.insert(key, value);
            Response::Done
        }
        Op::Remove { key, return_value } => {
            let removed = map.remove(&key);
            if return_value {
                Response::Value(removed)
            } else {
                Response::Bool(removed.is_some())
            }
        }
        Op::Contains(key) => Response::Bool(map.contains_key(&key)),
        Op::PopKey(key) => match map.remove(&key) {
            Some(value) => Response::Value(Some(value)),
            None => error(RemoteError::KeyNotFound(key.len())),
        },
        Op::SetDefault { key, default } => {
            Response::Value(Some(map.entry(key).or_insert(default).clone()))
        }
        Op::Values => Response::Values(map.values().cloned().collect()),
        Op::Len => Response::Len(map.len() as u64),
        Op::Keys => Response::Values(map.keys().cloned().collect()),
        Op::Items => Response::Items(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Op::Update(pairs) => {
            map.extend(pairs);
            Response::Done
        }
        Op::Clear => {
            map.clear();
            Response::Done
        }
        Op::Increment { key, delta } => {
            let current = match map.get(&key) {
                None => 0,
                Some(bytes) => match postcard::take_from_bytes::<i64>(bytes) {
                    Ok((n, [])) => n,
                    _ => return error(RemoteError::WrongValueShape("an i64".into())),
                },
            };
            let Some(next) = current.checked_add(delta) else {
                return error(RemoteError::Overflow);
            };
            match postcard::to_stdvec(&next) {
                Ok(bytes) => {
                    map.insert(key, bytes);
                    Response::Int(next)
                }
                Err(e) => error(RemoteError::Invalid(format!("cannot encode i64: {e}"))),
            }
        }
        Op::AppendAt { key, item } => {
            // A postcard sequence is a varint length followed by the items: appending is
            // rewriting the length and adding the item's bytes, whatever the item type.
            let (len, rest): (u64, &[u8]) = match map.get(&key) {
                None => (0, &[]),
                Some(bytes) => match postcard::take_from_bytes::<u64>(bytes) {
                    Ok(parts) => parts,
                    Err(_) => return error(RemoteError::WrongValueShape("a sequence".into())),
                },
            };
            let mut bytes = match postcard::to_stdvec(&(len + 1)) {
                Ok(bytes) => bytes,
                Err(e) => return error(RemoteError::Invalid(format!("cannot encode length: {e}"))),
            };
            bytes.extend_from_slice(rest);
            bytes.extend_from_slice(&item);
            map.insert(key, bytes);
            Response::Len(len + 1)
        }
        Op::SetIfAbsent { key, value } => match map.get(&key) {
            Some(existing) => Response::Value(Some(existing.clone())),
            None => {
                map.insert(key, value);
                Response::Value(None)
            }
        },
        Op::CompareAndSwap { key, expected, new } => {
            if map.get(&key) == expected.as_ref() {
                map.insert(key, new);
                Response::Bool(true)
            } else {
                Response::Bool(false)
            }
        }
        op => unsupported(kind, &op),
    }
}

/// `index` as a position in `list`, or the `IndexError` naming it and the length.
fn position(list: &[Bytes], index: u64) -> Result<usize, Response> {
    usize::try_from(index)
        .ok()
        .filter(|&i| i < list.len())
        .ok_or_else(|| {
            error(RemoteError::IndexOutOfRange {
                index,
                len: list.len() as u64,
            })
        })
}

/// `start..end` clamped to a list of `len` items, as Python clamps slices (empty if reversed).
fn clamped(len: usize, start: u64, end: u64) -> std::ops::Range<usize> {
    let end = usize::try_from(end).unwrap_or(usize::MAX).min(len);
    let start = usize::try_from(start).unwrap_or(usize::MAX).min(end);
    start..end
}

fn list_op(list: &mut Vec<Bytes>, kind: ObjectKind, op: Op) -> Response {
    match op {
        Op::Push(item) => {
            list.push(item);
            Response::Done
        }
        Op::Index(index) => match position(list, index) {
            Ok(i) => Response::Value(Some(list[i].clone())),
            Err(refused) => refused,
        },
        Op::SetIndex(index, item) => match position(list, index) {
            Ok(i) => {
                list[i] = item;
                Response::Done
            }
            Err(refused) => refused,
        },
        Op::PopAt(index) => match position(list, index) {
            Ok(i) => Response::Value(Some(list.remove(i))),
            Err(refused) => refused,
        },
        Op::InsertAt(index, item) => {
            let at = usize::try_from(index).unwrap_or(usize::MAX).min(list.len());
            list.insert(at, item);
            Response::Done
        }
        Op::RemoveValue(item) => match list.iter().position(|x| *x == item) {
            Some(i) => {
                list.remove(i);
                Response::Done
            }
            None => error(RemoteError::ValueNotFound(item.len())),
        },
        Op::IndexOf(item) => match list.iter().position(|x| *x == item) {
            Some(i) => Response::Len(i as u64),
            None => error(RemoteError::ValueNotFound(item.len())),
        },
        Op::ContainsValue(item) => Response::Bool(list.contains(&item)),
        Op::Reverse => {
            list.reverse();
            Response::Done
        }
        Op::Range(start, end) => {
            let range = clamped(list.len(), start, end);
            Response::Values(list[range].to_vec())
        }
        Op::SetRange(start, end, items) => {
            let range = clamped(list.len(), start, end);
            list.splice(range, items);
            Response::Done
        }
        Op::ReplaceIf { expected, new } => {
            if *list == expected {
                *list = new;
                Response::Bool(true)
            } else {
                Response::Bool(false)
            }
        }
        Op::Extend(items) => {
            list.extend(items);
            Response::Done
        }
        Op::Pop => match list.pop() {
            Some(item) => Response::Value(Some(item)),
            None => error(RemoteError::EmptyList("pop".into())),
        },
        Op::Snapshot => Response::Values(list.clone()),
        Op::Len => Response::Len(list.len() as u64),
        Op::Clear => {
            list.clear();
            Response::Done
        }
        op => unsupported(kind, &op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(response: Response) -> ObjectId {
        match response {
            Response::Created(id) => id,
            other => panic!("expected an object, got {other:?}"),
        }
    }

    fn ticket(response: Response) -> TicketId {
        match response {
            Response::Ticket(ticket) => ticket,
            other => panic!("expected a ticket, got {other:?}"),
        }
    }

    #[test]
    fn an_orphaned_ticket_holds_its_object_for_the_grace_period() {
        let grace = Duration::from_millis(100);
        let store = Store::with_ticket_grace(grace);
        let unclaimed = created(store.create(1, ObjectSpec::Dict, None));
        ticket(store.ticket(1, unclaimed));
        let claimed = created(store.create(2, ObjectSpec::List, None));
        let claim = ticket(store.ticket(2, claimed));
        store.disconnect(1);
        store.disconnect(2);
        assert_eq!(
            store.object_count(),
            2,
            "both held by their orphaned tickets"
        );
        assert!(matches!(
            store.hold(3, claimed, Some(claim)),
            Response::Done
        ));
        std::thread::sleep(grace + Duration::from_millis(50));
        assert_eq!(store.object_count(), 1, "the unclaimed one expired");
        assert!(matches!(
            store.hold(4, unclaimed, None),
            Response::Error(RemoteError::NoSuchObject(_))
        ));
        store.release(3, claimed);
        assert_eq!(
            store.object_count(),
            0,
            "the claimed one freed with its holder"
        );
    }
}
