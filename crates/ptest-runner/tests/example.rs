//! The bundled example project (examples/project) runs end to end and passes, and its tree
//! is left exactly as it was.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::path::Path;

use ptest_runner::{Project, RunOptions, Selection, SuiteStatus, list_text};
use support::{Harness, suite, tree_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_project_passes_and_stays_untouched() {
    if !ptest_testkit::runnable(ptest_testkit::python::missing()) {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/project");
    let project = Project::load(&dir).unwrap();
    let before = tree_state(&dir);
    let listed = list_text(
        ptest_runner::Run::new(project.clone(), &Selection::default())
            .unwrap()
            .plan(),
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("unit") && l.contains("virtualenv")),
        "{listed}"
    );

    let h = Harness::new();
    let (report, rec) = h.run(project, RunOptions::default()).await;
    assert!(report.success(), "{}\n{report:#?}", report.summary());
    let cases: usize = ["unit[0]", "unit[1]"]
        .iter()
        .map(|s| suite(&report, s).test_cases.len())
        .sum();
    assert_eq!(cases, 6, "the six unittest cases, split over two shards");
    assert!(rec.position("end lint passed") < rec.position("start unit[0]"));
    assert_eq!(suite(&report, "state-b").status, SuiteStatus::Passed);
    assert_eq!(tree_state(&dir), before, "the example's tree changed");
    assert!(h.env_names().is_empty());
}
