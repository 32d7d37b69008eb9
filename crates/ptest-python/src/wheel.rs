//! A wheel's `METADATA`, read from the wheel (a zip archive) without starting Python: the
//! end-of-central-directory record (zip64's too) leads to the central directory, its entry
//! for `<name>.dist-info/METADATA` to the member's local header, and the member is stored or
//! deflated (the two methods wheels use). Only what the member needs is read, whatever the
//! wheel's size.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The end-of-central-directory record: 22 bytes and a comment of at most 65,535.
const EOCD_LEN: u64 = 22;
const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
/// Most bytes of central directory read (a wheel of 100,000 files has a few MiB).
const CENTRAL_MAX: u64 = 64 << 20;

/// The bytes of the wheel's `*.dist-info/METADATA` (the first such member at the top level,
/// as pip and `zipfile` find it), at most `max` of them.
pub fn metadata(wheel: &Path, max: usize) -> Result<Vec<u8>> {
    let file = File::open(wheel).map_err(Error::io("opening", wheel))?;
    read_metadata(&file, max).map_err(Error::io("reading the METADATA of", wheel))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

fn read_exact_at(file: &File, len: u64, at: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).map_err(|_| invalid("too large".into()))?];
    file.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

/// Where the central directory is and how long it is.
fn central_directory(file: &File) -> io::Result<(u64, u64)> {
    let size = file.metadata()?.len();
    if size < EOCD_LEN {
        return Err(invalid(format!(
            "{size} bytes is too short for a zip archive"
        )));
    }
    let tail_len = size.min(EOCD_LEN + 0xffff);
    let tail = read_exact_at(file, tail_len, size - tail_len)?;
    let eocd = (0..=tail.len() - EOCD_LEN as usize)
        .rev()
        .find(|&i| u32_at(&tail, i) == EOCD_SIGNATURE)
        .ok_or_else(|| invalid("no end-of-central-directory record: not a zip archive".into()))?;
    let (len, offset) = (
        u64::from(u32_at(&tail, eocd + 12)),
        u64::from(u32_at(&tail, eocd + 16)),
    );
    if len != 0xffff_ffff && offset != 0xffff_ffff {
        return Ok((offset, len));
    }
    // zip64: a locator just before the record names the zip64 record.
    let locator_at = (size - tail_len + eocd as u64)
        .checked_sub(20)
        .ok_or_else(|| invalid("a zip64 archive without its locator".into()))?;
    let locator = read_exact_at(file, 20, locator_at)?;
    if u32_at(&locator, 0) != ZIP64_LOCATOR_SIGNATURE {
        return Err(invalid("a zip64 archive without its locator".into()));
    }
    let record = read_exact_at(file, 56, u64_at(&locator, 8))?;
    if u32_at(&record, 0) != ZIP64_EOCD_SIGNATURE {
        return Err(invalid("the zip64 locator names no zip64 record".into()));
    }
    Ok((u64_at(&record, 48), u64_at(&record, 40)))
}

/// One member, as the central directory describes it.
struct Member {
    method: u16,
    compressed: u64,
    uncompressed: u64,
    local_header: u64,
}

/// The central directory's entry for the top-level `*.dist-info/METADATA`.
fn find_metadata(central: &[u8]) -> io::Result<Member> {
    let mut at = 0;
    while at + 46 <= central.len() && u32_at(central, at) == CENTRAL_SIGNATURE {
        let (name_len, extra_len, comment_len) = (
            usize::from(u16_at(central, at + 28)),
            usize::from(u16_at(central, at + 30)),
            usize::from(u16_at(central, at + 32)),
        );
        let name_at = at + 46;
        let extra_at = name_at + name_len;
        let next = extra_at + extra_len + comment_len;
        if next > central.len() {
            break;
        }
        let name = &central[name_at..extra_at];
        let top_level = name.iter().filter(|&&b| b == b'/').count() == 1;
        if top_level && name.ends_with(b".dist-info/METADATA") {
            let mut member = Member {
                method: u16_at(central, at + 10),
                compressed: u64::from(u32_at(central, at + 20)),
                uncompressed: u64::from(u32_at(central, at + 24)),
                local_header: u64::from(u32_at(central, at + 42)),
            };
            zip64_sizes(&central[extra_at..extra_at + extra_len], &mut member);
            return Ok(member);
        }
        at = next;
    }
    Err(invalid("no top-level *.dist-info/METADATA in it".into()))
}

/// The sizes and offset that did not fit 32 bits, from the zip64 extra field (id 1), which
/// holds them in this order, each only when its 32-bit field is all ones.
fn zip64_sizes(mut extra: &[u8], member: &mut Member) {
    while extra.len() >= 4 {
        let (id, len) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
        let Some(data) = extra.get(4..4 + len) else {
            return;
        };
        if id == 1 {
            let mut fields = data.chunks_exact(8).map(|c| u64_at(c, 0));
            for field in [
                &mut member.uncompressed,
                &mut member.compressed,
                &mut member.local_header,
            ] {
                if *field == 0xffff_ffff
                    && let Some(value) = fields.next()
                {
                    *field = value;
                }
            }
            return;
        }
        extra = &extra[4 + len..];
    }
}

fn read_metadata(file: &File, max: usize) -> io::Result<Vec<u8>> {
    let (offset, len) = central_directory(file)?;
    if len > CENTRAL_MAX {
        return Err(invalid(format!(
            "its central directory is {len} bytes, more than ptest reads"
        )));
    }
    let member = find_metadata(&read_exact_at(file, len, offset)?)?;
    let local = read_exact_at(file, 30, member.local_header)?;
    if u32_at(&local, 0) != LOCAL_SIGNATURE {
        return Err(invalid(
            "the METADATA's local header is not where the directory says".into(),
        ));
    }
    let data_at =
        member.local_header + 30 + u64::from(u16_at(&local, 26)) + u64::from(u16_at(&local, 28));
    // Never much more than the caller wants, stored or deflated: deflate grows nothing by
    // more than 5 bytes a 64 KiB block, so `max` and an eighth more hold `max` bytes of output
    // when there are that many.
    let max64 = max as u64;
    let mut bytes = match member.method {
        0 => read_exact_at(file, member.uncompressed.min(max64), data_at)?,
        8 => {
            let bound = max64 + max64 / 8 + 1024;
            let compressed = read_exact_at(file, member.compressed.min(bound), data_at)?;
            match miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, max) {
                Ok(bytes) => bytes,
                Err(e) if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput => e.output,
                Err(e) => return Err(invalid(format!("its METADATA does not inflate: {e}"))),
            }
        }
        method => {
            return Err(invalid(format!(
                "its METADATA is compressed with method {method}, not stored or deflated"
            )));
        }
    };
    bytes.truncate(max);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip of `(name, bytes, deflate)` members, written the way `zipfile` writes one (no
    /// data descriptors), with the central directory's sizes and offsets in zip64 extra
    /// fields when `zip64` is set.
    fn zip(members: &[(&str, &[u8], bool)], zip64: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, bytes, deflate) in members {
            let data = if *deflate {
                miniz_oxide::deflate::compress_to_vec(bytes, 6)
            } else {
                bytes.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend(LOCAL_SIGNATURE.to_le_bytes());
            out.extend([20, 0, 0, 0]);
            out.extend(method.to_le_bytes());
            out.extend([0; 8]); // time, date, crc (not checked)
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((bytes.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(3u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(b"abc"); // a local extra field of its own length
            out.extend(&data);
            let (sizes, extra): ([u32; 3], Vec<u8>) = if zip64 {
                let mut extra = vec![1, 0, 24, 0];
                for v in [bytes.len() as u64, data.len() as u64, u64::from(offset)] {
                    extra.extend(v.to_le_bytes());
                }
                ([u32::MAX; 3], extra)
            } else {
                ([data.len() as u32, bytes.len() as u32, offset], Vec::new())
            };
            central.extend(CENTRAL_SIGNATURE.to_le_bytes());
            central.extend([20, 0, 20, 0, 0, 0]);
            central.extend(method.to_le_bytes());
            central.extend([0; 8]);
            central.extend(sizes[0].to_le_bytes());
            central.extend(sizes[1].to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend((extra.len() as u16).to_le_bytes());
            central.extend([0; 6]); // comment length, disk, internal attributes
            central.extend([0; 4]); // external attributes
            central.extend(sizes[2].to_le_bytes());
            central.extend(name.as_bytes());
            central.extend(extra);
        }
        let (cd_at, cd_len, count) = (out.len() as u64, central.len() as u64, members.len());
        out.extend(central);
        if zip64 {
            let record_at = out.len() as u64;
            out.extend(ZIP64_EOCD_SIGNATURE.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend((count as u64).to_le_bytes());
            out.extend((count as u64).to_le_bytes());
            out.extend(cd_len.to_le_bytes());
            out.extend(cd_at.to_le_bytes());
            out.extend(ZIP64_LOCATOR_SIGNATURE.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(record_at.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(EOCD_SIGNATURE.to_le_bytes());
        out.extend([0; 4]);
        out.extend((count as u16).to_le_bytes());
        out.extend((count as u16).to_le_bytes());
        let (len, at) = if zip64 {
            (u32::MAX, u32::MAX)
        } else {
            (cd_len as u32, cd_at as u32)
        };
        out.extend(len.to_le_bytes());
        out.extend(at.to_le_bytes());
        out.extend(7u16.to_le_bytes());
        out.extend(b"comment");
        out
    }

    const METADATA: &[u8] = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\
        Requires-Dist: six>=1\n\nA description mentioning Requires-Dist: nothing\n";

    fn read(bytes: &[u8], max: usize) -> Result<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
        std::fs::write(&wheel, bytes).unwrap();
        metadata(&wheel, max)
    }

    #[test]
    fn the_top_level_metadata_is_read_deflated_or_stored() {
        for deflate in [true, false] {
            for zip64 in [false, true] {
                let wheel = zip(
                    &[
                        ("demo/__init__.py", b"x = 1\n", deflate),
                        (
                            "demo/vendored-1.0.dist-info/METADATA",
                            b"Name: not-this\n",
                            deflate,
                        ),
                        ("demo-1.0.dist-info/METADATA", METADATA, deflate),
                        ("demo-1.0.dist-info/RECORD", b"", deflate),
                    ],
                    zip64,
                );
                assert_eq!(
                    read(&wheel, 1 << 20).unwrap(),
                    METADATA,
                    "deflate {deflate}, zip64 {zip64}"
                );
            }
        }
    }

    #[test]
    fn at_most_max_bytes_are_returned() {
        for deflate in [true, false] {
            let wheel = zip(&[("demo-1.0.dist-info/METADATA", METADATA, deflate)], false);
            assert_eq!(read(&wheel, 10).unwrap(), &METADATA[..10]);
        }
    }

    #[test]
    fn what_is_not_a_wheel_is_refused_with_the_reason() {
        let e = read(b"PK not a zip at all, just long enough", 100).unwrap_err();
        assert!(e.to_string().contains("not a zip archive"), "{e}");
        let e = read(&zip(&[("demo/x.py", b"", false)], false), 100).unwrap_err();
        assert!(
            e.to_string().contains("no top-level *.dist-info/METADATA"),
            "{e}"
        );
        let e = read(b"PK", 100).unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");
    }
}
