//! Confinement of pod commands: masks over host paths, Landlock rules, the seccomp filter,
//! and size-limited tmpfs mounts.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose
#![warn(clippy::undocumented_unsafe_blocks)]

mod support;

use std::fs;

use ptest_sandbox::{FsRules, landlock, seccomp, tmpfs};
use support::*;

#[test]
fn a_mask_hides_a_host_directory_but_not_the_root_beneath_it() {
    if !can_sandbox() {
        return;
    }
    // Outside /tmp: the pod's /tmp is private anyway.
    let hidden = tempfile::tempdir_in("/var/tmp").unwrap();
    fs::write(hidden.path().join("secret"), "s").unwrap();
    let mask = hidden.path().to_owned();
    let fx = Fixture::with(None, |spec| spec.masks = vec![mask.clone()]);
    let out = sh(
        fx.pod(),
        &format!(
            "ls -A {0}; cat {0}/secret; touch {0}/new; echo $?",
            mask.display()
        ),
    );
    assert_eq!(out.stdout, "1\n", "{out:?}");
    assert!(!mask.join("new").exists());
    // The root is still there and writable.
    let out = sh(fx.pod(), &format!("touch {}/mine", fx.root().display()));
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn landlock_and_seccomp_confine_a_pod_command() {
    if !can_sandbox() {
        return;
    }
    if !require(
        landlock::abi_version().is_ok() && seccomp::available().is_ok(),
        "Landlock and seccomp needed",
    ) {
        return;
    }
    let fx = Fixture::new(None);
    let root = fx.root().to_owned();
    let script = format!(
        "touch /tmp/no; echo tmp=$?; touch {}/yes; echo root=$?; unshare -U true; echo unshare=$?; \
         grep ^Seccomp: /proc/self/status",
        root.display()
    );
    let out = run_with(
        |mut cmd| {
            cmd.landlock = Some(FsRules {
                read_only: vec!["/".into()],
                read_write: vec![root.clone(), "/dev/null".into()],
            });
            cmd.seccomp = Some(ptest_sandbox::seccomp::Profile::Strict);
            fx.pod().spawn(&cmd)
        },
        &["sh", "-c", &script],
    );
    assert_eq!(
        out.stdout, "tmp=1\nroot=0\nunshare=1\nSeccomp:\t2\n",
        "{out:?}"
    );
    assert!(root.join("yes").exists());
}

#[test]
fn a_limited_tmpfs_caps_bytes_and_inodes_and_unmounts() {
    if !require(is_root(), "mounting needs root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let limits = tmpfs::TmpfsLimits {
        bytes: Some(1 << 20),
        inodes: Some(4),
    };
    tmpfs::mount_tmpfs(dir.path(), "ptest-sandbox-test", limits).unwrap();
    let mounted = tmpfs::mount_at(dir.path()).unwrap().unwrap();
    assert_eq!(
        (mounted.fstype.as_str(), mounted.source.as_str()),
        ("tmpfs", "ptest-sandbox-test")
    );
    let big = fs::write(dir.path().join("big"), vec![0u8; 2 << 20]);
    let files: Vec<_> = (0..5)
        .map(|i| fs::write(dir.path().join(format!("f{i}")), "").is_ok())
        .collect();
    tmpfs::unmount(dir.path()).unwrap();
    assert_eq!(big.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    // The directory itself and "big" take two of the four inodes.
    assert_eq!(files, [true, true, false, false, false]);
    assert!(tmpfs::mount_at(dir.path()).unwrap().is_none());
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
