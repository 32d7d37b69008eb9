//! Issue 18, item 4: `ptest run --resume RUN` finishes a run whose ptest was killed. The
//! shards that finished are not run again (each suite appends to a counter file outside its
//! environment), the others are, in new environments, whether `ptest gc` removed the old ones
//! in between or not; the exit code and the report are the whole run's, and nothing of the
//! run is left behind. Security `low` at the basic level: no Docker, no namespaces needed.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

use crate::support::TestHome;

/// Writes the project: `fast` passes (in two shards), `failing` fails, `slow` waits for the file `go`, and
/// `after` waits for `slow`. Each appends a line to `counts/<suite>` as it starts.
fn project(t: &TestHome) -> PathBuf {
    let counts = t.dir.path().join("counts");
    std::fs::create_dir_all(&counts).unwrap();
    let c = counts.display();
    let text = format!(
        "[env.lo]\nsecurity = \"low\"\n\n\
         [[suite]]\nname = \"fast\"\nenv = \"lo\"\nparallel = 2\nrun = \"echo x >> {c}/fast\"\n\n\
         [[suite]]\nname = \"failing\"\nenv = \"lo\"\nrun = \"echo x >> {c}/failing; exit 1\"\n\n\
         [[suite]]\nname = \"slow\"\nenv = \"lo\"\n\
         run = \"echo x >> {c}/slow; while [ ! -f {c}/go ]; do sleep 0.05; done\"\n\n\
         [[suite]]\nname = \"after\"\nenv = \"lo\"\ndepends_on = [\"slow\"]\n\
         run = \"echo x >> {c}/after\"\n"
    );
    std::fs::write(t.cwd().join("ptest.toml"), text).unwrap();
    counts
}

/// How many times `suite` started.
fn count(counts: &Path, suite: &str) -> usize {
    std::fs::read_to_string(counts.join(suite))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The run's id (its one reports directory) and its saved state, once it has one.
fn state(t: &TestHome) -> Option<(String, serde_json::Value)> {
    let dir = std::fs::read_dir(t.home().join("reports"))
        .ok()?
        .next()?
        .ok()?;
    let text = std::fs::read_to_string(dir.path().join("state.json")).ok()?;
    Some((
        dir.file_name().into_string().unwrap(),
        serde_json::from_str(&text).ok()?,
    ))
}

/// Starts `ptest run -j 3 EXTRA...` and waits until both shards of `fast` and `failing` are
/// saved as finished and `slow` runs; returns the child and the run id.
fn start_run(t: &TestHome, counts: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = t
        .std_command(["run", "-j", "3"].iter().chain(extra))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..1500 {
        if let Some((id, state)) = state(t) {
            let finished: Vec<&str> = state["finished"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap())
                .collect();
            if finished.iter().filter(|n| **n == "fast").count() == 2
                && finished.contains(&"failing")
                && count(counts, "slow") == 1
            {
                return (child, id);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("the run never got to slow with fast and failing finished");
}

/// Kills the run's ptest (SIGKILL), as a crash would.
fn kill(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Resumes run `id` (as `arg` names it: the id or `last`) after letting `slow` end, and
/// checks the run came out whole; returns the report.
fn resume_finishes(t: &TestHome, counts: &Path, arg: &str, id: &str) -> serde_json::Value {
    std::fs::write(counts.join("go"), "").unwrap();
    let out = t
        .ptest(["run", "--resume", arg, "--json"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["run_id"], id);
    assert_eq!(
        report["resumed_at"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    let statuses: Vec<(&str, Option<u64>, &str)> = report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap();
            (name, s["shard"].as_u64(), s["status"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("fast", Some(0), "passed"),
            ("fast", Some(1), "passed"),
            ("failing", None, "failed"),
            ("slow", None, "passed"),
            ("after", None, "passed"),
        ]
    );
    // Finished suites did not run again; the interrupted one and the one never started did.
    assert_eq!(count(counts, "fast"), 2);
    assert_eq!(count(counts, "failing"), 1);
    assert_eq!(count(counts, "slow"), 2);
    assert_eq!(count(counts, "after"), 1);
    // The reports of the whole run are where a run's go, and no environment is left.
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.home().join("reports").join(id).join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["suites"].as_array().unwrap().len(), 5);
    // Now it is finished: nothing to resume.
    t.ptest(["run", "--resume", id])
        .assert()
        .code(3)
        .stderr(contains(format!("run {id} already finished")));
    report
}

#[test]
fn resume_reruns_only_what_a_killed_run_did_not_finish() {
    let t = TestHome::new();
    let counts = project(&t);
    let (child, id) = start_run(&t, &counts, &[]);
    kill(child);
    // The interrupted suite's environment outlives the killed ptest.
    let left = t.names();
    assert_eq!(left, [format!("run-{id}-slow")]);
    resume_finishes(&t, &counts, &id, &id);
    assert!(t.names().is_empty(), "{:?}", t.names());
}

#[test]
fn resume_recreates_what_gc_removed() {
    let t = TestHome::new();
    let counts = project(&t);
    let (child, id) = start_run(&t, &counts, &[]);
    kill(child);
    let gc = t.json(["gc"]);
    assert!(
        gc.as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "removed"),
        "{gc}"
    );
    assert!(t.names().is_empty());
    resume_finishes(&t, &counts, "last", &id);
    assert!(t.names().is_empty(), "{:?}", t.names());
}

#[test]
fn a_running_run_or_a_changed_project_is_not_resumed() {
    let t = TestHome::new();
    let counts = project(&t);
    let (child, id) = start_run(&t, &counts, &[]);
    t.ptest(["run", "--resume", &id])
        .assert()
        .code(3)
        .stderr(contains(format!("run {id} is still running")));
    kill(child);
    let file = t.cwd().join("ptest.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("exit 1", "exit 2")).unwrap();
    t.ptest(["run", "--resume", &id]).assert().code(2).stderr(
        contains("changed since it started").and(contains("suite \"failing\" changed: run")),
    );
    // Refused, it touched nothing: the interrupted environment is still there, for gc.
    assert_eq!(t.names(), [format!("run-{id}-slow")]);
    std::fs::write(&file, text).unwrap();
    resume_finishes(&t, &counts, &id, &id);
    assert!(t.names().is_empty(), "{:?}", t.names());
}

#[test]
fn a_resumed_run_keeps_what_its_options_keep() {
    let t = TestHome::new();
    let counts = project(&t);
    let (child, id) = start_run(&t, &counts, &["--keep"]);
    kill(child);
    let report = resume_finishes(&t, &counts, &id, &id);
    // `--keep` was the run's: the environments of the shards that finished before the kill
    // survived the resume, and those of the shards it ran are kept too; nothing else is there.
    let mut kept: Vec<String> = report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["env_name"].as_str().unwrap().to_owned())
        .collect();
    kept.sort();
    let mut names = t.names();
    names.sort();
    assert_eq!(names, kept);
    assert_eq!(names.len(), 5, "{names:?}");
}

#[test]
fn an_unknown_run_is_not_resumed() {
    let t = TestHome::new();
    t.ptest(["run", "--resume", "0123456789ab"])
        .assert()
        .code(3)
        .stderr(contains("no run 0123456789ab to resume"));
    t.ptest(["run", "--resume", "last"])
        .assert()
        .code(3)
        .stderr(contains("no run to resume"));
    t.ptest(["run", "--resume", "../x"])
        .assert()
        .code(3)
        .stderr(contains("no run \"../x\" to resume"));
    // The run's own selection and options apply.
    t.ptest(["run", "--resume", "last", "--fail-fast"])
        .assert()
        .code(2)
        .stderr(contains("cannot be used with"));
}
