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

/// After a close is sent or received, a socket is read this long at most for the rest of the
/// closing handshake, and the acks read before it are stored; then the actor stops anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A connection displaced by a newer one of its device keeps reading this long before it sends
/// its close (4409), unless its client closes first: sending a close ends the socket at once
/// (actix-ws ends the response with the close frame), and frames the client sent just before it
/// reconnected, such as an `Ack`, would be lost and the acked envelopes delivered again.
pub const DISPLACE_LINGER: Duration = Duration::from_millis(250);

/// Senders that wait for one connection to stop (newer connections of its device).
pub const MAX_CLOSE_WAITERS: usize = 8;

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

/// Tenants whose default MFA policy the start-up migration writes at most (per start).
pub const MAX_TENANTS_MIGRATED: usize = 100_000;

/// An MFA challenge expires this long after it was issued, ms.
pub const MFA_CHALLENGE_TTL_MS: u64 = 5 * 60 * 1000;

/// Failed MFA attempts are counted in windows this long, ms.
pub const MFA_FAILURE_WINDOW_MS: u64 = 15 * 60 * 1000;

/// Failed attempts in one window that lock the factor (the next attempt is refused).
pub const MFA_FAILURES_PER_WINDOW: u32 = 5;

/// The longest lock of a factor (each lockout doubles the previous one up to this), ms.
pub const MFA_MAX_LOCK_MS: u64 = 24 * 3600 * 1000;

/// Consecutive failures after which the factor stays locked (NIST SP 800-63B: at most 100).
pub const MFA_MAX_CONSECUTIVE_FAILURES: u32 = 100;

/// Compare-and-set attempts on one MFA record before answering busy.
pub const MFA_CAS_RETRIES: usize = 32;

/// Backup codes in a set.
pub const BACKUP_CODES: usize = 10;

/// Trusted devices listed per user (a user has at most 127 devices).
pub const MFA_MAX_TRUSTED_LISTED: usize = 128;

/// Sessions read per page when a policy change is applied to a tenant's live sessions.
pub const MFA_REFRESH_PAGE: usize = 500;

/// Users a tenant policy may exempt by name.
pub const MFA_MAX_EXEMPT_USERS: usize = 1_000;

/// Pre-key requests (`UploadKeys`, `GetKeyCounts`, `GetPreKeys`) of one connection being served
/// at once; more are refused with `rate_limited`.
pub const MAX_INFLIGHT_KEY_REQUESTS: usize = 16;

/// Messages waiting in a `GroupActor`'s mailbox; senders wait for room (each device has at
/// most one batch of sends in flight, so this bounds nothing a client controls directly).
pub const GROUP_MAILBOX: usize = 1_024;

/// `GroupActor`s alive on one node; past it a send to another group answers `unavailable`.
pub const MAX_GROUP_ACTORS: usize = 100_000;

/// A `GroupActor` that handled nothing for this long stops (it starts again on demand).
pub const GROUP_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A sending device's sender-key usage is written to the store every this many messages (and
/// when the actor stops, and when a rotation is requested); a crash loses at most this many.
pub const SENDER_KEY_USAGE_FLUSH: u64 = 32;
