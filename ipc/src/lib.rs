//! herd-ipc: processes on one host, and the ways they share data.
//!
//! A program made of several processes gets isolation (a crash, a leak or a stuck library stays in
//! its process) and real parallelism without sharing a heap. herd-ipc gives Rust programs the
//! surface of Python's `multiprocessing`: start a [`Process`] by fork or by spawn and
//! [join](Child::join) it, talk over a [`Pipe`], share a [`Value`] or an [`Array`], coordinate with
//! a [`Lock`], an [`Event`] or a [`Semaphore`]. It is typed (serde), faster (the figures, measured
//! against `multiprocessing` on the same machine, are in `docs/process.md` and `docs/sync.md`), and
//! robust when a process dies: a lock whose holder is SIGKILLed is handed to the next process with
//! an [`OwnerDied`](sync::OwnerDied) outcome instead of deadlocking, a pipe whose peer dies reports
//! [`RecvError::Disconnected`], a dropped [`Child`] handle is killed and reaped instead of becoming
//! a zombie, and shared memory lives in memfd segments that never appear in `/dev/shm` and are
//! freed by the kernel once the last process using them is gone, however it ended.
//!
//! Linux only. Every example below is a doctest that starts real processes and checks what they
//! did; they run with `cargo test --doc -p herd-ipc`.
//!
//! The crate root holds what most programs name: [`Process`], [`Child`], [`Pipe`], [`Queue`],
//! [`JoinableQueue`], [`Value`], [`Array`], [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Event`], [`Condition`], [`Barrier`], [`Manager`], [`Listener`],
//! [`Client`], [`SharedMemory`], [`init`], [`wait`],
//! [`parent_process`],
//! [`ExitStatus`], and the errors most often matched ([`StartError`], [`JoinError`],
//! [`JoinTimeoutError`], [`SendError`], [`RecvError`], [`PutError`], [`GetError`], [`LockError`],
//! [`ManagerError`], [`AcceptError`], [`ConnectError`], [`CodecError`]). Everything else is in
//! its module: [`process`], [`pipe`], [`queue`], [`shared`], [`sync`], [`manager`],
//! [`connection`]. Errors are shaped like crossbeam-channel's: one
//! type per operation with flat variants ([`pipe::TryRecvError`] has `Empty` next to
//! [`RecvError`]'s variants, and converts `From<RecvError>`), `into_inner()` wherever something is
//! handed back (an unsent message, a lock guard, a child that is still running), and the same
//! predicates (`is_disconnected`, `is_closed`, `is_full`/`is_empty`, `is_timeout`) on every error
//! of a `x`/`try_x`/`x_timeout` trio. Every `x_timeout` takes a timeout past what the clock holds
//! (`Duration::MAX`) as no deadline.
//!
//! # Starting processes
//!
//! A child runs either a closure in a copy of this process (fork) or a registered function in a
//! fresh run of this program (spawn). Either way the parent holds a [`Child`] handle.
//!
//! ## By fork
//!
//! [`Process::fork`] runs a closure in a copy of the current process. The closure may borrow from
//! the caller (the child has its own copy of everything), and whatever it returns comes back on
//! [`Child::join`], as long as it implements `Serialize` and `Deserialize`. A child that panicked,
//! was killed or exited by itself gives a [`JoinError`] that says which, with its [`ExitStatus`]
//! (an exit code or a signal; [`ExitStatus::exitcode`] is `multiprocessing`'s `exitcode`, negative
//! for a signal).
//!
//! The examples join with [`Child::join_timeout`], so a bug fails the example instead of hanging
//! it.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{ExitStatus, JoinTimeoutError, Process};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let words = ["a", "herd", "of", "processes"];
//!     let child = Process::new()
//!         .name("counter")
//!         .fork(|| words.iter().map(|word| word.len()).sum::<usize>())?;
//!     assert_eq!(child.name(), "counter");
//!     assert_ne!(child.pid(), herd_ipc::Pid::this());
//!     assert_eq!(child.join_timeout(PATIENCE)?, 16);
//!
//!     // A panic in the child comes back as an error carrying the panic message.
//!     let child = Process::new().fork(|| -> u32 { panic!("no such file: {}", "input.txt") })?;
//!     match child.join_timeout(PATIENCE) {
//!         Err(err @ JoinTimeoutError::Panicked { .. }) => {
//!             assert_eq!(err.panic_message(), Some("no such file: input.txt"));
//!             assert_eq!(err.exit_status(), Some(ExitStatus::Exited(1)));
//!         }
//!         other => panic!("expected a panic, got {other:?}"),
//!     }
//!
//!     // An exit code and a signal are told apart.
//!     let quitter = Process::new().fork::<(), _>(|| std::process::exit(3))?;
//!     let sleeper = Process::new().fork(|| std::thread::sleep(Duration::from_secs(60)))?;
//!     sleeper.terminate()?; // SIGTERM
//!     match quitter.join_timeout(PATIENCE) {
//!         Err(JoinTimeoutError::NoValue { status, .. }) => {
//!             assert_eq!(status, ExitStatus::Exited(3));
//!             assert_eq!(status.exitcode(), 3);
//!         }
//!         other => panic!("expected exit code 3, got {other:?}"),
//!     }
//!     match sleeper.join_timeout(PATIENCE) {
//!         Err(JoinTimeoutError::Killed { status, .. }) => {
//!             assert_eq!(status.signal(), Some(15));
//!             assert_eq!(status.exitcode(), -15); // negative for a signal, as in Python
//!         }
//!         other => panic!("expected SIGTERM, got {other:?}"),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! `join` consumes the handle. [`Child::wait`] is Python's `p.join()`: it waits and returns the
//! [`ExitStatus`] but keeps the handle, so [`Child::exitcode`] (`p.exitcode`),
//! [`Child::exit_status`] and [`Child::is_alive`] answer afterwards and [`Child::take_result`]
//! hands out the value; [`Child::wait_timeout`] returns `None` while the child still runs.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{ExitStatus, Process};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut child = Process::new().fork(|| "done".to_owned())?;
//!     assert_eq!(child.wait_timeout(Duration::from_secs(10))?, Some(ExitStatus::Exited(0)));
//!     assert_eq!(child.exitcode(), Some(0));
//!     assert_eq!(child.take_result()?, "done");
//!     Ok(())
//! }
//! ```
//!
//! Dropping a [`Child`] that still runs kills it (SIGKILL) and reaps it, like a scoped thread that
//! cannot outlive its handle: call `join` or `wait` to wait instead. A child started with
//! [`.daemon(true)`](Process::daemon) is also killed when its parent dies, even by SIGKILL.
//! [`active_children`], [`current_process`] and [`parent_process`] work as in `multiprocessing`
//! (`parent_process()` is `None` in the main process, and in a child names the process that
//! started it).
//!
//! `fork` refuses to run in a process that has more than one thread
//! ([`StartError::MultiThreaded`]); see [What is safe after fork](#what-is-safe-after-fork). A
//! doctest's `main` runs on the main thread of its own single-threaded process, so fork is fine
//! here; so is an integration test with `harness = false` that runs its trials on the main thread.
//! libtest's default harness runs each `#[test]` on a thread of its own, where fork refuses: use
//! spawn or the forkserver there ([`Process::forkserver`], [`StartMethod`]).
//!
//! ## By spawn
//!
//! [`Process::spawn`] re-executes the current binary and runs an *entry*, a function declared with
//! [`entry!`], on serialised arguments. No memory is shared: the child is a fresh run of the
//! program, handed the entry's arguments, and spawning is safe in a multi-threaded program. The
//! re-executed child runs the entry from a start-up hook of herd-ipc before `main` would start,
//! sends its return value back and exits, so `main` needs no special first line and spawn works
//! from ordinary `#[test]` functions; [`init`], which older programs call first thing in `main`,
//! is kept and harmless. [`Process::forkserver`] starts the same entries at about the cost of a
//! fork, from a single-threaded server process, so it too is safe in a multi-threaded program.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::process::CurrentProcess;
//! use herd_ipc::{current_process, Process, StartError};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! herd_ipc::entry! {
//!     /// Runs in a fresh copy of this program.
//!     fn word_lengths(words: Vec<String>) -> Vec<usize> {
//!         words.iter().map(|word| word.len()).collect()
//!     }
//! }
//!
//! herd_ipc::entry! {
//!     fn who_am_i(_nothing: ()) -> CurrentProcess {
//!         current_process()
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     herd_ipc::init(); // in a spawned child: runs the entry and exits; here: returns at once
//!
//!     let words = vec!["spawned".to_owned(), "child".to_owned()];
//!     let child = Process::new().spawn(word_lengths, &words)?;
//!     assert_eq!(child.join_timeout(PATIENCE)?, [7, 5]);
//!
//!     let child = Process::new().name("worker-1").spawn(who_am_i, &())?;
//!     let pid = child.pid();
//!     let me = child.join_timeout(PATIENCE)?;
//!     assert_eq!((me.pid, me.ppid, me.name.as_str()), (pid, herd_ipc::Pid::this(), "worker-1"));
//!
//!     // An entry that this binary does not have is refused before anything starts.
//!     let unknown = Process::new().spawn_named::<(), ()>("no_such_entry", &());
//!     assert!(matches!(unknown, Err(StartError::UnknownEntry { .. })));
//!     Ok(())
//! }
//! ```
//!
//! # Sharing data
//!
//! ## Pipe
//!
//! [`Pipe::new`] gives two connected ends of a Unix socket pair carrying typed messages (postcard).
//! Both ends send and receive; [`Pipe::simplex`] gives a [`PipeSender`] and a [`PipeReceiver`]
//! instead. When the last copy of one end is closed, in whichever process held it and however that
//! process ended, the other end first receives everything that was sent and then gets
//! [`RecvError::Disconnected`] (`multiprocessing`'s `EOFError`); sending to it gives
//! [`SendError::Disconnected`] with the message handed back. Typed sends and receives come as
//! trios: `send`/`try_send`/`send_timeout`, `recv`/`try_recv`/`recv_timeout`. Each operation has
//! its own error type in [`pipe`] (crossbeam-channel's shape: flat variants, `From` the blocking
//! operation's error into the others, `into_inner()` for the unsent message, and `is_disconnected`,
//! `is_full`/`is_empty` and `is_timeout` on every one of them).
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{Pipe, Process, RecvError};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let (parent_end, child_end) = Pipe::<u64>::new()?;
//!     let squarer = Process::new().fork(move || {
//!         // Square every number until a 0 says that is all.
//!         let mut answered = 0u32;
//!         loop {
//!             match child_end.recv_timeout(PATIENCE).expect("a number") {
//!                 0 => return answered,
//!                 n => child_end.send(n * n).expect("send the square"),
//!             }
//!             answered += 1;
//!         }
//!     })?;
//!     for n in [3, 4, 5] {
//!         parent_end.send(n)?;
//!         assert_eq!(parent_end.recv_timeout(PATIENCE)?, n * n);
//!     }
//!     parent_end.send(0)?;
//!     assert_eq!(squarer.join_timeout(PATIENCE)?, 3);
//!
//!     // The child has exited, and its end with it.
//!     assert!(matches!(parent_end.recv(), Err(RecvError::Disconnected)));
//!     let refused = parent_end.send(6).unwrap_err();
//!     assert!(refused.is_disconnected());
//!     assert_eq!(refused.into_inner(), 6);
//!     Ok(())
//! }
//! ```
//!
//! A message larger than the end's limit ([`pipe::DEFAULT_PIPE_MESSAGE_LIMIT`], see
//! [`Pipe::set_max_message_size`]) is refused on send; a corrupt or truncated frame is an error on
//! receive, never a panic or a huge allocation; a message of the wrong type is a
//! [`RecvError::Decode`].
//!
//! ### Waiting on several ends
//!
//! [`wait`] blocks until at least one of several ends is ready and returns their indices, like
//! `multiprocessing.connection.wait`. An end is ready when a receive will return at once: a whole
//! message has arrived or its peer is gone (part of a message is read into the end's buffer and
//! waited on, so `wait` agrees with [`Pipe::poll`] and a `recv` after it does not block). A
//! [`Child`] can be waited on too: it is ready once the child has exited.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{wait, Pipe, PipeReceiver, Process, RecvError, Waitable};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut receivers = Vec::new();
//!     let mut children = Vec::new();
//!     for id in 0..3u32 {
//!         let (sender, receiver) = Pipe::<u32>::simplex()?;
//!         children.push(Process::new().fork(move || {
//!             std::thread::sleep(Duration::from_millis(u64::from(3 - id) * 20));
//!             sender.send(id * 10).expect("send");
//!         })?);
//!         receivers.push(receiver);
//!     }
//!
//!     // Read from whichever end is ready until every sender has hung up.
//!     let mut received = Vec::new();
//!     let mut open: Vec<&PipeReceiver<u32>> = receivers.iter().collect();
//!     while !open.is_empty() {
//!         let ends: Vec<&dyn Waitable> = open.iter().map(|end| *end as &dyn Waitable).collect();
//!         let ready = wait(&ends, Some(PATIENCE))?;
//!         assert!(!ready.is_empty(), "nothing arrived within {PATIENCE:?}");
//!         for index in ready.into_iter().rev() {
//!             match open[index].recv() {
//!                 Ok(value) => received.push(value),
//!                 Err(RecvError::Disconnected) => drop(open.remove(index)),
//!                 Err(other) => return Err(other.into()),
//!             }
//!         }
//!     }
//!     received.sort_unstable();
//!     assert_eq!(received, [0, 10, 20]);
//!
//!     for child in children {
//!         assert_eq!(wait(&[&child], Some(PATIENCE))?, [0]); // it has exited
//!         child.join_timeout(PATIENCE)?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ## Queue
//!
//! [`Queue<T>`] is a multi-producer, multi-consumer queue of serde values in shared memory: any
//! number of processes put and get, with no system call unless one side has to wait (then it
//! sleeps on a futex). Each producer's messages arrive in order; none is lost or duplicated.
//! Operations come as trios, `put`/`try_put`/`put_timeout` and `get`/`try_get`/`get_timeout`;
//! [`Queue::close`] stops further puts for everyone, and consumers get what is left and then
//! [`GetError::Closed`]. [`Queue::new`] is unbounded, as Python's: what does not fit its ring is
//! spilled to a memory file beside it. A queue is bounded only if asked: by a number of messages
//! ([`Queue::bounded`]) or by the bytes of its ring
//! ([`QueueBuilder::capacity_bytes`](queue::QueueBuilder::capacity_bytes)); a message larger than
//! [`QueueBuilder::max_message_bytes`](queue::QueueBuilder::max_message_bytes) (1 GiB by default)
//! is refused on put, never truncated. The errors of the put and get trios are in [`queue`], with `into_inner()`
//! giving back a message that was not put, and `is_closed`, `is_full`/`is_empty` and `is_timeout`.
//! [`JoinableQueue<T>`] adds [`task_done`](JoinableQueue::task_done) and
//! [`join`](JoinableQueue::join).
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{GetError, JoinableQueue, Process, Queue};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let jobs: JoinableQueue<u64> = Queue::builder().build_joinable()?;
//!     let results: Queue<(u32, u64)> = Queue::new()?;
//!     let workers = (0..2u32)
//!         .map(|id| {
//!             Process::new().fork(|| loop {
//!                 match jobs.get() {
//!                     Ok(n) => {
//!                         results.put((id, n * n)).expect("put a result");
//!                         jobs.task_done().expect("one task_done per job");
//!                     }
//!                     Err(GetError::Closed) => return,
//!                     Err(error) => panic!("{error}"),
//!                 }
//!             })
//!         })
//!         .collect::<Result<Vec<_>, _>>()?;
//!     for n in 1..=100 {
//!         jobs.put(n)?;
//!     }
//!     jobs.join_timeout(PATIENCE)?; // every job has been marked done
//!     jobs.close()?; // the workers drain the (empty) queue and see Closed
//!     for worker in workers {
//!         worker.join_timeout(PATIENCE)?;
//!     }
//!     let mut total = 0;
//!     while let Ok((_worker, square)) = results.try_get() {
//!         total += square;
//!     }
//!     assert_eq!(total, (1..=100).map(|n| n * n).sum::<u64>());
//!     Ok(())
//! }
//! ```
//!
//! A producer or consumer killed mid-operation (SIGKILL included) does not stop the others: the
//! next process to take the queue's lock is told its owner died and carries on; at most the
//! killed process's one in-flight message is lost. Messages cannot carry herd handles (their fds
//! cannot go through shared memory); the queue handle itself travels to spawned children.
//!
//! ## Value and Array
//!
//! [`Value<T>`] holds one plain-old-data [`Pod`] value in shared memory, [`Array<T>`] a fixed
//! number of them. Every process holding the handle sees the same memory: a fork child inherits it,
//! a spawned child receives it as an argument. `get`, `set` and [`with_lock`](Value::with_lock)
//! take the handle's process-shared lock (`multiprocessing`'s `get_lock()`), so an update of
//! several fields or elements is atomic for everyone who takes the lock; integer types also have
//! lock-free atomics such as [`fetch_add`](Value::fetch_add) and
//! [`compare_exchange`](Value::compare_exchange) (on an Array through [`Array::atomic`]), which do
//! not take the lock.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{Array, Process, Value};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//! const ROUNDS: u64 = 10_000;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let hits = Value::<u64>::new(0)?;
//!     // Slot 0 counts updates, slot 1 their sum: with_lock keeps the two in step.
//!     let totals = Array::<u64>::new(2)?;
//!     let work = || {
//!         for i in 1..=ROUNDS {
//!             hits.fetch_add(1);
//!             totals
//!                 .with_lock(|slots| {
//!                     slots[0] += 1;
//!                     slots[1] += i;
//!                 })
//!                 .expect("lock the array");
//!         }
//!     };
//!     let first = Process::new().fork(work)?;
//!     let second = Process::new().fork(work)?;
//!     first.join_timeout(PATIENCE)?;
//!     second.join_timeout(PATIENCE)?;
//!
//!     assert_eq!(hits.load(), 2 * ROUNDS);
//!     assert_eq!(totals.to_vec()?, [2 * ROUNDS, ROUNDS * (ROUNDS + 1)]);
//!     hits.with_lock(|value| *value *= 2)?;
//!     assert_eq!(hits.get()?, 4 * ROUNDS);
//!     Ok(())
//! }
//! ```
//!
//! Only plain-old-data may live in shared memory: numbers, arrays of them, and `#[repr(C)]` structs
//! of them without padding for which you implement [`Pod`]. No pointers or references (so no
//! `String`), no `bool` or `char`: every bit pattern must be a valid value, because a process
//! killed in the middle of a write leaves a half-written value behind. If the holder of a Value's
//! or an Array's lock dies, the next locker gets the lock at once and
//! [`ValueGuard::previous_owner_died`](shared::ValueGuard::previous_owner_died) (or
//! [`ArrayGuard::previous_owner_died`](shared::ArrayGuard::previous_owner_died)) tells it so.
//!
//! ## Lock, and a holder that dies
//!
//! A [`Lock`] is a robust, process-shared mutex. When its holder dies while holding it, SIGKILL
//! included, the kernel marks the lock as orphaned and wakes a waiter, and the next acquirer gets
//! the guard at once, wrapped in [`OwnerDied`](sync::OwnerDied) (modelled on std's poisoning): the
//! protected data may be half-updated, so check or repair it, then call
//! [`mark_consistent`](sync::LockGuard::mark_consistent). (If the guard is dropped without that call, the
//! lock becomes [`LockError::Unrecoverable`] for every process, as POSIX robust mutexes do.)
//! Python's `multiprocessing.Lock` deadlocks here.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::sync::{LockTimeoutError, TryLockError};
//! use herd_ipc::{Event, JoinTimeoutError, Lock, Process};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let lock = Lock::new()?;
//!     let holding = Event::new()?;
//!     let holder = Process::new().fork(|| {
//!         let _guard = lock.lock().expect("lock");
//!         holding.set();
//!         std::thread::sleep(Duration::from_secs(60)); // killed long before
//!     })?;
//!     holding.wait_timeout(PATIENCE)?;
//!     assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
//!
//!     holder.kill()?; // SIGKILL, with the lock held
//!     match holder.join_timeout(PATIENCE) {
//!         Err(JoinTimeoutError::Killed { status, .. }) => assert_eq!(status.signal(), Some(9)),
//!         other => panic!("expected a SIGKILLed child, got {other:?}"),
//!     }
//!
//!     match lock.lock_timeout(Duration::from_secs(1)) {
//!         Err(LockTimeoutError::OwnerDied(died)) => {
//!             let mut guard = died.into_inner(); // this process holds the lock now
//!             assert!(guard.is_inconsistent());
//!             // ... check or repair what the lock protects, then:
//!             guard.mark_consistent();
//!         }
//!         other => panic!("expected OwnerDied, got {other:?}"),
//!     }
//!     assert!(lock.try_lock().is_ok(), "the lock is clean again");
//!     Ok(())
//! }
//! ```
//!
//! Ownership is per thread, as with a std `Mutex`: the guard is not `Send`, and locking again from
//! the holding thread is [`LockError::AlreadyHeld`] rather than a silent deadlock. [`RLock`] is the
//! reentrant variant; [`Condition`] and [`Barrier`] complete the set.
//! [`Condition::with_lock`] builds a condition over an existing `Lock` or `RLock` (Python's
//! `Condition(lock)`), so several conditions can share one lock; [`Barrier::with_action`] runs an
//! action in one of the parties each time the barrier trips, before the others are released (an
//! [`entry!`] function, found by name in whichever process trips it, forked or spawned).
//!
//! When the previous holder died, `lock()`'s error holds the guard, so it borrows the lock. `?`
//! works on it all the same in a function returning `Box<dyn Error>`: the error becomes a
//! [`LockFailure`](sync::LockFailure) without the guard (dropped on the way, which leaves an
//! owner-died lock unrecoverable, so match `OwnerDied` first where the data can be repaired).
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{Lock, Process, Value};
//!
//! fn add_one(lock: &Lock, total: &Value<u64>) -> Result<u64, Box<dyn std::error::Error>> {
//!     let _guard = lock.lock()?;
//!     let n = total.load() + 1;
//!     total.store(n);
//!     Ok(n)
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let lock = Lock::new()?;
//!     let total = Value::<u64>::new(0)?;
//!     let child = Process::new().fork(|| add_one(&lock, &total).map_err(|err| err.to_string()))?;
//!     add_one(&lock, &total)?;
//!     child.join_timeout(Duration::from_secs(10))??;
//!     assert_eq!(total.load(), 2);
//!     Ok(())
//! }
//! ```
//!
//! ## Event and Semaphore
//!
//! An [`Event`] is a flag that processes sleep on until it is set; a [`Semaphore`] a counter of
//! units ([`BoundedSemaphore`] refuses to be released above its initial value). Both are atomic
//! words in shared memory with no lock inside, so a process killed while using them cannot wedge
//! them (units it acquired and never released are lost, as in Python).
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{Event, Process, Semaphore, Value};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let start = Event::new()?;
//!     let permits = Semaphore::new(2)?; // at most two processes inside at a time
//!     let inside = Value::<u32>::new(0)?;
//!     let children = (0..4)
//!         .map(|_| {
//!             Process::new().fork(|| {
//!                 start.wait_timeout(PATIENCE).expect("the start signal");
//!                 permits.acquire_timeout(PATIENCE).expect("a permit");
//!                 let seen = inside.fetch_add(1) + 1;
//!                 std::thread::sleep(Duration::from_millis(20));
//!                 inside.fetch_sub(1);
//!                 permits.release();
//!                 seen
//!             })
//!         })
//!         .collect::<Result<Vec<_>, _>>()?;
//!     start.set(); // wakes every waiter
//!     for child in children {
//!         let seen = child.join_timeout(PATIENCE)?;
//!         assert!((1..=2).contains(&seen), "{seen} processes inside at once");
//!     }
//!     assert_eq!(permits.value(), 2);
//!     Ok(())
//! }
//! ```
//!
//! ## Manager
//!
//! [`Manager::start`] runs a server process (this program, re-executed) that owns shared dicts,
//! lists, namespaces, locks and queues; proxies work on them from any process, as with
//! `multiprocessing.Manager`. Server-side atomic operations (`increment`, `append`, set-if-absent,
//! compare-and-swap, take) need no lock. Connections are authenticated both ways with an HMAC
//! authkey before any request is read; a client that dies holding a manager lock has it released;
//! the server never outlives its owner.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::manager::DictProxy;
//! use herd_ipc::{Manager, Process};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! herd_ipc::entry! {
//!     /// A spawned child: proxies travel as arguments and reconnect there.
//!     fn tally(counts: DictProxy<String, i64>) -> i64 {
//!         counts.increment("spawned", 1).expect("increment")
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     herd_ipc::init(); // the manager's server is this program, re-executed
//!
//!     let manager = Manager::start()?; // a private Unix socket, a random authkey
//!     let counts = manager.dict::<String, i64>()?;
//!     let lock = manager.lock()?;
//!     let seen = manager.list::<u32>()?;
//!
//!     let children = (0..4u32)
//!         .map(|id| {
//!             Process::new().fork(|| {
//!                 for _ in 0..100 {
//!                     // Server-side atomic increment: one round trip, no lock needed.
//!                     counts.increment("atomic", 1).expect("increment");
//!                     // A plain read-modify-write, made safe by the manager lock.
//!                     let _guard = lock.lock().expect("lock");
//!                     let n = counts.get("locked").expect("get").unwrap_or(0);
//!                     counts.insert("locked", &(n + 1)).expect("insert");
//!                 }
//!                 seen.push(&id).expect("push");
//!             })
//!         })
//!         .collect::<Result<Vec<_>, _>>()?;
//!     for child in children {
//!         child.join_timeout(PATIENCE)?;
//!     }
//!     assert_eq!(counts.get("atomic")?, Some(400)); // a String key, looked up by &str
//!     assert_eq!(counts.get("locked")?, Some(400));
//!     let mut ids = seen.snapshot()?;
//!     ids.sort_unstable();
//!     assert_eq!(ids, [0, 1, 2, 3]);
//!
//!     let child = Process::new().spawn(tally, &counts)?;
//!     assert_eq!(child.join_timeout(PATIENCE)?, 1);
//!
//!     // An unrelated process needs only the address and the key (and a name for the object).
//!     let shared = manager.named("jobs").queue::<String>()?;
//!     shared.put(&"first job".to_owned())?;
//!     let other = Manager::connect(manager.address().clone(), manager.authkey().clone())?;
//!     assert_eq!(other.named("jobs").queue::<String>()?.get_timeout(PATIENCE)?, "first job");
//!
//!     manager.shutdown()?; // also on drop; the server never outlives this process
//!     Ok(())
//! }
//! ```
//!
//! ## Listener and Client
//!
//! [`Listener::bind`] and [`Client::connect`] are `multiprocessing.connection`: unrelated
//! processes that share only an address (a Unix socket path, an abstract name, or TCP) and an
//! authkey get a duplex [`Pipe`] end each, after the Manager's handshake in both directions. A
//! wrong key is [`AcceptError::Authentication`] on one side and
//! [`ConnectError::Authentication`] on the other. The [`connection`] module has an example.
//!
//! ## Named shared memory
//!
//! [`SharedMemory`] is `multiprocessing.shared_memory.SharedMemory`: a segment in `/dev/shm`
//! that other programs, Python included, open by name. It is owner-only, unlinked when its
//! creator's handle drops (never by attachers), and [`SharedMemory::sweep_orphans`] removes the
//! segments of creators that were killed first. The type's documentation has an example.
//!
//! ## Handles travel to spawned children
//!
//! Every herd-ipc object that processes share (a [`Pipe`] end, a [`Value`], an [`Array`], a
//! [`Lock`], an [`Event`], ...) is a handle backed by a file descriptor, and its `Serialize` passes
//! that descriptor along, so a handle can be a spawn argument (or travel inside a Pipe message, or
//! come back as a return value). The spawned child gets only what it is given: unlike a fork child,
//! it holds no copies of the parent's other herd descriptors (they are all close-on-exec), so here
//! the child sees `Disconnected` as soon as the parent drops its sender. Serialising a handle
//! anywhere else (to JSON, say) is an error, not a useless number.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::{Pipe, PipeReceiver, Process, Value};
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! herd_ipc::entry! {
//!     /// Adds up the lengths of the lines it receives until the sender hangs up.
//!     fn measure(args: (PipeReceiver<String>, Value<u64>)) -> u32 {
//!         let (lines, total_len) = args;
//!         let mut count = 0;
//!         loop {
//!             match lines.recv_timeout(PATIENCE) {
//!                 Ok(line) => {
//!                     total_len.fetch_add(line.len() as u64);
//!                     count += 1;
//!                 }
//!                 Err(err) if err.is_disconnected() => return count,
//!                 Err(err) => panic!("receive failed: {err}"),
//!             }
//!         }
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     herd_ipc::init();
//!
//!     let (sender, receiver) = Pipe::<String>::simplex()?;
//!     let total_len = Value::<u64>::new(0)?;
//!     let child = Process::new().spawn(measure, &(receiver, total_len.clone()))?;
//!     for line in ["GET /", "GET /favicon.ico", "POST /login"] {
//!         sender.send(line.to_owned())?;
//!     }
//!     drop(sender); // the child's receive now ends with Disconnected
//!     assert_eq!(child.join_timeout(PATIENCE)?, 3);
//!     assert_eq!(total_len.load(), 5 + 16 + 11);
//!     Ok(())
//! }
//! ```
//!
//! # What is safe after fork
//!
//! `fork` copies the whole address space but only the calling thread. A lock that another thread
//! held at that moment (std's stdout lock, the environment lock, a logger's lock, the locks of an
//! allocator other than glibc's `malloc`, your own mutexes) stays locked for ever in the child.
//! That is why [`Process::fork`] counts the threads of the process and refuses with
//! [`StartError::MultiThreaded`] when there is more than one;
//! [`Process::allow_multi_threaded_fork`] is the `unsafe` way round, whose contract lists what the
//! child must then avoid. In a single-threaded parent, the child may run any code: borrow from the
//! caller, allocate, print, use every herd handle it inherited. It ends with `_exit` after the
//! closure returns, so destructors of the parent's objects and `atexit` handlers do not run twice.
//! The child inherits copies of all the parent's descriptors, including the parent's own end of
//! every Pipe that existed at fork time: that copy keeps the parent's end open, so the child cannot
//! see the parent hang up. Tell it to stop with a message (as in the Pipe example), or use spawn.
//! Lock ownership is per thread, so a child does not own the locks its parent held. In a
//! multi-threaded program, use [`Process::spawn`]: between its fork and `exec` the child makes only
//! async-signal-safe calls.
//!
//! # Robustness guarantees
//!
//! Each is checked across real processes by the integration tests named here (in the repository's
//! `tests/`, run by `cargo test`):
//!
//! - **No zombies.** Every child is reaped by `join`, by `is_alive`/`exit_status`/
//!   [`active_children`], or by the handle's Drop, which kills it first: `process.rs`
//!   `drop_kills_and_reaps`, `active_children_lists_and_reaps`; after every trial of `process.rs`,
//!   `pipe.rs`, `sync.rs`, `shm.rs` and `manager.rs` the harness (`tests/support`) checks `/proc`
//!   for zombie children.
//! - **Signals never hit a recycled pid**: they go through the child's pidfd, and only until it is
//!   reaped: `process.rs` `signal_after_reap_is_a_no_op`.
//! - **Daemon children die with their parent**, even a SIGKILLed one, and so do children started
//!   with `die_with_parent`, by fork or spawn: `process.rs` `daemon_dies_when_parent_is_sigkilled`
//!   (and `non_daemon_survives_parent_sigkill`),
//!   `die_with_parent_kills_a_forked_child_of_a_killed_parent`,
//!   `die_with_parent_kills_a_spawned_child_of_a_killed_parent`.
//! - **Why a child gave no value is reported, never hung on**: `process.rs` `exit_code_vs_signal`,
//!   `panic_message_is_carried_back`, `spawn_killed_child_reports_signal`,
//!   `spawn_unregistered_entry_is_refused`, `spawn_undecodable_args_fail_clearly`,
//!   `spawn_wrong_return_type_fails_clearly`.
//! - **fork is refused where it is unsafe, spawn works there**: `process.rs`
//!   `fork_refused_in_multi_threaded_parent`, `spawn_from_multi_threaded_parent`.
//! - **A Pipe peer that exits or is SIGKILLed is `Disconnected`**, after its last messages:
//!   `pipe.rs` `disconnected_when_peer_exits`, `disconnected_when_peer_is_sigkilled`.
//! - **Bad input on a Pipe is an error, not a panic or a huge allocation**: `pipe.rs`
//!   `oversize_message_refused_on_send`, `oversize_frame_refused_on_recv`,
//!   `garbage_frame_is_an_error`, `truncated_frame_is_an_error`, `type_mismatch_is_a_decode_error`.
//! - **A SIGKILLed lock holder hands the lock on within a second, with `OwnerDied`**: `sync.rs`
//!   `killed_lock_holder_gives_owner_died_within_1s`,
//!   `blocked_waiter_gets_owner_died_when_holder_is_killed`,
//!   `spawned_lock_holder_killed_gives_owner_died`, `value_lock_recovers_from_a_killed_holder`,
//!   `owner_died_not_marked_consistent_makes_lock_unrecoverable`.
//! - **No lost updates**: `sync.rs` `value_atomic_increments_from_two_processes_sum_exactly`,
//!   `value_locked_increments_from_two_processes_sum_exactly`.
//! - **No shared memory left behind, none readable by others**: `shm.rs`
//!   `segments_never_appear_in_dev_shm`, `segments_are_owner_only_and_cloexec`,
//!   `killed_creator_leaves_no_segment_once_survivors_exit`.
//! - **A barrier action runs once per trip, before anyone is released, in forked and spawned
//!   parties alike; one that panics or is killed breaks the barrier instead of hanging it**:
//!   `sync.rs` `barrier_action_runs_once_per_trip_before_release`,
//!   `barrier_action_panic_breaks_the_barrier`,
//!   `barrier_action_killed_wakes_untimed_waiters_broken`.
//! - **`wait` never reports half a Pipe message ready**: `pipe.rs` `wait_ignores_half_a_message`.
//! - **`Duration::MAX` is no deadline, never an overflow**: `sync.rs`, `queue.rs`
//!   `endless_timeouts_wait_without_overflow`, `process.rs`
//!   `an_endless_join_timeout_waits_without_overflow`.
//! - **A handle received as the wrong type is refused**: `sync.rs`
//!   `spawned_child_rejects_a_segment_of_the_wrong_type`.
//! - **A Queue loses and duplicates nothing, keeps each producer's order**, whatever the numbers of
//!   producer and consumer processes: `queue.rs` `many_producers_many_consumers_no_loss_no_dup_fifo`
//!   (property test), `spawned_and_forked_processes_share_one_queue`.
//! - **SIGKILLed Queue producers and consumers lose at most their in-flight message and stop
//!   nobody**: `queue.rs` `killed_consumers_lose_at_most_their_in_flight_message`,
//!   `killed_producers_do_not_stop_the_others`.
//! - **A connection with the wrong authkey is refused on both sides**, between unrelated
//!   (spawned) processes: `connection.rs` `wrong_key_refused_on_both_sides`.
//! - **A named segment is unlinked by its creator alone, and a killed creator's segment is
//!   swept**; Python attaches to herd's segments and herd to Python's: `named_shm.rs`
//!   `forked_and_spawned_children_attach_by_name`, `killed_creators_segment_is_swept`,
//!   `python_attaches_to_a_segment_rust_created`, `rust_attaches_to_a_segment_python_created`.
//! - **A blocked Queue operation sleeps, it does not poll**: `queue.rs`
//!   `blocked_get_sleeps_instead_of_spinning`; oversized messages are refused whole:
//!   `oversized_messages_are_refused_whole`.
#![deny(unsafe_op_in_unsafe_fn)]

mod array;
mod codec;
pub mod connection;
pub mod manager;
mod named_shm;
pub mod pipe;
mod platform;
pub mod process;
pub mod queue;
pub mod sync;
mod value;
mod wait;

/// Shared memory: [`Value`] and [`Array`] of plain-old-data
/// ([`Pod`]) types, their lock guards and errors, and [`SharedMemory`]: named
/// segments in `/dev/shm` that other programs (Python's
/// `multiprocessing.shared_memory`) open by name.
pub mod shared {
    pub use crate::array::{AccessError, Array, ArrayGuard};
    pub use crate::named_shm::{SharedMemory, SharedMemoryError};
    pub use crate::platform::{AtomicInteger, Pod};
    pub use crate::value::{Value, ValueGuard};
}

// What most programs name; everything else is in its module (`pipe`, `queue`, `sync`, `shared`,
// `manager`, `process`).
pub use codec::CodecError;
pub use connection::{AcceptError, Client, ConnectError, Listener};
pub use manager::{Manager, ManagerError};
pub use pipe::{Pipe, PipeReceiver, PipeSender, RecvError, SendError};
#[doc(hidden)]
pub use process::__private;
pub use process::{
    active_children, current_process, forkserver_pid, init, parent_process, Child, Entry,
    ExitStatus, JoinError, JoinTimeoutError, Pid, Process, StartError, StartMethod,
    UnknownStartMethod,
};
pub use queue::{GetError, JoinableQueue, PutError, Queue};
pub use shared::{Array, Pod, SharedMemory, Value};
pub use sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore};
pub use wait::{wait, Waitable};
