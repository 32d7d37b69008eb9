//! Which program `ptest`'s pod holders execute: `ptest-pod-holder` from beside it when that
//! file is of this build's holder code, else ptest itself.

use crate::holder_build::HOLDER_BUILD;

/// Has this process's pod holders execute `ptest-pod-holder` from ptest's own directory (as
/// trusted as ptest itself: whoever can replace one can replace the other), or else ptest
/// again: an idle environment's holder then costs a small process's memory, not a copy of
/// this one's, and the small program less than ptest (whose relocated data alone dirties
/// tens of KiB in each holder). Where neither can be opened, holders fork only.
pub fn hold_pods_in_a_fresh_image() {
    match holder_program().and_then(|program| ptest_sandbox::hold_pods_in_program(&program)) {
        Ok(()) => return,
        Err(e) => tracing::debug!("pod holders will not execute ptest-pod-holder: {e}"),
    }
    if let Err(e) = ptest_sandbox::hold_pods_in_this_program() {
        tracing::debug!("pod holders will not re-execute ptest: {e}");
    }
}

/// The ELF section in which both binaries carry [`HOLDER_BUILD`].
const HOLDER_SECTION: &[u8] = b".ptest_holder_build";

/// `ptest-pod-holder` beside this executable, when its holder code is this build's. `cargo
/// run -p ptest` relinks `ptest` alone: a holder left from before a change to the pod's
/// protocol must not serve this build's pods.
fn holder_program() -> std::io::Result<std::path::PathBuf> {
    let program = std::env::current_exe()?.with_file_name("ptest-pod-holder");
    let theirs = holder_build_of(&program)?;
    if theirs != HOLDER_BUILD {
        return Err(std::io::Error::other(format!(
            "{} is of another build of the holder ({} where this ptest has {})",
            program.display(),
            String::from_utf8_lossy(&theirs),
            String::from_utf8_lossy(&HOLDER_BUILD),
        )));
    }
    Ok(program)
}

/// The holder build `program` carries, read from its section headers, their names and that
/// one section: four small reads, nothing run.
fn holder_build_of(program: &std::path::Path) -> std::io::Result<[u8; 16]> {
    use object::read::elf::{FileHeader, SectionHeader};
    let invalid = |e: object::Error| std::io::Error::other(format!("{}: {e}", program.display()));
    let file = object::ReadCache::new(std::fs::File::open(program)?);
    let header = object::elf::FileHeader64::<object::Endianness>::parse(&file).map_err(invalid)?;
    let endian = header.endian().map_err(invalid)?;
    let sections = header.sections(endian, &file).map_err(invalid)?;
    // The names in one read (looked up one by one, each would be a read of its own).
    let names = sections
        .section(object::SectionIndex(
            header.shstrndx(endian, &file).map_err(invalid)? as usize,
        ))
        .and_then(|names| names.data(endian, &file))
        .map_err(invalid)?;
    let named = |section: &&object::elf::SectionHeader64<object::Endianness>| {
        names
            .get(section.sh_name(endian) as usize..)
            .and_then(|rest| rest.strip_prefix(HOLDER_SECTION))
            .is_some_and(|rest| rest.first() == Some(&0))
    };
    let section = sections.iter().find(named).ok_or_else(|| {
        std::io::Error::other(format!("{} has no holder build", program.display()))
    })?;
    let data = section.data(endian, &file).map_err(invalid)?;
    data.try_into().map_err(|_| {
        std::io::Error::other(format!(
            "{}: a holder build of {} bytes",
            program.display(),
            data.len()
        ))
    })
}
