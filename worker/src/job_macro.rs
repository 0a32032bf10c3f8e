//! [`job!`](crate::job) and [`register_kind!`](crate::register_kind): job kinds registered
//! where they are defined, so every worker of the program knows them.

/// Makes plain functions into job kinds, registered for every worker of the program.
///
/// Each `fn` becomes a unit value of the same name that implements [`JobKind`](crate::JobKind):
/// a function of one argument takes that argument as its input; a function of several takes
/// them as a tuple (as `starmap` passes them); a function of none takes `()`. A function declared to return `Result<T, E>`
/// (spelled that way, with `E: Display`) is fallible: `Ok` is its output and `Err` fails the job
/// with the error's text. A panic fails the job with the panic's message.
///
/// ```
/// herd_worker::job! {
///     /// Squares a number.
///     pub fn square(x: u64) -> u64 { x * x }
///
///     /// Adds two numbers: takes `(a, b)`.
///     pub fn add(a: u64, b: u64) -> u64 { a + b }
///
///     /// Parses a number, or fails the job.
///     pub fn parse(text: String) -> Result<u64, std::num::ParseIntError> { text.parse() }
///
///     /// Takes nothing: its input is `()`.
///     pub fn answer() -> u32 { 42 }
/// }
///
/// use herd_worker::{JobKind, Registry};
/// assert_eq!(square.run(7)?, 49);
/// assert_eq!(add.run((2, 3))?, 5);
/// assert!(parse.run("x".into()).is_err());
/// assert_eq!(answer.run(())?, 42);
/// assert!(Registry::global().contains(square::NAME));
/// # Ok::<(), herd_worker::JobError>(())
/// ```
#[macro_export]
macro_rules! job {
    () => {};
    // No argument: the input is `()`.
    ($(#[$meta:meta])* $vis:vis fn $name:ident() $(-> $output:ty)? $body:block $($rest:tt)*) => {
        $crate::job! { $(#[$meta])* $vis fn $name(_unit: ()) $(-> $output)? $body $($rest)* }
    };
    // Fallible, one argument.
    ($(#[$meta:meta])* $vis:vis fn $name:ident($arg:ident : $input:ty $(,)?) -> Result<$ok:ty, $err:ty> $body:block $($rest:tt)*) => {
        $crate::__job_kind!($(#[$meta])* $vis $name, $input, $ok, |$arg: $input| -> ::std::result::Result<$ok, $err> { $body }, fallible);
        $crate::job! { $($rest)* }
    };
    // Fallible, several arguments.
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $input:ty),+ $(,)?) -> Result<$ok:ty, $err:ty> $body:block $($rest:tt)*) => {
        $crate::__job_kind!($(#[$meta])* $vis $name, ($($input,)+), $ok, |($($arg,)+): ($($input,)+)| -> ::std::result::Result<$ok, $err> { $body }, fallible);
        $crate::job! { $($rest)* }
    };
    // One argument.
    ($(#[$meta:meta])* $vis:vis fn $name:ident($arg:ident : $input:ty $(,)?) -> $output:ty $body:block $($rest:tt)*) => {
        $crate::__job_kind!($(#[$meta])* $vis $name, $input, $output, |$arg: $input| -> $output { $body }, infallible);
        $crate::job! { $($rest)* }
    };
    // Several arguments.
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $input:ty),+ $(,)?) -> $output:ty $body:block $($rest:tt)*) => {
        $crate::__job_kind!($(#[$meta])* $vis $name, ($($input,)+), $output, |($($arg,)+): ($($input,)+)| -> $output { $body }, infallible);
        $crate::job! { $($rest)* }
    };
    // No output.
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $input:ty),+ $(,)?) $body:block $($rest:tt)*) => {
        $crate::job! { $(#[$meta])* $vis fn $name($($arg: $input),+) -> () $body $($rest)* }
    };
}

/// The expansion of [`job!`](crate::job) for one function.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_kind {
    ($(#[$meta:meta])* $vis:vis $name:ident, $input:ty, $output:ty, $function:expr, $fallibility:ident) => {
        $(#[$meta])*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $crate::JobKind for $name {
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));
            type Input = $input;
            type Output = $output;
            fn run(&self, input: $input) -> ::std::result::Result<$output, $crate::JobError> {
                let function = $function;
                $crate::__job_output!($fallibility, function(input))
            }
        }

        $crate::register_kind!($name);
    };
}

/// Turns a job function's return value into the job's outcome.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_output {
    (fallible, $value:expr) => {
        $value.map_err($crate::JobError::failed)
    };
    (infallible, $value:expr) => {
        Ok($value)
    };
}

/// Registers a [`JobKind`](crate::JobKind) value for every worker of the program (see
/// [`Registry::global`](crate::Registry::global)); [`job!`](crate::job) does this for functions.
///
/// ```
/// use herd_worker::{JobError, JobKind, Registry};
///
/// /// Counts the bytes of a text.
/// struct Length;
/// impl JobKind for Length {
///     const NAME: &'static str = "length";
///     type Input = String;
///     type Output = usize;
///     fn run(&self, text: String) -> Result<usize, JobError> {
///         Ok(text.len())
///     }
/// }
/// herd_worker::register_kind!(Length);
///
/// assert!(Registry::global().contains("length"));
/// ```
#[macro_export]
macro_rules! register_kind {
    ($kind:expr) => {
        const _: () = {
            #[allow(unsafe_code)] // linkme's `#[link_section]`: see `KINDS`.
            #[$crate::__private::linkme::distributed_slice($crate::__private::KINDS)]
            #[linkme(crate = $crate::__private::linkme)]
            static REGISTRATION: $crate::__private::KindRegistration =
                $crate::__private::KindRegistration {
                    register: |registry| registry.register($kind).map(|_| ()),
                };
        };
    };
}
