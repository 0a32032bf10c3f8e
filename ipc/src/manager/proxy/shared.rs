//! `SharedProxy`: a proxy for an object of a type the program registered (see
//! [`SharedObject`]), whose methods it calls by name.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{proxy_impls, ProxyCore};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{ObjectKind, Op};
use crate::manager::shared::SharedObject;

/// A proxy for an object of the registered type `T` owned by the manager.
pub struct SharedProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn() -> T>,
}

proxy_impls!(SharedProxy[T], ObjectKind::Shared);

impl<T: SharedObject> SharedProxy<T> {
    /// Calls `method` on the server with `args` (`&()` for none) and decodes its result as an
    /// `R`. The method's own error, an unknown method, arguments or a result of other types
    /// than the method's, and a panic in the method are each a [`ManagerError::Remote`] naming
    /// the type and the method. A method may run for up to 30 s before the call gives up
    /// waiting.
    pub fn call<A, R>(&self, method: &str, args: &A) -> Result<R, ManagerError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let args = self.core.encode(args)?;
        self.core.required(Op::Method {
            typeid: T::TYPEID.to_owned(),
            method: method.to_owned(),
            args,
        })
    }
}
