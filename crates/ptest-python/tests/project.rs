//! The project's wheel: its `Requires-Dist` read by ptest from wheels that Python's own
//! `zipfile` wrote (deflated), as any build backend's are.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use ptest_testkit::wheels::wheelhouse;

#[test]
fn requires_dist_is_read_from_a_wheel_zipfile_wrote() {
    if let Some(why) = ptest_testkit::python::missing() {
        ptest_testkit::skip::<()>(why);
        return;
    }
    let requires =
        |name: &str| ptest_python::project::wheel_requires(&wheelhouse().join(name)).unwrap();
    assert_eq!(
        requires("ptdemo_a-1.0-py3-none-any.whl"),
        [
            "ptdemo-b>=2.0",
            "ptdemo_c ; extra == \"fast\"",
            "ptdemo-win ; sys_platform == \"win32\"",
        ]
    );
    assert!(requires("ptdemo_b-2.0-py3-none-any.whl").is_empty());
    let e = ptest_python::project::wheel_requires(&wheelhouse().join("missing.whl")).unwrap_err();
    assert!(e.to_string().contains("missing.whl"), "{e}");
}
