//! Timings and bounds of the cluster bus.

use std::time::Duration;

/// A node refreshes its membership this often.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node that has not refreshed its membership for this long is considered dead.
pub const NODE_TTL: Duration = Duration::from_secs(8);
/// A presence entry lives this long unless its node refreshes it; so a dead node's devices
/// are unreachable-but-not-misrouted after at most this time.
pub const PRESENCE_TTL: Duration = Duration::from_secs(12);
/// Presence entries are refreshed this often.
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(4);
/// Events waiting for the node to take them; past it, the bus waits (backpressure on the
/// Redis reader, whose socket buffers then fill).
pub const EVENT_QUEUE: usize = 8_192;
/// Reconnection backoff: first delay and ceiling.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// See [`BACKOFF_MIN`].
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A Redis command that takes longer than this counts as failed (the node goes degraded
/// instead of stalling its actors).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Presence keys refreshed per Redis call.
pub const REFRESH_CHUNK: usize = 1_000;
/// Largest encoded bus message; bigger `Deliver` batches are split.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Rate-limit buckets one node keeps in memory (alone, or while Redis is down); past it the
/// full ones are forgotten.
pub const MAX_LOCAL_BUCKETS: usize = 100_000;
/// Attempt counters (login throttling) one node keeps in memory (alone, or while Redis is down);
/// past it the idle ones are forgotten.
pub const MAX_LOCAL_ATTEMPT_COUNTERS: usize = 100_000;
