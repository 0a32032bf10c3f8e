//! Pipe round trip: a parent sends a `u64` to a forked echo child and waits
//! for it to come back, against the same ping-pong over a raw socketpair
//! (`write`/`read` of 8 bytes, no framing, no codec) in the same run.
//!
//! Each figure is the median of many short batches, in microseconds per round
//! trip. The batches of the two alternate, so both see the same load. Not the
//! minimum: a round trip is bimodal (both processes on one core, or a
//! cross-core wake-up from an idle core, about twice as slow), and the best
//! batch of each side would compare whichever side got lucky.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use anyhow::{bail, Context};
use herd::ipc::Process;
use herd::ipc::{Pipe, RecvError};

use crate::report;

const ROUND_TRIPS: u64 = 3_000;
const BATCHES: usize = 21;
/// Tells an echo child to stop. (A forked child inherits the parent's end
/// too, so it cannot wait for end-of-file.)
const STOP: u64 = u64::MAX;

pub fn run() -> anyhow::Result<()> {
    let mut raw = Vec::with_capacity(BATCHES);
    let mut pipe = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        raw.push(raw_socketpair_roundtrip_us().context("raw socketpair")?);
        pipe.push(pipe_roundtrip_us().context("pipe")?);
    }
    report("pipe_roundtrip_us", median(&mut pipe), "us");
    report("raw_socketpair_roundtrip_us", median(&mut raw), "us");
    Ok(())
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn pipe_roundtrip_us() -> anyhow::Result<f64> {
    let (parent, theirs) = Pipe::<u64>::new()?;
    let child = Process::new().fork(move || -> Result<(), String> {
        loop {
            match theirs.recv() {
                Ok(STOP) | Err(RecvError::Disconnected) => return Ok(()),
                Ok(value) => theirs.send(value).map_err(|e| e.to_string())?,
                Err(err) => return Err(err.to_string()),
            }
        }
    })?;
    let started = Instant::now();
    for i in 0..ROUND_TRIPS {
        parent.send(i)?;
        let back = parent.recv()?;
        if back != i {
            bail!("pipe echoed {back}, sent {i}");
        }
    }
    let elapsed = started.elapsed();
    parent.send(STOP)?;
    child.join()?.map_err(anyhow::Error::msg)?;
    Ok(elapsed.as_secs_f64() * 1e6 / ROUND_TRIPS as f64)
}

fn raw_socketpair_roundtrip_us() -> anyhow::Result<f64> {
    let (mut parent, mut theirs) = UnixStream::pair()?;
    let child = Process::new().fork(move || -> Result<(), String> {
        let mut buf = [0u8; 8];
        loop {
            theirs.read_exact(&mut buf).map_err(|e| e.to_string())?;
            if u64::from_le_bytes(buf) == STOP {
                return Ok(());
            }
            theirs.write_all(&buf).map_err(|e| e.to_string())?;
        }
    })?;
    let started = Instant::now();
    let mut buf = [0u8; 8];
    for i in 0..ROUND_TRIPS {
        parent.write_all(&i.to_le_bytes())?;
        parent.read_exact(&mut buf)?;
        if u64::from_le_bytes(buf) != i {
            bail!("socketpair echoed the wrong bytes");
        }
    }
    let elapsed = started.elapsed();
    parent.write_all(&STOP.to_le_bytes())?;
    child.join()?.map_err(anyhow::Error::msg)?;
    Ok(elapsed.as_secs_f64() * 1e6 / ROUND_TRIPS as f64)
}
