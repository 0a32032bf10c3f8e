//! `NamespaceProxy`: named attributes of any serde type, like multiprocessing's Namespace.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{proxy_impls, ProxyCore};
use crate::manager::error::{ManagerError, RemoteError};
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// A proxy for a namespace owned by the manager: attributes by name, each of its own type.
pub struct NamespaceProxy {
    core: ProxyCore,
    _types: PhantomData<()>,
}

proxy_impls!(NamespaceProxy[], ObjectKind::Namespace);

impl NamespaceProxy {
    /// The attribute `name`; an attribute never set is an error naming it.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, ManagerError> {
        self.core
            .value(Op::Get(self.core.encode(name)?), Wait::No)?
            .ok_or_else(|| RemoteError::NoAttribute(name.to_owned()).into())
    }

    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ManagerError> {
        self.core.done(Op::Insert(
            self.core.encode(name)?,
            self.core.encode(value)?,
        ))
    }

    /// Deletes the attribute; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, ManagerError> {
        let op = Op::Remove {
            key: self.core.encode(name)?,
            return_value: false,
        };
        self.core.boolean(op, Wait::No)
    }

    pub fn contains(&self, name: &str) -> Result<bool, ManagerError> {
        self.core
            .boolean(Op::Contains(self.core.encode(name)?), Wait::No)
    }

    /// The names of all attributes, in no particular order.
    pub fn names(&self) -> Result<Vec<String>, ManagerError> {
        self.core.values(Op::Keys)
    }
}
