//! Issue 19, item 3: global quotas, per-level maximums and default limits, a level switched
//! off — each refusal exit 3 (2 for a level switched off) naming the quota, the sum held and
//! the request, checked atomically in the store under concurrent creates.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;
use predicates::str::contains;

#[test]
fn a_memory_quota_admits_exactly_what_fits_under_twenty_concurrent_creates() {
    let t = TestHome::new();
    if !crate::support::runnable(
        (!crate::support::missing_features(&t, &["cgroups"]).is_empty())
            .then(|| "memory limits need cgroups".to_owned()),
    ) {
        return;
    }
    let children: Vec<_> = (0..20)
        .map(|i| {
            t.std_command([
                "env",
                "create",
                &format!("q{i}"),
                "--security",
                "low",
                "--memory",
                "8M",
            ])
            .env("PTEST_QUOTA_MEMORY", "80M")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let admitted = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(admitted, 10, "80M of quota, 8M each");
    for refused in outputs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(3), "{err}");
        assert!(
            err.contains(
                "quota quota.memory reached: the environments that exist hold 80M of 80M, and \
                 this one asks for 8M"
            ),
            "{err}"
        );
    }
    assert_eq!(t.names().len(), 10);
    t.ptest(["env", "rm", "--all"]).assert().success();
}

#[test]
fn a_quota_needs_a_limit_or_a_default_and_defaults_apply() {
    let t = TestHome::new();
    t.ptest(["env", "create", "bare", "--security", "low"])
        .env("PTEST_QUOTA_CPUS", "2")
        .assert()
        .code(3)
        .stderr(contains("quota quota.cpus is set"))
        .stderr(contains("level.basic.cpus"));
    assert!(t.names().is_empty());
    let made = t.json(["env", "create", "dflt", "--security", "low"]);
    assert!(made["spec"]["limits"]["cpus"].is_null(), "{made}");
    let out = t
        .ptest([
            "env",
            "create",
            "withdefault",
            "--security",
            "low",
            "--json",
        ])
        .env("PTEST_QUOTA_CPUS", "2")
        .env("PTEST_LEVEL_BASIC_CPUS", "1.5")
        .assert()
        .success();
    let made: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(made["spec"]["limits"]["cpus"], 1.5, "{made}");
    t.ptest(["env", "create", "over", "--security", "low"])
        .env("PTEST_QUOTA_CPUS", "2")
        .env("PTEST_LEVEL_BASIC_CPUS", "1.5")
        .assert()
        .code(3)
        .stderr(contains("hold 1.5 cores of 2, and this one asks for 1.5"));
}

#[test]
fn a_level_maximum_and_a_switched_off_level_are_refused() {
    let t = TestHome::new();
    for name in ["a", "b"] {
        t.ptest(["env", "create", name, "--security", "low"])
            .env("PTEST_LEVEL_BASIC_MAX_ENVIRONMENTS", "2")
            .assert()
            .success();
    }
    t.ptest(["env", "create", "c", "--security", "low"])
        .env("PTEST_LEVEL_BASIC_MAX_ENVIRONMENTS", "2")
        .assert()
        .code(3)
        .stderr(contains("quota level.basic.max_environments reached"))
        .stderr(contains("hold 2 environments of 2"));
    t.ptest(["env", "create", "d", "--level", "docker", "--image", "x"])
        .args(["--config", "level.docker.enabled=false"])
        .assert()
        .code(2)
        .stderr(contains("level.docker.enabled = false"));
    assert_eq!(t.names().len(), 2);
}
