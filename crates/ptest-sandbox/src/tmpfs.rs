//! Size- and inode-limited tmpfs mounts on the host: a directory whose bytes and file count
//! the kernel caps (`ENOSPC` past either), used as a sandbox root that enforces a disk quota.
//!
//! The mount's source is a name chosen by the caller (shown in `/proc/self/mountinfo`), so
//! that what a program mounted can be found again and only its own mounts are removed.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount};

use crate::error::{Error, Result};
use crate::sys::cpath;

/// Limits of a tmpfs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TmpfsLimits {
    /// Bytes of file content (`size=`; rounded up to pages by the kernel).
    pub bytes: Option<u64>,
    /// Inodes, the directory itself included (`nr_inodes=`).
    pub inodes: Option<u64>,
}

/// One line of `/proc/self/mountinfo`, the fields this crate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub target: PathBuf,
    /// The filesystem type (`tmpfs`, `ext4`, ...).
    pub fstype: String,
    /// The source (for a tmpfs: the name given at mount time).
    pub source: String,
}

/// Mounts a tmpfs named `source` with `limits` on the existing directory `target` (mode 0755,
/// no setuid, no device files).
pub fn mount_tmpfs(target: &Path, source: &str, limits: TmpfsLimits) -> Result<()> {
    let mut data = String::from("mode=0755");
    if let Some(b) = limits.bytes {
        data.push_str(&format!(",size={b}"));
    }
    if let Some(n) = limits.inodes {
        data.push_str(&format!(",nr_inodes={n}"));
    }
    let (t, s, fstype, d) = (
        cpath(target)?,
        CString::new(source).map_err(|_| Error::InvalidName {
            what: "tmpfs source",
            value: source.into(),
            reason: "contains a NUL byte",
        })?,
        c"tmpfs",
        CString::new(data).expect("no NUL in numbers"),
    );
    mount(
        s.as_c_str(),
        t.as_c_str(),
        fstype,
        MountFlags::NOSUID | MountFlags::NODEV,
        d.as_c_str(),
    )
    .map_err(|e| {
        Error::syscall(
            format!("mount tmpfs on {}", target.display()),
            io::Error::from(e),
        )
    })
}

/// The mount whose mount point is exactly `target` (the topmost, if several), from
/// `/proc/self/mountinfo`.
pub fn mount_at(target: &Path) -> Result<Option<MountEntry>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::syscall("read /proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rfind(|m| m.target == target))
}

/// Mount points strictly beneath `dir`, deepest first, from `/proc/self/mountinfo` (this
/// process's mount namespace).
pub fn mounts_beneath(dir: &Path) -> Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::syscall("read /proc/self/mountinfo", e))?;
    let mut out: Vec<PathBuf> = parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.target)
        .filter(|target| target != dir && target.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    Ok(out)
}

/// Detaches the mount on `target` (lazily: still-open files keep it alive until closed).
pub fn unmount(target: &Path) -> Result<()> {
    let t = cpath(target)?;
    rustix::mount::unmount(t.as_c_str(), UnmountFlags::DETACH)
        .map_err(|e| Error::syscall(format!("unmount {}", target.display()), e.into()))
}

/// Decodes the octal escapes (`\040` for a space) mountinfo uses in paths.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let target = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let source = r.next()?;
            Some(MountEntry {
                target: PathBuf::from(unescape(target)),
                fstype: fstype.into(),
                source: unescape(source),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_with_escapes() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - tmpfs ptest-env-x rw,size=1024k\n\
                    37 35 98:0 / /sys rw shared:2 - sysfs sysfs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, PathBuf::from("/mnt/a b"));
        assert_eq!(
            (m[0].fstype.as_str(), m[0].source.as_str()),
            ("tmpfs", "ptest-env-x")
        );
    }
}
