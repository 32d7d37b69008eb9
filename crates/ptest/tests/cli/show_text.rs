//! Human output of `ptest doctor` and `ptest env show`: words a user reads, never Rust's
//! debug forms or placeholders for facts an engine does not keep.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crate::support::TestHome;

#[test]
fn doctor_text_names_cgroups_plainly_and_separates_every_check_from_its_detail() {
    let t = TestHome::new();
    let report = t.json(["doctor"]);
    let out = t.ptest(["doctor"]).assert().success().get_output().clone();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
    let cgroups = &report["levels"][0]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "cgroups")
        .unwrap()["detail"];
    assert!(text.contains(cgroups.as_str().unwrap()), "{text}");
    for level in report["levels"].as_array().unwrap() {
        let checks = level["checks"].as_array().unwrap().iter();
        for check in checks.chain(level["features"].as_array().unwrap()) {
            let (name, detail) = (check["check"].as_str().unwrap(), &check["detail"]);
            // The name, then spaces, then the detail: "socket scope  Landlock ...".
            let line = format!(" {name} ");
            assert!(
                text.lines().any(|l| l.contains(&line)
                    && l.trim_end().ends_with(detail.as_str().unwrap().trim_end())),
                "no line {line:?} with its detail in\n{text}"
            );
        }
    }
}

#[test]
fn env_show_of_a_container_names_its_network_without_placeholders() {
    let t = TestHome::new();
    let Some(context) = ptest_testkit::busybox::context(t.dir.path()) else {
        return;
    };
    t.ptest(["env", "create", "box", "--build", context.to_str().unwrap()])
        .assert()
        .success();
    let env = &t.json(["env", "show", "box"])["environment"];
    let network = env["details"]["network"].as_str().unwrap().to_owned();
    let out = t
        .ptest(["env", "show", "box"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('?') && !text.contains("allow"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("network") && l.contains(&network)),
        "{text}"
    );
}
