//! The requests a proxy sends and the responses the server returns, one frame each. Keys, values
//! and items travel as the postcard bytes of the caller's serde types: the server stores bytes and
//! only interprets them for the atomic operations that need to (increment reads an `i64`, append
//! extends a sequence).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::RemoteError;

/// The postcard encoding of one key, value or item.
pub(crate) type Bytes = Vec<u8>;

/// Server-wide identity of a shared object.
pub(crate) type ObjectId = u64;

/// What kind of object a proxy stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ObjectKind {
    Dict,
    List,
    Namespace,
    Lock,
    RLock,
    Semaphore,
    Event,
    Condition,
    Queue,
    /// An object of a type the program registered (see `SharedObject`).
    Shared,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ObjectKind::Dict => "dict",
            ObjectKind::List => "list",
            ObjectKind::Namespace => "namespace",
            ObjectKind::Lock => "lock",
            ObjectKind::RLock => "rlock",
            ObjectKind::Semaphore => "semaphore",
            ObjectKind::Event => "event",
            ObjectKind::Condition => "condition",
            ObjectKind::Queue => "queue",
            ObjectKind::Shared => "registered shared object",
        };
        f.write_str(name)
    }
}

/// How a new object starts out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ObjectSpec {
    Dict,
    List,
    Namespace,
    Lock,
    RLock,
    Semaphore {
        value: u64,
    },
    Event,
    Condition,
    Queue {
        maxsize: Option<u64>,
    },
    /// An object of a registered type, made from its encoded `Init`.
    Shared {
        typeid: String,
        init: Bytes,
    },
}

impl ObjectSpec {
    pub(crate) fn kind(&self) -> ObjectKind {
        match self {
            ObjectSpec::Dict => ObjectKind::Dict,
            ObjectSpec::List => ObjectKind::List,
            ObjectSpec::Namespace => ObjectKind::Namespace,
            ObjectSpec::Lock => ObjectKind::Lock,
            ObjectSpec::RLock => ObjectKind::RLock,
            ObjectSpec::Semaphore { .. } => ObjectKind::Semaphore,
            ObjectSpec::Event => ObjectKind::Event,
            ObjectSpec::Condition => ObjectKind::Condition,
            ObjectSpec::Queue { .. } => ObjectKind::Queue,
            ObjectSpec::Shared { .. } => ObjectKind::Shared,
        }
    }
}

/// How long a blocking operation may wait on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Wait {
    /// Do not wait: answer at once.
    No,
    /// Wait at most this long.
    Timeout(Duration),
    /// Wait until the operation can complete.
    Forever,
}

/// A reference held on behalf of a proxy in transit: see `Request::Ticket`.
pub(crate) type TicketId = u64;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Creates an object, and holds a reference to it for this connection; with a name, returns
    /// the existing object of that name if there is one (a name keeps its object alive).
    Create {
        spec: ObjectSpec,
        name: Option<String>,
    },
    /// One operation on one object; `kind` is what the proxy believes the object is. `holds`
    /// are the objects whose proxies are inside the operation's values: an operation that
    /// stores values makes the object hold a reference to each for as long as it lives.
    Op {
        id: ObjectId,
        kind: ObjectKind,
        op: Op,
        holds: Vec<ObjectId>,
    },
    /// Stops the server (sent by the owning `Manager`).
    Shutdown,
    /// How many shared objects the server holds (a diagnostic).
    ObjectCount,
    /// Holds a reference to an object for this connection (a process's first proxy of it), and
    /// redeems the ticket its token carried, if any.
    Hold {
        id: ObjectId,
        ticket: Option<TicketId>,
    },
    /// Drops this connection's reference (a process's last proxy of it is gone).
    Release { id: ObjectId },
    /// Holds every listed object that still exists for this connection (a forked child's
    /// inherited proxies); answers how many were held.
    HoldAll { ids: Vec<ObjectId> },
    /// A reference for a proxy about to leave this process (serialised): kept until the
    /// receiver redeems it with `Hold`, or until a grace period after this connection closes.
    Ticket { id: ObjectId },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // Dicts and namespaces (a namespace is a dict keyed by attribute name).
    Get(Bytes),
    Insert(Bytes, Bytes),
    Remove {
        key: Bytes,
        return_value: bool,
    },
    Contains(Bytes),
    Keys,
    Items,
    Update(Vec<(Bytes, Bytes)>),
    Increment {
        key: Bytes,
        delta: i64,
    },
    AppendAt {
        key: Bytes,
        item: Bytes,
    },
    SetIfAbsent {
        key: Bytes,
        value: Bytes,
    },
    CompareAndSwap {
        key: Bytes,
        expected: Option<Bytes>,
        new: Bytes,
    },
    /// The value at a key, which must be there (Python's `dict[key]`, `dict.pop(key)`).
    PopKey(Bytes),
    /// The value at a key, set to the given default first if the key is absent.
    SetDefault {
        key: Bytes,
        default: Bytes,
    },
    Values,
    // Lists.
    Push(Bytes),
    Index(u64),
    SetIndex(u64, Bytes),
    Extend(Vec<Bytes>),
    Pop,
    Snapshot,
    /// Inserts before an index (past the end: appends, as Python's `list.insert`).
    InsertAt(u64, Bytes),
    /// Removes the item at an index and returns it.
    PopAt(u64),
    /// Removes the first item equal to the given one.
    RemoveValue(Bytes),
    /// The index of the first item equal to the given one.
    IndexOf(Bytes),
    ContainsValue(Bytes),
    Reverse,
    /// The items in `start..end` (clamped to the length, as Python's slices).
    Range(u64, u64),
    /// Replaces the items in `start..end` (clamped) by the given ones, which may be more or fewer.
    SetRange(u64, u64, Vec<Bytes>),
    /// Replaces the whole list if it still equals `expected` (how `sort` commits a client-side
    /// ordering atomically: the server cannot compare the caller's types).
    ReplaceIf {
        expected: Vec<Bytes>,
        new: Vec<Bytes>,
    },
    // Shared by dicts, lists and queues.
    Len,
    Clear,
    // Locks, rlocks, semaphores and conditions (acquire/release of the condition's lock).
    Acquire(Wait),
    Release,
    SemaphoreValue,
    // Events.
    Set,
    IsSet,
    WaitEvent(Wait),
    // Conditions.
    WaitNotified(Wait),
    Notify(u64),
    NotifyAll,
    // Queues.
    Put {
        item: Bytes,
        wait: Wait,
    },
    Take(Wait),
    // Objects of registered types.
    Method {
        typeid: String,
        method: String,
        args: Bytes,
    },
}

impl Op {
    /// Whether the operation may store its values in the object (so proxies inside them must
    /// keep their objects alive). Lookups by value (`get`, `contains`, `remove`...) do not.
    pub(crate) fn stores(&self) -> bool {
        matches!(
            self,
            Op::Insert(..)
                | Op::Update(_)
                | Op::AppendAt { .. }
                | Op::SetIfAbsent { .. }
                | Op::CompareAndSwap { .. }
                | Op::SetDefault { .. }
                | Op::Push(_)
                | Op::SetIndex(..)
                | Op::Extend(_)
                | Op::InsertAt(..)
                | Op::SetRange(..)
                | Op::ReplaceIf { .. }
                | Op::Put { .. }
                | Op::Method { .. }
        )
    }

    /// The operation's name, for errors (never its payload, which may be large).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Get(_) => "get",
            Op::Insert(..) => "insert",
            Op::Remove { .. } => "remove",
            Op::Contains(_) => "contains",
            Op::Keys => "keys",
            Op::Items => "items",
            Op::Update(_) => "update",
            Op::Increment { .. } => "increment",
            Op::AppendAt { .. } => "append",
            Op::SetIfAbsent { .. } => "set_if_absent",
            Op::CompareAndSwap { .. } => "compare_and_swap",
            Op::PopKey(_) => "pop (by key)",
            Op::SetDefault { .. } => "setdefault",
            Op::Values => "values",
            Op::InsertAt(..) => "insert (by index)",
            Op::PopAt(_) => "pop (by index)",
            Op::RemoveValue(_) => "remove (by value)",
            Op::IndexOf(_) => "index",
            Op::ContainsValue(_) => "contains",
            Op::Reverse => "reverse",
            Op::Range(..) => "get_range",
            Op::SetRange(..) => "set_range",
            Op::ReplaceIf { .. } => "sort",
            Op::Push(_) => "push",
            Op::Index(_) => "get (by index)",
            Op::SetIndex(..) => "set (by index)",
            Op::Extend(_) => "extend",
            Op::Pop => "pop",
            Op::Snapshot => "snapshot",
            Op::Len => "len",
            Op::Clear => "clear",
            Op::Acquire(_) => "acquire",
            Op::Release => "release",
            Op::SemaphoreValue => "value",
            Op::Set => "set",
            Op::IsSet => "is_set",
            Op::WaitEvent(_) => "wait",
            Op::WaitNotified(_) => "wait (condition)",
            Op::Notify(_) => "notify",
            Op::NotifyAll => "notify_all",
            Op::Put { .. } => "put",
            Op::Take(_) => "get (queue)",
            Op::Method { .. } => "method call",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Done,
    Bool(bool),
    Int(i64),
    Len(u64),
    Value(Option<Bytes>),
    Values(Vec<Bytes>),
    Items(Vec<(Bytes, Bytes)>),
    Created(ObjectId),
    Ticket(TicketId),
    Error(RemoteError),
}
