//! Hush persistence.
//!
//! - [`records`]: the stored records (tenants, users, devices, sessions, queued envelopes).
//! - Traits per domain: [`AccountStore`], [`DeviceStore`], [`SessionStore`], [`QueueStore`];
//!   [`Store`] is all of them, what the actors hold as `Arc<dyn Store>`.
//! - [`embedded`]: the default backend, one crash-safe redb file, with every write going through
//!   one writer thread that commits in groups (many callers, one fsync).
//! - `mongo` (feature `mongo`): the MongoDB backend shared by a cluster's nodes, kept to plain
//!   CRUD, `findOneAndUpdate` and unique indexes (no transactions, no change streams).
//! - [`conformance`]: the behaviour every backend must show, run by each backend's tests.
//!
//! The store holds no business rules: limits such as "six devices per user" are decided by the
//! actors, which use the compare-and-set operations here to apply them without lost updates.
#![warn(missing_docs)]

use async_trait::async_trait;
use hush_protocol::ids::{DeviceAddress, TenantId, UserId};
use hush_protocol::wire::Envelope;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod embedded;
#[cfg(feature = "mongo")]
pub mod mongo;
pub mod records;

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
    /// Records of a tenant matching `query`, newest first.
    async fn audit(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}

/// Durable per-device envelope queues.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Appends envelopes to their devices' queues, all or none, durably before returning.
    /// Each envelope gets the next sequence number (strictly increasing across the store, so
    /// increasing within each queue); the returned envelopes carry it, in input order.
    async fn enqueue(&self, items: Vec<NewEnvelope>) -> Result<Vec<Envelope>>;
    /// Reads up to `limit` envelopes of a device's queue with `seq > after`, in order.
    async fn fetch(&self, device: &DeviceAddress, after: u64, limit: usize) -> Result<Vec<Envelope>>;
    /// Deletes acknowledged envelopes (unknown sequence numbers are ignored); returns how many
    /// were deleted.
    async fn ack(&self, device: &DeviceAddress, seqs: Vec<u64>) -> Result<u64>;
    /// Deletes a device's whole queue (device removed); returns how many envelopes went.
    async fn purge(&self, device: &DeviceAddress) -> Result<u64>;
    /// Envelopes queued in the whole store (for the queue-depth metric).
    fn depth(&self) -> u64;
}

/// Everything the node persists.
pub trait Store: AccountStore + DeviceStore + SessionStore + QueueStore + AuditStore + StoreStats {}
impl<T: AccountStore + DeviceStore + SessionStore + QueueStore + AuditStore + StoreStats> Store for T {}

/// Counters a backend exposes for the node's metrics.
pub trait StoreStats: Send + Sync {
    /// Commit latency histogram and counts since start.
    fn commit_stats(&self) -> CommitStats;
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
