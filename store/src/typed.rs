//! Typed records over the key-value space: postcard values with their version, and one
//! compare-and-set [`update`] under one bounded retry policy ([`RETRY`]), so no domain module
//! writes a compare-and-set loop of its own.
//!
//! `update` re-reads and re-applies the change on a version conflict (another writer, on this
//! node or another, won the race), pausing a random time that doubles with every attempt, so
//! writers that collided do not collide again in lockstep. After [`RetryPolicy::attempts`] it
//! gives up with [`StoreError::VersionConflict`]; nothing was written.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{KvStore, StoreError};

/// A decoded record and its compare-and-set version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// Its version (0: never written).
    pub version: u64,
}

/// How [`update`] retries on conflicts.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts before giving up.
    pub attempts: u32,
    /// The first pause's upper bound; it doubles with every attempt.
    pub first_pause: Duration,
    /// The largest upper bound of one pause.
    pub max_pause: Duration,
}

/// The retry policy of every typed update.
pub const RETRY: RetryPolicy = RetryPolicy {
    attempts: 64,
    first_pause: Duration::from_micros(200),
    max_pause: Duration::from_millis(25),
};

impl RetryPolicy {
    /// The pause before attempt `n + 1`: uniform in `[0, min(first << n, max))`.
    pub fn pause(&self, n: u32) -> Duration {
        let bound = self.first_pause.saturating_mul(1u32 << n.min(16)).min(self.max_pause);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX).max(1);
        Duration::from_nanos(jitter() % nanos)
    }
}

/// A cheap random number (no cryptographic use): the retry pauses only need to differ
/// between writers.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    h.finish()
}

/// Encodes a record.
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes a record.
pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Reads one record.
pub async fn get<T: DeserializeOwned>(
    kv: &dyn KvStore,
    ns: &str,
    key: &str,
) -> Result<Option<Versioned<T>>, StoreError> {
    match kv.kv_get(ns, key).await? {
        Some(e) => Ok(Some(Versioned { value: decode(&e.value)?, version: e.version })),
        None => Ok(None),
    }
}

/// Writes a record that must not exist yet; [`StoreError::VersionConflict`] if it does.
pub async fn put_new<T: Serialize>(
    kv: &dyn KvStore,
    ns: &str,
    key: &str,
    value: &T,
) -> Result<u64, StoreError> {
    kv.kv_put(ns, key, 0, encode(value)?).await
}

/// What an [`update`] did.
#[derive(Clone, Debug)]
pub struct Updated<T> {
    /// The record before (as read by the attempt that wrote).
    pub before: Option<Versioned<T>>,
    /// The record after; equal to `before` when the change had nothing to do.
    pub after: Option<Versioned<T>>,
}

impl<T> Updated<T> {
    /// True if a write happened.
    pub fn changed(&self) -> bool {
        self.before.as_ref().map(|b| b.version) != self.after.as_ref().map(|a| a.version)
    }
}

/// Applies `change` to the record at `key` with compare-and-set under [`RETRY`]. `change` sees
/// the current record (`None` if absent) and returns the new one, `None` for "nothing to do",
/// or an error that aborts without writing. It may run several times (once per attempt).
pub async fn update<T, E, F>(kv: &dyn KvStore, ns: &str, key: &str, mut change: F) -> Result<Updated<T>, E>
where
    T: Serialize + DeserializeOwned + Clone,
    E: From<StoreError>,
    F: FnMut(Option<&T>) -> Result<Option<T>, E>,
{
    for attempt in 0..RETRY.attempts {
        let before = get::<T>(kv, ns, key).await?;
        let Some(next) = change(before.as_ref().map(|b| &b.value))? else {
            return Ok(Updated { after: before.clone(), before });
        };
        let expected = before.as_ref().map_or(0, |b| b.version);
        match kv.kv_put(ns, key, expected, encode(&next)?).await {
            Ok(version) => return Ok(Updated { before, after: Some(Versioned { value: next, version }) }),
            Err(StoreError::VersionConflict) => tokio::time::sleep(RETRY.pause(attempt)).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::VersionConflict.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_all_apply() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(crate::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        let r: Result<Updated<u64>, StoreError> =
                            update(&*store, "t", "counter", |v| Ok(Some(v.copied().unwrap_or(0) + 1))).await;
                        assert!(r.unwrap().changed());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let v: Versioned<u64> = get(&*store, "t", "counter").await.unwrap().unwrap();
        assert_eq!((v.value, v.version), (80, 80));
        // Nothing to do: no write.
        let r: Updated<u64> = update(&*store, "t", "counter", |_| Ok::<_, StoreError>(None)).await.unwrap();
        assert!(!r.changed());
    }

    #[test]
    fn pauses_stay_within_their_bound() {
        for n in 0..40 {
            let bound = RETRY.first_pause.saturating_mul(1u32 << n.min(16)).min(RETRY.max_pause);
            assert!(RETRY.pause(n) < bound.max(Duration::from_nanos(1)));
        }
    }
}
