//! Why a store cannot write, told apart by the error's kind, and a log that says so once per
//! cause and interval instead of once per refused request.
//!
//! A full disk under load refuses thousands of writes a second; logging each one (as the node
//! once did, "store closed", twice per send) floods the log with the wrong cause. Every store
//! failure is logged through [`log_failure`]: the first of a (cause, context) pair at once, the
//! next ones counted and summed up in one line per [`LOG_INTERVAL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::StoreError;

/// Why the store cannot write, from the operating system's error kind (or the backend's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// No space left on the device (`ENOSPC`) or the quota is used up (`EDQUOT`).
    DiskFull,
    /// The file system is mounted read-only (`EROFS`).
    ReadOnly,
    /// The node may not write the store file (`EACCES`, `EPERM`).
    PermissionDenied,
    /// The file holds bytes that are not a valid store page (a damaged disk or a copy gone wrong).
    Corrupted,
    /// Another process holds the store file (another `hushd` on the same data folder).
    Locked,
    /// Any other input/output error of the device.
    Io,
    /// The store's connection or writer is gone (shutdown, lost database connection).
    Closed,
}

impl Cause {
    /// The name in `/readyz`, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::DiskFull => "disk_full",
            Cause::ReadOnly => "read_only",
            Cause::PermissionDenied => "permission_denied",
            Cause::Corrupted => "corrupted",
            Cause::Locked => "locked",
            Cause::Io => "io_error",
            Cause::Closed => "closed",
        }
    }

    /// What an operator should do, in a few words.
    pub fn advice(self) -> &'static str {
        match self {
            Cause::DiskFull => "free space on the data folder's file system; the node recovers by itself",
            Cause::ReadOnly => "the file system is read-only; remount it read-write",
            Cause::PermissionDenied => "the node's user may not write the store file; fix its owner or mode",
            Cause::Corrupted => {
                "the store file is damaged; run `hushd store check`, then restore a backup or salvage"
            }
            Cause::Locked => {
                "another process holds the store file: if a hushd runs on this data folder, stop it first"
            }
            Cause::Io => "the device reported an I/O error; check the disk",
            Cause::Closed => "the store is shutting down or its connection was lost",
        }
    }

    /// The cause of an I/O error, by its kind (and its OS code where the kind is too coarse).
    pub fn of_io(e: &std::io::Error) -> Cause {
        const ENOSPC: i32 = 28;
        const EROFS: i32 = 30;
        const EDQUOT: i32 = 122;
        match (e.kind(), e.raw_os_error()) {
            (_, Some(ENOSPC | EDQUOT)) | (std::io::ErrorKind::StorageFull, _) => Cause::DiskFull,
            (_, Some(EROFS)) | (std::io::ErrorKind::ReadOnlyFilesystem, _) => Cause::ReadOnly,
            (std::io::ErrorKind::PermissionDenied, _) => Cause::PermissionDenied,
            (std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof, _) => Cause::Corrupted,
            _ => Cause::Io,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A write the store could not make, with its cause: nothing of it was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub cause: Cause,
    /// The backend's own words (no record content: file paths and OS messages only).
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.cause, self.detail)
    }
}

/// Shortest time between two log lines of one (cause, context) pair.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// (cause, context) pairs remembered at most; past it the oldest half is forgotten (contexts
/// are static strings of the code, so the map stays far below this in practice).
pub const MAX_LOG_KEYS: usize = 256;

struct Seen {
    last: Instant,
    suppressed: u64,
}

type Key = (Option<Cause>, &'static str);

static SEEN: Mutex<Option<HashMap<Key, Seen>>> = Mutex::new(None);

/// Logs a store failure met while doing `context` (a fixed phrase such as "send not stored"):
/// at once if this (cause, context) pair was not logged within [`LOG_INTERVAL`], with the count
/// of the ones left out since; otherwise only counts it. Errors that are answers, not
/// failures (conflicts, a full queue), are logged at debug level.
pub fn log_failure(e: &StoreError, context: &'static str) {
    let cause = e.cause();
    if cause.is_none() && !matches!(e, StoreError::Backend(_) | StoreError::Corrupt(_)) {
        tracing::debug!(error = %e, context, "store refused");
        return;
    }
    let Some(suppressed) = admit((cause, context), Instant::now()) else {
        return;
    };
    match cause {
        Some(c) => tracing::error!(
            cause = c.as_str(),
            error = %e,
            suppressed,
            advice = c.advice(),
            "{context}"
        ),
        None => tracing::error!(error = %e, suppressed, "{context}"),
    }
}

/// Whether a line for `key` may be written at `now`; if so, how many were left out before it.
fn admit(key: Key, now: Instant) -> Option<u64> {
    let mut guard = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    match map.get_mut(&key) {
        Some(seen) if now.duration_since(seen.last) < LOG_INTERVAL => {
            seen.suppressed += 1;
            None
        }
        Some(seen) => {
            let n = seen.suppressed;
            *seen = Seen { last: now, suppressed: 0 };
            Some(n)
        }
        None => {
            if map.len() >= MAX_LOG_KEYS {
                let mut by_age: Vec<(Key, Instant)> = map.iter().map(|(k, s)| (*k, s.last)).collect();
                by_age.sort_by_key(|(_, t)| *t);
                for (k, _) in by_age.into_iter().take(MAX_LOG_KEYS / 2) {
                    map.remove(&k);
                }
            }
            map.insert(key, Seen { last: now, suppressed: 0 });
            Some(0)
        }
    }
}

/// Runs `f`, turning a panic into its message. redb trusts a file it closed cleanly and may
/// panic on one damaged since; the store answers that as a damaged file instead of crashing.
/// With `quiet` the panic hook is silenced meanwhile (its message would garble a one-line
/// error): only where no other thread of ours runs code (start-up, offline commands), since
/// the hook is process-wide.
pub(crate) fn catch_panic<T>(quiet: bool, f: impl FnOnce() -> T) -> Result<T, String> {
    let hook = quiet.then(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        hook
    });
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    if let Some(hook) = hook {
        std::panic::set_hook(hook);
    }
    out.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unreadable structure".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_of_one_cause_gives_one_line_per_interval_with_the_count() {
        let key = (Some(Cause::DiskFull), "test: a storm");
        let t0 = Instant::now();
        assert_eq!(admit(key, t0), Some(0));
        for i in 1..1000u64 {
            assert_eq!(admit(key, t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(admit(key, t0 + LOG_INTERVAL + Duration::from_millis(1)), Some(999));
        // Another cause in the same context is its own line.
        assert_eq!(admit((Some(Cause::ReadOnly), "test: a storm"), t0), Some(0));
    }

    #[test]
    fn io_errors_are_told_apart_by_kind() {
        let os = |code| std::io::Error::from_raw_os_error(code);
        assert_eq!(Cause::of_io(&os(28)), Cause::DiskFull);
        assert_eq!(Cause::of_io(&os(122)), Cause::DiskFull);
        assert_eq!(Cause::of_io(&os(30)), Cause::ReadOnly);
        assert_eq!(Cause::of_io(&os(13)), Cause::PermissionDenied);
        assert_eq!(Cause::of_io(&os(5)), Cause::Io);
    }
}
