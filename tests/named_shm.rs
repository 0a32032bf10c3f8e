//! Named shared memory across real processes and across languages: Python's
//! `multiprocessing.shared_memory.SharedMemory` attaches to a segment herd created and the other
//! way round, forked and spawned children attach by name, the creator alone unlinks, and a
//! SIGKILLed creator's segment is swept.

use herd_testkit as support;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use herd::ipc::shared::{SharedMemory, SharedMemoryError};
use support::{ensure, fork_child, run, spawn_child, Verdict};

const PATIENCE: Duration = Duration::from_secs(20);

herd::ipc::entry! {
    /// A spawned child that knows only the name: checks the creator's bytes, answers in its own.
    fn spawned_attacher(name: String) -> Verdict {
        let mut segment = SharedMemory::open(&name).map_err(err)?;
        ensure(&segment.as_slice()[..6] == b"parent", || "wrong bytes".into())?;
        segment.as_mut_slice()[8..13].copy_from_slice(b"child");
        Ok(())
    }
}

fn main() -> ExitCode {
    run(vec![
        (
            "python_attaches_to_a_segment_rust_created",
            python_attaches_to_a_segment_rust_created,
        ),
        (
            "rust_attaches_to_a_segment_python_created",
            rust_attaches_to_a_segment_python_created,
        ),
        (
            "forked_and_spawned_children_attach_by_name",
            forked_and_spawned_children_attach_by_name,
        ),
        (
            "owner_only_cloexec_and_unlinked_by_the_creator_alone",
            owner_only_cloexec_and_unlinked_by_the_creator_alone,
        ),
        (
            "killed_creators_segment_is_swept",
            killed_creators_segment_is_swept,
        ),
    ])
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

/// Runs `python3 -c script args...`, feeding `stdin`; fails with its stderr if it fails.
fn python(script: &str, args: &[&str]) -> Result<std::process::Child, String> {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3 (the interop tests need it): {e}"))
}

fn finish(child: std::process::Child) -> Result<String, String> {
    let output = child.wait_with_output().map_err(err)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure(output.status.success(), || {
        format!("python3 failed ({}): {stderr}", output.status)
    })?;
    // A resource_tracker warning would mean Python meant to unlink a segment it only attached.
    ensure(stderr.trim().is_empty(), || {
        format!("python3 wrote to stderr: {stderr}")
    })?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Attaches without creating, checks Rust's bytes, writes its own, and leaves the segment be:
/// Python 3.11 registers even an attached segment with its resource tracker, which would
/// unlink it at exit, so the script unregisters it (3.13's `track=False` does not exist yet).
const PY_ATTACH: &str = r#"
import sys
from multiprocessing import resource_tracker, shared_memory
name, size = sys.argv[1], int(sys.argv[2])
shm = shared_memory.SharedMemory(name=name, create=False)
resource_tracker.unregister(shm._name, "shared_memory")
assert shm.size >= size, (shm.size, size)
got = bytes(shm.buf[:15])
assert got == b"hello from rust", got
shm.buf[64:78] = b"hi from python"
shm.close()
print("ok")
"#;

fn python_attaches_to_a_segment_rust_created() -> Verdict {
    let mut segment = SharedMemory::create_unique(4096).map_err(err)?;
    segment.as_mut_slice()[..15].copy_from_slice(b"hello from rust");
    let name = segment.name().to_owned();
    let out = finish(python(PY_ATTACH, &[&name, "4096"])?)?;
    ensure(out.trim() == "ok", || format!("python said {out:?}"))?;
    ensure(&segment.as_slice()[64..78] == b"hi from python", || {
        format!(
            "read back {:?}",
            String::from_utf8_lossy(&segment.as_slice()[64..78])
        )
    })?;
    ensure(Path::new(&shm_path(&name)).exists(), || {
        "Python unlinked a segment it only attached".into()
    })?;
    drop(segment);
    ensure(!Path::new(&shm_path(&name)).exists(), || {
        "the creator's drop left the segment".into()
    })
}

/// Creates a segment, prints its name, waits for a line on stdin (Rust has attached and
/// written), checks Rust's bytes and unlinks: Python is the creator here.
const PY_CREATE: &str = r#"
import sys
from multiprocessing import shared_memory
shm = shared_memory.SharedMemory(create=True, size=1000)
shm.buf[:17] = b"hello from python"
print(shm.name, shm.size, flush=True)
sys.stdin.readline()
got = bytes(shm.buf[100:113])
assert got == b"hi from rust!", got
shm.close()
shm.unlink()
print("ok", flush=True)
"#;

fn rust_attaches_to_a_segment_python_created() -> Verdict {
    let mut py = python(PY_CREATE, &[])?;
    let mut line = String::new();
    {
        use std::io::BufRead;
        let stdout = py.stdout.as_mut().ok_or("no stdout")?;
        let mut reader = std::io::BufReader::new(stdout);
        reader.read_line(&mut line).map_err(err)?;
    }
    let mut fields = line.split_whitespace();
    let (Some(name), Some(size)) = (fields.next(), fields.next()) else {
        return Err(format!("python printed {line:?}: {:?}", finish(py)));
    };
    let name = name.to_owned();
    let result = (|| {
        let mut segment = SharedMemory::open(&name).map_err(err)?;
        ensure(segment.size().to_string() == size, || {
            format!("size {} but Python made {size}", segment.size())
        })?;
        ensure(&segment.as_slice()[..17] == b"hello from python", || {
            "the bytes Python wrote are not there".into()
        })?;
        ensure(!segment.unlinks_on_drop(), || {
            "an attacher would unlink".into()
        })?;
        segment.as_mut_slice()[100..113].copy_from_slice(b"hi from rust!");
        drop(segment);
        ensure(Path::new(&shm_path(&name)).exists(), || {
            "Rust unlinked a segment it only attached".into()
        })
    })();
    let stdin = py.stdin.as_mut().ok_or("no stdin")?;
    stdin.write_all(b"go\n").map_err(err)?;
    let out = finish(py)?;
    result?;
    ensure(out.trim() == "ok", || format!("python said {out:?}"))?;
    ensure(!Path::new(&shm_path(&name)).exists(), || {
        "Python's unlink did not remove it".into()
    })
}

fn forked_and_spawned_children_attach_by_name() -> Verdict {
    let mut segment = SharedMemory::create_unique(64).map_err(err)?;
    segment.as_mut_slice()[..6].copy_from_slice(b"parent");
    let name = segment.name().to_owned();
    spawn_child(spawned_attacher, &name).join(PATIENCE)?;
    ensure(&segment.as_slice()[8..13] == b"child", || {
        "the spawned child's write is not there".into()
    })?;
    // A forked child holds a copy of the creator's handle: dropping it there must not unlink.
    let mut slot = Some(segment);
    fork_child(|| {
        let copy = slot.take().ok_or("no segment")?;
        ensure(!copy.unlinks_on_drop(), || {
            "the copy in a child would unlink".into()
        })?;
        let mut attached = SharedMemory::open(&name).map_err(err)?;
        attached.as_mut_slice()[20..24].copy_from_slice(b"fork");
        drop(copy);
        Ok(())
    })
    .join(PATIENCE)?;
    let segment = slot.ok_or("the parent's handle is gone")?;
    ensure(Path::new(&shm_path(&name)).exists(), || {
        "a forked child's drop unlinked the segment".into()
    })?;
    ensure(&segment.as_slice()[20..24] == b"fork", || {
        "the forked child's write is not there".into()
    })
}

fn owner_only_cloexec_and_unlinked_by_the_creator_alone() -> Verdict {
    let segment = SharedMemory::create_unique(4096).map_err(err)?;
    let name = segment.name().to_owned();
    let meta = std::fs::metadata(shm_path(&name)).map_err(err)?;
    ensure(meta.permissions().mode() & 0o777 == 0o600, || {
        format!("mode {:o}", meta.permissions().mode() & 0o777)
    })?;
    // Every descriptor of the segment in this process is close-on-exec.
    let mut seen = 0;
    for fd in std::fs::read_dir("/proc/self/fd").map_err(err)?.flatten() {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target == Path::new(&shm_path(&name)) {
            seen += 1;
            let fdinfo = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .map_err(err)?;
            let flags = fdinfo
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .ok_or("no flags in fdinfo")?;
            ensure(flags & libc::O_CLOEXEC as u32 != 0, || {
                format!("fd {:?} is not close-on-exec", fd.file_name())
            })?;
        }
    }
    ensure(seen > 0, || {
        format!("no descriptor of {name} in /proc/self/fd")
    })?;
    let err = SharedMemory::create(&name, 10).err();
    ensure(
        matches!(err, Some(SharedMemoryError::Exists { .. })),
        || format!("creating a taken name gave {err:?}"),
    )?;
    drop(segment);
    ensure(!Path::new(&shm_path(&name)).exists(), || {
        "the creator's drop left the segment".into()
    })?;
    let err = SharedMemory::open(&name).err();
    ensure(
        matches!(err, Some(SharedMemoryError::NotFound { .. })),
        || format!("opening an unlinked name gave {err:?}"),
    )
}

fn killed_creators_segment_is_swept() -> Verdict {
    let (report, reader) = herd::ipc::Pipe::<(String, u64)>::new().map_err(err)?;
    let creator = fork_child(move || {
        let segment = SharedMemory::create_unique(4096).map_err(err)?;
        let inode = std::fs::metadata(shm_path(segment.name()))
            .map_err(err)?
            .ino();
        report
            .send((segment.name().to_owned(), inode))
            .map_err(|e| e.to_string())?;
        std::thread::sleep(PATIENCE); // until SIGKILLed: nothing gets to unlink
        Ok(())
    });
    let (name, _inode) = reader.recv_timeout(PATIENCE).map_err(err)?;
    // A living creator's segment is not an orphan.
    let swept = SharedMemory::sweep_orphans().map_err(err)?;
    ensure(!swept.contains(&name), || {
        "swept a living creator's segment".into()
    })?;
    creator.kill()?;
    ensure(Path::new(&shm_path(&name)).exists(), || {
        "the segment vanished with its creator (expected it to leak until swept)".into()
    })?;
    let swept = SharedMemory::sweep_orphans().map_err(err)?;
    ensure(swept.contains(&name), || {
        format!("swept {swept:?}, not {name}")
    })?;
    ensure(!Path::new(&shm_path(&name)).exists(), || {
        "the sweep left the segment".into()
    })
}
