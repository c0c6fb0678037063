//! The node's policies, as configured (plain data, below every domain module).

use std::sync::OnceLock;
use std::time::Duration;

use hush_cluster::buckets::Backoff;

/// The node's pre-key policy (from its configuration).
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    /// `PreKeysLow` is pushed when a fetch leaves fewer one-time keys of a kind than this.
    pub low_threshold: u32,
    /// Bundle fetches per (requesting device, target device) in a burst.
    pub fetch_bucket: u32,
    /// One more fetch is allowed this often.
    pub fetch_refill: Duration,
    /// A signed pre-key or last-resort key older than this is to be rotated.
    pub rotation_age: Duration,
}

/// Signal's client refill threshold (REFERENCE.md).
pub const DEFAULT_LOW_THRESHOLD: u32 = 10;
/// Signal-Server's pre-key fetch bucket (REFERENCE.md).
pub const DEFAULT_FETCH_BUCKET: u32 = 6;
/// Signal-Server's pre-key fetch refill interval (REFERENCE.md).
pub const DEFAULT_FETCH_REFILL: Duration = Duration::from_secs(600);
/// How old a signed pre-key or last-resort key may get before the node asks for a new one.
pub const DEFAULT_ROTATION_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            low_threshold: DEFAULT_LOW_THRESHOLD,
            fetch_bucket: DEFAULT_FETCH_BUCKET,
            fetch_refill: DEFAULT_FETCH_REFILL,
            rotation_age: DEFAULT_ROTATION_AGE,
        }
    }
}

/// When the node asks a sending device to rotate its sender key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupPolicy {
    /// Past this age (from the first message sent with it) a sender key is rotated.
    pub sender_key_max_age: Duration,
    /// After this many messages a sender key is rotated.
    pub sender_key_max_messages: u64,
}

impl Default for GroupPolicy {
    fn default() -> Self {
        Self { sender_key_max_age: Duration::from_secs(7 * 24 * 3600), sender_key_max_messages: 1_000 }
    }
}

/// Consecutive failed logins per account allowed by NIST SP 800-63B at most; the hard lock is
/// never set higher.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 100;

/// The throttling rules of a node (every node of a cluster should use the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Password attempts per account.
    pub account: Backoff,
    /// Password and MFA attempts per client address.
    pub address: Backoff,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            account: Backoff {
                free: 5,
                base: Duration::from_secs(1),
                max_delay: Duration::from_secs(15 * 60),
                lock_after: 20,
                lock: Duration::from_secs(15 * 60),
                max_lock: Duration::from_secs(24 * 3600),
                hard_limit: MAX_CONSECUTIVE_FAILURES,
                forget_after: Duration::from_secs(30 * 24 * 3600),
            },
            address: Backoff {
                free: 100,
                base: Duration::from_secs(1),
                max_delay: Duration::from_secs(5 * 60),
                lock_after: u32::MAX,
                lock: Duration::from_secs(5 * 60),
                max_lock: Duration::from_secs(5 * 60),
                hard_limit: u32::MAX,
                forget_after: Duration::from_secs(3600),
            },
        }
    }
}

impl ThrottlePolicy {
    /// The default rules with the account's free failures, lock threshold and first lock
    /// length replaced (the node's configuration). Errors name the bad value.
    pub fn with_account(free: u32, lock_after: u32, lock: Duration) -> Result<Self, String> {
        if lock_after == 0 || lock_after > MAX_CONSECUTIVE_FAILURES {
            return Err(format!("the lock threshold must be 1 to {MAX_CONSECUTIVE_FAILURES} failures"));
        }
        if free > lock_after {
            return Err("the free failures cannot exceed the lock threshold".into());
        }
        if lock.is_zero() {
            return Err("the lock must last at least 1 s".into());
        }
        let mut p = Self::default();
        p.account.free = free;
        p.account.lock_after = lock_after;
        p.account.lock = lock;
        p.account.max_lock = p.account.max_lock.max(lock);
        Ok(p)
    }
}

/// The node's policy, set once at start (the default until then).
#[derive(Default)]
pub struct Throttle {
    policy: OnceLock<ThrottlePolicy>,
}

impl Throttle {
    /// Sets the policy (once; later calls are ignored).
    pub fn set_policy(&self, p: ThrottlePolicy) {
        let _ = self.policy.set(p);
    }
    /// The policy in force.
    pub fn policy(&self) -> ThrottlePolicy {
        self.policy.get().copied().unwrap_or_default()
    }
}
