//! The image of an environment: an image that exists on the engine (or can be pulled), or one
//! built from a local directory with a Dockerfile, tagged `ptest-build:<content hash>` and
//! reused while that tag exists.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures_util::StreamExt;
use ptest_core::{DockerSpec, Error, Result};
use sha2::{Digest, Sha256};

use crate::connection::{engine_error, is_not_found, message_of};
use crate::container::{LABEL_HOME, hex};

/// The repository of images ptest builds.
pub(crate) const BUILD_REPOSITORY: &str = "ptest-build";

/// Checks the docker settings of a spec without an engine: exactly one of image and build,
/// and a build directory that holds a Dockerfile.
pub(crate) fn check(spec: Option<&DockerSpec>) -> Result<()> {
    let usage = |m: String| Err(Error::Usage(m));
    match spec.map(|d| (&d.image, &d.build)) {
        Some((Some(_), None)) => Ok(()),
        Some((None, Some(dir))) => {
            if !dir.join("Dockerfile").is_file() {
                return usage(format!(
                    "cannot build the docker environment's image from {}: it has no Dockerfile",
                    dir.display()
                ));
            }
            Ok(())
        }
        Some((Some(_), Some(_))) => {
            usage("the docker level takes an image or a directory to build, not both".to_owned())
        }
        _ => usage(
            "the docker level needs an image (--image NAME) or a directory with a Dockerfile \
             to build one from (--build DIR)"
                .to_owned(),
        ),
    }
}

/// The image to run for `spec`, pulling or building it as needed.
pub(crate) async fn resolve(docker: &Docker, spec: &DockerSpec, home: &str) -> Result<String> {
    check(Some(spec))?;
    match (&spec.image, &spec.build) {
        (Some(image), _) => ensure_present(docker, image).await.map(|()| image.clone()),
        (None, Some(dir)) => build(docker, dir, home).await,
        (None, None) => unreachable!("check refused a spec without image or build"),
    }
}

/// What `image` runs by itself: its entrypoint followed by its command (empty when it names
/// neither). ptest's containers run `sleep` instead; a caller that wants the image's own
/// program (a service container) runs this.
pub(crate) async fn command(docker: &Docker, image: &str) -> Result<Vec<String>> {
    let inspected = docker
        .inspect_image(image)
        .await
        .map_err(|e| engine_error("inspect an image", format!("{image}: {e}")))?;
    let config = inspected.config.unwrap_or_default();
    Ok(config
        .entrypoint
        .unwrap_or_default()
        .into_iter()
        .chain(config.cmd.unwrap_or_default())
        .collect())
}

/// Whether `image` exists on the engine.
async fn exists(docker: &Docker, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(engine_error("inspect an image", format!("{image}: {e}"))),
    }
}

/// Splits `name[:tag]` (a digest reference stays whole) for the pull API, which pulls every
/// tag when given none.
fn pull_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => (&image[..last + i], &image[last + i + 1..]),
        None => (image, "latest"),
    }
}

async fn ensure_present(docker: &Docker, image: &str) -> Result<()> {
    if exists(docker, image).await? {
        return Ok(());
    }
    let (from, tag) = pull_reference(image);
    let mut options = CreateImageOptionsBuilder::new().from_image(from);
    if !tag.is_empty() {
        options = options.tag(tag);
    }
    let mut pull = docker.create_image(Some(options.build()), None, None);
    let mut failure = None;
    while let Some(item) = pull.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    failure = detail.message.or(failure);
                }
            }
            Err(e) => {
                failure = Some(message_of(&e));
                break;
            }
        }
    }
    if failure.is_none() && exists(docker, image).await? {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "image {image:?} is not on the Docker engine and pulling it failed ({}): no registry \
         was reachable or it has no such image; build it first (docker build -t {image} DIR) \
         or let ptest build it with --build DIR",
        failure.unwrap_or_else(|| "the pull ended without the image".to_owned())
    )))
}

/// Builds the image of `dir` unless an image of the same content is tagged already.
async fn build(docker: &Docker, dir: &Path, home: &str) -> Result<String> {
    let dir_owned = dir.to_owned();
    let context = tokio::task::spawn_blocking(move || build_context(&dir_owned))
        .await
        .map_err(|e| engine_error("pack a build context", e))?
        .map_err(|e| Error::io("packing the build context", dir, e))?;
    let tag = format!("{BUILD_REPOSITORY}:{}", hex(&Sha256::digest(&context)[..8]));
    if exists(docker, &tag).await? {
        tracing::debug!("reusing {tag} for {}", dir.display());
        return Ok(tag);
    }
    tracing::info!("building {tag} from {}", dir.display());
    let labels = HashMap::from([(LABEL_HOME, home)]);
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    let mut stream = docker.build_image(
        options,
        None,
        Some(bollard::body_full(bytes::Bytes::from(context))),
    );
    let mut log = String::new();
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(line) = info.stream {
                    tracing::debug!("build {tag}: {}", line.trim_end());
                    log.push_str(&line);
                }
                if let Some(detail) = info.error_detail {
                    failure = detail.message.or(failure);
                }
            }
            Err(e) => {
                failure = Some(message_of(&e));
                break;
            }
        }
    }
    if failure.is_none() && exists(docker, &tag).await? {
        return Ok(tag);
    }
    let tail: Vec<&str> = log.lines().rev().take(10).collect();
    Err(engine_error(
        "build the image",
        format!(
            "{} (from {}): {}{}",
            tag,
            dir.display(),
            failure.unwrap_or_else(|| "the build ended without the image".to_owned()),
            if tail.is_empty() {
                String::new()
            } else {
                format!(
                    "\nlast build output:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        ),
    ))
}

/// The build context of `dir` as a tar archive. Entries are sorted and carry no times or
/// owners, so the same content always gives the same bytes (and hash). Symlinks are stored as
/// links, never followed; sockets, FIFOs and devices are left out. `.dockerignore` is not
/// applied: the whole directory is sent.
pub(crate) fn build_context(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(dir.to_owned(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&path)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = entry.metadata()?; // does not follow symlinks
            let mode = meta.permissions().mode() & 0o7777;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs::read_link(entry.path())?;
                append(&mut out, &name, b'2', mode, &target.to_string_lossy(), &[])?;
            } else if kind.is_dir() {
                let name = format!("{name}/");
                append(&mut out, &name, b'5', mode, "", &[])?;
                subdirs.push((entry.path(), name));
            } else if kind.is_file() {
                let data = fs::read(entry.path())?;
                append(&mut out, &name, b'0', mode, "", &data)?;
            }
        }
        // Popped in reverse, so visit subdirectories in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    out.extend_from_slice(&[0u8; 1024]);
    Ok(out)
}

/// Appends one tar entry (ustar, with GNU long-name records for names or link targets longer
/// than 100 bytes).
fn append(
    out: &mut Vec<u8>,
    name: &str,
    kind: u8,
    mode: u32,
    link: &str,
    data: &[u8],
) -> std::io::Result<()> {
    if name.len() > 100 {
        long_record(out, b'L', name);
    }
    if link.len() > 100 {
        long_record(out, b'K', link);
    }
    if data.len() as u64 >= 8 << 30 {
        return Err(std::io::Error::other(format!(
            "{name} is 8 GiB or larger, too large for the build context"
        )));
    }
    let mut header = [0u8; 512];
    put(&mut header[0..100], name.as_bytes());
    put_octal(&mut header[100..108], u64::from(mode));
    put_octal(&mut header[108..116], 0);
    put_octal(&mut header[116..124], 0);
    put_octal(&mut header[124..136], data.len() as u64);
    put_octal(&mut header[136..148], 0);
    header[156] = kind;
    put(&mut header[157..257], link.as_bytes());
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    seal(&mut header);
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    pad(out);
    Ok(())
}

fn long_record(out: &mut Vec<u8>, kind: u8, value: &str) {
    let mut header = [0u8; 512];
    put(&mut header[0..100], b"././@LongLink");
    put_octal(&mut header[100..108], 0o644);
    put_octal(&mut header[108..116], 0);
    put_octal(&mut header[116..124], 0);
    put_octal(&mut header[124..136], value.len() as u64 + 1);
    put_octal(&mut header[136..148], 0);
    header[156] = kind;
    header[257..265].copy_from_slice(b"ustar  \0");
    seal(&mut header);
    out.extend_from_slice(&header);
    out.extend_from_slice(value.as_bytes());
    out.push(0);
    pad(out);
}

/// Copies as much of `value` as fits (long values also get a long-name record).
fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// Zero-padded octal, NUL-terminated.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
}

/// Writes the header checksum (computed with the checksum field as spaces).
fn seal(header: &mut [u8; 512]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pull_reference_splits_tags_but_not_ports() {
        assert_eq!(pull_reference("busybox"), ("busybox", "latest"));
        assert_eq!(pull_reference("debian:12"), ("debian", "12"));
        assert_eq!(
            pull_reference("reg:5000/team/app"),
            ("reg:5000/team/app", "latest")
        );
        assert_eq!(pull_reference("reg:5000/app:v1"), ("reg:5000/app", "v1"));
        assert_eq!(pull_reference("app@sha256:ab"), ("app@sha256:ab", ""));
    }

    #[test]
    fn context_is_deterministic_and_follows_content() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::create_dir(tmp.path().join("sub")).unwrap();
        let long = "x".repeat(150);
        fs::write(tmp.path().join("sub").join(&long), "data").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("link")).unwrap();
        let a = build_context(tmp.path()).unwrap();
        let b = build_context(tmp.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len() % 512, 0);
        // The system tar reads it back: names, long names and the link survive.
        let archive = tmp.path().join("ctx.tar");
        fs::write(&archive, &a).unwrap();
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&archive)
            .output()
            .unwrap();
        assert!(listing.status.success());
        let listing = String::from_utf8(listing.stdout).unwrap();
        assert!(listing.contains(&format!("sub/{long}")), "{listing}");
        assert!(listing.contains("link -> /etc/passwd"), "{listing}");
        fs::remove_file(&archive).unwrap();
        fs::write(tmp.path().join("Dockerfile"), "FROM scratch\nENV A=1\n").unwrap();
        assert_ne!(build_context(tmp.path()).unwrap(), a);
    }
}
