//! Hush persistence.
//!
//! - [`records`]: the stored records (tenants, users, devices, sessions, queued envelopes).
//! - Traits per domain: [`AccountStore`], [`DeviceStore`], [`SessionStore`], [`QueueStore`];
//!   [`Store`] is all of them, what the actors hold as `Arc<dyn Store>`.
//! - [`embedded`]: the default backend, one crash-safe redb file, with every write going through
//!   one writer thread that commits in groups (many callers, one fsync).
//! - `mongo` (feature `mongo`): the MongoDB backend shared by a cluster's nodes, kept to plain
//!   CRUD, `findOneAndUpdate` and unique indexes (no transactions, no change streams).
//! - [`failure`]: why a write failed (disk full, read-only, corrupted, locked...), and the
//!   rate-limited log every store failure goes through.
//! - [`maintenance`]: `check` (verify every page's checksum), `salvage` (copy every readable
//!   record of a damaged file) and `snapshot` (a consistent backup) of an embedded store file.
//! - [`conformance`]: the behaviour every backend must show, run by each backend's tests.
//!
//! The store holds no business rules: limits such as "six devices per user" are decided by the
//! actors, which use the compare-and-set operations here to apply them without lost updates.
#![warn(missing_docs)]

use std::time::Duration;

use async_trait::async_trait;
use hush_protocol::ids::{DeviceAddress, TenantId, UserId};
use hush_protocol::wire::Envelope;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
pub mod failure;
pub mod maintenance;
#[cfg(feature = "mongo")]
pub mod mongo;
pub mod records;
pub mod typed;

pub use records::*;

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record already exists (unique key taken).
    #[error("already exists")]
    Conflict,
    /// A compare-and-set saw another version than expected; re-read and retry.
    #[error("version conflict")]
    VersionConflict,
    /// The backend failed (I/O, corruption, lost connection). Nothing was committed.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store is shutting down or its writer has stopped.
    #[error("store closed")]
    Closed,
    /// A key-value namespace or key was empty, too long, not printable ASCII, or outside the
    /// prefix it was written under (a caller bug; nothing was written).
    #[error("invalid key-value key: {0}")]
    InvalidKey(String),
    /// These devices' queues hold [`QueuePolicy::max_per_device`] envelopes already (or would
    /// hold more with this write); nothing of the write was stored.
    #[error("queue full for {} device(s)", .0.len())]
    QueueFull(Vec<DeviceAddress>),
    /// The store cannot write now (disk full, read-only file system, I/O error, damaged page):
    /// nothing of this write was committed. The embedded store recovers by itself once the
    /// cause is gone (it re-opens its file); callers answer "unavailable, retry".
    #[error("store unavailable ({0})")]
    Unavailable(failure::Failure),
}

impl StoreError {
    /// Why the store failed, when it is a failure of the store itself (not an answer such as
    /// a conflict or a full queue).
    pub fn cause(&self) -> Option<failure::Cause> {
        match self {
            StoreError::Unavailable(f) => Some(f.cause),
            StoreError::Closed => Some(failure::Cause::Closed),
            StoreError::Corrupt(_) => Some(failure::Cause::Corrupted),
            _ => None,
        }
    }
}

/// What the store says of its own ability to write, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    /// The last write (or probe) committed.
    Ok,
    /// Writes fail now; the store retries by itself.
    Failing(failure::Failure),
}

/// Result alias of the persistence layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Tenants and users.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a tenant; [`StoreError::Conflict`] if the name is taken.
    async fn create_tenant(&self, tenant: TenantRecord) -> Result<()>;
    /// Lists tenants by name, at most `limit`.
    async fn list_tenants(&self, limit: usize) -> Result<Vec<TenantRecord>>;
    /// Reads a tenant.
    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>>;
    /// Creates a user; [`StoreError::Conflict`] if the name is taken in its tenant.
    async fn create_user(&self, user: UserRecord) -> Result<()>;
    /// Reads a user.
    async fn get_user(&self, tenant: &TenantId, user: &UserId) -> Result<Option<UserRecord>>;
    /// Lists a tenant's users by name, at most `limit`, starting after `after`.
    async fn list_users(
        &self,
        tenant: &TenantId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserRecord>>;
}

/// Each user's device set, versioned for compare-and-set.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Reads a user's devices (version 0 and no devices if none were ever registered).
    async fn get_devices(&self, tenant: &TenantId, user: &UserId) -> Result<DeviceSet>;
    /// Replaces the device set if its version is still `expected_version`; the stored set gets
    /// `expected_version + 1`. [`StoreError::VersionConflict`] otherwise, and nothing changes.
    async fn put_devices(
        &self,
        tenant: &TenantId,
        user: &UserId,
        expected_version: u64,
        devices: Vec<DeviceRecord>,
    ) -> Result<DeviceSet>;
}

/// Login sessions, found by the hash of their token.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session; [`StoreError::Conflict`] if its id or token hash exists.
    async fn create_session(&self, session: SessionRecord) -> Result<()>;
    /// Finds a session by the SHA-256 of its token.
    async fn session_by_token(&self, token_hash: &TokenHash) -> Result<Option<SessionRecord>>;
    /// Finds a session by its public id.
    async fn session_by_id(&self, id: &str) -> Result<Option<SessionRecord>>;
    /// Marks a session revoked (idempotent: the first revocation's time and reason stay).
    /// Returns the session as stored afterwards, or `None` if there is no such session.
    async fn revoke_session(&self, id: &str, revocation: Revocation) -> Result<Option<SessionRecord>>;
    /// Revokes many sessions of `tenant` in a few store operations whatever their number (the
    /// path of bulk revocations, whose latency is the time to close every socket). Unknown
    /// ids, other tenants' sessions and sessions already revoked are skipped. Returns the
    /// sessions this call revoked, as stored.
    async fn revoke_sessions(
        &self,
        tenant: &TenantId,
        ids: Vec<String>,
        revocation: Revocation,
    ) -> Result<Vec<SessionRecord>>;
    /// Every session (active and revoked) of one user, oldest first, at most
    /// [`MAX_SESSIONS_PER_USER_LISTED`].
    async fn sessions_of_user(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<SessionRecord>>;
    /// Active sessions of a tenant ordered by session id, after the id `after`, at most `limit`.
    async fn active_sessions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>>;
}

/// Sessions listed per user at most (oldest first); older ones are still enforced.
pub const MAX_SESSIONS_PER_USER_LISTED: usize = 1_000;

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends a record (its `id` is assigned: increasing within the tenant); returns the id.
    async fn append_audit(&self, record: AuditRecord) -> Result<u64>;
    /// Appends records in their order (ids increasing as with [`Self::append_audit`]), in as
    /// few store operations as the backend allows: the path of bulk actions (one record per
    /// revoked session). The default appends them one after another.
    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<()> {
        for r in records {
            self.append_audit(r).await?;
        }
        Ok(())
    }
    /// Records of a tenant matching `query`, newest first.
    async fn audit(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}

/// Default [`QueuePolicy::retention`]: 30 days, as Signal-Server keeps undelivered messages.
pub const DEFAULT_ENVELOPE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default [`QueuePolicy::max_per_device`].
pub const DEFAULT_MAX_QUEUE_PER_DEVICE: u64 = 10_000;
/// Envelopes one [`QueueStore::expire`] call deletes at most, whatever the caller asks (one
/// bounded write: the sweep never holds the writer for long).
pub const MAX_EXPIRE_BATCH: usize = 1_000;

/// What a backend enforces on every queue: how long an envelope is kept, how many one device's
/// queue holds. Given when the store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    /// An envelope accepted longer ago than this (by its `timestamp_ms`) is never fetched again,
    /// and [`QueueStore::expire`] deletes it.
    pub retention: Duration,
    /// Envelopes one device's queue holds at most; an enqueue that would exceed it stores
    /// nothing and fails with [`StoreError::QueueFull`].
    pub max_per_device: u64,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self { retention: DEFAULT_ENVELOPE_RETENTION, max_per_device: DEFAULT_MAX_QUEUE_PER_DEVICE }
    }
}

impl QueuePolicy {
    /// Whether `env` is past the retention at `now_ms` (milliseconds since the Unix epoch).
    pub fn expired(&self, env: &Envelope, now_ms: u64) -> bool {
        let keep = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        env.timestamp_ms.saturating_add(keep) <= now_ms
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Durable per-device envelope queues, bounded by the store's [`QueuePolicy`].
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Appends envelopes to their devices' queues, all or none, durably before returning.
    /// Each envelope gets the next sequence number (strictly increasing across the store, so
    /// increasing within each queue); the returned envelopes carry it, in input order.
    /// [`StoreError::QueueFull`] (and nothing stored) if a device's queue would exceed
    /// [`QueuePolicy::max_per_device`].
    async fn enqueue(&self, items: Vec<NewEnvelope>) -> Result<Vec<Envelope>>;
    /// Stores `item.envelope`'s content ONCE and queues one envelope per device of `item.to`
    /// referring to it (a group message), all or none, durably before returning. Returns the
    /// sequence numbers given, in the order of `item.to` (like `enqueue`, strictly increasing).
    /// `fetch` returns these envelopes with the content filled in; the content is deleted with
    /// its last reference (acked, purged or expired). Bounded like `enqueue`.
    async fn enqueue_shared(&self, item: SharedEnvelope) -> Result<Vec<u64>>;
    /// Shared contents stored now (each still referred to by at least one queued envelope).
    async fn shared_contents(&self) -> Result<u64>;
    /// Reads up to `limit` envelopes of a device's queue with `seq > after`, in order, leaving
    /// out every envelope past the retention (even before [`QueueStore::expire`] deleted it).
    async fn fetch(&self, device: &DeviceAddress, after: u64, limit: usize) -> Result<Vec<Envelope>>;
    /// Deletes acknowledged envelopes (unknown sequence numbers are ignored); returns how many
    /// were deleted, once the deletion is durable. A backend may hold it back a little to
    /// commit it with other writes (the embedded store: at most
    /// [`crate::embedded::MAX_ACK_DELAY`]); until then a fetch still returns those envelopes.
    async fn ack(&self, device: &DeviceAddress, seqs: Vec<u64>) -> Result<u64>;
    /// Deletes a device's whole queue (device removed); returns how many envelopes went.
    async fn purge(&self, device: &DeviceAddress) -> Result<u64>;
    /// Deletes up to `limit` (at most [`MAX_EXPIRE_BATCH`]) envelopes past the retention, oldest
    /// first, releasing shared contents whose last reference goes; returns how many went. The
    /// node's sweep calls it until it returns less than it asked.
    ///
    /// It walks the queue in sequence order and stops at the first envelope still within the
    /// retention: sequence numbers follow acceptance time, except for the milliseconds between
    /// a send's timestamp and its commit (or a clock step), so an envelope stamped slightly
    /// older than one before it waits for a later sweep; `fetch` never returns it meanwhile.
    async fn expire(&self, limit: usize) -> Result<u64>;
    /// Envelopes queued in the whole store (for the queue-depth metric).
    fn depth(&self) -> u64;
}

/// One versioned entry of the generic key-value store.
#[derive(Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// Its key (printable ASCII, unique within its namespace).
    pub key: String,
    /// Incremented by every write; the first write gives 1.
    pub version: u64,
    /// Opaque bytes (the owner's postcard encoding of its record).
    pub value: Vec<u8>,
}

impl std::fmt::Debug for KvEntry {
    // The value may be secret material (encrypted or hashed, but still): never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvEntry")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// Longest key the key-value store accepts, in bytes.
pub const MAX_KV_KEY: usize = 512;
/// Entries one `kv_scan` returns at most, whatever the caller asks.
pub const MAX_KV_SCAN: usize = 1_000;
/// Entries one `kv_replace_prefix` writes at most.
pub const MAX_KV_REPLACE: usize = 1_000;

/// Checks a namespace or key: non-empty printable ASCII (0x21..=0x7e), at most [`MAX_KV_KEY`]
/// bytes. Both backends order keys bytewise, so prefix ranges are the same everywhere.
pub fn check_kv_key(s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_KV_KEY || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(StoreError::InvalidKey(s.chars().take(64).collect()));
    }
    Ok(())
}

/// Checks a namespace and a prefix (the empty prefix selects the whole namespace).
pub fn check_kv_scope(ns: &str, prefix: &str) -> Result<()> {
    check_kv_key(ns)?;
    if prefix.is_empty() {
        Ok(())
    } else {
        check_kv_key(prefix)
    }
}

/// The smallest string greater than every key starting with `prefix` (keys are printable
/// ASCII, so appending 0x7f bounds them), or `None` for the empty prefix (no upper bound).
pub fn kv_prefix_end(prefix: &str) -> Option<String> {
    if prefix.is_empty() {
        None
    } else {
        Some(format!("{prefix}\u{7f}"))
    }
}

/// A generic, namespaced key-value store with compare-and-set, for records that need no index
/// of their own (pre-keys, groups, MFA state, tenant settings). Namespaces are chosen by their
/// owning module; keys are printable ASCII built as `/`-separated paths (numbers zero-padded so
/// key order is numeric order), so a prefix selects a subtree.
#[async_trait]
pub trait KvStore: Send + Sync {
    /// Reads one entry.
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<KvEntry>>;
    /// Compare-and-set: `expected` 0 writes only if the key is absent, otherwise only if the
    /// stored version is `expected`. Returns the new version; [`StoreError::VersionConflict`]
    /// (and nothing changes) otherwise.
    async fn kv_put(&self, ns: &str, key: &str, expected: u64, value: Vec<u8>) -> Result<u64>;
    /// Unconditional upsert; returns the new version.
    async fn kv_set(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<u64>;
    /// Deletes the entry if present (with `Some(v)`, only at version `v`); true if it deleted.
    async fn kv_delete(&self, ns: &str, key: &str, expected: Option<u64>) -> Result<bool>;
    /// Unconditional upserts of many keys of one namespace, in as few store operations as the
    /// backend allows (the embedded store: one commit; at most [`MAX_KV_REPLACE`] entries).
    /// Not atomic across keys in the MongoDB backend. The default sets them one by one.
    async fn kv_set_many(&self, ns: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        check_kv_batch(ns, entries.iter().map(|(k, _)| k.as_str()))?;
        for (k, v) in entries {
            self.kv_set(ns, &k, v).await?;
        }
        Ok(())
    }
    /// Deletes many keys of one namespace (absent ones are skipped), like
    /// [`Self::kv_set_many`]; returns how many it deleted.
    async fn kv_delete_many(&self, ns: &str, keys: Vec<String>) -> Result<u64> {
        check_kv_batch(ns, keys.iter().map(String::as_str))?;
        let mut n = 0;
        for k in keys {
            n += u64::from(self.kv_delete(ns, &k, None).await?);
        }
        Ok(n)
    }
    /// Entries whose key starts with `prefix`, in key order, with keys greater than `after`, at
    /// most `limit` (capped at [`MAX_KV_SCAN`]).
    async fn kv_scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KvEntry>>;
    /// Number of entries whose key starts with `prefix`.
    async fn kv_count(&self, ns: &str, prefix: &str) -> Result<u64>;
    /// Removes and returns the first entry (in key order) under `prefix`, atomically: two
    /// concurrent callers, on any nodes, never get the same entry.
    async fn kv_take_first(&self, ns: &str, prefix: &str) -> Result<Option<KvEntry>>;
    /// Deletes every entry under `prefix`, then writes `entries` (each key must start with
    /// `prefix`; at most [`MAX_KV_REPLACE`]). Atomic in the embedded store; the MongoDB backend
    /// deletes then inserts, so a reader in between sees no entry under `prefix`.
    async fn kv_replace_prefix(&self, ns: &str, prefix: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()>;
}

/// Validates a `kv_set_many` / `kv_delete_many` call before anything is written: its
/// namespace, its size and every key (shared by the backends).
pub fn check_kv_batch<'a>(ns: &str, keys: impl ExactSizeIterator<Item = &'a str>) -> Result<()> {
    check_kv_key(ns)?;
    if keys.len() > MAX_KV_REPLACE {
        return Err(StoreError::InvalidKey(format!("{} entries (max {MAX_KV_REPLACE})", keys.len())));
    }
    keys.into_iter().try_for_each(check_kv_key)
}

/// Validates a `kv_replace_prefix` call (shared by the backends).
pub fn check_kv_replace(ns: &str, prefix: &str, entries: &[(String, Vec<u8>)]) -> Result<()> {
    check_kv_key(ns)?;
    check_kv_key(prefix)?;
    if entries.len() > MAX_KV_REPLACE {
        return Err(StoreError::InvalidKey(format!("{} entries (max {MAX_KV_REPLACE})", entries.len())));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in entries {
        check_kv_key(k)?;
        if !k.starts_with(prefix) || !seen.insert(k.as_str()) {
            return Err(StoreError::InvalidKey(k.chars().take(64).collect()));
        }
    }
    Ok(())
}

/// Everything the node persists.
pub trait Store:
    AccountStore + DeviceStore + SessionStore + QueueStore + AuditStore + KvStore + StoreStats
{
}
impl<T: AccountStore + DeviceStore + SessionStore + QueueStore + AuditStore + KvStore + StoreStats> Store
    for T
{
}

/// Counters a backend exposes for the node's metrics.
#[async_trait]
pub trait StoreStats: Send + Sync {
    /// Commit latency histogram and counts since start.
    fn commit_stats(&self) -> CommitStats;

    /// Whether the store can write, for `/readyz`: cheap, from the writer's own state where
    /// the backend has one, with a small write when nothing was written recently.
    async fn health(&self) -> StoreHealth;

    /// Closes the store at a graceful stop (the embedded file is marked cleanly closed); later
    /// calls answer `closed`. A connection pool (MongoDB) needs nothing.
    async fn close(&self) {}
}

/// Upper bounds (microseconds) of the commit-latency histogram buckets.
pub const COMMIT_BUCKETS_US: [u64; 10] =
    [250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000];

/// Commit statistics: group commits, the jobs they carried, and latency buckets.
#[derive(Clone, Debug, Default)]
pub struct CommitStats {
    /// Transactions committed.
    pub commits: u64,
    /// Write jobs carried by those commits.
    pub jobs: u64,
    /// Sum of commit latencies, microseconds.
    pub sum_us: u64,
    /// Cumulative counts per bucket of [`COMMIT_BUCKETS_US`] (last: +Inf).
    pub buckets: [u64; 11],
}
