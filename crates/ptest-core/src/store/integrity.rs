//! Refusing a damaged database before SQLite would make a new one over it.

use super::*;

/// The first 16 bytes of every SQLite database file.
pub(super) const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a state database that cannot hold what it should, before SQLite would make a new
/// one over it: missing or empty while environment roots exist in `envs`, not a database,
/// or shorter than its header says (truncated). Costs one read of its first 100 bytes; the
/// roots are looked for only when the file is missing or empty.
pub fn check_intact(db: &Path, envs: &Path) -> Result<()> {
    let damaged = |reason: String| Error::StoreDamaged {
        path: db.to_owned(),
        reason,
    };
    let mut header = [0u8; 100];
    let read = match fs::File::open(db) {
        Ok(mut f) => read_up_to(&mut f, &mut header).map_err(|e| Error::io("reading", db, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("opening", db, e)),
    };
    if read == 0 {
        let roots = marked_roots(envs);
        if roots > 0 {
            let what = if db.exists() {
                "is empty"
            } else {
                "is missing"
            };
            return Err(damaged(format!(
                "{what} while {roots} environment root(s) exist in {}",
                envs.display()
            )));
        }
        return Ok(());
    }
    if read < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(damaged(
            "is not a SQLite database (its header is wrong)".into(),
        ));
    }
    // Page size (1 stands for 65536) and the page count, valid when the change counter
    // matches the version-valid-for number.
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let pages = u64::from(word(28));
    if word(24) != word(92) || pages == 0 {
        return Ok(());
    }
    // A checkpoint in another process writes page 1 (this header) before the pages that
    // extend the file: a file shorter than its header says for a moment is normal. Only one
    // that stays short is truncated.
    let expected = pages * page_size;
    for _ in 0..25 {
        let len = fs::metadata(db)
            .map_err(|e| Error::io("inspecting", db, e))?
            .len();
        if len >= expected {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let len = fs::metadata(db)
        .map_err(|e| Error::io("inspecting", db, e))?
        .len();
    // A checkpoint that readers held back (PASSIVE) may have written the header and stopped
    // before the last pages: those still live in the WAL, and nothing is lost.
    if wal_holds(db, len / page_size + 1, pages, page_size) {
        return Ok(());
    }
    Err(damaged(format!(
        "is truncated: {len} bytes where its header says {expected} ({pages} pages)"
    )))
}

/// Whether the WAL beside `db` holds a valid frame (salts matching its header) for each page
/// `first..=last`.
pub(super) fn wal_holds(db: &Path, first: u64, last: u64, page_size: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut wal_path = db.as_os_str().to_owned();
    wal_path.push("-wal");
    let Ok(mut wal) = fs::File::open(&wal_path) else {
        return false;
    };
    let mut header = [0u8; 32];
    if wal.read_exact(&mut header).is_err() {
        return false;
    }
    let word = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if word(&header, 0) & !1 != 0x377f_0682 || u64::from(word(&header, 8)) != page_size {
        return false;
    }
    let salts = (word(&header, 16), word(&header, 20));
    let mut needed: std::collections::BTreeSet<u64> = (first..=last).collect();
    let mut frame = [0u8; 24];
    let mut at = 32u64;
    while !needed.is_empty()
        && wal.seek(SeekFrom::Start(at)).is_ok()
        && wal.read_exact(&mut frame).is_ok()
    {
        if (word(&frame, 8), word(&frame, 12)) != salts {
            break;
        }
        needed.remove(&u64::from(word(&frame, 0)));
        at += 24 + page_size;
    }
    needed.is_empty()
}

pub(super) fn read_up_to(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// How many entries of `envs` carry an environment marker.
pub(super) fn marked_roots(envs: &Path) -> usize {
    fs::read_dir(envs).map_or(0, |dir| {
        dir.filter_map(|e| e.ok())
            .filter(|e| e.path().join(crate::root::MARKER).exists())
            .count()
    })
}
