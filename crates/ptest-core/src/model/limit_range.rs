//! The valid range of each resource limit, checked where the value is read (a flag, a
//! `ptest.toml` key, a stored spec), so that a value the kernel would refuse, or one that
//! could not host a shell, is a usage error naming the range — never a late errno.
//!
//! | limit | range | why |
//! |---|---|---|
//! | `cpus` | finite, > 0, ≤ 1024 | a fraction of cores; NaN, infinity or 0 mean nothing |
//! | `memory` | ≥ 4 MiB | below that the pod's holder and a shell do not fit |
//! | `disk` | ≥ 1 MiB | the root's tmpfs holds the marker, the anatomy and what a shell writes |
//! | `pids` | 1 ..= 4 194 304 | the kernel's `PID_MAX_LIMIT` |
//! | `files` | ≥ 1 | |
//! | `nofile` | 16 ..= 1 048 576 | a program needs a few descriptors to start; the kernel's `nr_open` default |
//! | `fsize` | ≥ 1 byte | |

use serde::{Deserialize, Deserializer};

use crate::size::ByteSize;

/// Smallest `--memory`: 4 MiB.
pub const MEMORY_MIN: u64 = 4 << 20;
/// Smallest `--disk`: 1 MiB.
pub const DISK_MIN: u64 = 1 << 20;
/// Largest `--cpus`.
pub const CPUS_MAX: f64 = 1024.0;
/// Largest `--pids`: the kernel's `PID_MAX_LIMIT` on 64-bit.
pub const PIDS_MAX: u64 = 4_194_304;
/// Smallest and largest `--nofile`.
pub const NOFILE_RANGE: (u64, u64) = (16, 1 << 20);

/// `cpus`, checked.
pub fn cpus(value: f64) -> Result<f64, String> {
    if value.is_finite() && value > 0.0 && value <= CPUS_MAX {
        Ok(value)
    } else {
        Err(format!(
            "cpus {value} is out of range: give a number of cores greater than 0 and at most \
             {CPUS_MAX} (e.g. 0.5, 2)"
        ))
    }
}

/// `memory`, checked.
pub fn memory(value: ByteSize) -> Result<ByteSize, String> {
    at_least(
        "memory",
        value,
        MEMORY_MIN,
        "the pod's holder and a shell need that much",
    )
}

/// `disk`, checked.
pub fn disk(value: ByteSize) -> Result<ByteSize, String> {
    at_least("disk", value, DISK_MIN, "the root's own files need room")
}

/// `fsize`, checked.
pub fn fsize(value: ByteSize) -> Result<ByteSize, String> {
    at_least("fsize", value, 1, "0 would forbid writing any file")
}

fn at_least(name: &str, value: ByteSize, min: u64, why: &str) -> Result<ByteSize, String> {
    if value.0 >= min {
        Ok(value)
    } else {
        Err(format!(
            "{name} {value} is too small: at least {} ({why})",
            ByteSize(min)
        ))
    }
}

/// `pids`, checked.
pub fn pids(value: u64) -> Result<u64, String> {
    in_range("pids", value, 1, PIDS_MAX, "processes")
}

/// `files`, checked.
pub fn files(value: u64) -> Result<u64, String> {
    in_range("files", value, 1, u64::MAX, "files and directories")
}

/// `nofile`, checked.
pub fn nofile(value: u64) -> Result<u64, String> {
    in_range(
        "nofile",
        value,
        NOFILE_RANGE.0,
        NOFILE_RANGE.1,
        "open files",
    )
}

fn in_range(name: &str, value: u64, min: u64, max: u64, what: &str) -> Result<u64, String> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else if max == u64::MAX {
        Err(format!(
            "{name} {value} is out of range: at least {min} {what}"
        ))
    } else {
        Err(format!(
            "{name} {value} is out of range: from {min} to {max} {what}"
        ))
    }
}

/// Serde adapters: `#[serde(deserialize_with = "limit_range::serde::cpus")]` on an
/// `Option` field reads the value and checks it.
pub(crate) mod serde_checked {
    use super::*;

    fn checked<'de, D, T, F>(d: D, check: F) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
        F: Fn(T) -> Result<T, String>,
    {
        Option::<T>::deserialize(d)?
            .map(check)
            .transpose()
            .map_err(serde::de::Error::custom)
    }

    pub fn cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        checked(d, super::cpus)
    }
    pub fn memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
        checked(d, super::memory)
    }
    pub fn disk<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
        checked(d, super::disk)
    }
    pub fn fsize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
        checked(d, super::fsize)
    }
    pub fn pids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        checked(d, super::pids)
    }
    pub fn files<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        checked(d, super::files)
    }
    pub fn nofile<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        checked(d, super::nofile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_name_the_range() {
        for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0, 1025.0] {
            assert!(cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(cpus(0.5), Ok(0.5));
        assert!(memory(ByteSize(1)).unwrap_err().contains("at least 4M"));
        assert!(memory(ByteSize(MEMORY_MIN)).is_ok());
        assert!(disk(ByteSize(0)).is_err());
        assert!(pids(0).unwrap_err().contains("from 1 to 4194304"));
        assert!(pids(PIDS_MAX + 1).is_err());
        assert!(nofile(3).is_err());
        assert!(files(0).is_err());
    }
}
