//! The node's policies, as configured (plain data, below every domain module).

use std::time::Duration;

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
