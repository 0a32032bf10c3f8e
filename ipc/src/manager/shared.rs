//! Shared objects of the program's own types, as Python's `BaseManager.register(typeid,
//! callable)`: a type implements [`SharedObject`] (a type id, how it is made from an `Init`
//! value, and a method dispatch from a name and encoded arguments to an encoded result) and is
//! registered with [`register_shared!`](crate::register_shared). Registrations are collected by
//! the linker (`linkme`), so the manager's server, which is this program re-executed, knows every
//! registered type without a hand-built list. Clients create objects with
//! [`Manager::shared`](super::Manager::shared) and call their methods through a
//! [`SharedProxy`](super::SharedProxy).

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::RemoteError;
use super::protocol::ObjectId;

/// A type whose objects a manager server can own, with methods clients call by name.
///
/// `call` runs on the server, one call at a time per object. It should answer every method name
/// it does not know with [`Call::unknown`]; an error it returns, arguments that do not decode
/// and a panic all come back to the caller as a [`RemoteError`], never ending the server.
pub trait SharedObject: Send + Sized + 'static {
    /// The name the type is registered under: unique in the program.
    const TYPEID: &'static str;
    /// What a new object is made from.
    type Init: Serialize + DeserializeOwned;
    /// Makes a new object; an error is reported to the creator.
    fn create(init: Self::Init) -> Result<Self, String>;
    /// Runs the method `call.method()` (see [`Call::run`]).
    fn call(&mut self, call: Call<'_>) -> Result<Vec<u8>, MethodError>;
}

/// One method call on a shared object: its name and encoded arguments.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    method: &'a str,
    args: &'a [u8],
}

/// Why a method of a shared object failed, as its `call` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodError {
    /// The method ran and failed.
    Failed(String),
    /// The type has no method of this name.
    NoSuchMethod,
    /// The arguments do not decode as the method's (the caller used other types).
    BadArguments(String),
    /// The result could not be encoded.
    BadResult(String),
}

impl<'a> Call<'a> {
    /// The method's name.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// Decodes the arguments as an `A`, runs `body` on them and encodes what it returns: the
    /// whole of a method in one line, e.g. `"add" => call.run(|by: i64| { self.n += by;
    /// Ok(self.n) })`. A method without arguments takes `()`.
    pub fn run<A, R>(
        &self,
        body: impl FnOnce(A) -> Result<R, String>,
    ) -> Result<Vec<u8>, MethodError>
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        let args = match postcard::take_from_bytes::<A>(self.args) {
            Ok((args, [])) => args,
            Ok(_) => {
                return Err(MethodError::BadArguments(
                    "trailing bytes: the caller sent other types".into(),
                ))
            }
            Err(e) => return Err(MethodError::BadArguments(e.to_string())),
        };
        let result = body(args).map_err(MethodError::Failed)?;
        postcard::to_stdvec(&result).map_err(|e| MethodError::BadResult(e.to_string()))
    }

    /// The answer to a method name the type does not have.
    pub fn unknown(&self) -> Result<Vec<u8>, MethodError> {
        Err(MethodError::NoSuchMethod)
    }
}

/// Makes an object of a registered type from its encoded `Init`.
type Constructor = fn(&[u8]) -> Result<Box<dyn Dispatch>, String>;

/// The dispatch [`shared_methods!`](crate::shared_methods) writes for a type: its
/// [`SharedObject::call`] is then `self.dispatch(call)`.
pub trait SharedMethods {
    /// Runs the method `call.method()` on its decoded arguments.
    fn dispatch(&mut self, call: Call<'_>) -> Result<Vec<u8>, MethodError>;
}

/// Declares the methods of a [`SharedObject`] type once, for both sides: the methods themselves
/// (each `fn name(&mut self, args...) -> Result<R, String>`: methods run one at a time on the
/// server, under the object's lock, so every one may change it), the server's dispatch by
/// name ([`SharedMethods`], for the type's `call`), and a trait of typed proxy methods
/// implemented for [`SharedProxy<T>`](super::SharedProxy), each returning
/// `Result<R, ManagerError>`. Arguments travel as one tuple, encoded and decoded with the
/// method's own types, so the two sides cannot disagree. A method may not be named `call` (the
/// proxy's own method). The form is `shared_methods! { Type => pub trait TypeApi { fn ... } }`;
/// a whole example, run across processes, is in the Manager guide (`docs/manager.md`).
#[macro_export]
macro_rules! shared_methods {
    (
        $ty:ty => $(#[$api_meta:meta])* $vis:vis trait $api:ident {
            $(
                $(#[$meta:meta])*
                fn $name:ident(&mut $receiver:ident $(, $arg:ident : $arg_ty:ty)* $(,)?)
                    -> Result<$output:ty, String> $body:block
            )*
        }
    ) => {
        impl $ty {
            $(
                $(#[$meta])*
                fn $name(&mut $receiver $(, $arg: $arg_ty)*)
                    -> ::std::result::Result<$output, ::std::string::String> $body
            )*
        }

        impl $crate::manager::SharedMethods for $ty {
            fn dispatch(
                &mut self,
                call: $crate::manager::Call<'_>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::manager::MethodError> {
                match call.method() {
                    $(
                        ::std::stringify!($name) => call.run(
                            |($($arg,)*): ($($arg_ty,)*)| self.$name($($arg),*)
                        ),
                    )*
                    _ => call.unknown(),
                }
            }
        }

        $(#[$api_meta])*
        $vis trait $api {
            $(
                $(#[$meta])*
                fn $name(&self $(, $arg: $arg_ty)*)
                    -> ::std::result::Result<$output, $crate::manager::ManagerError>;
            )*
        }

        impl $api for $crate::manager::SharedProxy<$ty> {
            $(
                fn $name(&self $(, $arg: $arg_ty)*)
                    -> ::std::result::Result<$output, $crate::manager::ManagerError> {
                    self.call(::std::stringify!($name), &($($arg,)*))
                }
            )*
        }
    };
}

/// A registered type, type-erased. Built by [`register_shared!`](crate::register_shared).
#[doc(hidden)]
#[derive(Debug)]
pub struct SharedRegistration {
    typeid: &'static str,
    create: Constructor,
}

impl SharedRegistration {
    /// The registration of `T`.
    pub const fn of<T: SharedObject>() -> Self {
        Self {
            typeid: T::TYPEID,
            create: create_erased::<T>,
        }
    }
}

/// Every shared type registered in this program, collected by the linker.
// linkme places the registrations in a linker section of their own (`#[link_section]`, which
// the unsafe_code lint flags): it reads them back as one slice, with no constructor and no unsafe
// code of ours.
#[doc(hidden)]
#[allow(unsafe_code)]
#[linkme::distributed_slice]
pub static SHARED_TYPES: [SharedRegistration];

/// Registers a [`SharedObject`] type, so the manager server can create and serve its objects:
/// `herd::ipc::register_shared!(Counter);` at the top level of any module of the program.
#[macro_export]
macro_rules! register_shared {
    ($ty:ty) => {
        const _: () = {
            #[allow(unsafe_code)] // linkme's `#[link_section]`: see `SHARED_TYPES`.
            #[$crate::__private::linkme::distributed_slice($crate::__private::SHARED_TYPES)]
            #[linkme(crate = $crate::__private::linkme)]
            static REGISTRATION: $crate::__private::SharedRegistration =
                $crate::__private::SharedRegistration::of::<$ty>();
        };
    };
}

/// A shared object's methods, whatever its type.
pub(crate) trait Dispatch: Send {
    fn dispatch(&mut self, call: Call<'_>) -> Result<Vec<u8>, MethodError>;
}

impl<T: SharedObject> Dispatch for T {
    fn dispatch(&mut self, call: Call<'_>) -> Result<Vec<u8>, MethodError> {
        self.call(call)
    }
}

fn create_erased<T: SharedObject>(init: &[u8]) -> Result<Box<dyn Dispatch>, String> {
    let init = match postcard::take_from_bytes::<T::Init>(init) {
        Ok((init, [])) => init,
        Ok(_) => {
            return Err("trailing bytes in the Init value: the creator used another type".into())
        }
        Err(e) => return Err(format!("cannot decode the Init value: {e}")),
    };
    Ok(Box::new(T::create(init)?))
}

/// One object of a registered type, on the server.
pub(crate) struct SharedInstance {
    typeid: &'static str,
    object: Box<dyn Dispatch>,
}

impl fmt::Debug for SharedInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedInstance({})", self.typeid)
    }
}

impl SharedInstance {
    pub(crate) fn typeid(&self) -> &'static str {
        self.typeid
    }
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Makes an object of the type registered as `typeid` from its encoded `Init`.
pub(crate) fn construct(typeid: &str, init: &[u8]) -> Result<SharedInstance, RemoteError> {
    let mut found = SHARED_TYPES.iter().filter(|r| r.typeid == typeid);
    let Some(registration) = found.next() else {
        return Err(RemoteError::UnknownType(typeid.to_owned()));
    };
    if found.next().is_some() {
        return Err(RemoteError::DuplicateType(typeid.to_owned()));
    }
    let failed = |message| RemoteError::CreateFailed {
        typeid: typeid.to_owned(),
        message,
    };
    match panic::catch_unwind(|| (registration.create)(init)) {
        Ok(Ok(object)) => Ok(SharedInstance {
            typeid: registration.typeid,
            object,
        }),
        Ok(Err(message)) => Err(failed(message)),
        Err(payload) => Err(failed(format!("panicked: {}", panic_text(&*payload)))),
    }
}

/// Runs `method` on object `id`, which the caller believes is a `typeid`.
pub(crate) fn dispatch(
    instance: &mut SharedInstance,
    id: ObjectId,
    typeid: &str,
    method: &str,
    args: &[u8],
) -> Result<Vec<u8>, RemoteError> {
    if instance.typeid != typeid {
        return Err(RemoteError::WrongKind {
            id,
            expected: typeid.to_owned(),
            actual: instance.typeid.to_owned(),
        });
    }
    let call = Call { method, args };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| instance.object.dispatch(call)));
    let failed = |message: String| RemoteError::Method {
        typeid: typeid.to_owned(),
        method: method.to_owned(),
        message,
    };
    match outcome {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(MethodError::NoSuchMethod)) => Err(RemoteError::NoSuchMethod {
            typeid: typeid.to_owned(),
            method: method.to_owned(),
        }),
        Ok(Err(MethodError::Failed(message))) => Err(failed(message)),
        Ok(Err(MethodError::BadArguments(why))) => {
            Err(failed(format!("cannot decode its arguments: {why}")))
        }
        Ok(Err(MethodError::BadResult(why))) => {
            Err(failed(format!("cannot encode its result: {why}")))
        }
        Err(payload) => Err(failed(format!("panicked: {}", panic_text(&*payload)))),
    }
}
