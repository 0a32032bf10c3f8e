//! `ProxyCore`: what every proxy is underneath: the object's id and kind plus the manager's
//! endpoint, called over the calling thread's connection. It serialises as address + authkey +
//! id + kind + ticket, so a proxy can be passed to a spawned child (or any process) and connects
//! from there; a fork child reconnects on first use. Clones are the same object, same owner.
//! Each core is one reference of this process to its object (see `refs`): made, cloned or
//! deserialised, it counts one more; dropped, one fewer.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::manager::address::{Address, Authkey};
use crate::manager::client::{Client, Endpoint};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{
    Bytes, ObjectId, ObjectKind, Op, Request, Response, TicketId, Wait,
};
use crate::manager::refs;

thread_local! {
    /// While a proxy encodes a value for its own manager: that manager, and the objects whose
    /// proxies the value holds (stored there, they need no ticket: the storing request names them).
    static STORING: RefCell<Option<(Arc<Endpoint>, Vec<ObjectId>)>> = const { RefCell::new(None) };
    /// The objects named by the values encoded since the last request: the next request of
    /// this thread carries them.
    static PENDING_HOLDS: RefCell<Vec<ObjectId>> = const { RefCell::new(Vec::new()) };
}

pub(crate) struct ProxyCore {
    client: Client,
    id: ObjectId,
    kind: ObjectKind,
}

/// The serialised form of a proxy.
#[derive(Serialize, Deserialize)]
struct ProxyToken {
    address: Address,
    authkey: Authkey,
    id: ObjectId,
    kind: ObjectKind,
    /// The reference the server keeps for this token until its receiver holds the object.
    ticket: Option<TicketId>,
}

impl ProxyCore {
    /// The core of a reference this process already counted (`refs::create`).
    pub(crate) fn new(endpoint: Arc<Endpoint>, id: ObjectId, kind: ObjectKind) -> ProxyCore {
        ProxyCore {
            client: Client::new(endpoint),
            id,
            kind,
        }
    }

    pub(crate) fn call(&self, op: Op, wait: Wait) -> Result<Response, ManagerError> {
        let holds = PENDING_HOLDS.with(|pending| std::mem::take(&mut *pending.borrow_mut()));
        self.client.call(
            &Request::Op {
                id: self.id,
                kind: self.kind,
                op,
                holds,
            },
            wait,
        )
    }

    /// The postcard bytes of a key, value or argument sent to this proxy's object. Proxies of
    /// the same manager inside it are recorded, so the request that stores it makes the object
    /// hold them.
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Bytes, ManagerError> {
        let endpoint = Arc::clone(self.client.endpoint());
        let previous = STORING.with(|s| s.borrow_mut().replace((endpoint, Vec::new())));
        let encoded = encode(value);
        let met = STORING.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous));
        PENDING_HOLDS.with(|pending| {
            let mut pending = pending.borrow_mut();
            match (&encoded, met) {
                (Ok(_), Some((_, ids))) => pending.extend(ids),
                // The call this value was for will not be made.
                _ => pending.clear(),
            }
        });
        encoded
    }

    pub(crate) fn done(&self, op: Op) -> Result<(), ManagerError> {
        match self.call(op, Wait::No)? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn boolean(&self, op: Op, wait: Wait) -> Result<bool, ManagerError> {
        match self.call(op, wait)? {
            Response::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn len(&self, op: Op) -> Result<usize, ManagerError> {
        match self.call(op, Wait::No)? {
            Response::Len(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn int(&self, op: Op) -> Result<i64, ManagerError> {
        match self.call(op, Wait::No)? {
            Response::Int(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn value<T: DeserializeOwned>(
        &self,
        op: Op,
        wait: Wait,
    ) -> Result<Option<T>, ManagerError> {
        match self.call(op, wait)? {
            Response::Value(bytes) => bytes.map(|b| decode(&b)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    /// A value the server always returns (it reports absence as an error).
    pub(crate) fn required<T: DeserializeOwned>(&self, op: Op) -> Result<T, ManagerError> {
        match self.call(op, Wait::No)? {
            Response::Value(Some(bytes)) => decode(&bytes),
            other => Err(unexpected(other)),
        }
    }

    /// The items' bytes, undecoded.
    pub(crate) fn values_raw(&self, op: Op) -> Result<Vec<Vec<u8>>, ManagerError> {
        match self.call(op, Wait::No)? {
            Response::Values(items) => Ok(items),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn values<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>, ManagerError> {
        match self.call(op, Wait::No)? {
            Response::Values(items) => items.iter().map(|b| decode(b)).collect(),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn items<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
        op: Op,
    ) -> Result<Vec<(K, V)>, ManagerError> {
        match self.call(op, Wait::No)? {
            Response::Items(items) => items
                .iter()
                .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }
}

/// The postcard bytes of a key or value.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, ManagerError> {
    postcard::to_stdvec(value).map_err(|e| ManagerError::Codec {
        action: "encode",
        what: "a key or value",
        reason: e.to_string(),
    })
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ManagerError> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(ManagerError::Codec {
            action: "decode",
            what: "a stored key or value",
            reason: "trailing bytes: it was stored with another type".into(),
        }),
        Err(e) => Err(ManagerError::Codec {
            action: "decode",
            what: "a stored key or value",
            reason: format!("{e} (was it stored with another type?)"),
        }),
    }
}

fn unexpected(response: Response) -> ManagerError {
    ManagerError::Codec {
        action: "interpret",
        what: "the server's answer",
        reason: format!("unexpected answer {response:?}"),
    }
}

impl Clone for ProxyCore {
    fn clone(&self) -> Self {
        refs::add(self.client.endpoint(), self.id);
        ProxyCore::new(Arc::clone(self.client.endpoint()), self.id, self.kind)
    }
}

impl Drop for ProxyCore {
    fn drop(&mut self) {
        refs::release(self.client.endpoint(), self.id);
    }
}

impl fmt::Debug for ProxyCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {}",
            self.kind,
            self.id,
            self.client.endpoint().address
        )
    }
}

impl Serialize for ProxyCore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let endpoint = self.client.endpoint();
        // Stored into an object of the same manager: that object will hold it. Going anywhere
        // else: a ticket holds it until the receiver does.
        let stored = STORING.with(|storing| match &mut *storing.borrow_mut() {
            Some((target, met)) if **target == **endpoint => {
                met.push(self.id);
                true
            }
            _ => false,
        });
        let ticket = match stored {
            true => None,
            false => Some(refs::ticket(endpoint, self.id).map_err(|e| {
                crate::codec::ser_error::<S::Error>(format!(
                    "cannot send a proxy of {} {} at {}: {e}",
                    self.kind, self.id, endpoint.address
                ))
            })?),
        };
        ProxyToken {
            address: endpoint.address.clone(),
            authkey: endpoint.authkey.clone(),
            id: self.id,
            kind: self.kind,
            ticket,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ProxyCore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let token = ProxyToken::deserialize(deserializer)?;
        let endpoint = Arc::new(Endpoint {
            address: token.address,
            authkey: token.authkey,
        });
        refs::acquire(&endpoint, token.id, token.ticket).map_err(|e| {
            crate::codec::de_error::<D::Error>(format!(
                "cannot take a reference to {} {} at {}: {e}",
                token.kind, token.id, endpoint.address
            ))
        })?;
        Ok(ProxyCore::new(endpoint, token.id, token.kind))
    }
}

impl ProxyCore {
    /// Deserialises a proxy token, refusing one for another kind of object.
    pub(crate) fn deserialize_as<'de, D: Deserializer<'de>>(
        deserializer: D,
        expected: ObjectKind,
    ) -> Result<Self, D::Error> {
        let core = ProxyCore::deserialize(deserializer)?;
        if core.kind != expected {
            return Err(serde::de::Error::custom(format!(
                "proxy token is for a {} (object {}), not a {expected}",
                core.kind, core.id
            )));
        }
        Ok(core)
    }
}

/// Clone, Debug, Serialize and Deserialize for a proxy type `$name` over `core` of kind `$kind`.
macro_rules! proxy_impls {
    ($name:ident [$($param:ident),*], $kind:expr) => {
        impl<$($param),*> Clone for $name<$($param),*> {
            fn clone(&self) -> Self {
                Self { core: self.core.clone(), _types: std::marker::PhantomData }
            }
        }
        impl<$($param),*> std::fmt::Debug for $name<$($param),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.core)
            }
        }
        impl<$($param),*> serde::Serialize for $name<$($param),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.core.serialize(s)
            }
        }
        impl<'de, $($param),*> serde::Deserialize<'de> for $name<$($param),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self {
                    core: $crate::manager::proxy::ProxyCore::deserialize_as(d, $kind)?,
                    _types: std::marker::PhantomData,
                })
            }
        }
        impl<$($param),*> $name<$($param),*> {
            pub(crate) fn from_core(core: $crate::manager::proxy::ProxyCore) -> Self {
                Self { core, _types: std::marker::PhantomData }
            }
        }
    };
}
pub(crate) use proxy_impls;
