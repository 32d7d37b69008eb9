//! Copy-on-write layers in a running pod, on the real kernel's overlayfs.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose
#![warn(clippy::undocumented_unsafe_blocks)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ptest_sandbox::{HostView, Overlay};
use support::{Fixture, can_sandbox, sh};

/// A lower directory outside the pod's view, and an overlay of it on the root's `workspace/`.
fn overlay_of(lower: &Path, root: &Path, layer: &str) -> Overlay {
    fs::create_dir_all(root.join("workspace")).unwrap();
    Overlay {
        lower: lower.to_owned(),
        upper: root.join(layer).join("upper"),
        work: root.join(layer).join("work"),
        target: root.join("workspace"),
        hide: vec!["secret".into(), "src/cache".into()],
    }
}

#[test]
fn an_overlay_shows_a_hidden_directory_takes_writes_and_is_replaced_by_a_clean_one() {
    if !can_sandbox() {
        return;
    }
    let lower = tempfile::tempdir().unwrap();
    fs::write(lower.path().join("a.txt"), "lower\n").unwrap();
    fs::write(lower.path().join("secret"), "never shown\n").unwrap();
    fs::create_dir_all(lower.path().join("src/cache")).unwrap();
    fs::write(lower.path().join("src/main.c"), "int main;\n").unwrap();
    fs::set_permissions(lower.path().join("src"), fs::Permissions::from_mode(0o750)).unwrap();
    // Only system directories are visible: the lower directory is not, yet it is overlaid.
    let fx = Fixture::with(None, |spec| spec.host_view = HostView::System);
    let pod = fx.pod();
    let first = overlay_of(lower.path(), fx.root(), "layer-1");
    let ws = first.target.display().to_string();
    let lower_in_pod = sh(pod, &format!("test -e {}", lower.path().display()));
    assert!(!lower_in_pod.status.success(), "the lower dir is visible");

    pod.mount_overlay(&first).unwrap();
    let out = sh(
        pod,
        &format!(
            "cd {ws} && cat a.txt && ls src && stat -c %a src && test ! -e secret && \
             echo upper > a.txt && echo new > b.txt && rm src/main.c"
        ),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, "lower\nmain.c\n750\n", "{out:?}");
    // Writes land in upper; the lower directory is as it was.
    assert_eq!(
        fs::read_to_string(first.upper.join("a.txt")).unwrap(),
        "upper\n"
    );
    assert_eq!(
        fs::read_to_string(first.upper.join("b.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fs::read_to_string(lower.path().join("a.txt")).unwrap(),
        "lower\n"
    );
    assert!(lower.path().join("src/main.c").is_file());
    // The host does not see the mount.
    assert_eq!(fs::read_dir(&first.target).unwrap().count(), 0);

    pod.unmount(&first.target).unwrap();
    let out = sh(pod, &format!("ls -A {ws}"));
    assert_eq!(out.stdout, "", "{out:?}");
    let second = overlay_of(lower.path(), fx.root(), "layer-2");
    pod.mount_overlay(&second).unwrap();
    let out = sh(pod, &format!("cd {ws} && cat a.txt && ls"));
    assert_eq!(out.stdout, "lower\na.txt\nsrc\n", "{out:?}");
}

#[test]
fn a_bad_overlay_is_refused_with_the_reason() {
    if !can_sandbox() {
        return;
    }
    let fx = Fixture::new(None);
    let lower = tempfile::tempdir().unwrap();
    let mut overlay = overlay_of(lower.path(), fx.root(), "layer");
    overlay.lower = lower.path().join("missing");
    let err = fx.pod().mount_overlay(&overlay).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");

    let mut overlay = overlay_of(lower.path(), fx.root(), "layer");
    overlay.lower = Path::new("/tmp/a:b").to_owned();
    let err = fx.pod().mount_overlay(&overlay).unwrap_err().to_string();
    assert!(err.contains("':'"), "{err}");

    // A target the pod does not have: the failing step and its error come back.
    let mut overlay = overlay_of(lower.path(), fx.root(), "layer");
    overlay.target = fx.root().join("not-there");
    overlay.hide.clear();
    let err = fx.pod().mount_overlay(&overlay).unwrap_err().to_string();
    assert!(
        err.contains("mount overlay on") && err.contains("not-there"),
        "{err}"
    );
}
