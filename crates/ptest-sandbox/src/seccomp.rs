//! Seccomp filters: deny-lists of system calls a test never needs and an escape would
//! (mounting, namespaces, kernel modules, kexec, BPF, keyrings, swap, reboot, ...), answered
//! with `EPERM`, in two profiles (see [`Profile`]). Built as a classic BPF program before
//! `fork`; installed in the child just before `execve` with one `prctl`.
//!
//! The program checks the architecture first: a system call made under another ABI (a 32-bit
//! call on a 64-bit kernel, whose numbers mean other calls) kills the process. On x86_64 the x32
//! ABI (numbers with bit 30 set) gets `EPERM` as a whole.

use std::io;

use crate::sys;

/// `AUDIT_ARCH_*` of the architecture this crate was built for.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64: EM_X86_64 | 64BIT | LE
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64: EM_AARCH64 | 64BIT | LE

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

// Offsets in `struct seccomp_data`: nr, arch, instruction_pointer, args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of `args[0]` (little-endian on both supported architectures).
const OFF_ARG0_LO: u32 = 16;

/// Which system calls a filter denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// What Docker's default profile denies a container without `CAP_SYS_ADMIN`: mounts,
    /// namespace creation (user namespaces included, whose fresh capabilities would reopen
    /// the kernel's attack surface), modules, kexec, BPF, perf, keyrings, `userfaultfd`,
    /// `open_by_handle_at`, `io_uring`, clock setting and unusual `personality` values.
    /// `ptrace` of the pod's own processes stays allowed (debuggers work).
    Container,
    /// [`Profile::Container`] plus `ptrace`, `process_vm_readv`/`writev` and `kcmp`: no
    /// process reads another's memory.
    Strict,
}

/// System calls the [`Profile::Strict`] filter adds: other processes' memory.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const TRACING: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
];

/// System calls every profile answers with `EPERM`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const DENIED: &[libc::c_long] = &[
    // Mounts and the new mount API.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    // Namespaces.
    libc::SYS_setns,
    libc::SYS_unshare,
    // The kernel itself.
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    // Keyrings.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // Known exploit helpers.
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // The clock of the whole host.
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

/// `personality(2)` values that stay allowed (Docker's list): query, `PER_LINUX`,
/// `PER_LINUX32`, and both with `UNAME26`. Anything else (e.g. `ADDR_NO_RANDOMIZE`) is denied.
const PERSONALITY_ALLOWED: [u32; 5] = [0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// `clone(2)` flags that create namespaces: denied like `unshare`.
const CLONE_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | 0x80/* CLONE_NEWTIME */) as u32;

/// Whether this build has a filter for the architecture and the kernel accepts filters.
pub fn available() -> std::result::Result<(), String> {
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err(format!(
            "no seccomp filter for {} in this build",
            std::env::consts::ARCH
        ));
    }
    // Fails with EINVAL when the kernel has no seccomp.
    if let Err(e) = rustix::thread::secure_computing_mode() {
        return Err(format!(
            "the kernel has no seccomp (prctl PR_GET_SECCOMP: {})",
            io::Error::from(e)
        ));
    }
    Ok(())
}

/// A compiled filter, ready to install.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    program: Vec<libc::sock_filter>,
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE_K: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET_K: u32 = libc::BPF_RET | libc::BPF_K;

impl Filter {
    /// The filter of `profile`.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    pub(crate) fn new(profile: Profile) -> Filter {
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let mut p = vec![
            stmt(LD_W_ABS, OFF_ARCH),
            jump(JEQ_K, AUDIT_ARCH, 1, 0),
            stmt(RET_K, SECCOMP_RET_KILL_PROCESS),
            stmt(LD_W_ABS, OFF_NR),
        ];
        if cfg!(target_arch = "x86_64") {
            // x32 system calls: __X32_SYSCALL_BIT.
            p.push(jump(JGE_K, 0x4000_0000, 0, 1));
            p.push(stmt(RET_K, eperm));
        }
        let tracing = match profile {
            Profile::Container => &[][..],
            Profile::Strict => TRACING,
        };
        for &nr in DENIED.iter().chain(tracing) {
            p.push(jump(JEQ_K, nr as u32, 0, 1));
            p.push(stmt(RET_K, eperm));
        }
        // clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes libc fall
        // back to clone, whose flags are checked below.
        p.push(jump(JEQ_K, libc::SYS_clone3 as u32, 0, 1));
        p.push(stmt(RET_K, enosys));
        // clone with namespace flags. A is reloaded with arg0 on this branch only, so every
        // way out of it ends in a return; the personality block after it sees A = nr.
        let n = PERSONALITY_ALLOWED.len() as u8;
        let personality_block = n + 3; // JEQ nr, LD arg0, n compares, RET EPERM
        p.push(jump(JEQ_K, libc::SYS_clone as u32, 0, 3));
        p.push(stmt(LD_W_ABS, OFF_ARG0_LO));
        p.push(jump(JSET_K, CLONE_NAMESPACES, 0, 1 + personality_block));
        p.push(stmt(RET_K, eperm));
        // personality: only the harmless values.
        p.push(jump(JEQ_K, libc::SYS_personality as u32, 0, n + 2));
        p.push(stmt(LD_W_ABS, OFF_ARG0_LO));
        for (i, &v) in PERSONALITY_ALLOWED.iter().enumerate() {
            // Match: jump over the remaining compares and the EPERM to ALLOW.
            p.push(jump(JEQ_K, v, n - i as u8, 0));
        }
        p.push(stmt(RET_K, eperm));
        p.push(stmt(RET_K, SECCOMP_RET_ALLOW));
        Filter { program: p }
    }

    /// The filter of `profile` (no filter for this architecture: [`available`] says so first).
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub(crate) fn new(_profile: Profile) -> Filter {
        Filter {
            program: vec![stmt(RET_K, SECCOMP_RET_KILL_PROCESS)],
        }
    }

    /// In the child: installs the filter for this thread and what it `execve`s.
    /// Async-signal-safe (one `prctl` on memory prepared before `fork`). Needs no_new_privs
    /// (or `CAP_SYS_ADMIN`). A raw `prctl`: rustix's `set_secure_computing_mode` cannot pass
    /// a filter program.
    pub(crate) fn install(&self) -> std::result::Result<(), sys::Errno> {
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: prog points at a valid program that outlives the call; the kernel copies it.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
                0,
                0,
            )
        };
        if r < 0 { Err(sys::errno()) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program() {
        for profile in [Profile::Container, Profile::Strict] {
            check_jumps(&Filter::new(profile));
        }
    }

    fn check_jumps(f: &Filter) {
        assert!(f.program.len() < 4096);
        for (i, ins) in f.program.iter().enumerate() {
            if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                let far = i + 1 + usize::from(ins.jt.max(ins.jf));
                assert!(far < f.program.len(), "instruction {i} jumps out");
            }
        }
        let last = f.program.last().expect("non-empty");
        assert_eq!((u32::from(last.code), last.k), (RET_K, SECCOMP_RET_ALLOW));
    }
}
