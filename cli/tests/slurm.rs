//! logcount shards on a real Slurm cluster: a job array (`sbatch --array=0-3 --wait`) whose
//! tasks run `supervisor run logcount --shard auto/4 --partial` (deploy/slurm/logcount-array.sh),
//! then `supervisor merge` of their partials, compared byte for byte with one host's run; then
//! the same with a plan file and an array numbered from 10.
//!
//! Needs a cluster: `deploy/slurm/local-cluster.sh` starts one on this host, and `.ci/run` runs
//! it and then this test (`cargo test -p herd-cli --test slurm -- --ignored`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `supervisor ARGS...`, killed after two minutes (by coreutils' `timeout`): a hang fails the
/// test instead of stalling CI.
fn supervisor() -> Command {
    let mut command = Command::new("timeout");
    command.args(["120", SUPERVISOR]);
    command
}

fn array_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slurm/logcount-array.sh")
}

#[test]
#[ignore = "needs a Slurm cluster: run deploy/slurm/local-cluster.sh first (.ci/run does)"]
fn a_slurm_job_array_of_shards_merges_to_the_single_host_result() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    let parts = temp.path().join("parts");
    run(supervisor()
        .args([
            "gen-logs",
            "--files",
            "6",
            "--lines",
            "50000",
            "--distinct",
            "20000",
        ])
        .arg(&logs));

    // Four array tasks, each its own shard; --wait returns once all are done.
    let output_pattern = temp.path().join("slurm-%A_%a.out");
    run(Command::new("timeout")
        .args(["300", "sbatch", "--array=0-3", "--wait", "--time=10"])
        .arg(format!("--output={}", output_pattern.display()))
        .arg(format!("--export=ALL,HERD_SUPERVISOR={SUPERVISOR}"))
        .arg(array_script())
        .arg(&logs)
        .arg(&parts));

    let mut said = Vec::new();
    for entry in std::fs::read_dir(temp.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "out") {
            said.push(std::fs::read_to_string(path).unwrap());
        }
    }
    let said = said.join("");
    for index in 0..4 {
        assert!(
            said.contains(&format!("shard {index} of 4")),
            "no task counted shard {index}; the tasks said:\n{said}"
        );
        assert!(parts.join(format!("part-{index}")).is_file());
    }

    // With a plan file, and an array numbered from 10: the index is SLURM_ARRAY_TASK_ID minus
    // SLURM_ARRAY_TASK_MIN.
    let plan = temp.path().join("plan.json");
    run(supervisor()
        .args(["plan", "logcount"])
        .arg(&logs)
        .args(["--shards", "4", "-o"])
        .arg(&plan));
    let planned_parts = temp.path().join("planned-parts");
    run(Command::new("timeout")
        .args(["300", "sbatch", "--array=10-13", "--wait", "--time=10"])
        .arg(format!("--output={}", output_pattern.display()))
        .arg(format!("--export=ALL,HERD_SUPERVISOR={SUPERVISOR}"))
        .arg(array_script())
        .arg(&logs)
        .arg(&planned_parts)
        .arg(&plan));
    for index in 0..4 {
        assert!(planned_parts.join(format!("part-{index}")).is_file());
    }

    for format in ["table", "csv", "json"] {
        let single = run(supervisor()
            .args(["run", "logcount", "--workers", "2", "--format", format])
            .arg(&logs));
        let merged = run(supervisor().args(["merge", "--format", format]).arg(&parts));
        assert!(
            merged.stdout == single.stdout,
            "{format}: the merge of the Slurm shards differs from one host's run:\n{}\nvs\n{}",
            String::from_utf8_lossy(&merged.stdout),
            String::from_utf8_lossy(&single.stdout)
        );
        let merged = run(supervisor()
            .args(["merge", "--format", format])
            .arg(&planned_parts));
        assert!(
            merged.stdout == single.stdout,
            "{format}: the merge of the planned Slurm shards differs from one host's run"
        );
    }
}
