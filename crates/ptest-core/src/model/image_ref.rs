//! Docker image references, checked when they are read (a flag, a stored spec), so that a
//! malformed one is a usage error naming the rule it breaks, not an engine error after the
//! environment was half made.
//!
//! The grammar is the distribution project's: `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`, where
//! PATH is lowercase components (`[a-z0-9]+` joined by `.`, `_`, `__` or `-`s) separated by
//! `/`, TAG is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` and DIGEST is `ALGORITHM:HEX`.

/// `reference` when it is a valid image reference, else why not.
pub fn check(reference: &str) -> Result<&str, String> {
    let bad = |why: &str| {
        format!(
            "invalid image reference {reference:?}: {why} (e.g. redis:7, \
             registry.example.com:5000/team/app:1.2, alpine@sha256:…)"
        )
    };
    if reference.is_empty() || reference.len() > 255 + 128 + 80 {
        return Err(bad("empty or too long"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let (algo, hex) = d
            .split_once(':')
            .ok_or_else(|| bad("a digest is ALGORITHM:HEX"))?;
        let algo_ok = !algo.is_empty()
            && algo
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        if !algo_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("a digest is ALGORITHM:HEX with at least 32 hex digits"));
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let mut chars = tag.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok
            || tag.len() > 128
            || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(bad(
                "a tag is letters, digits, '_', '.' and '-' (128 at most), not starting with '.' or '-'",
            ));
        }
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry host when it has a '.' or ':' or is `localhost`.
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (h, port) = match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        };
        let host_ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(bad("the registry is HOST[:PORT]"));
        }
    }
    for part in &parts {
        if !path_component(part) {
            return Err(bad(
                "a name is lowercase letters and digits, separated by '.', '_', '__', '-' or '/'",
            ));
        }
    }
    Ok(reference)
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn path_component(part: &str) -> bool {
    let b = part.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let sep_end = match c {
            b'.' => i + 1,
            b'_' if b.get(i + 1) == Some(&b'_') => i + 2,
            b'_' => i + 1,
            b'-' => {
                let mut j = i;
                while b.get(j) == Some(&b'-') {
                    j += 1;
                }
                j
            }
            _ => return false,
        };
        // A separator must be followed by an alphanumeric.
        if !b
            .get(sep_end)
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return false;
        }
        i = sep_end;
    }
    true
}

/// Serde adapter for an optional image reference.
pub(crate) fn deserialize_checked<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let value: Option<String> = serde::Deserialize::deserialize(d)?;
    if let Some(v) = &value {
        check(v).map_err(serde::de::Error::custom)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_docker_accepts_pass_and_others_say_why() {
        for good in [
            "redis",
            "redis:7",
            "library/redis:7.2-alpine",
            "registry.example.com:5000/team/app:1.2",
            "localhost/app",
            "ptest-build:0123abcd",
            "a__b/c-d--e:latest",
            "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check(good).is_ok(), "{good}: {:?}", check(good));
        }
        for bad in [
            "",
            "Redis",
            "redis:",
            "redis:-x",
            "re dis",
            "redis@sha256:xyz",
            "/redis",
            "redis/",
            "a..b",
            "host:99999/app",
            "-x",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
