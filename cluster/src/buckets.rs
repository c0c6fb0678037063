//! In-process token buckets: the rate limits of a node that runs alone, and the fallback of a
//! clustered node while Redis is unreachable (then each node limits on its own, so a client
//! spreading requests over `n` nodes gets at most `n` times the budget until Redis is back).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limits::{MAX_LOCAL_ATTEMPT_COUNTERS, MAX_LOCAL_BUCKETS};

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

/// How the attempts counted under one key are throttled. Every attempt let through is counted
/// at once (before it is checked, so parallel attempts cannot exceed the budget); a success
/// then clears the counter ([`Release::Reset`]) or gives its attempt back ([`Release::Refund`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts counted before any delay.
    pub free: u32,
    /// The wait after the first attempt past `free`; it doubles with each further one.
    pub base: Duration,
    /// The longest wait before `lock_after` (a delay never grows past it).
    pub max_delay: Duration,
    /// Counted attempts that lock the key (`u32::MAX`: never).
    pub lock_after: u32,
    /// The first lock's length; each further failure while past `lock_after` relocks for
    /// twice as long, up to `max_lock`.
    pub lock: Duration,
    /// The longest lock.
    pub max_lock: Duration,
    /// Counted attempts after which the key stays locked until cleared ([`Release::Reset`]);
    /// NIST SP 800-63B allows at most 100 consecutive failures per account.
    pub hard_limit: u32,
    /// A counter with no attempt for this long is forgotten (not while hard-locked).
    pub forget_after: Duration,
}

/// What an attempt may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let through and counted: this is the `n`-th counted attempt.
    Allowed(u32),
    /// Too soon after the last attempt: retry after this long (nothing counted).
    Delayed(Duration),
    /// Locked: retry after this long (nothing counted). A hard lock reports `max_lock`.
    Locked(Duration),
}

/// What a finished attempt gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Success: the counter starts over (an account's consecutive failures).
    Reset,
    /// Success: this attempt is not counted after all (a client address's failures).
    Refund,
}

fn doubled(base: Duration, steps: u32, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(steps.min(31));
    base.saturating_mul(factor).min(max)
}

impl Backoff {
    /// The verdict for a key that has counted `count` attempts, the last at `last_ms`, at
    /// `now_ms` (any clock in ms, the same for both).
    pub fn verdict(&self, count: u32, last_ms: u64, now_ms: u64) -> Verdict {
        let since = Duration::from_millis(now_ms.saturating_sub(last_ms));
        if count >= self.hard_limit {
            return Verdict::Locked(self.max_lock);
        }
        if count >= self.lock_after {
            let lock = doubled(self.lock, count - self.lock_after, self.max_lock);
            return if since >= lock { Verdict::Allowed(count + 1) } else { Verdict::Locked(lock - since) };
        }
        if count >= self.free {
            let wait = doubled(self.base, count - self.free, self.max_delay);
            return if since >= wait { Verdict::Allowed(count + 1) } else { Verdict::Delayed(wait - since) };
        }
        Verdict::Allowed(count + 1)
    }

    /// Whether a key that has counted `count` attempts is locked (after a failure: the key is
    /// locked from now on).
    pub fn locks_at(&self, count: u32) -> bool {
        count >= self.lock_after || count >= self.hard_limit
    }
}

struct Counter {
    count: u32,
    last_ms: u64,
}

/// Attempt counters by key, at most [`MAX_LOCAL_ATTEMPT_COUNTERS`].
#[derive(Default)]
pub struct AttemptCounters {
    inner: Mutex<HashMap<String, Counter>>,
}

fn local_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AttemptCounters {
    /// Checks an attempt under `key` and counts it if it is let through.
    pub fn attempt(&self, key: &str, rule: &Backoff) -> Verdict {
        self.attempt_at(key, rule, local_ms())
    }

    fn attempt_at(&self, key: &str, rule: &Backoff, now: u64) -> Verdict {
        let mut m = match self.inner.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.len() >= MAX_LOCAL_ATTEMPT_COUNTERS && !m.contains_key(key) {
            // Forget the idle counters first; the hard-locked ones are kept as long as any
            // room is left.
            let forget = rule.forget_after.as_millis() as u64;
            m.retain(|_, c| c.count >= rule.hard_limit || now.saturating_sub(c.last_ms) < forget);
            if m.len() >= MAX_LOCAL_ATTEMPT_COUNTERS {
                m.retain(|_, c| c.count >= rule.hard_limit);
            }
            if m.len() >= MAX_LOCAL_ATTEMPT_COUNTERS {
                m.clear();
            }
        }
        let forget = rule.forget_after.as_millis() as u64;
        let c = m.entry(key.to_owned()).or_insert(Counter { count: 0, last_ms: now });
        if c.count < rule.hard_limit && now.saturating_sub(c.last_ms) >= forget {
            c.count = 0;
        }
        let v = rule.verdict(c.count, c.last_ms, now);
        if let Verdict::Allowed(n) = v {
            c.count = n;
            c.last_ms = now;
        }
        v
    }

    /// Gives back what a successful attempt took.
    pub fn release(&self, key: &str, how: Release) {
        let mut m = match self.inner.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match how {
            Release::Reset => {
                m.remove(key);
            }
            Release::Refund => {
                if let Some(c) = m.get_mut(key) {
                    c.count = c.count.saturating_sub(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule() -> Backoff {
        Backoff {
            free: 5,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            lock_after: 8,
            lock: Duration::from_secs(100),
            max_lock: Duration::from_secs(1000),
            hard_limit: 12,
            forget_after: Duration::from_secs(5000),
        }
    }

    #[test]
    fn free_attempts_then_doubling_delays_then_locks_then_a_hard_lock() {
        let c = AttemptCounters::default();
        let r = rule();
        let mut t = 1_000_000u64;
        for n in 1..=5 {
            assert_eq!(c.attempt_at("k", &r, t), Verdict::Allowed(n));
        }
        // The 6th waits 1 s, the 7th 2 s, the 8th 4 s; nothing is counted while waiting.
        for (n, wait) in [(6u32, 1_000u64), (7, 2_000), (8, 4_000)] {
            assert_eq!(c.attempt_at("k", &r, t), Verdict::Delayed(Duration::from_millis(wait)));
            assert_eq!(c.attempt_at("k", &r, t + wait - 1), Verdict::Delayed(Duration::from_millis(1)));
            t += wait;
            assert_eq!(c.attempt_at("k", &r, t), Verdict::Allowed(n));
        }
        // 8 counted: locked for 100 s, then one attempt, then 200 s, ...
        assert_eq!(c.attempt_at("k", &r, t + 1), Verdict::Locked(Duration::from_millis(99_999)));
        t += 100_000;
        assert_eq!(c.attempt_at("k", &r, t), Verdict::Allowed(9));
        assert_eq!(c.attempt_at("k", &r, t + 100_000), Verdict::Locked(Duration::from_secs(100)));
        t += 200_000;
        assert_eq!(c.attempt_at("k", &r, t), Verdict::Allowed(10));
        t += 400_000;
        assert_eq!(c.attempt_at("k", &r, t), Verdict::Allowed(11));
        t += 800_000;
        assert_eq!(c.attempt_at("k", &r, t), Verdict::Allowed(12));
        // The hard limit: locked however long one waits, and never forgotten.
        for later in [t + 1_000_000, t + 100_000_000] {
            assert_eq!(c.attempt_at("k", &r, later), Verdict::Locked(Duration::from_secs(1000)));
        }
        // Another key is untouched; a reset starts over.
        assert_eq!(c.attempt_at("other", &r, t), Verdict::Allowed(1));
        c.release("k", Release::Reset);
        assert_eq!(c.attempt_at("k", &r, t), Verdict::Allowed(1));
    }

    #[test]
    fn a_refund_gives_one_attempt_back_and_idle_counters_are_forgotten() {
        let c = AttemptCounters::default();
        let r = rule();
        let t = 1_000_000u64;
        for n in 1..=5 {
            assert_eq!(c.attempt_at("ip", &r, t), Verdict::Allowed(n));
        }
        c.release("ip", Release::Refund);
        assert_eq!(c.attempt_at("ip", &r, t), Verdict::Allowed(5));
        assert!(matches!(c.attempt_at("ip", &r, t), Verdict::Delayed(_)));
        assert_eq!(c.attempt_at("ip", &r, t + 5_000_000), Verdict::Allowed(1), "forgotten after 5000 s idle");
    }

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
