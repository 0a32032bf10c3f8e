//! `ProxyCore`: what every proxy is underneath: the object's id and kind plus the manager's
//! endpoint, called over the calling thread's connection. It serialises as address + authkey +
//! id + kind, so a proxy can be passed to a spawned child (or any process) and connects from
//! there; a fork child reconnects on first use. Clones are the same object, same owner.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::manager::address::{Address, Authkey};
use crate::manager::client::{Client, Endpoint};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{Bytes, ObjectId, ObjectKind, Op, Request, Response, Wait};

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
}

impl ProxyCore {
    pub(crate) fn new(endpoint: Arc<Endpoint>, id: ObjectId, kind: ObjectKind) -> ProxyCore {
        ProxyCore {
            client: Client::new(endpoint),
            id,
            kind,
        }
    }

    pub(crate) fn call(&self, op: Op, wait: Wait) -> Result<Response, ManagerError> {
        self.client.call(
            &Request::Op {
                id: self.id,
                kind: self.kind,
                op,
            },
            wait,
        )
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
        ProxyCore::new(Arc::clone(self.client.endpoint()), self.id, self.kind)
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
        ProxyToken {
            address: endpoint.address.clone(),
            authkey: endpoint.authkey.clone(),
            id: self.id,
            kind: self.kind,
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
