//! `Registry`: job kinds by name, type-erased so a worker can run any of them from bytes.
//!
//! Kinds are registered by hand ([`Registry::register`]) or, for a whole program, where they
//! are defined: [`job!`](crate::job) and [`register_kind!`](crate::register_kind) add them to a
//! list the linker collects ([`Registry::global`] reads it), so a worker started in any way (a
//! fork, a fresh execution of the binary, a forkserver's fork) finds every kind of the program
//! without a hand-built registry, and no constructor has to run first.
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use thiserror::Error;

use crate::job_error::panic_message;
use crate::{decode_payload, encode_payload, ChunkOutputs, Job, JobError, JobKind};

/// Runs an encoded input (`chunk`: a sequence of them) at an attempt.
type Handler = Box<dyn Fn(&[u8], u32, bool) -> Result<Vec<u8>, JobError> + Send + Sync>;

/// A job kind registered where it is defined, by [`job!`](crate::job) or
/// [`register_kind!`](crate::register_kind).
#[derive(Debug)]
pub struct KindRegistration {
    /// Adds the kind to a registry.
    pub register: fn(&mut Registry) -> Result<(), DuplicateKindError>,
}

/// Every kind registered where it is defined, collected by the linker.
// linkme places the registrations in a linker section of their own (`#[link_section]`, which
// the unsafe_code lint flags): it reads them back as one slice, with no constructor and no unsafe
// code of ours.
#[allow(unsafe_code)]
#[linkme::distributed_slice]
pub static KINDS: [KindRegistration];

/// Two job kinds were registered under one name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("job kind `{0}` is already registered")]
pub struct DuplicateKindError(pub String);

/// Maps job-kind names to handlers from an encoded input to an encoded output.
#[derive(Default)]
pub struct Registry {
    handlers: BTreeMap<&'static str, Handler>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every kind of this program registered where it is defined (by [`job!`](crate::job) and
    /// [`register_kind!`](crate::register_kind)), in whichever crate.
    pub fn global() -> Self {
        let mut registry = Self::new();
        for registration in KINDS {
            // One name twice would be one kind linked twice: the first one serves.
            let _ = (registration.register)(&mut registry);
        }
        registry
    }

    /// Adds a job kind under `K::NAME`.
    pub fn register<K: JobKind>(&mut self, kind: K) -> Result<&mut Self, DuplicateKindError> {
        if self.handlers.contains_key(K::NAME) {
            return Err(DuplicateKindError(K::NAME.to_owned()));
        }
        let handler: Handler = Box::new(move |bytes, attempt, chunk| {
            if chunk {
                return Ok(run_chunk(&kind, bytes, attempt));
            }
            let input: K::Input =
                decode_payload(bytes).map_err(|e| JobError::InvalidInput(e.to_string()))?;
            let output = kind.run_attempt(input, attempt)?;
            encode_payload(&output).map_err(|e| JobError::failed(format!("encoding output: {e}")))
        });
        self.handlers.insert(K::NAME, handler);
        Ok(self)
    }

    /// Whether a kind of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// Runs the first attempt of one job of kind `name` on an encoded input, giving the encoded
    /// output.
    pub fn run(&self, name: &str, payload: &[u8]) -> Result<Vec<u8>, JobError> {
        self.run_attempt(name, payload, 1)
    }

    /// Runs attempt `attempt` (1 for the first) of one job of kind `name` on an encoded input,
    /// giving the encoded output ([`JobKind::run_attempt`]).
    pub fn run_attempt(
        &self,
        name: &str,
        payload: &[u8],
        attempt: u32,
    ) -> Result<Vec<u8>, JobError> {
        self.handler(name)?(payload, attempt, false)
    }

    /// Runs a job as the supervisor sent it: one input, or a chunk of them answered by a
    /// [`ChunkOutputs`] (an input that fails or panics fails only its own item).
    pub fn run_job(&self, job: &Job) -> Result<Vec<u8>, JobError> {
        self.handler(&job.kind)?(&job.payload, job.attempt, job.chunk)
    }

    fn handler(&self, name: &str) -> Result<&Handler, JobError> {
        self.handlers
            .get(name)
            .ok_or_else(|| JobError::UnknownKind(name.to_owned()))
    }
}

/// Runs every input of a chunk; the answer is one item per input, in order.
fn run_chunk<K: JobKind>(kind: &K, bytes: &[u8], attempt: u32) -> Vec<u8> {
    let mut outputs = ChunkOutputs::new();
    match decode_payload::<Vec<K::Input>>(bytes) {
        Ok(inputs) => {
            for input in inputs {
                let outcome =
                    panic::catch_unwind(AssertUnwindSafe(|| kind.run_attempt(input, attempt)))
                        .unwrap_or_else(|payload| {
                            Err(JobError::Panicked(panic_message(payload.as_ref())))
                        });
                match outcome {
                    Ok(output) => outputs.push_output(&output),
                    Err(error) => outputs.push_error(&error),
                }
            }
        }
        Err(error) => outputs.push_error(&JobError::InvalidInput(error.to_string())),
    }
    outputs.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Double;
    impl JobKind for Double {
        const NAME: &'static str = "double";
        type Input = i32;
        type Output = i64;
        fn run(&self, input: i32) -> Result<i64, JobError> {
            if input < 0 {
                return Err(JobError::InvalidInput(format!("negative: {input}")));
            }
            Ok(i64::from(input) * 2)
        }
    }

    #[test]
    fn runs_a_registered_kind_from_bytes() {
        let mut registry = Registry::new();
        registry.register(Double).unwrap();
        let out = registry
            .run("double", &encode_payload(&21i32).unwrap())
            .unwrap();
        assert_eq!(decode_payload::<i64>(&out).unwrap(), 42);
    }

    #[test]
    fn the_kind_error_comes_back() {
        let mut registry = Registry::new();
        registry.register(Double).unwrap();
        let err = registry
            .run("double", &encode_payload(&-1i32).unwrap())
            .unwrap_err();
        assert_eq!(err, JobError::InvalidInput("negative: -1".into()));
    }

    #[test]
    fn unknown_kind_and_bad_payload_are_errors_not_panics() {
        let mut registry = Registry::new();
        registry.register(Double).unwrap();
        assert_eq!(
            registry.run("triple", &[]).unwrap_err(),
            JobError::UnknownKind("triple".into())
        );
        assert!(matches!(
            registry.run("double", &[]).unwrap_err(),
            JobError::InvalidInput(_)
        ));
        assert!(matches!(
            registry.run("double", &[2, 0, 0]).unwrap_err(),
            JobError::InvalidInput(_)
        ));
    }

    /// Answers with the attempt it ran as.
    struct WhichAttempt;
    impl JobKind for WhichAttempt {
        const NAME: &'static str = "which-attempt";
        type Input = ();
        type Output = u32;
        fn run(&self, (): ()) -> Result<u32, JobError> {
            Err(JobError::failed("run_attempt is the entry point"))
        }
        fn run_attempt(&self, (): (), attempt: u32) -> Result<u32, JobError> {
            Ok(attempt)
        }
    }

    #[test]
    fn the_attempt_reaches_the_kind() {
        let mut registry = Registry::new();
        registry
            .register(WhichAttempt)
            .unwrap()
            .register(Double)
            .unwrap();
        let payload = encode_payload(&()).unwrap();
        for attempt in [1, 2, 7] {
            let out = registry
                .run_attempt("which-attempt", &payload, attempt)
                .unwrap();
            assert_eq!(decode_payload::<u32>(&out).unwrap(), attempt);
        }
        let out = registry.run("which-attempt", &payload).unwrap();
        assert_eq!(decode_payload::<u32>(&out).unwrap(), 1);
        // A kind that does not override `run_attempt` runs `run` on every attempt.
        let out = registry
            .run_attempt("double", &encode_payload(&4i32).unwrap(), 3)
            .unwrap();
        assert_eq!(decode_payload::<i64>(&out).unwrap(), 8);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut registry = Registry::new();
        registry.register(Double).unwrap();
        assert_eq!(
            registry.register(Double).unwrap_err(),
            DuplicateKindError("double".into())
        );
        assert_eq!(registry.names().collect::<Vec<_>>(), ["double"]);
    }
}
