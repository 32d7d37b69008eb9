//! Capability sets a command keeps. A pod's holder runs with root's full set; each command is
//! limited before `execve`: its bounding set, permitted, effective and inheritable sets become
//! the chosen [`Capabilities`] and its ambient set is cleared, so neither the command nor
//! anything it executes (setuid or file-capability binaries included) gets more.
//!
//! [`Capabilities::container_default`] is Docker's default set: what a container's root may do
//! without being able to change or leave its sandbox (no `CAP_SYS_ADMIN`, so no mount, no
//! namespace change; no module loading, raw I/O, ptrace of more-privileged processes, clock,
//! reboot, BPF, perf or kernel log).

use std::fmt;

/// A set of Linux capabilities, bit `n` for capability number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities(u64);

/// Capability numbers (`linux/capability.h`) of Docker's default set, plus the two network ones.
const CHOWN: u32 = 0;
const DAC_OVERRIDE: u32 = 1;
const FOWNER: u32 = 3;
const FSETID: u32 = 4;
const KILL: u32 = 5;
const SETGID: u32 = 6;
const SETUID: u32 = 7;
const SETPCAP: u32 = 8;
const NET_BIND_SERVICE: u32 = 10;
const NET_ADMIN: u32 = 12;
const NET_RAW: u32 = 13;
const SYS_CHROOT: u32 = 18;
const MKNOD: u32 = 27;
const AUDIT_WRITE: u32 = 29;
const SETFCAP: u32 = 31;

/// Names of the capabilities [`Capabilities`] can hold, for display.
const NAMES: [(u32, &str); 15] = [
    (CHOWN, "CHOWN"),
    (DAC_OVERRIDE, "DAC_OVERRIDE"),
    (FOWNER, "FOWNER"),
    (FSETID, "FSETID"),
    (KILL, "KILL"),
    (SETGID, "SETGID"),
    (SETUID, "SETUID"),
    (SETPCAP, "SETPCAP"),
    (NET_BIND_SERVICE, "NET_BIND_SERVICE"),
    (NET_ADMIN, "NET_ADMIN"),
    (NET_RAW, "NET_RAW"),
    (SYS_CHROOT, "SYS_CHROOT"),
    (MKNOD, "MKNOD"),
    (AUDIT_WRITE, "AUDIT_WRITE"),
    (SETFCAP, "SETFCAP"),
];

const fn bits(caps: &[u32]) -> u64 {
    let mut out = 0;
    let mut i = 0;
    while i < caps.len() {
        out |= 1 << caps[i];
        i += 1;
    }
    out
}

impl Capabilities {
    /// No capability at all (`CapEff` 0).
    pub const NONE: Capabilities = Capabilities(0);

    /// Docker's default set. `NET_RAW` and `NET_ADMIN` only with `own_network` (a network
    /// namespace of the pod's own): on the host's network they would let a command sniff or
    /// reconfigure the host's interfaces.
    pub const fn container_default(own_network: bool) -> Capabilities {
        let base = bits(&[
            CHOWN,
            DAC_OVERRIDE,
            FOWNER,
            FSETID,
            KILL,
            SETGID,
            SETUID,
            SETPCAP,
            NET_BIND_SERVICE,
            SYS_CHROOT,
            MKNOD,
            AUDIT_WRITE,
            SETFCAP,
        ]);
        if own_network {
            Capabilities(base | bits(&[NET_RAW, NET_ADMIN]))
        } else {
            Capabilities(base)
        }
    }

    /// The set as a bit mask (bit `n`: capability `n`), as `/proc/<pid>/status` shows it.
    pub const fn mask(self) -> u64 {
        self.0
    }

    /// The set with exactly the capabilities of `mask`.
    pub const fn from_mask(mask: u64) -> Capabilities {
        Capabilities(mask)
    }

    /// Whether capability number `cap` is in the set.
    pub const fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }
}

impl fmt::Display for Capabilities {
    /// `CHOWN,DAC_OVERRIDE,...` (`cap_N` for numbers without a name here), `none` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for cap in 0..64 {
            if !self.has(cap) {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match NAMES.iter().find(|(n, _)| *n == cap) {
                Some((_, name)) => f.write_str(name)?,
                None => write!(f, "cap_{cap}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_default_has_no_capability_that_changes_or_leaves_the_sandbox() {
        // SYS_ADMIN 21, SYS_MODULE 16, SYS_RAWIO 17, SYS_PTRACE 19, SYS_TIME 25, SYS_BOOT 22,
        // MAC_OVERRIDE 32, MAC_ADMIN 33, SYSLOG 34, BPF 39, PERFMON 38, DAC_READ_SEARCH 2.
        for own in [false, true] {
            let caps = Capabilities::container_default(own);
            for cap in [21, 16, 17, 19, 25, 22, 32, 33, 34, 38, 39, 2] {
                assert!(!caps.has(cap), "{cap} in {caps}");
            }
            assert_eq!(caps.has(NET_ADMIN), own);
            assert_eq!(caps.has(NET_RAW), own);
        }
        assert_eq!(
            Capabilities::container_default(false).to_string(),
            "CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETGID,SETUID,SETPCAP,NET_BIND_SERVICE,\
             SYS_CHROOT,MKNOD,AUDIT_WRITE,SETFCAP"
        );
        assert_eq!(Capabilities::NONE.to_string(), "none");
    }
}
