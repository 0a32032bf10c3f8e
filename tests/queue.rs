//! Queue and JoinableQueue across real processes (Process API: fork and spawn): ordering, no loss and no duplicates
//! under N producers x M consumers (property-tested), close, timeouts, size refusal, join, and
//! survival of SIGKILLed producers and consumers.
//!
//! harness = false: trials run on the main thread so the process stays single-threaded for fork.

use herd_testkit as support;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::ipc::queue::{GetTimeoutError, MessageError, PutTimeoutError, TryGetError, TryPutError};
use herd::ipc::{Entry, Pid, Pipe};
use herd::ipc::{GetError, JoinableQueue, PutError, Queue};
use libtest_mimic::{Arguments, Failed, Trial};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};
use support::{ensure, fork_child, spawn_child, TestChild};

type TestResult = Result<(), Failed>;

/// Bound on every wait for a child, so a bug fails the test instead of hanging it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Children started by a test, by pid; dropping a [`TestChild`] kills and reaps it, so a failed
/// test leaves no process behind.
struct Children(HashMap<Pid, TestChild>);

impl Children {
    fn new() -> Self {
        Children(HashMap::new())
    }

    /// Forks a child running `body`.
    fn fork(&mut self, body: impl FnOnce() -> Result<(), String>) -> Pid {
        self.adopt(fork_child(body))
    }

    /// Spawns (re-executes this binary) a child running `entry` on `args`.
    fn spawn<E: Entry<Output = Result<(), String>>>(&mut self, entry: E, args: &E::Args) -> Pid {
        self.adopt(spawn_child(entry, args))
    }

    fn adopt(&mut self, child: TestChild) -> Pid {
        let pid = child.pid();
        self.0.insert(pid, child);
        pid
    }

    fn take(&mut self, pid: Pid) -> Result<TestChild, String> {
        self.0
            .remove(&pid)
            .ok_or_else(|| format!("unknown child {pid}"))
    }

    /// Waits (at most [`CHILD_TIMEOUT`]) for `pid` and requires its body to have returned Ok.
    fn expect_success(&mut self, pid: Pid) -> Result<(), String> {
        self.take(pid)?.join(CHILD_TIMEOUT)
    }

    /// SIGKILLs `pid`, reaps it and checks that SIGKILL is what ended it.
    fn kill(&mut self, pid: Pid) -> Result<(), String> {
        self.take(pid)?.kill()
    }
}

/// What consumers send back to the test process.
#[derive(Debug, Serialize, Deserialize)]
enum Report {
    /// `(producer, sequence)` pairs in the order this consumer got them.
    Got(Vec<(u32, u32)>),
    /// This consumer saw `Closed` and stops.
    Finished,
}

/// Gets `(producer, sequence)` messages until `Closed`, checking per-producer FIFO as seen by
/// this consumer, and reports them in batches.
fn consume_and_report(work: &Queue<(u32, u32)>, reports: &Queue<Report>) -> Result<(), String> {
    let mut last_seen: HashMap<u32, u32> = HashMap::new();
    let mut batch = Vec::new();
    loop {
        match work.get() {
            Ok((producer, sequence)) => {
                if let Some(&previous) = last_seen.get(&producer) {
                    ensure(sequence > previous, || {
                        format!("producer {producer}: got {sequence} after {previous}")
                    })?;
                }
                last_seen.insert(producer, sequence);
                batch.push((producer, sequence));
                if batch.len() == 1000 {
                    reports
                        .put(Report::Got(std::mem::take(&mut batch)))
                        .map_err(|e| e.to_string())?;
                }
            }
            Err(GetError::Closed) => break,
            Err(error) => return Err(error.to_string()),
        }
    }
    reports.put(Report::Got(batch)).map_err(|e| e.to_string())?;
    reports.put(Report::Finished).map_err(|e| e.to_string())
}

/// Collects reports until `consumers` have finished; returns every pair got.
fn collect_reports(reports: &Queue<Report>, consumers: usize) -> Result<Vec<(u32, u32)>, String> {
    let mut got = Vec::new();
    let mut finished = 0;
    while finished < consumers {
        match reports.get_timeout(CHILD_TIMEOUT) {
            Ok(Report::Got(batch)) => got.extend(batch),
            Ok(Report::Finished) => finished += 1,
            Err(error) => return Err(format!("collecting reports: {error}")),
        }
    }
    Ok(got)
}

fn report_queue() -> Queue<Report> {
    Queue::builder()
        .capacity_bytes(8 << 20)
        .label("test-reports")
        .build()
        .expect("report queue")
}

fn one_producer_one_consumer_in_order() -> TestResult {
    const COUNT: u32 = 20_000;
    let queue: Queue<(u32, String)> = Queue::builder().capacity_bytes(4096).build()?;
    let mut children = Children::new();
    let producer = children.fork(|| {
        for i in 0..COUNT {
            queue
                .put((i, format!("message {i}")))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    for expected in 0..COUNT {
        let (number, text) = queue.get_timeout(CHILD_TIMEOUT)?;
        ensure(
            number == expected && text == format!("message {expected}"),
            || format!("expected {expected}, got ({number}, {text:?})"),
        )?;
    }
    children.expect_success(producer)?;
    ensure(queue.is_empty() && queue.try_get().is_err(), || {
        "queue not empty".into()
    })?;
    Ok(())
}

/// One run of the N x M property: every message got exactly once, per-producer FIFO.
fn run_many_to_many(
    producers: u32,
    consumers: u32,
    per_producer: &[u32],
    capacity: usize,
) -> Result<(), String> {
    let work: Queue<(u32, u32)> = Queue::builder()
        .capacity_bytes(capacity)
        .max_message_bytes(32)
        .build()
        .map_err(|e| e.to_string())?;
    let reports = report_queue();
    let mut children = Children::new();
    let consumer_pids: Vec<Pid> = (0..consumers)
        .map(|_| children.fork(|| consume_and_report(&work, &reports)))
        .collect();
    let producer_pids: Vec<Pid> = (0..producers)
        .map(|producer| {
            let count = per_producer[producer as usize];
            let work = work.clone();
            children.fork(move || {
                for sequence in 0..count {
                    work.put((producer, sequence)).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for pid in producer_pids {
        children.expect_success(pid)?;
    }
    work.close().map_err(|e| e.to_string())?;
    let mut got = collect_reports(&reports, consumers as usize)?;
    for pid in consumer_pids {
        children.expect_success(pid)?;
    }
    got.sort_unstable();
    let mut expected: Vec<(u32, u32)> = (0..producers)
        .flat_map(|p| (0..per_producer[p as usize]).map(move |s| (p, s)))
        .collect();
    expected.sort_unstable();
    ensure(got == expected, || {
        format!(
            "got {} messages, expected {} (lost or duplicated)",
            got.len(),
            expected.len()
        )
    })
}

fn many_producers_many_consumers_no_loss_no_dup_fifo() -> TestResult {
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        1u32..=4,
        1u32..=4,
        proptest::collection::vec(0u32..600, 4),
        proptest::sample::select(vec![64usize, 256, 4096, 1 << 20]),
    );
    runner
        .run(
            &strategy,
            |(producers, consumers, per_producer, capacity)| {
                run_many_to_many(producers, consumers, &per_producer, capacity)
                    .map_err(TestCaseError::fail)
            },
        )
        .map_err(|error| Failed::from(error.to_string()))
}

fn close_lets_consumers_drain_then_reports_closed() -> TestResult {
    let queue: Queue<u32> = Queue::new()?;
    let mut children = Children::new();
    // A consumer already blocked on the empty queue is woken by close and drains first.
    let blocked = children.fork(|| {
        let mut got = Vec::new();
        loop {
            match queue.get() {
                Ok(value) => got.push(value),
                Err(GetError::Closed) => break,
                Err(error) => return Err(error.to_string()),
            }
        }
        ensure(got == [1, 2, 3], || format!("drained {got:?}"))
    });
    std::thread::sleep(Duration::from_millis(50));
    for value in 1..=3 {
        queue.put(value)?;
    }
    queue.close()?;
    ensure(queue.is_closed(), || "not closed".into())?;
    match queue.put(4) {
        Err(PutError::Closed(value)) => ensure(value == 4, || "value not returned".into())?,
        other => return Err(format!("put after close: {other:?}").into()),
    }
    match queue.try_put(5) {
        Err(TryPutError::Closed(5)) => {}
        other => return Err(format!("try_put after close: {other:?}").into()),
    }
    children.expect_success(blocked)?;
    match queue.try_get() {
        Err(TryGetError::Closed) => {}
        other => return Err(format!("try_get on closed drained queue: {other:?}").into()),
    }
    match queue.get_timeout(Duration::from_secs(5)) {
        Err(GetTimeoutError::Closed) => {}
        other => return Err(format!("get_timeout on closed drained queue: {other:?}").into()),
    }
    // A producer blocked on a full queue is woken by close and gets its value back.
    let full: Queue<u32> = Queue::bounded(1)?;
    full.put(1)?;
    let producer = children.fork(|| match full.put(2) {
        Err(PutError::Closed(2)) => Ok(()),
        other => Err(format!("blocked put after close: {other:?}")),
    });
    std::thread::sleep(Duration::from_millis(50));
    full.close()?;
    children.expect_success(producer)?;
    ensure(full.get_timeout(CHILD_TIMEOUT)? == 1, || {
        "message put before close lost".into()
    })?;
    Ok(())
}

/// `Duration::MAX` is "no deadline" for `get_timeout`, `put_timeout` and `join_timeout`: each
/// waits for another process instead of panicking on the deadline arithmetic.
fn endless_timeouts_wait_without_overflow() -> TestResult {
    let queue: Queue<u64> = Queue::bounded(1)?;
    let tasks: JoinableQueue<u64> = Queue::builder().build_joinable()?;
    let child = fork_child(|| {
        std::thread::sleep(Duration::from_millis(50));
        queue.put(1).map_err(|e| e.to_string())?;
        // Frees the one slot for the parent's second put, which waits on the full queue.
        std::thread::sleep(Duration::from_millis(50));
        let first = queue
            .get_timeout(Duration::MAX)
            .map_err(|e| e.to_string())?;
        ensure(first == 2, || format!("got {first}"))?;
        let task = tasks
            .get_timeout(Duration::MAX)
            .map_err(|e| e.to_string())?;
        ensure(task == 7, || format!("task {task}"))?;
        std::thread::sleep(Duration::from_millis(50));
        tasks.task_done().map_err(|e| e.to_string())
    });
    ensure(queue.get_timeout(Duration::MAX)? == 1, || {
        "first value".into()
    })?;
    queue.put(2)?;
    queue.put_timeout(3, Duration::MAX)?;
    tasks.put(7)?;
    tasks.join_timeout(Duration::MAX)?;
    child.join(CHILD_TIMEOUT)?;
    ensure(queue.try_get()? == 3, || "last value".into())?;
    Ok(())
}

fn timeouts_and_non_blocking_calls() -> TestResult {
    let queue: Queue<u64> = Queue::bounded(2)?;
    match queue.try_get() {
        Err(TryGetError::Empty) => {}
        other => return Err(format!("try_get on empty queue: {other:?}").into()),
    }
    let start = Instant::now();
    match queue.get_timeout(Duration::from_millis(100)) {
        Err(GetTimeoutError::Timeout) => {}
        other => return Err(format!("get_timeout on empty queue: {other:?}").into()),
    }
    ensure(start.elapsed() >= Duration::from_millis(100), || {
        format!("get_timeout returned after {:?}", start.elapsed())
    })?;
    queue.try_put(1)?;
    queue.put_timeout(2, Duration::from_millis(10))?;
    ensure(queue.is_full() && queue.len() == 2, || {
        "bounded queue not full".into()
    })?;
    match queue.try_put(3) {
        Err(TryPutError::Full(value)) => ensure(value == 3, || "value not returned".into())?,
        other => return Err(format!("try_put on full queue: {other:?}").into()),
    }
    let start = Instant::now();
    match queue.put_timeout(4, Duration::from_millis(100)) {
        Err(PutTimeoutError::Timeout(value)) => ensure(value == 4, || "value lost".into())?,
        other => return Err(format!("put_timeout on full queue: {other:?}").into()),
    }
    ensure(start.elapsed() >= Duration::from_millis(100), || {
        format!("put_timeout returned after {:?}", start.elapsed())
    })?;
    // A blocked get_timeout is woken by a put from another process well before its deadline.
    let mut children = Children::new();
    let consumer = children.fork(|| {
        let drain = [
            queue.get().map_err(|e| e.to_string())?,
            queue.get().map_err(|e| e.to_string())?,
        ];
        ensure(drain == [1, 2], || format!("drained {drain:?}"))?;
        let start = Instant::now();
        let value = queue
            .get_timeout(Duration::from_secs(20))
            .map_err(|e| e.to_string())?;
        ensure(
            value == 42 && start.elapsed() < Duration::from_secs(10),
            || format!("got {value} after {:?}", start.elapsed()),
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    queue.put_timeout(42, CHILD_TIMEOUT)?;
    children.expect_success(consumer)?;
    Ok(())
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: Pid) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<u64, String> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| "bad /proc stat".into())
    };
    Ok(ticks(11)? + ticks(12)?)
}

/// A consumer blocked on an empty queue sleeps in the kernel (futex) rather than polling: over
/// 1.5 s of waiting it uses almost no CPU, and a put still wakes it at once.
fn blocked_get_sleeps_instead_of_spinning() -> TestResult {
    let queue: Queue<u32> = Queue::new()?;
    let mut children = Children::new();
    let consumer = children.fork(|| match queue.get() {
        Ok(9) => Ok(()),
        other => Err(format!("got {other:?}")),
    });
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_ticks(consumer)?;
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_ticks(consumer)? - before;
    // 150 ticks (at 100 Hz) would be a core busy the whole time; allow scheduling noise.
    ensure(used <= 5, || {
        format!("blocked consumer used {used} ticks of CPU in 1.5 s")
    })?;
    queue.put(9)?;
    children.expect_success(consumer)?;
    Ok(())
}

fn oversized_messages_are_refused_whole() -> TestResult {
    let queue: Queue<Vec<u8>> = Queue::builder().max_message_bytes(1000).build()?;
    ensure(queue.max_message_bytes() == 1000, || {
        "limit not kept".into()
    })?;
    queue.put(vec![7; 900])?;
    match queue.put(vec![1; 5000]) {
        Err(PutError::Refused(value, MessageError::TooLarge { size, limit })) => {
            ensure(value.len() == 5000 && size > 5000 && limit == 1000, || {
                format!("size {size}, limit {limit}")
            })?
        }
        other => return Err(format!("oversized put: {other:?}").into()),
    }
    match queue.try_put(vec![1; 1001]) {
        Err(TryPutError::Refused(_, MessageError::TooLarge { .. })) => {}
        other => return Err(format!("oversized try_put: {other:?}").into()),
    }
    match queue.put_timeout(vec![1; 1001], Duration::from_millis(10)) {
        Err(error @ PutTimeoutError::Refused(..)) => ensure(
            error
                .to_string()
                .contains("exceeds the queue's limit of 1000"),
            || error.to_string(),
        )?,
        other => return Err(format!("oversized put_timeout: {other:?}").into()),
    }
    ensure(queue.len() == 1, || {
        format!("len {} after refusals", queue.len())
    })?;
    ensure(queue.get_timeout(CHILD_TIMEOUT)? == vec![7; 900], || {
        "message damaged".into()
    })?;
    Ok(())
}

fn joinable_queue_join_waits_for_every_task_done() -> TestResult {
    const COUNT: u32 = 500;
    let queue: JoinableQueue<u32> = Queue::builder().build_joinable()?;
    queue.task_done().expect_err("task_done on an empty queue");
    for i in 0..COUNT {
        queue.put(i)?;
    }
    ensure(queue.unfinished_tasks() == COUNT as usize, || {
        "unfinished".into()
    })?;
    match queue.join_timeout(Duration::from_millis(50)) {
        Err(error) => ensure(error.unfinished == COUNT, || error.to_string())?,
        Ok(()) => return Err("join returned with tasks unfinished".into()),
    }
    let mut children = Children::new();
    let workers: Vec<Pid> = (0..2)
        .map(|_| {
            children.fork(|| loop {
                match queue.get_timeout(Duration::from_millis(300)) {
                    Ok(_) => {
                        std::thread::sleep(Duration::from_micros(50));
                        queue.task_done().map_err(|e| e.to_string())?;
                    }
                    Err(GetTimeoutError::Timeout) => return Ok(()),
                    Err(error) => return Err(error.to_string()),
                }
            })
        })
        .collect();
    queue.join_timeout(CHILD_TIMEOUT)?;
    ensure(queue.unfinished_tasks() == 0 && queue.is_empty(), || {
        "join returned early".into()
    })?;
    for pid in workers {
        children.expect_success(pid)?;
    }
    ensure(queue.task_done().is_err(), || {
        "extra task_done accepted".into()
    })?;
    queue.join();
    Ok(())
}

/// Consumers SIGKILLed at random instants (inside get, inside the put of their report, or
/// asleep in a wait) lose at most their one in-flight message each; a survivor drains the rest.
fn killed_consumers_lose_at_most_their_in_flight_message() -> TestResult {
    const COUNT: u32 = 30_000;
    const KILLS: u32 = 25;
    let work: Queue<(u32, u32)> = Queue::builder().capacity_bytes(2048).build()?;
    let reports = report_queue();
    let mut children = Children::new();
    let producer = children.fork(|| {
        for sequence in 0..COUNT {
            work.put((0, sequence)).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..KILLS {
        let victim = children.fork(|| loop {
            let message = work.get().map_err(|e| e.to_string())?;
            reports
                .put(Report::Got(vec![message]))
                .map_err(|e| e.to_string())?;
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(200 + rng % 3000));
        children.kill(victim)?;
    }
    let survivor = children.fork(|| consume_and_report(&work, &reports));
    children.expect_success(producer)?;
    work.close()?;
    let got = collect_reports(&reports, 1)?;
    children.expect_success(survivor)?;
    let mut seen = vec![false; COUNT as usize];
    for (_, sequence) in &got {
        let slot = &mut seen[*sequence as usize];
        ensure(!*slot, || format!("message {sequence} got twice"))?;
        *slot = true;
    }
    let lost = seen.iter().filter(|seen| !**seen).count();
    ensure(lost as u32 <= KILLS, || {
        format!("{lost} messages lost for {KILLS} killed consumers")
    })?;
    Ok(())
}

/// Producers SIGKILLed at random instants lose at most their last message; what they put before
/// arrives in order, and a surviving producer and consumer carry on.
fn killed_producers_do_not_stop_the_others() -> TestResult {
    const VICTIMS: u32 = 20;
    const SURVIVOR: u32 = 1000;
    const SURVIVOR_COUNT: u32 = 2000;
    let work: Queue<(u32, u32)> = Queue::builder().capacity_bytes(1024).build()?;
    let reports = report_queue();
    let mut children = Children::new();
    let consumer = children.fork(|| consume_and_report(&work, &reports));
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for victim_id in 0..VICTIMS {
        let victim = children.fork(|| {
            let mut sequence = 0;
            loop {
                work.put((victim_id, sequence)).map_err(|e| e.to_string())?;
                sequence += 1;
            }
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(200 + rng % 3000));
        children.kill(victim)?;
    }
    let survivor = children.fork(|| {
        for sequence in 0..SURVIVOR_COUNT {
            work.put((SURVIVOR, sequence)).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    children.expect_success(survivor)?;
    work.close()?;
    let got = collect_reports(&reports, 1)?;
    children.expect_success(consumer)?;
    // The consumer checked per-producer FIFO; here: no gaps, no duplicates, survivor complete.
    let mut by_producer: HashMap<u32, Vec<u32>> = HashMap::new();
    for (producer, sequence) in got {
        by_producer.entry(producer).or_default().push(sequence);
    }
    for (producer, sequences) in &by_producer {
        let contiguous = sequences.iter().enumerate().all(|(i, s)| *s == i as u32);
        ensure(contiguous, || {
            format!("producer {producer}: gap or duplicate")
        })?;
    }
    let survivor_got = by_producer.get(&SURVIVOR).map_or(0, Vec::len);
    ensure(survivor_got == SURVIVOR_COUNT as usize, || {
        format!("survivor delivered {survivor_got} of {SURVIVOR_COUNT}")
    })?;
    Ok(())
}

herd::ipc::entry! {
    /// A spawned consumer: the queues arrive as spawn arguments (their fds are inherited).
    fn spawned_consumer(queues: (Queue<(u32, u32)>, Queue<Report>)) -> Result<(), String> {
        consume_and_report(&queues.0, &queues.1)
    }
}

herd::ipc::entry! {
    /// A spawned producer of `(producer, 0..count)`.
    fn spawned_producer(args: (Queue<(u32, u32)>, u32, u32)) -> Result<(), String> {
        let (work, producer, count) = args;
        for sequence in 0..count {
            work.put((producer, sequence)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

herd::ipc::entry! {
    /// A spawned JoinableQueue worker: gets and marks done until the queue stays empty.
    fn spawned_worker(queue: JoinableQueue<u32>) -> Result<(), String> {
        loop {
            match queue.get_timeout(Duration::from_millis(300)) {
                Ok(_) => queue.task_done().map_err(|e| e.to_string())?,
                Err(GetTimeoutError::Timeout) => return Ok(()),
                Err(error) => return Err(error.to_string()),
            }
        }
    }
}

fn spawned_and_forked_processes_share_one_queue() -> TestResult {
    const COUNT: u32 = 3000;
    let work: Queue<(u32, u32)> = Queue::builder().capacity_bytes(4096).build()?;
    let reports = report_queue();
    let mut children = Children::new();
    let consumers = [
        children.spawn(spawned_consumer, &(work.clone(), reports.clone())),
        children.fork(|| consume_and_report(&work, &reports)),
    ];
    let producers = [
        children.spawn(spawned_producer, &(work.clone(), 0, COUNT)),
        children.fork(|| {
            for sequence in 0..COUNT {
                work.put((1, sequence)).map_err(|e| e.to_string())?;
            }
            Ok(())
        }),
    ];
    for pid in producers {
        children.expect_success(pid)?;
    }
    work.close()?;
    let mut got = collect_reports(&reports, consumers.len())?;
    for pid in consumers {
        children.expect_success(pid)?;
    }
    got.sort_unstable();
    let expected: Vec<(u32, u32)> = (0..2)
        .flat_map(|p| (0..COUNT).map(move |s| (p, s)))
        .collect();
    ensure(got == expected, || {
        format!("got {} of {} messages", got.len(), expected.len())
    })?;
    Ok(())
}

fn spawned_workers_complete_a_joinable_queue() -> TestResult {
    let queue: JoinableQueue<u32> = Queue::builder().build_joinable()?;
    for i in 0..300 {
        queue.put(i)?;
    }
    let mut children = Children::new();
    let workers = [
        children.spawn(spawned_worker, &queue),
        children.spawn(spawned_worker, &queue),
    ];
    queue.join_timeout(CHILD_TIMEOUT)?;
    for pid in workers {
        children.expect_success(pid)?;
    }
    ensure(queue.unfinished_tasks() == 0 && queue.is_empty(), || {
        "tasks left".into()
    })?;
    Ok(())
}

/// A queue created after the child started reaches it inside a Pipe message (its memfd travels
/// by SCM_RIGHTS) and works there.
fn a_queue_travels_over_a_pipe_to_a_running_child() -> TestResult {
    let (sender, receiver) = Pipe::<Queue<String>>::simplex()?;
    let mut children = Children::new();
    let child = children.fork(|| {
        let queue = receiver
            .recv_timeout(CHILD_TIMEOUT)
            .map_err(|e| e.to_string())?;
        queue
            .put(format!("hello from {}", std::process::id()))
            .map_err(|e| e.to_string())
    });
    let queue: Queue<String> = Queue::new()?;
    sender.send(queue.clone())?;
    let greeting = queue.get_timeout(CHILD_TIMEOUT)?;
    ensure(greeting == format!("hello from {child}"), || {
        greeting.clone()
    })?;
    children.expect_success(child)?;
    Ok(())
}

/// Names in /dev/shm, to show the queues never create any.
fn dev_shm_entries() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn queue_mappings_of_this_process() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("memfd:herd:queue") || line.contains("memfd:herd:test-"))
        .count()
}

fn queue_fds_of_this_process() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .filter_map(|entry| std::fs::read_link(entry.path()).ok())
                .filter(|target| {
                    let target = target.to_string_lossy();
                    target.contains("memfd:herd:queue") || target.contains("memfd:herd:test-")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A recognisable payload of `len` bytes (so a torn or mixed-up message shows).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn check_pattern(got: &[u8], len: usize, seed: u8) -> Result<(), String> {
    ensure(
        got.len() == len && got == pattern(len, seed).as_slice(),
        || {
            format!(
                "message of {} bytes, expected {len} with seed {seed}",
                got.len()
            )
        },
    )
}

/// The sizes the large-message trials send: 100 KB and 20 MB, both far above the 64 KiB that
/// once was the default limit.
const LARGE: [(usize, u8); 2] = [(100_000, 1), (20_000_000, 2)];

/// Gets the `LARGE` messages from `inbox`, checks them and puts them back on `outbox`.
fn echo_large(inbox: &Queue<Vec<u8>>, outbox: &Queue<Vec<u8>>) -> Result<(), String> {
    for (len, seed) in LARGE {
        let got = inbox
            .get_timeout(CHILD_TIMEOUT)
            .map_err(|e| e.to_string())?;
        check_pattern(&got, len, seed)?;
        outbox.put(got).map_err(|e| e.to_string())?;
    }
    Ok(())
}

herd::ipc::entry! {
    /// A spawned echo of the large messages.
    fn spawned_large_echo(queues: (Queue<Vec<u8>>, Queue<Vec<u8>>)) -> Result<(), String> {
        echo_large(&queues.0, &queues.1)
    }
}

fn large_messages_pass_through_an_unbounded_queue() -> TestResult {
    let mut children = Children::new();
    for spawned in [false, true] {
        let (inbox, outbox): (Queue<Vec<u8>>, Queue<Vec<u8>>) = (Queue::new()?, Queue::new()?);
        ensure(
            inbox.spills() && inbox.max_message_bytes() == 1 << 30,
            || "Queue::new() is not unbounded".into(),
        )?;
        let pid = match spawned {
            true => children.spawn(spawned_large_echo, &(inbox.clone(), outbox.clone())),
            false => children.fork(|| echo_large(&inbox, &outbox)),
        };
        for (len, seed) in LARGE {
            inbox.try_put(pattern(len, seed))?;
        }
        for (len, seed) in LARGE {
            check_pattern(&outbox.get_timeout(CHILD_TIMEOUT)?, len, seed)?;
        }
        children.expect_success(pid)?;
        // The overflow's last partial page may stay until a later spilled message passes it.
        let left = spill_bytes_of_this_process();
        ensure(left <= 4096, || {
            format!("{left} spilled bytes left after every message was got")
        })?;
    }
    Ok(())
}

/// 10,000 small messages, about 1.2 MB with their framing: more than the 1 MiB ring.
const SMALL_COUNT: u32 = 10_000;

fn put_small_without_waiting(queue: &Queue<(u32, String)>) -> Result<(), String> {
    for i in 0..SMALL_COUNT {
        queue
            .try_put((i, format!("{i:0>110}")))
            .map_err(|e| format!("put {i} of {SMALL_COUNT}: {e}"))?;
    }
    Ok(())
}

herd::ipc::entry! {
    /// A spawned producer of the small messages, with no consumer running.
    fn spawned_small_producer(queue: Queue<(u32, String)>) -> Result<(), String> {
        put_small_without_waiting(&queue)
    }
}

fn many_small_messages_without_a_consumer_do_not_block() -> TestResult {
    let mut children = Children::new();
    for spawned in [false, true] {
        let queue: Queue<(u32, String)> = Queue::new()?;
        let pid = match spawned {
            true => children.spawn(spawned_small_producer, &queue.clone()),
            false => children.fork(|| put_small_without_waiting(&queue)),
        };
        children.expect_success(pid)?;
        ensure(queue.len() == SMALL_COUNT as usize, || {
            format!("{} messages in the queue", queue.len())
        })?;
        for i in 0..SMALL_COUNT {
            let (got, text) = queue.try_get()?;
            ensure(got == i && text == format!("{i:0>110}"), || {
                format!("message {got} where {i} was due")
            })?;
        }
        // The overflow's last partial page may stay until a later spilled message passes it.
        let left = spill_bytes_of_this_process();
        ensure(left <= 4096, || {
            format!("{left} spilled bytes left after every message was got")
        })?;
    }
    Ok(())
}

fn a_producer_killed_mid_put_of_a_large_message_leaves_the_queue_usable() -> TestResult {
    const LEN: usize = 2_000_000;
    const MOST: u8 = 40;
    let queue: Queue<Vec<u8>> = Queue::new()?;
    let mut children = Children::new();
    let producer = children.fork(|| {
        for seed in 0..MOST {
            queue.put(pattern(LEN, seed)).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let mut next = 0u8;
    while next < 3 {
        check_pattern(&queue.get_timeout(CHILD_TIMEOUT)?, LEN, next)?;
        next += 1;
    }
    // The producer spends most of its time writing a message: the kill lands mid-put.
    children.kill(producer)?;
    loop {
        match queue.try_get() {
            Ok(got) => {
                check_pattern(&got, LEN, next)?;
                next += 1;
            }
            Err(TryGetError::Empty) => break,
            Err(error) => return Err(format!("after the kill: {error}").into()),
        }
    }
    ensure(next < MOST, || {
        "the producer finished before the kill".into()
    })?;
    // The next put recovers the dead producer's lock and releases what it half wrote.
    queue.try_put(pattern(LEN, 99))?;
    check_pattern(&queue.try_get()?, LEN, 99)?;
    ensure(queue.is_empty(), || "stray message".into())?;
    let left = spill_bytes_of_this_process();
    ensure(left <= 4096, || {
        format!("{left} spilled bytes left after the kill")
    })?;
    Ok(())
}

/// Allocated bytes of every queue spill file this process has open.
fn spill_bytes_of_this_process() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .filter(|entry| {
                    std::fs::read_link(entry.path())
                        .is_ok_and(|target| target.to_string_lossy().contains("-spill"))
                })
                .filter_map(|entry| std::fs::metadata(entry.path()).ok())
                .map(|metadata| metadata.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> ExitCode {
    herd::ipc::init();
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let shm_before = dev_shm_entries();
    let trials = vec![
        Trial::test(
            "one_producer_one_consumer_in_order",
            one_producer_one_consumer_in_order,
        ),
        Trial::test(
            "many_producers_many_consumers_no_loss_no_dup_fifo",
            many_producers_many_consumers_no_loss_no_dup_fifo,
        ),
        Trial::test(
            "close_lets_consumers_drain_then_reports_closed",
            close_lets_consumers_drain_then_reports_closed,
        ),
        Trial::test(
            "timeouts_and_non_blocking_calls",
            timeouts_and_non_blocking_calls,
        ),
        Trial::test(
            "endless_timeouts_wait_without_overflow",
            endless_timeouts_wait_without_overflow,
        ),
        Trial::test(
            "blocked_get_sleeps_instead_of_spinning",
            blocked_get_sleeps_instead_of_spinning,
        ),
        Trial::test(
            "oversized_messages_are_refused_whole",
            oversized_messages_are_refused_whole,
        ),
        Trial::test(
            "joinable_queue_join_waits_for_every_task_done",
            joinable_queue_join_waits_for_every_task_done,
        ),
        Trial::test(
            "killed_consumers_lose_at_most_their_in_flight_message",
            killed_consumers_lose_at_most_their_in_flight_message,
        ),
        Trial::test(
            "killed_producers_do_not_stop_the_others",
            killed_producers_do_not_stop_the_others,
        ),
        Trial::test(
            "spawned_and_forked_processes_share_one_queue",
            spawned_and_forked_processes_share_one_queue,
        ),
        Trial::test(
            "spawned_workers_complete_a_joinable_queue",
            spawned_workers_complete_a_joinable_queue,
        ),
        Trial::test(
            "a_queue_travels_over_a_pipe_to_a_running_child",
            a_queue_travels_over_a_pipe_to_a_running_child,
        ),
        Trial::test(
            "large_messages_pass_through_an_unbounded_queue",
            large_messages_pass_through_an_unbounded_queue,
        ),
        Trial::test(
            "many_small_messages_without_a_consumer_do_not_block",
            many_small_messages_without_a_consumer_do_not_block,
        ),
        Trial::test(
            "a_producer_killed_mid_put_of_a_large_message_leaves_the_queue_usable",
            a_producer_killed_mid_put_of_a_large_message_leaves_the_queue_usable,
        ),
        // Runs last: every queue of the trials above has been dropped by now.
        Trial::test("nothing_left_in_dev_shm_or_mapped", move || {
            // Other programs on the machine may add /dev/shm entries meanwhile (Python's
            // multiprocessing does): only new entries that could be ours count.
            let after = dev_shm_entries();
            let new_herd_entries: Vec<&String> = after
                .iter()
                .filter(|name| !shm_before.contains(name))
                .filter(|name| name.contains("herd") || name.contains("queue"))
                .collect();
            ensure(new_herd_entries.is_empty(), || {
                format!("/dev/shm gained {new_herd_entries:?}")
            })?;
            let mapped = queue_mappings_of_this_process();
            ensure(mapped == 0, || format!("{mapped} queue mappings left"))?;
            let open = queue_fds_of_this_process();
            ensure(open == 0, || format!("{open} queue memfds still open"))?;
            Ok(())
        }),
    ];
    libtest_mimic::run(&args, trials).exit_code()
}
