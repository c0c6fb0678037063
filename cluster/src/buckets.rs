//! In-process token buckets: the rate limits of a node that runs alone, and the fallback of a
//! clustered node while Redis is unreachable (then each node limits on its own, so a client
//! spreading requests over `n` nodes gets at most `n` times the budget until Redis is back).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limits::MAX_LOCAL_BUCKETS;

struct Bucket {
    tokens: f64,
    at: Instant,
    /// When the bucket is full again (it can then be forgotten: a fresh one is identical).
    full_at: Instant,
}

/// Token buckets by key, at most [`MAX_LOCAL_BUCKETS`].
#[derive(Default)]
pub struct TokenBuckets {
    inner: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    /// Takes a token from bucket `key` (capacity `capacity`, one token back every `refill`):
    /// `None` if taken, else how long until one is back.
    pub fn take(&self, key: &str, capacity: u32, refill: Duration) -> Option<Duration> {
        self.take_at(key, capacity, refill, Instant::now())
    }

    fn take_at(&self, key: &str, capacity: u32, refill: Duration, now: Instant) -> Option<Duration> {
        let cap = f64::from(capacity.max(1));
        let refill_s = refill.as_secs_f64().max(1e-3);
        let mut m = match self.inner.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.len() >= MAX_LOCAL_BUCKETS && !m.contains_key(key) {
            // Forget the buckets that are full again; if that frees nothing, start over (the
            // limit is then briefly lenient, never stricter).
            m.retain(|_, b| b.full_at > now);
            if m.len() >= MAX_LOCAL_BUCKETS {
                m.clear();
            }
        }
        let b = m.entry(key.to_owned()).or_insert(Bucket { tokens: cap, at: now, full_at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed / refill_s).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.full_at = now + Duration::from_secs_f64((cap - b.tokens) * refill_s);
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - b.tokens) * refill_s))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_of_six_then_one_back_per_interval() {
        let b = TokenBuckets::default();
        let t0 = Instant::now();
        let refill = Duration::from_secs(600);
        for _ in 0..6 {
            assert_eq!(b.take_at("a", 6, refill, t0), None);
        }
        let wait = b.take_at("a", 6, refill, t0).unwrap();
        assert!(wait > Duration::from_secs(599) && wait <= refill, "{wait:?}");
        // Another pair has its own bucket.
        assert_eq!(b.take_at("b", 6, refill, t0), None);
        // Half an interval later: still empty, about 300 s to go.
        let wait = b.take_at("a", 6, refill, t0 + Duration::from_secs(300)).unwrap();
        assert!(wait > Duration::from_secs(299) && wait <= Duration::from_secs(300), "{wait:?}");
        // One interval after the last take: exactly one token.
        assert_eq!(b.take_at("a", 6, refill, t0 + refill), None);
        assert!(b.take_at("a", 6, refill, t0 + refill).is_some());
        // Never more than the capacity, however long the wait.
        let later = t0 + Duration::from_secs(100 * 600);
        for _ in 0..6 {
            assert_eq!(b.take_at("a", 6, refill, later), None);
        }
        assert!(b.take_at("a", 6, refill, later).is_some());
    }
}
