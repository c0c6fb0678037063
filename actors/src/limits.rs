//! Bounds of the actor layer. Every queue, map and mailbox of a node is capped by one of these.

use std::time::Duration;

/// Messages waiting in a `DeviceActor`'s mailbox; a full mailbox means the device cannot keep
/// up, and it is disconnected (its envelopes stay queued in the store).
pub const DEVICE_MAILBOX: usize = 1_024;

/// Frames waiting to be written to one socket; full means a slow consumer, closed with 4429.
pub const OUTBOUND_FRAMES: usize = 1_024;

/// `Send` frames of one connection being checked and stored at once; more are refused with
/// `rate_limited` until some complete.
pub const MAX_INFLIGHT_SENDS: usize = 256;

/// Acknowledged sequence numbers waiting to be deleted for one connection.
pub const MAX_PENDING_ACKS: usize = 65_536;

/// A ping goes out this often; the client's pong (or any frame) proves it alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// No frame at all for this long closes the socket with 4408.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// A socket must authenticate within this time after the upgrade.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// While draining its queue, a device that makes no progress for this long is closed (4429).
pub const DRAIN_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Device sets kept in the directory cache; past it the cache is cleared and refills.
pub const MAX_CACHED_DEVICE_SETS: usize = 100_000;

/// Password hashes computed at once (Argon2id is memory- and CPU-heavy); others wait.
pub const PASSWORD_HASH_CONCURRENCY: usize = 2;

/// Logins waiting for a hashing thread; past it a login answers 503 (busy) at once.
pub const PASSWORD_HASH_QUEUE: usize = 1_024;

/// Live connections per node.
pub const MAX_CONNECTIONS: usize = 100_000;

/// Users listed per page by the admin API.
pub const MAX_PAGE: usize = 500;

/// A cached device set is re-read from the store after this long, which bounds how stale a
/// node's view can be when it missed a change broadcast.
pub const DIRECTORY_TTL: Duration = Duration::from_secs(10);

/// Envelopes per `Deliver` message routed to another node.
pub const ROUTE_BATCH: usize = 512;
