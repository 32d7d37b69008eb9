//! Issue 15, item 5: a missing, empty, truncated or corrupt `state.db` while environments
//! exist is reported with its path and what to do, and nothing is made over it.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

/// A home with two environments, and its database's bytes.
fn home_with_environments() -> (TestHome, std::path::PathBuf, Vec<u8>) {
    let t = TestHome::new();
    for name in ["a", "b"] {
        t.ptest(["env", "create", name, "--security", "low"])
            .assert()
            .success();
    }
    let db = t.home().join("state.db");
    let bytes = std::fs::read(&db).unwrap();
    (t, db, bytes)
}

/// The database and its WAL files, to put back so the test home can remove what it made.
struct Saved(Vec<(std::path::PathBuf, Option<Vec<u8>>)>);

impl Saved {
    fn new(db: &std::path::Path) -> Saved {
        Saved(
            ["", "-wal", "-shm"]
                .iter()
                .map(|side| {
                    let path = std::path::PathBuf::from(format!("{}{side}", db.display()));
                    let bytes = std::fs::read(&path).ok();
                    (path, bytes)
                })
                .collect(),
        )
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (path, bytes) in &self.0 {
            if let Some(bytes) = bytes {
                std::fs::write(path, bytes).unwrap();
            }
        }
    }
}

/// `env list` refuses the damaged store with its path, and leaves the file as it is.
fn refused(t: &TestHome, db: &std::path::Path, says: &str) {
    let before = std::fs::read(db).ok();
    t.ptest(["env", "list"]).assert().code(3).stderr(
        contains(db.display().to_string())
            .and(contains(says))
            .and(contains("nothing was changed")),
    );
    assert_eq!(
        std::fs::read(db).ok(),
        before,
        "the damaged file was changed"
    );
}

#[test]
fn an_emptied_state_db_is_reported_not_recreated() {
    let (t, db, _) = home_with_environments();
    let _saved = Saved::new(&db);
    std::fs::write(&db, b"").unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", db.display()));
    }
    refused(&t, &db, "is empty while 2 environment root(s) exist");
}

#[test]
fn a_missing_state_db_is_reported_not_recreated() {
    let (t, db, _) = home_with_environments();
    let _saved = Saved::new(&db);
    std::fs::remove_file(&db).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", db.display()));
    }
    refused(&t, &db, "is missing while 2 environment root(s) exist");
    assert!(!db.exists());
}

#[test]
fn a_state_db_that_is_not_a_database_is_reported() {
    let (t, db, mut bytes) = home_with_environments();
    let _saved = Saved::new(&db);
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&db, &bytes).unwrap();
    refused(&t, &db, "is not a SQLite database");
}

#[test]
fn a_truncated_state_db_is_reported() {
    let (t, db, bytes) = home_with_environments();
    let _saved = Saved::new(&db);
    std::fs::write(&db, &bytes[..bytes.len() / 2]).unwrap();
    // Pages cut from the file but still in the WAL are not lost (a checkpoint held back by
    // readers leaves the file short for a while): only without them is it damage.
    let _ = std::fs::remove_file(format!("{}-wal", db.display()));
    refused(&t, &db, "is truncated");
}

#[test]
fn a_fresh_home_starts_a_new_state_db() {
    let t = TestHome::new();
    t.ptest(["env", "list"]).assert().success();
    assert!(t.home().join("state.db").exists());
}

#[test]
fn doctor_repair_keeps_the_damaged_file_aside_and_recovers_every_root() {
    let (t, db, _) = home_with_environments();
    std::fs::write(&db, b"").unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", db.display()));
    }
    // A healthy store is left alone; this one is repaired once.
    let report = t.json(["doctor", "--repair"]);
    let aside = report["kept_aside"].as_str().unwrap();
    assert_eq!(
        std::fs::read(aside).unwrap(),
        b"",
        "the damaged file is kept as it was"
    );
    let recovered = report["recovered"].as_array().unwrap();
    assert_eq!(recovered.len(), 2, "{report}");
    let envs = t.json(["env", "list"]);
    assert_eq!(envs.as_array().unwrap().len(), 2);
    assert!(
        envs.as_array().unwrap().iter().all(
            |e| e["status"] == "error" && e["name"].as_str().unwrap().starts_with("recovered-")
        )
    );
    assert_eq!(
        t.json(["doctor", "--repair"])["kept_aside"],
        serde_json::Value::Null
    );
    // Recovered environments remove like any other: roots and cgroups go.
    let roots: Vec<String> = recovered
        .iter()
        .map(|r| r["root"].as_str().unwrap().to_owned())
        .collect();
    t.ptest(["env", "rm", "--all", "--force"])
        .assert()
        .success();
    assert!(t.names().is_empty());
    for root in roots {
        assert!(!std::path::Path::new(&root).exists(), "{root}");
    }
}
