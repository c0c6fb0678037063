//! The embedded backend: one redb file, crash-safe (copy-on-write B-trees, fsync on commit).
//!
//! Every write is a job sent to one writer thread. The thread takes every job waiting (up to
//! [`MAX_JOBS_PER_COMMIT`]), runs them in one write transaction and commits once, then answers
//! each caller: under load one fsync covers thousands of envelopes (group commit). A caller
//! hears "done" only after the commit returned, so an acknowledged write is durable. Reads run
//! on tokio's blocking pool in their own read transactions and never wait for the writer.
//!
//! Queue layout (schema 2): envelopes live in one table keyed by their sequence number alone
//! (`queue_by_seq`, value = postcard `(DeviceAddress, Envelope)`). Sequence numbers are global
//! and strictly increasing, so enqueues append to the right edge of the B-tree and acks of recent
//! envelopes delete from the same few leaves: a group commit dirties a handful of pages instead
//! of one random leaf per envelope (schema 1 keyed by `(tenant, user, device, seq)`, which made
//! every commit rewrite hundreds of scattered leaves). The per-device view (which seqs belong to
//! which device) is an in-memory index rebuilt from the table at open and updated by the writer
//! thread after each commit, before any caller hears "done"; the table is the only durable state.
//! A schema-1 file is migrated at open (its `queue` table moved into `queue_by_seq`).
//!
//! Shared contents (schema 3, group messages): [`QueueStore::enqueue_shared`] writes the
//! content once in `blobs` (keyed by the first sequence number of its block), its reference
//! count in `blob_refs`, and one entry per recipient device in `queue_refs` (seq -> postcard
//! `(DeviceAddress, blob, Envelope without content)`), all in one job. `fetch` falls back to
//! `queue_refs` only when `queue_by_seq` lacks a seq, so the 1:1 path reads what it always read.
//! An in-memory map (seq -> blob, rebuilt at open like the index) tells `ack`/`purge` which seqs
//! are references without reading the table; each reference removed decrements its blob's count
//! in the same transaction, and the last one deletes the blob (exact reference counting, no
//! sweep).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hush_protocol::ids::{DeviceAddress, DeviceId, TenantId, UserId};
use hush_protocol::wire::{Envelope, Payload};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::failure::{Cause, Failure};
use crate::{
    check_kv_key, check_kv_replace, check_kv_scope, AccountStore, AuditQuery, AuditRecord, AuditStore,
    CommitStats, DeviceRecord, DeviceSet, DeviceStore, KvEntry, KvStore, NewEnvelope, QueuePolicy,
    QueueStore, Result, Revocation, SessionRecord, SessionStore, SharedEnvelope, StoreError, StoreHealth,
    StoreStats, TenantRecord, TokenHash, UserRecord, COMMIT_BUCKETS_US, MAX_EXPIRE_BATCH, MAX_KV_SCAN,
};

/// Write jobs waiting for the writer thread; senders wait (backpressure) when it is full.
pub const MAX_PENDING_JOBS: usize = 16_384;
/// Jobs folded into one transaction at most.
pub const MAX_JOBS_PER_COMMIT: usize = 4_096;
/// Longest time acknowledgements wait for a commit: they get no commit (and no `fdatasync`) of
/// their own while other writes come, but ride on the next one (an enqueue, any other write);
/// on an idle store they are committed this long after they came. Until then the envelopes
/// are still queued: a crash, or a fetch from the start of the queue (a reconnect), delivers
/// them again (at least once, never lost). An `Accepted` never waits for this.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(5);
/// Envelopes returned by one `fetch` at most, whatever the caller asks.
pub const MAX_FETCH: usize = 1_024;

/// Schema version of the embedded file; bumped with a forward migration when records change.
/// Version 2: the queue keyed by sequence number alone (see the module docs); version 1 files
/// are migrated at open.
/// Version 3: shared contents (`blobs`, `blob_refs`, `queue_refs`); version 2 files only gain
/// the empty tables.
pub const SCHEMA_VERSION: u64 = 3;

pub(crate) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
pub(crate) const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("users");
pub(crate) const DEVICES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("devices");
pub(crate) const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
pub(crate) const SESSION_IDS: TableDefinition<&str, &[u8]> = TableDefinition::new("session_ids");
/// Schema 1 queue, `(tenant, user, device, seq)` -> envelope; only read to migrate it.
pub(crate) const QUEUE_V1: TableDefinition<(&str, &str, u8, u64), &[u8]> = TableDefinition::new("queue");
/// seq -> postcard `(DeviceAddress, Envelope)`.
pub(crate) const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_by_seq");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (tenant, user, session id) -> created ms: every session of a user.
pub(crate) const USER_SESSIONS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("user_sessions");
/// (tenant, session id): the active sessions of a tenant (removed on revocation).
pub(crate) const ACTIVE_SESSIONS: TableDefinition<(&str, &str), ()> = TableDefinition::new("active_sessions");
/// (tenant, id) -> audit record.
pub(crate) const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
/// Generic key-value entries: (namespace, key) -> 8-byte big-endian version, then the value.
pub(crate) const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kv");
/// seq -> postcard `(DeviceAddress, blob, Envelope)`: a queued envelope whose content is shared.
pub(crate) const QUEUE_REFS: TableDefinition<u64, &[u8]> = TableDefinition::new("queue_refs");
/// blob -> content shared by several queued envelopes.
pub(crate) const BLOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("blobs");
/// blob -> how many queued envelopes still refer to it.
pub(crate) const BLOB_REFS: TableDefinition<u64, u64> = TableDefinition::new("blob_refs");

type Job = Box<dyn FnOnce(&mut Tx<'_>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// A job, and whether it may wait for another write to commit with (acknowledgements).
struct Queued {
    job: Job,
    may_wait: bool,
}

/// The committed per-device queue index: device -> its queued sequence numbers.
type QueueIndex = HashMap<DeviceAddress, BTreeSet<u64>>;

/// The committed map of queued envelopes whose content is shared: seq -> blob.
type RefIndex = HashMap<u64, u64>;

/// What a job sees: the open write transaction, the sequence counter, the queue table (opened
/// once per transaction, on first use) and the index changes to apply once the commit is durable.
struct Tx<'a> {
    txn: &'a WriteTransaction,
    policy: &'a QueuePolicy,
    next_seq: &'a mut u64,
    depth_delta: &'a mut i64,
    queue: Option<Table<'a, u64, &'static [u8]>>,
    index: &'a RwLock<QueueIndex>,
    added: &'a mut Vec<(DeviceAddress, u64)>,
    removed: &'a mut Vec<(DeviceAddress, u64)>,
    refs: &'a RwLock<RefIndex>,
    refs_added: &'a mut Vec<(u64, u64)>,
    refs_removed: &'a mut Vec<u64>,
    /// The shared-content tables, opened once per transaction on first use (opening a table
    /// per job made every ack of a reference cost a table-root write).
    shared: Option<SharedTables<'a>>,
}

struct SharedTables<'a> {
    refs: Table<'a, u64, &'static [u8]>,
    counts: Table<'a, u64, u64>,
    blobs: Table<'a, u64, &'static [u8]>,
}

impl<'a> Tx<'a> {
    fn shared(&mut self) -> Result<&mut SharedTables<'a>> {
        let t = match self.shared.take() {
            Some(t) => t,
            None => SharedTables {
                refs: self.txn.open_table(QUEUE_REFS).map_err(backend)?,
                counts: self.txn.open_table(BLOB_REFS).map_err(backend)?,
                blobs: self.txn.open_table(BLOBS).map_err(backend)?,
            },
        };
        Ok(self.shared.insert(t))
    }

    fn queue(&mut self) -> Result<&mut Table<'a, u64, &'static [u8]>> {
        let q = match self.queue.take() {
            Some(q) => q,
            None => self.txn.open_table(QUEUE).map_err(backend)?,
        };
        Ok(self.queue.insert(q))
    }
}

fn read_index(index: &RwLock<QueueIndex>) -> RwLockReadGuard<'_, QueueIndex> {
    index.read().unwrap_or_else(|e| e.into_inner())
}

fn write_index(index: &RwLock<QueueIndex>) -> RwLockWriteGuard<'_, QueueIndex> {
    index.write().unwrap_or_else(|e| e.into_inner())
}

fn read_refs(refs: &RwLock<RefIndex>) -> RwLockReadGuard<'_, RefIndex> {
    refs.read().unwrap_or_else(|e| e.into_inner())
}

/// Splits sequence numbers into 1:1 envelopes and references to shared content (with their
/// blob), from the committed map (and, with `this_commit`, the references added earlier in the
/// same commit). An empty map costs nothing: the 1:1 path stays as it was.
fn split_refs(t: &Tx<'_>, seqs: Vec<u64>, this_commit: bool) -> (Vec<u64>, Vec<(u64, u64)>) {
    let committed = read_refs(t.refs);
    if committed.is_empty() && (!this_commit || t.refs_added.is_empty()) {
        return (seqs, Vec::new());
    }
    let mut plain = Vec::with_capacity(seqs.len());
    let mut refs = Vec::new();
    for seq in seqs {
        let blob = committed.get(&seq).copied().or_else(|| {
            this_commit.then(|| t.refs_added.iter().find(|(s, _)| *s == seq).map(|(_, b)| *b)).flatten()
        });
        match blob {
            Some(b) => refs.push((seq, b)),
            None => plain.push(seq),
        }
    }
    (plain, refs)
}

/// The devices whose queues would exceed the bound if `added` (device, envelopes) were queued
/// now: the committed index plus what earlier jobs of this commit queued. Acks in this commit are
/// not subtracted (the bound is never exceeded, it may refuse a few envelopes early).
fn over_bound<'d>(t: &Tx<'_>, added: impl Iterator<Item = (&'d DeviceAddress, u64)>) -> Vec<DeviceAddress> {
    let max = t.policy.max_per_device;
    let index = read_index(t.index);
    let mut full = Vec::new();
    for (addr, k) in added {
        let committed = index.get(addr).map_or(0, |s| s.len() as u64);
        // Scanning this commit's additions costs O(commit); only done near the bound.
        if committed + k + t.added.len() as u64 <= max {
            continue;
        }
        let pending = t.added.iter().filter(|(a, _)| a == addr).count() as u64;
        if committed + pending + k > max {
            full.push(addr.clone());
        }
    }
    full
}

/// Counts envelopes per device, in first-seen order.
fn per_device<'d>(to: impl Iterator<Item = &'d DeviceAddress>) -> Vec<(&'d DeviceAddress, u64)> {
    let mut out: Vec<(&DeviceAddress, u64)> = Vec::new();
    let mut pos: HashMap<&DeviceAddress, usize> = HashMap::new();
    for a in to {
        match pos.get(a) {
            Some(&i) => out[i].1 += 1,
            None => {
                pos.insert(a, out.len());
                out.push((a, 1));
            }
        }
    }
    out
}

/// Removes queued references (seq, blob) of device `a` and releases their blobs; returns how
/// many references were removed. Reads nothing that could fail to decode, so it cannot stop
/// half-way on bad data (only on a storage error, which fails the whole commit's caller).
fn remove_refs(t: &mut Tx<'_>, a: &DeviceAddress, refs: Vec<(u64, u64)>) -> Result<u64> {
    if refs.is_empty() {
        return Ok(0);
    }
    let tables = t.shared()?;
    let mut released: HashMap<u64, u64> = HashMap::new();
    let mut gone = Vec::with_capacity(refs.len());
    for (seq, blob) in refs {
        if tables.refs.remove(seq).map_err(backend)?.is_some() {
            gone.push(seq);
            *released.entry(blob).or_default() += 1;
        }
    }
    for (blob, k) in released {
        let left =
            tables.counts.get(blob).map_err(backend)?.map(|v| v.value()).unwrap_or(0).saturating_sub(k);
        if left == 0 {
            tables.counts.remove(blob).map_err(backend)?;
            tables.blobs.remove(blob).map_err(backend)?;
        } else {
            tables.counts.insert(blob, left).map_err(backend)?;
        }
    }
    let n = gone.len() as u64;
    for seq in gone {
        t.removed.push((a.clone(), seq));
        t.refs_removed.push(seq);
    }
    *t.depth_delta -= n as i64;
    Ok(n)
}

/// A redb error as a store error: failures of the file or the device (I/O with its kind, a
/// damaged page, the file locked by another process, an earlier I/O error that left the
/// database needing a re-open) become [`StoreError::Unavailable`] with their [`Cause`]; the
/// rest (programming errors such as a table type mismatch) stay [`StoreError::Backend`].
fn backend(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    let cause = match &e {
        redb::Error::Io(io) => Some(Cause::of_io(io)),
        redb::Error::Corrupted(_) => Some(Cause::Corrupted),
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => Some(Cause::Locked),
        redb::Error::PreviousIo | redb::Error::TransactionPoisoned => Some(Cause::Io),
        redb::Error::DatabaseClosed => Some(Cause::Closed),
        _ => None,
    };
    match cause {
        Some(cause) => StoreError::Unavailable(Failure { cause, detail: e.to_string() }),
        None => StoreError::Backend(e.to_string()),
    }
}

/// Opens (or creates) the redb file. redb trusts a file it closed cleanly and may panic on one
/// damaged since (say, "Malformed allocator state"): the panic is caught and answered as a
/// damaged file, so the node stops with a clear message instead of a crash. With `quiet` (at
/// start, before other threads run code of ours) the panic message itself is not printed.
fn open_file(path: &Path, quiet: bool) -> Result<Database> {
    match crate::failure::catch_panic(quiet, || Database::create(path)) {
        Ok(r) => r.map_err(backend),
        Err(why) => Err(StoreError::Unavailable(Failure {
            cause: Cause::Corrupted,
            detail: format!("redb refused the file: {why}"),
        })),
    }
}

/// Shortest wait before the writer re-opens the file after a failed commit; doubled after
/// each re-open that fails, up to [`MAX_REOPEN_BACKOFF`]. Jobs arriving meanwhile are refused
/// at once with the failure's cause (nothing is written, callers answer "unavailable").
pub const MIN_REOPEN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two re-opens while the cause (say, a full disk) lasts.
pub const MAX_REOPEN_BACKOFF: Duration = Duration::from_secs(2);
/// How long a re-open waits for the readers in flight to finish before it gives up this round.
pub const MAX_READER_DRAIN: Duration = Duration::from_secs(5);
/// Free bytes the data folder's file system needs before writes paused by a full disk are
/// tried again.
pub const MIN_FREE_BYTES: u64 = 1 << 20;
/// `/readyz` writes a small probe when no commit succeeded for this long (under load the
/// writer's own commits answer; idle, the probe proves the file still takes a write).
pub const PROBE_AFTER: Duration = Duration::from_secs(1);

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).map_err(|e| StoreError::Corrupt(e.to_string()))
}

struct Shared {
    /// The open database; `None` while the writer re-opens it after a failure.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    /// Why writes fail now; `None` once a commit succeeded.
    failing: Mutex<Option<Failure>>,
    /// When the last commit succeeded.
    last_commit: Mutex<Instant>,
    /// While writes are paused after a failure: when they may be tried again.
    retry_at: Mutex<Option<Instant>>,
    /// Set by [`EmbeddedStore::close`]: the file is closed for good, never re-opened.
    stopped: std::sync::atomic::AtomicBool,
    policy: QueuePolicy,
    index: RwLock<QueueIndex>,
    refs: RwLock<RefIndex>,
    depth: AtomicU64,
    commits: AtomicU64,
    jobs: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; 11],
    /// [`MAX_ACK_DELAY`], except in tests.
    max_ack_delay: Duration,
}

/// The embedded store. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    jobs: flume::Sender<Queued>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` with the default [`QueuePolicy`].
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, QueuePolicy::default())
    }

    /// Opens (or creates) the store file at `path`, enforcing `policy` on every queue, and
    /// starts its writer thread.
    pub fn open_with(path: &Path, policy: QueuePolicy) -> Result<Self> {
        Self::open_inner(path, policy, MAX_ACK_DELAY)
    }

    fn open_inner(path: &Path, policy: QueuePolicy, max_ack_delay: Duration) -> Result<Self> {
        let db = open_file(path, true)?;
        let (next_seq, depth, index, refs) = {
            let txn = db.begin_write().map_err(backend)?;
            let (next_seq, depth);
            let mut index = QueueIndex::new();
            let mut refs = RefIndex::new();
            {
                // Create every table so readers never see "table does not exist".
                txn.open_table(TENANTS).map_err(backend)?;
                txn.open_table(USERS).map_err(backend)?;
                txn.open_table(DEVICES).map_err(backend)?;
                txn.open_table(SESSIONS).map_err(backend)?;
                txn.open_table(SESSION_IDS).map_err(backend)?;
                txn.open_table(USER_SESSIONS).map_err(backend)?;
                txn.open_table(ACTIVE_SESSIONS).map_err(backend)?;
                txn.open_table(AUDIT).map_err(backend)?;
                txn.open_table(KV).map_err(backend)?;
                txn.open_table(BLOBS).map_err(backend)?;
                txn.open_table(BLOB_REFS).map_err(backend)?;
                let qr = txn.open_table(QUEUE_REFS).map_err(backend)?;
                let mut q = txn.open_table(QUEUE).map_err(backend)?;
                let mut meta = txn.open_table(META).map_err(backend)?;
                let version = meta.get("schema_version").map_err(backend)?.map(|v| v.value());
                match version {
                    None => {
                        meta.insert("schema_version", SCHEMA_VERSION).map_err(backend)?;
                    }
                    Some(v) if v > SCHEMA_VERSION => {
                        return Err(StoreError::Backend(format!(
                            "store schema version {v} is newer than this build ({SCHEMA_VERSION})"
                        )))
                    }
                    Some(1) => {
                        migrate_queue_v1(&txn, &mut q)?;
                        meta.insert("schema_version", SCHEMA_VERSION).map_err(backend)?;
                    }
                    Some(2) => {
                        // Version 3 only adds the (empty) shared-content tables, opened above.
                        meta.insert("schema_version", SCHEMA_VERSION).map_err(backend)?;
                    }
                    Some(_) => {}
                }
                for item in q.iter().map_err(backend)? {
                    let (k, v) = item.map_err(backend)?;
                    // The address is the tuple's first field: decode only it.
                    let (addr, _) = postcard::take_from_bytes::<DeviceAddress>(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    index.entry(addr).or_default().insert(k.value());
                }
                for item in qr.iter().map_err(backend)? {
                    let (k, v) = item.map_err(backend)?;
                    let (addr, rest) = postcard::take_from_bytes::<DeviceAddress>(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let (blob, _) = postcard::take_from_bytes::<u64>(rest)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    index.entry(addr).or_default().insert(k.value());
                    refs.insert(k.value(), blob);
                }
                depth = q.len().map_err(backend)? + qr.len().map_err(backend)?;
                next_seq = meta.get("next_seq").map_err(backend)?.map(|v| v.value()).unwrap_or(1);
            }
            txn.commit().map_err(backend)?;
            (next_seq, depth, index, refs)
        };
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            failing: Mutex::new(None),
            last_commit: Mutex::new(Instant::now()),
            retry_at: Mutex::new(None),
            stopped: std::sync::atomic::AtomicBool::new(false),
            policy,
            index: RwLock::new(index),
            refs: RwLock::new(refs),
            depth: AtomicU64::new(depth),
            commits: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            buckets: Default::default(),
            max_ack_delay,
        });
        let (tx, rx) = flume::bounded(MAX_PENDING_JOBS);
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("hush-store-writer".into())
            .spawn(move || writer_loop(writer_shared, rx, next_seq))
            .map_err(backend)?;
        Ok(Self { shared, jobs: tx })
    }

    /// Runs `f` in the next group commit and returns its result once the commit is durable.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.write_with(false, f).await
    }

    /// Like [`Self::write`], but `f` may wait up to [`MAX_ACK_DELAY`] for another write to
    /// commit with, rather than take a commit of its own (acknowledgements).
    async fn write_later<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.write_with(true, f).await
    }

    async fn write_with<T, F>(&self, may_wait: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t: &mut Tx<'_>| {
            let out = f(t);
            Box::new(move |committed: Result<()>| {
                let _ = tx.send(committed.and(out));
            })
        });
        self.jobs.send_async(Queued { job, may_wait }).await.map_err(|_| StoreError::Closed)?;
        // A job dropped unanswered was refused while the store recovers from a failure.
        rx.await.map_err(|_| match self.shared.failure() {
            Some(f) => StoreError::Unavailable(f),
            None => StoreError::Closed,
        })?
    }

    /// Closes the store file cleanly (graceful stop); every later call answers `closed`.
    pub async fn close(&self) {
        // A write of nothing commits the acknowledgements still waiting for one.
        if let Err(e) = self.write(|_| Ok(())).await {
            tracing::debug!(error = %e, "waiting acknowledgements not committed at stop");
        }
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.close()).await;
    }

    /// Whether writes succeed: the writer's own state, and when nothing was committed for
    /// [`PROBE_AFTER`], a small write (the `meta` table's `probe` counter) that proves it.
    pub async fn health(&self) -> StoreHealth {
        if let Some(f) = self.shared.failure() {
            // Paused writes are tried again only when a job comes: the probe is that job, so
            // a node whose disk got space back turns ready without any traffic.
            if !self.shared.retry_due() {
                return StoreHealth::Failing(f);
            }
        }
        let idle = self.shared.last_commit.lock().unwrap_or_else(|e| e.into_inner()).elapsed();
        if idle < PROBE_AFTER && self.shared.failure().is_none() {
            return StoreHealth::Ok;
        }
        let probe = self
            .write(|t| {
                let mut meta = t.txn.open_table(META).map_err(backend)?;
                let n = meta.get("probe").map_err(backend)?.map_or(0, |v| v.value());
                meta.insert("probe", n.wrapping_add(1)).map_err(backend)?;
                Ok(())
            })
            .await;
        match probe {
            Ok(()) => StoreHealth::Ok,
            Err(StoreError::Unavailable(f)) => StoreHealth::Failing(f),
            Err(e) => {
                StoreHealth::Failing(Failure { cause: e.cause().unwrap_or(Cause::Io), detail: e.to_string() })
            }
        }
    }

    /// Writes a consistent copy of the store (its latest commit, one read transaction) to a new
    /// file at `to`, on the blocking pool, while the writer keeps committing: the backup of a
    /// serving node. See [`crate::maintenance::snapshot`].
    pub async fn snapshot_to(
        &self,
        to: &Path,
    ) -> std::result::Result<crate::maintenance::SnapshotReport, crate::maintenance::MaintenanceError> {
        let (shared, to) = (self.shared.clone(), to.to_owned());
        tokio::task::spawn_blocking(move || {
            let db =
                shared.current().map_err(|e| crate::maintenance::MaintenanceError::Backend(e.to_string()))?;
            crate::maintenance::snapshot(&db, &to)
        })
        .await
        .map_err(|e| crate::maintenance::MaintenanceError::Backend(e.to_string()))?
    }

    /// Runs a point read (a few B-tree lookups) on the calling thread in its own read
    /// transaction. Such a read takes microseconds, mostly from redb's page cache; handing it
    /// to the blocking pool cost more than the read (a thread hop and its futex pair each way;
    /// issue 15's connect profile). Scans and anything that may touch many pages use
    /// [`Self::read`].
    fn lookup<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let db = self.shared.current()?;
        let txn = db.begin_read().map_err(backend)?;
        f(&txn)
    }

    /// Runs a read on the blocking pool in its own read transaction.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let db = shared.current()?;
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

impl Shared {
    /// The open database, or the failure that closed it while the writer re-opens it.
    fn current(&self) -> Result<Arc<Database>> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        match &*db {
            Some(db) => Ok(db.clone()),
            None => Err(StoreError::Unavailable(self.failure().unwrap_or(Failure {
                cause: Cause::Closed,
                detail: "the store file is being re-opened".into(),
            }))),
        }
    }

    fn is_closed(&self) -> bool {
        self.db.read().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// When paused writes may be tried again (for `/readyz`'s probe), `None` when not paused.
    fn set_retry(&self, at: Option<Instant>) {
        *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    fn retry_due(&self) -> bool {
        self.retry_at.lock().unwrap_or_else(|e| e.into_inner()).is_none_or(|at| Instant::now() >= at)
    }

    /// Whether a write may be tried again: after a full disk, only once the file system has
    /// [`MIN_FREE_BYTES`] free (each failed attempt costs a re-open, which repairs the file);
    /// after any other cause, at the end of the pause.
    fn space_back(&self) -> bool {
        let full = self.failure().is_some_and(|f| f.cause == Cause::DiskFull);
        if !full {
            return true;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        match rustix::fs::statvfs(dir) {
            Ok(st) => st.f_bavail.saturating_mul(st.f_frsize) >= MIN_FREE_BYTES,
            Err(_) => true,
        }
    }

    fn failure(&self) -> Option<Failure> {
        self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_failure(&self, f: Option<Failure>) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Closes the database (after the readers in flight, at most [`MAX_READER_DRAIN`]) and
    /// opens the file again: redb latches an I/O error ("previous I/O error, re-open the
    /// database") until the file is re-opened, which also repairs a file left mid-commit.
    /// The failed transaction was never committed, so the re-opened file holds exactly what
    /// the writer's in-memory state (sequence counter, queue index) describes.
    fn reopen(&self) -> Result<()> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        match self.take_db() {
            // Closing flushes what it can; a failure here is the same failure again.
            Ok(Some(db)) => {
                if let Err(e) = db.close() {
                    tracing::debug!(error = %e, "closing the failed store");
                }
            }
            Ok(None) => {}
            Err(still_shared) => {
                // Readers still hold it: put it back and try again next round.
                *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(still_shared);
                return Err(StoreError::Unavailable(Failure {
                    cause: Cause::Closed,
                    detail: "readers still hold the store; re-open postponed".into(),
                }));
            }
        }
        let db = open_file(&self.path, false)?;
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        Ok(())
    }

    /// Takes the open database out of its slot (readers get the current failure meanwhile) once
    /// the reads and the commit in flight dropped their handles, waiting at most
    /// [`MAX_READER_DRAIN`]; past it, the handle still shared is handed back as the error.
    fn take_db(&self) -> std::result::Result<Option<Database>, Arc<Database>> {
        let Some(mut db) = self.db.write().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(None);
        };
        let t0 = Instant::now();
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => return Ok(Some(db)),
                Err(still_shared) if t0.elapsed() < MAX_READER_DRAIN => {
                    db = still_shared;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(still_shared) => return Err(still_shared),
            }
        }
    }

    /// Closes the file for good (graceful stop): after the reads and the commit in flight (at
    /// most [`MAX_READER_DRAIN`]), so the file is marked cleanly closed and the next start
    /// needs no repair. Later calls answer `closed`.
    fn close(&self) {
        self.stopped.store(true, Ordering::Release);
        self.set_failure(Some(Failure { cause: Cause::Closed, detail: "the node is stopping".into() }));
        match self.take_db() {
            Ok(Some(db)) => {
                if let Err(e) = db.close() {
                    tracing::warn!(error = %e, "store not closed cleanly; the next start repairs it");
                }
            }
            Ok(None) => {}
            Err(_) => tracing::warn!("store still in use at stop; the next start repairs it"),
        }
    }
}

/// Waits for the next job; while jobs wait for a commit to ride on, at most until they are due
/// (`Ok(None)`: due and nothing came). `Err` once every sender is gone.
fn next_job(
    rx: &flume::Receiver<Queued>,
    waiting_since: Option<Instant>,
    bound: Duration,
) -> std::result::Result<Option<Queued>, ()> {
    match waiting_since {
        None => rx.recv().map(Some).map_err(|_| ()),
        Some(t) => match rx.recv_deadline(t + bound) {
            Ok(q) => Ok(Some(q)),
            Err(flume::RecvTimeoutError::Timeout) => Ok(None),
            Err(flume::RecvTimeoutError::Disconnected) => Err(()),
        },
    }
}

fn writer_loop(shared: Arc<Shared>, rx: flume::Receiver<Queued>, mut next_seq: u64) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    let mut added: Vec<(DeviceAddress, u64)> = Vec::new();
    let mut removed: Vec<(DeviceAddress, u64)> = Vec::new();
    let mut refs_added: Vec<(u64, u64)> = Vec::new();
    let mut refs_removed: Vec<u64> = Vec::new();
    // After a failed commit, writes pause until this time (jobs arriving meanwhile are refused
    // without touching the file, so the re-opened handle keeps serving reads), and the pause
    // doubles after each failed attempt.
    let mut paused_until: Option<Instant> = None;
    let mut backoff = MIN_REOPEN_BACKOFF;
    // Since when the jobs in `batch` (acknowledgements alone) wait for a commit to ride on.
    let mut waiting_since: Option<Instant> = None;
    loop {
        let last = match next_job(&rx, waiting_since, shared.max_ack_delay) {
            Ok(next) => {
                batch.extend(next);
                false
            }
            // Every handle is gone: commit what still waits, then stop.
            Err(()) if !batch.is_empty() => true,
            Err(()) => break,
        };
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let due = last
            || batch.len() >= MAX_JOBS_PER_COMMIT
            || batch.iter().any(|q| !q.may_wait)
            || waiting_since.is_some_and(|t| t.elapsed() >= shared.max_ack_delay);
        if !due {
            waiting_since.get_or_insert_with(Instant::now);
            continue;
        }
        waiting_since = None;
        if let Some(until) = paused_until {
            let now = Instant::now();
            if now < until {
                refuse_batch(&shared, &mut batch);
                continue;
            }
            if !shared.space_back() {
                paused_until = Some(now + backoff);
                shared.set_retry(paused_until);
                refuse_batch(&shared, &mut batch);
                continue;
            }
            paused_until = None;
            shared.set_retry(None);
        }
        if shared.stopped.load(Ordering::Acquire) {
            refuse_batch(&shared, &mut batch);
            continue;
        }
        if shared.is_closed() {
            // An earlier re-open failed: open the file again before this batch.
            if let Err(e) = shared.reopen() {
                crate::failure::log_failure(&e, "store file not re-opened; retrying");
                backoff = (backoff * 2).min(MAX_REOPEN_BACKOFF);
                paused_until = Some(Instant::now() + backoff);
                shared.set_retry(paused_until);
                refuse_batch(&shared, &mut batch);
                continue;
            }
        }
        let started = Instant::now();
        let n = batch.len() as u64;
        let seq_before = next_seq;
        let mut depth_delta = 0i64;
        added.clear();
        removed.clear();
        refs_added.clear();
        refs_removed.clear();
        let mut completions = Vec::with_capacity(batch.len());
        let result = (|| -> Result<()> {
            let db = shared.current()?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut tx = Tx {
                    txn: &txn,
                    policy: &shared.policy,
                    next_seq: &mut next_seq,
                    depth_delta: &mut depth_delta,
                    queue: None,
                    index: &shared.index,
                    added: &mut added,
                    removed: &mut removed,
                    refs: &shared.refs,
                    refs_added: &mut refs_added,
                    refs_removed: &mut refs_removed,
                    shared: None,
                };
                for q in batch.drain(..) {
                    completions.push((q.job)(&mut tx));
                }
                if *tx.next_seq != seq_before {
                    let mut meta = txn.open_table(META).map_err(backend)?;
                    meta.insert("next_seq", *tx.next_seq).map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)?;
            Ok(())
        })();
        // Counted before any caller hears back: whoever got an answer sees its commit counted.
        let us = started.elapsed().as_micros() as u64;
        shared.commits.fetch_add(1, Ordering::Relaxed);
        shared.jobs.fetch_add(n, Ordering::Relaxed);
        shared.sum_us.fetch_add(us, Ordering::Relaxed);
        let idx = COMMIT_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(COMMIT_BUCKETS_US.len());
        shared.buckets[idx].fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                if !added.is_empty() || !removed.is_empty() {
                    // Adds first: a remove in the same commit (purge) always follows its add.
                    let mut index = write_index(&shared.index);
                    for (addr, seq) in added.drain(..) {
                        index.entry(addr).or_default().insert(seq);
                    }
                    for (addr, seq) in removed.drain(..) {
                        if let Some(set) = index.get_mut(&addr) {
                            set.remove(&seq);
                            if set.is_empty() {
                                index.remove(&addr);
                            }
                        }
                    }
                }
                if !refs_added.is_empty() || !refs_removed.is_empty() {
                    let mut refs = shared.refs.write().unwrap_or_else(|e| e.into_inner());
                    refs.extend(refs_added.drain(..));
                    for seq in refs_removed.drain(..) {
                        refs.remove(&seq);
                    }
                }
                apply_delta(&shared.depth, depth_delta);
                if shared.failure().is_some() {
                    tracing::info!("store writes succeed again");
                    shared.set_failure(None);
                }
                backoff = MIN_REOPEN_BACKOFF;
                *shared.last_commit.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                for c in completions {
                    c(Ok(()));
                }
            }
            Err(e) => {
                // The transaction was dropped (aborted): none of its writes happened, and the
                // in-memory state is left as the last commit made it. Every caller of the batch
                // hears the failure (jobs that did not run yet are answered too).
                next_seq = seq_before;
                crate::failure::log_failure(
                    &e,
                    "store commit failed; writes refused until the store recovers",
                );
                let refused = match &e {
                    StoreError::Unavailable(f) => f.clone(),
                    other => Failure { cause: Cause::Io, detail: other.to_string() },
                };
                shared.set_failure(Some(refused.clone()));
                for c in completions {
                    c(Err(StoreError::Unavailable(refused.clone())));
                }
                refuse_batch(&shared, &mut batch);
                if matches!(e, StoreError::Unavailable(_)) {
                    // redb latches I/O errors ("previous I/O error"): re-open the file now, so
                    // reads go on, and pause writes until the cause may be gone.
                    match shared.reopen() {
                        Ok(()) => {
                            tracing::info!(path = %shared.path.display(), "store file re-opened after a failure; writes paused")
                        }
                        Err(e) => crate::failure::log_failure(&e, "store file not re-opened; retrying"),
                    }
                    paused_until = Some(Instant::now() + backoff);
                    shared.set_retry(paused_until);
                    backoff = (backoff * 2).min(MAX_REOPEN_BACKOFF);
                }
            }
        }
    }
    tracing::debug!("store writer stopped");
}

/// Refuses every job of `batch` without running it: dropping a job drops its reply channel,
/// and its caller ([`EmbeddedStore::write`]) answers with the store's current failure.
fn refuse_batch(shared: &Shared, batch: &mut Vec<Queued>) {
    if !batch.is_empty() {
        tracing::trace!(
            jobs = batch.len(),
            failing = shared.failure().is_some(),
            "batch refused while the store recovers"
        );
        batch.clear();
    }
}

/// Moves every schema-1 queue entry into the schema-2 table (same seq) and drops the old table.
fn migrate_queue_v1(txn: &WriteTransaction, q: &mut Table<'_, u64, &'static [u8]>) -> Result<()> {
    {
        let old = txn.open_table(QUEUE_V1).map_err(backend)?;
        for item in old.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let (tenant, user, device, seq) = k.value();
            let env: Envelope = crate::records::decode_stored::<()>(v.value())?.1;
            let addr = DeviceAddress::new(
                TenantId::new(tenant).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                UserId::new(user).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                DeviceId::new(u32::from(device)).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
            q.insert(seq, enc(&(&addr, &env))?.as_slice()).map_err(backend)?;
        }
    }
    txn.delete_table(QUEUE_V1).map_err(backend)?;
    Ok(())
}

fn apply_delta(depth: &AtomicU64, delta: i64) {
    if delta >= 0 {
        depth.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        let d = delta.unsigned_abs();
        let _ = depth.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(d)));
    }
}

#[async_trait]
impl AccountStore for EmbeddedStore {
    async fn create_tenant(&self, tenant: TenantRecord) -> Result<()> {
        let bytes = enc(&tenant)?;
        self.write(move |t| {
            let mut table = t.txn.open_table(TENANTS).map_err(backend)?;
            if table.get(tenant.name.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::Conflict);
            }
            table.insert(tenant.name.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn list_tenants(&self, limit: usize) -> Result<Vec<TenantRecord>> {
        self.read(move |r| {
            let table = r.open_table(TENANTS).map_err(backend)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(backend)? {
                if out.len() >= limit {
                    break;
                }
                let (_, v) = item.map_err(backend)?;
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>> {
        let key = tenant.clone();
        self.read(move |r| {
            let table = r.open_table(TENANTS).map_err(backend)?;
            let v = table.get(key.as_str()).map_err(backend)?;
            v.map(|v| dec(v.value())).transpose()
        })
        .await
    }

    async fn create_user(&self, user: UserRecord) -> Result<()> {
        let bytes = enc(&user)?;
        self.write(move |t| {
            let mut table = t.txn.open_table(USERS).map_err(backend)?;
            let key = (user.tenant.as_str(), user.user.as_str());
            if table.get(key).map_err(backend)?.is_some() {
                return Err(StoreError::Conflict);
            }
            table.insert(key, bytes.as_slice()).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, tenant: &TenantId, user: &UserId) -> Result<Option<UserRecord>> {
        self.lookup(|r| {
            let table = r.open_table(USERS).map_err(backend)?;
            let v = table.get((tenant.as_str(), user.as_str())).map_err(backend)?;
            v.map(|v| dec(v.value())).transpose()
        })
    }

    async fn list_users(
        &self,
        tenant: &TenantId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        let tenant = tenant.clone();
        let after = after.cloned();
        self.read(move |r| {
            let table = r.open_table(USERS).map_err(backend)?;
            let start = after.as_ref().map(|u| u.as_str()).unwrap_or("");
            let mut out = Vec::new();
            for item in table.range((tenant.as_str(), start)..).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let (t, u) = k.value();
                if t != tenant.as_str() || out.len() >= limit {
                    break;
                }
                if after.is_some() && u == start {
                    continue;
                }
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl DeviceStore for EmbeddedStore {
    async fn get_devices(&self, tenant: &TenantId, user: &UserId) -> Result<DeviceSet> {
        self.lookup(|r| {
            let table = r.open_table(DEVICES).map_err(backend)?;
            let v = table.get((tenant.as_str(), user.as_str())).map_err(backend)?;
            Ok(v.map(|v| dec(v.value())).transpose()?.unwrap_or_default())
        })
    }

    async fn put_devices(
        &self,
        tenant: &TenantId,
        user: &UserId,
        expected_version: u64,
        mut devices: Vec<DeviceRecord>,
    ) -> Result<DeviceSet> {
        let (tenant, user) = (tenant.clone(), user.clone());
        devices.sort_by_key(|d| d.id);
        let set = DeviceSet { version: expected_version + 1, devices };
        let bytes = enc(&set)?;
        self.write(move |t| {
            let mut table = t.txn.open_table(DEVICES).map_err(backend)?;
            let key = (tenant.as_str(), user.as_str());
            let current: DeviceSet =
                table.get(key).map_err(backend)?.map(|v| dec(v.value())).transpose()?.unwrap_or_default();
            if current.version != expected_version {
                return Err(StoreError::VersionConflict);
            }
            table.insert(key, bytes.as_slice()).map_err(backend)?;
            Ok(set)
        })
        .await
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn create_session(&self, session: SessionRecord) -> Result<()> {
        let bytes = enc(&session)?;
        self.write(move |t| {
            let mut sessions = t.txn.open_table(SESSIONS).map_err(backend)?;
            let mut ids = t.txn.open_table(SESSION_IDS).map_err(backend)?;
            let hash = session.token_hash.0;
            if sessions.get(hash.as_slice()).map_err(backend)?.is_some()
                || ids.get(session.id.as_str()).map_err(backend)?.is_some()
            {
                return Err(StoreError::Conflict);
            }
            sessions.insert(hash.as_slice(), bytes.as_slice()).map_err(backend)?;
            ids.insert(session.id.as_str(), hash.as_slice()).map_err(backend)?;
            let d = &session.device;
            let mut by_user = t.txn.open_table(USER_SESSIONS).map_err(backend)?;
            by_user
                .insert((d.tenant.as_str(), d.user.as_str(), session.id.as_str()), session.created_ms)
                .map_err(backend)?;
            if session.revoked.is_none() {
                let mut active = t.txn.open_table(ACTIVE_SESSIONS).map_err(backend)?;
                active.insert((d.tenant.as_str(), session.id.as_str()), ()).map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn session_by_token(&self, token_hash: &TokenHash) -> Result<Option<SessionRecord>> {
        self.lookup(|r| {
            let table = r.open_table(SESSIONS).map_err(backend)?;
            let v = table.get(token_hash.0.as_slice()).map_err(backend)?;
            v.map(|v| dec(v.value())).transpose()
        })
    }

    async fn session_by_id(&self, id: &str) -> Result<Option<SessionRecord>> {
        self.lookup(|r| {
            let ids = r.open_table(SESSION_IDS).map_err(backend)?;
            let Some(hash) = ids.get(id).map_err(backend)? else {
                return Ok(None);
            };
            let table = r.open_table(SESSIONS).map_err(backend)?;
            let v = table.get(hash.value()).map_err(backend)?;
            v.map(|v| dec(v.value())).transpose()
        })
    }

    async fn revoke_session(&self, id: &str, revocation: Revocation) -> Result<Option<SessionRecord>> {
        let id = id.to_owned();
        self.write(move |t| {
            let ids = t.txn.open_table(SESSION_IDS).map_err(backend)?;
            let Some(hash) = ids.get(id.as_str()).map_err(backend)?.map(|h| h.value().to_vec()) else {
                return Ok(None);
            };
            let mut table = t.txn.open_table(SESSIONS).map_err(backend)?;
            let current = table.get(hash.as_slice()).map_err(backend)?.map(|v| v.value().to_vec());
            let Some(current) = current else {
                return Ok(None);
            };
            let mut s: SessionRecord = dec(&current)?;
            if s.revoked.is_none() {
                s.revoked = Some(revocation);
                table.insert(hash.as_slice(), enc(&s)?.as_slice()).map_err(backend)?;
                let mut active = t.txn.open_table(ACTIVE_SESSIONS).map_err(backend)?;
                active.remove((s.device.tenant.as_str(), s.id.as_str())).map_err(backend)?;
            }
            Ok(Some(s))
        })
        .await
    }

    async fn revoke_sessions(
        &self,
        tenant: &TenantId,
        ids: Vec<String>,
        revocation: Revocation,
    ) -> Result<Vec<SessionRecord>> {
        let tenant = tenant.clone();
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        self.write(move |t| {
            let by_id = t.txn.open_table(SESSION_IDS).map_err(backend)?;
            let mut table = t.txn.open_table(SESSIONS).map_err(backend)?;
            let mut active = t.txn.open_table(ACTIVE_SESSIONS).map_err(backend)?;
            // Decide everything first, then write: a decode error leaves no partial write.
            let mut revoked = Vec::new();
            for id in &ids {
                let Some(hash) = by_id.get(id.as_str()).map_err(backend)?.map(|h| h.value().to_vec()) else {
                    continue;
                };
                let Some(current) = table.get(hash.as_slice()).map_err(backend)?.map(|v| v.value().to_vec())
                else {
                    continue;
                };
                let mut s: SessionRecord = dec(&current)?;
                if s.device.tenant != tenant || s.revoked.is_some() {
                    continue;
                }
                s.revoked = Some(revocation.clone());
                revoked.push((hash, s));
            }
            for (hash, s) in &revoked {
                table.insert(hash.as_slice(), enc(s)?.as_slice()).map_err(backend)?;
                active.remove((s.device.tenant.as_str(), s.id.as_str())).map_err(backend)?;
            }
            Ok(revoked.into_iter().map(|(_, s)| s).collect())
        })
        .await
    }

    async fn sessions_of_user(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<SessionRecord>> {
        let (tenant, user) = (tenant.clone(), user.clone());
        self.read(move |r| {
            let by_user = r.open_table(USER_SESSIONS).map_err(backend)?;
            let ids = r.open_table(SESSION_IDS).map_err(backend)?;
            let sessions = r.open_table(SESSIONS).map_err(backend)?;
            let mut out = Vec::new();
            let lo = (tenant.as_str(), user.as_str(), "");
            for item in by_user.range(lo..).map_err(backend)? {
                let (k, _) = item.map_err(backend)?;
                let (t, u, id) = k.value();
                if t != tenant.as_str() || u != user.as_str() {
                    break;
                }
                let Some(hash) = ids.get(id).map_err(backend)? else { continue };
                if let Some(v) = sessions.get(hash.value()).map_err(backend)? {
                    out.push(dec::<SessionRecord>(v.value())?);
                }
            }
            out.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.id.cmp(&b.id)));
            out.truncate(crate::MAX_SESSIONS_PER_USER_LISTED);
            Ok(out)
        })
        .await
    }

    async fn active_sessions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>> {
        let tenant = tenant.clone();
        let after = after.map(str::to_owned);
        self.read(move |r| {
            let active = r.open_table(ACTIVE_SESSIONS).map_err(backend)?;
            let ids = r.open_table(SESSION_IDS).map_err(backend)?;
            let sessions = r.open_table(SESSIONS).map_err(backend)?;
            let start = after.as_deref().unwrap_or("");
            let mut out = Vec::new();
            for item in active.range((tenant.as_str(), start)..).map_err(backend)? {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = item.map_err(backend)?;
                let (t, id) = k.value();
                if t != tenant.as_str() {
                    break;
                }
                if after.is_some() && id == start {
                    continue;
                }
                let Some(hash) = ids.get(id).map_err(backend)? else { continue };
                if let Some(v) = sessions.get(hash.value()).map_err(backend)? {
                    out.push(dec::<SessionRecord>(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn append_audit(&self, mut record: AuditRecord) -> Result<u64> {
        self.write(move |t| {
            let mut meta = t.txn.open_table(META).map_err(backend)?;
            let id = meta.get("audit_seq").map_err(backend)?.map(|v| v.value()).unwrap_or(0) + 1;
            meta.insert("audit_seq", id).map_err(backend)?;
            record.id = id;
            let mut audit = t.txn.open_table(AUDIT).map_err(backend)?;
            audit.insert((record.tenant.as_str(), id), enc(&record)?.as_slice()).map_err(backend)?;
            Ok(id)
        })
        .await
    }

    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(records.len());
        self.write(move |t| {
            let mut meta = t.txn.open_table(META).map_err(backend)?;
            let mut id = meta.get("audit_seq").map_err(backend)?.map(|v| v.value()).unwrap_or(0);
            // Encode everything first: an encoding error leaves no partial write.
            for mut record in records {
                id += 1;
                record.id = id;
                let bytes = enc(&record)?;
                encoded.push((record.tenant, id, bytes));
            }
            meta.insert("audit_seq", id).map_err(backend)?;
            let mut audit = t.txn.open_table(AUDIT).map_err(backend)?;
            for (tenant, id, bytes) in &encoded {
                audit.insert((tenant.as_str(), *id), bytes.as_slice()).map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn audit(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let tenant = tenant.clone();
        let q = query.clone();
        self.read(move |r| {
            let audit = r.open_table(AUDIT).map_err(backend)?;
            let hi = q.before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for item in audit.range((tenant.as_str(), 0u64)..(tenant.as_str(), hi)).map_err(backend)?.rev() {
                if out.len() >= q.limit {
                    break;
                }
                let (_, v) = item.map_err(backend)?;
                let rec: AuditRecord = dec(v.value())?;
                if q.actor.as_ref().is_some_and(|a| rec.actor.as_ref() != Some(a)) {
                    continue;
                }
                if q.action.as_ref().is_some_and(|a| *a != rec.action) {
                    continue;
                }
                out.push(rec);
            }
            Ok(out)
        })
        .await
    }
}

/// Scans up to this many key-value entries on the calling thread (more go to the blocking pool).
const INLINE_SCAN: usize = 16;

/// Entries of `ns` under `prefix` after `after`, at most `limit`, in key order.
fn scan_kv(
    r: &redb::ReadTransaction,
    ns: &str,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<KvEntry>> {
    let table = r.open_table(KV).map_err(backend)?;
    let start = match after {
        Some(a) if a >= prefix => a,
        _ => prefix,
    };
    let mut out = Vec::new();
    for item in table.range((ns, start)..).map_err(backend)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item.map_err(backend)?;
        let (kns, key) = k.value();
        if kns != ns || !key.starts_with(prefix) {
            break;
        }
        if after.is_some_and(|a| key <= a) {
            continue;
        }
        out.push(kv_decode(key, v.value())?);
    }
    Ok(out)
}

fn kv_encode(version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn kv_decode(key: &str, raw: &[u8]) -> Result<KvEntry> {
    let (v, value) = raw.split_at_checked(8).ok_or_else(|| StoreError::Corrupt(format!("kv entry {key}")))?;
    let mut version = [0u8; 8];
    version.copy_from_slice(v);
    Ok(KvEntry { key: key.to_owned(), version: u64::from_be_bytes(version), value: value.to_vec() })
}

/// The stored version of `(ns, key)`, 0 if absent.
fn kv_version(
    table: &Table<'_, (&'static str, &'static str), &'static [u8]>,
    ns: &str,
    key: &str,
) -> Result<u64> {
    match table.get((ns, key)).map_err(backend)? {
        Some(raw) => Ok(kv_decode(key, raw.value())?.version),
        None => Ok(0),
    }
}

/// Keys of `(ns, prefix…)` in order, after `after`, at most `limit` (for deletes inside a write).
fn kv_keys_under(
    table: &Table<'_, (&'static str, &'static str), &'static [u8]>,
    ns: &str,
    prefix: &str,
    limit: usize,
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for item in table.range((ns, prefix)..).map_err(backend)? {
        let (k, _) = item.map_err(backend)?;
        let (kns, key) = k.value();
        if kns != ns || !key.starts_with(prefix) || keys.len() >= limit {
            break;
        }
        keys.push(key.to_owned());
    }
    Ok(keys)
}

impl EmbeddedStore {
    /// Writes one entry, only at version `expected` if given; returns the new version.
    async fn kv_write(&self, ns: &str, key: &str, expected: Option<u64>, value: Vec<u8>) -> Result<u64> {
        check_kv_key(ns)?;
        check_kv_key(key)?;
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.write(move |t| {
            let mut table = t.txn.open_table(KV).map_err(backend)?;
            let current = kv_version(&table, &ns, &key)?;
            if expected.is_some_and(|e| e != current) {
                return Err(StoreError::VersionConflict);
            }
            let version = current + 1;
            table
                .insert((ns.as_str(), key.as_str()), kv_encode(version, &value).as_slice())
                .map_err(backend)?;
            Ok(version)
        })
        .await
    }
}

#[async_trait]
impl KvStore for EmbeddedStore {
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<KvEntry>> {
        check_kv_key(ns)?;
        check_kv_key(key)?;
        self.lookup(|r| {
            let table = r.open_table(KV).map_err(backend)?;
            let got = table.get((ns, key)).map_err(backend)?;
            got.map(|raw| kv_decode(key, raw.value())).transpose()
        })
    }

    async fn kv_put(&self, ns: &str, key: &str, expected: u64, value: Vec<u8>) -> Result<u64> {
        self.kv_write(ns, key, Some(expected), value).await
    }

    async fn kv_set(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<u64> {
        self.kv_write(ns, key, None, value).await
    }

    async fn kv_delete(&self, ns: &str, key: &str, expected: Option<u64>) -> Result<bool> {
        check_kv_key(ns)?;
        check_kv_key(key)?;
        let (ns, key) = (ns.to_owned(), key.to_owned());
        self.write(move |t| {
            let mut table = t.txn.open_table(KV).map_err(backend)?;
            let current = kv_version(&table, &ns, &key)?;
            if current == 0 || expected.is_some_and(|e| e != current) {
                return Ok(false);
            }
            table.remove((ns.as_str(), key.as_str())).map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn kv_set_many(&self, ns: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        crate::check_kv_batch(ns, entries.iter().map(|(k, _)| k.as_str()))?;
        let ns = ns.to_owned();
        self.write(move |t| {
            let mut table = t.txn.open_table(KV).map_err(backend)?;
            for (key, value) in &entries {
                let version = kv_version(&table, &ns, key)? + 1;
                table
                    .insert((ns.as_str(), key.as_str()), kv_encode(version, value).as_slice())
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn kv_delete_many(&self, ns: &str, keys: Vec<String>) -> Result<u64> {
        crate::check_kv_batch(ns, keys.iter().map(String::as_str))?;
        let ns = ns.to_owned();
        self.write(move |t| {
            let mut table = t.txn.open_table(KV).map_err(backend)?;
            let mut n = 0;
            for key in &keys {
                n += u64::from(table.remove((ns.as_str(), key.as_str())).map_err(backend)?.is_some());
            }
            Ok(n)
        })
        .await
    }

    async fn kv_scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        check_kv_scope(ns, prefix)?;
        let limit = limit.min(MAX_KV_SCAN);
        if limit <= INLINE_SCAN {
            // A few entries from one seek: a point read's cost (see `lookup`).
            return self.lookup(|r| scan_kv(r, ns, prefix, after, limit));
        }
        let (ns, prefix) = (ns.to_owned(), prefix.to_owned());
        let after = after.map(str::to_owned);
        self.read(move |r| scan_kv(r, &ns, &prefix, after.as_deref(), limit)).await
    }

    async fn kv_count(&self, ns: &str, prefix: &str) -> Result<u64> {
        check_kv_scope(ns, prefix)?;
        let (ns, prefix) = (ns.to_owned(), prefix.to_owned());
        self.read(move |r| {
            let table = r.open_table(KV).map_err(backend)?;
            let mut n = 0u64;
            for item in table.range((ns.as_str(), prefix.as_str())..).map_err(backend)? {
                let (k, _) = item.map_err(backend)?;
                let (kns, key) = k.value();
                if kns != ns || !key.starts_with(prefix.as_str()) {
                    break;
                }
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    async fn kv_take_first(&self, ns: &str, prefix: &str) -> Result<Option<KvEntry>> {
        check_kv_key(ns)?;
        check_kv_key(prefix)?;
        let (ns, prefix) = (ns.to_owned(), prefix.to_owned());
        self.write(move |t| {
            let mut table = t.txn.open_table(KV).map_err(backend)?;
            let Some(key) = kv_keys_under(&table, &ns, &prefix, 1)?.pop() else {
                return Ok(None);
            };
            let raw = table.remove((ns.as_str(), key.as_str())).map_err(backend)?;
            raw.map(|raw| kv_decode(&key, raw.value())).transpose()
        })
        .await
    }

    async fn kv_replace_prefix(&self, ns: &str, prefix: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        check_kv_replace(ns, prefix, &entries)?;
        let (ns, prefix) = (ns.to_owned(), prefix.to_owned());
        self.write(move |t| {
            let mut table = t.txn.open_table(KV).map_err(backend)?;
            // Versions continue across a replace for keys that existed before.
            let mut old = HashMap::new();
            for key in kv_keys_under(&table, &ns, &prefix, usize::MAX)? {
                let version = kv_version(&table, &ns, &key)?;
                table.remove((ns.as_str(), key.as_str())).map_err(backend)?;
                old.insert(key, version);
            }
            for (key, value) in entries {
                let version = old.get(&key).copied().unwrap_or(0) + 1;
                table
                    .insert((ns.as_str(), key.as_str()), kv_encode(version, &value).as_slice())
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl QueueStore for EmbeddedStore {
    async fn enqueue(&self, items: Vec<NewEnvelope>) -> Result<Vec<Envelope>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |t| {
            let full = over_bound(t, per_device(items.iter().map(|i| &i.to)).into_iter());
            if !full.is_empty() {
                return Err(StoreError::QueueFull(full));
            }
            let mut out = Vec::with_capacity(items.len());
            let mut buf = Vec::with_capacity(512);
            for mut item in items {
                let seq = *t.next_seq;
                *t.next_seq += 1;
                item.envelope.seq = seq;
                buf.clear();
                let bytes = postcard::to_extend(&(&item.to, &item.envelope), std::mem::take(&mut buf))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                t.queue()?.insert(seq, bytes.as_slice()).map_err(backend)?;
                buf = bytes;
                t.added.push((item.to, seq));
                out.push(item.envelope);
            }
            *t.depth_delta += out.len() as i64;
            Ok(out)
        })
        .await
    }

    async fn enqueue_shared(&self, item: SharedEnvelope) -> Result<Vec<u64>> {
        if item.to.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |t| {
            let full = over_bound(t, per_device(item.to.iter()).into_iter());
            if !full.is_empty() {
                return Err(StoreError::QueueFull(full));
            }
            let SharedEnvelope { to, mut envelope } = item;
            let n = to.len() as u64;
            let blob = *t.next_seq;
            let content = std::mem::take(&mut envelope.content.0);
            // Encode everything before the first write: a job that fails leaves nothing behind.
            let mut values = Vec::with_capacity(to.len());
            for (i, addr) in to.iter().enumerate() {
                envelope.seq = blob + i as u64;
                envelope.sync = addr.user == envelope.from;
                values.push(enc(&(addr, blob, &envelope))?);
            }
            let tables = t.shared()?;
            tables.blobs.insert(blob, content.as_slice()).map_err(backend)?;
            tables.counts.insert(blob, n).map_err(backend)?;
            for (i, v) in values.iter().enumerate() {
                tables.refs.insert(blob + i as u64, v.as_slice()).map_err(backend)?;
            }
            *t.next_seq += n;
            let seqs: Vec<u64> = (blob..blob + n).collect();
            for (addr, seq) in to.into_iter().zip(&seqs) {
                t.added.push((addr, *seq));
                t.refs_added.push((*seq, blob));
            }
            *t.depth_delta += n as i64;
            Ok(seqs)
        })
        .await
    }

    async fn shared_contents(&self) -> Result<u64> {
        self.read(|r| r.open_table(BLOB_REFS).map_err(backend)?.len().map_err(backend)).await
    }

    async fn fetch(&self, device: &DeviceAddress, after: u64, limit: usize) -> Result<Vec<Envelope>> {
        let limit = limit.min(MAX_FETCH);
        // Nothing queued after `after` (the in-memory index holds every committed, unacked seq):
        // answer without a read transaction on the blocking pool. A device's queue is empty at
        // most connections and after every drain.
        let pending = read_index(&self.shared.index)
            .get(device)
            .is_some_and(|set| set.range(after.saturating_add(1)..).next().is_some());
        if !pending || limit == 0 {
            return Ok(Vec::new());
        }
        let a = device.clone();
        let shared = self.shared.clone();
        let (policy, now) = (self.shared.policy, crate::now_ms());
        self.read(move |r| {
            // The snapshot first, then the index: every seq in the snapshot that is not acked yet
            // is in the index; seqs the index holds but the snapshot lacks are newer than every
            // seq in it (commits are sequential) or acked since, and are skipped.
            let q = r.open_table(QUEUE).map_err(backend)?;
            let mut shared_tables = None;
            let mut out = Vec::new();
            let mut cursor = after;
            while out.len() < limit {
                let seqs: Vec<u64> = match read_index(&shared.index).get(&a) {
                    Some(set) => {
                        set.range(cursor.saturating_add(1)..).take(limit - out.len()).copied().collect()
                    }
                    None => Vec::new(),
                };
                let Some(&last) = seqs.last() else { break };
                for seq in seqs {
                    if let Some(v) = q.get(seq).map_err(backend)? {
                        let (_, env): (DeviceAddress, Envelope) = crate::records::decode_stored(v.value())?;
                        // Past the retention: never delivered, even before the sweep deletes it.
                        if !policy.expired(&env, now) {
                            out.push(env);
                        }
                    } else {
                        // Not a 1:1 envelope: a reference to shared content, or acked since.
                        let shared = match &shared_tables {
                            Some(t) => t,
                            None => shared_tables.insert((
                                r.open_table(QUEUE_REFS).map_err(backend)?,
                                r.open_table(BLOBS).map_err(backend)?,
                            )),
                        };
                        if let Some(v) = shared.0.get(seq).map_err(backend)? {
                            let ((_, blob), mut env): ((DeviceAddress, u64), Envelope) =
                                crate::records::decode_stored(v.value())?;
                            if policy.expired(&env, now) {
                                continue;
                            }
                            let content = shared.1.get(blob).map_err(backend)?.ok_or_else(|| {
                                StoreError::Corrupt(format!("shared content {blob} missing"))
                            })?;
                            env.content = Payload(content.value().to_vec());
                            out.push(env);
                        }
                    }
                }
                cursor = last;
            }
            Ok(out)
        })
        .await
    }

    async fn ack(&self, device: &DeviceAddress, seqs: Vec<u64>) -> Result<u64> {
        let a = device.clone();
        // No commit of its own while other writes come (see `MAX_ACK_DELAY`): an ack not yet
        // committed only means the envelope may be delivered again.
        self.write_later(move |t| {
            // Only seqs the committed index gives this device: a seq is global, so the table
            // alone cannot tell whose it is. (A seq enqueued in this same commit cannot be
            // known to the caller yet.)
            let mine: Vec<u64> = {
                let index = read_index(t.index);
                match index.get(&a) {
                    Some(set) => seqs.into_iter().filter(|s| set.contains(s)).collect(),
                    None => Vec::new(),
                }
            };
            let (mine, refs) = split_refs(t, mine, false);
            let mut n = 0u64;
            for seq in mine {
                if t.queue()?.remove(seq).map_err(backend)?.is_some() {
                    n += 1;
                    t.removed.push((a.clone(), seq));
                }
            }
            *t.depth_delta -= n as i64;
            Ok(n + remove_refs(t, &a, refs)?)
        })
        .await
    }

    async fn purge(&self, device: &DeviceAddress) -> Result<u64> {
        let a = device.clone();
        self.write(move |t| {
            let mut keys: Vec<u64> =
                read_index(t.index).get(&a).map(|s| s.iter().copied().collect()).unwrap_or_default();
            // Envelopes enqueued earlier in this same commit are not in the index yet.
            keys.extend(t.added.iter().filter(|(to, _)| *to == a).map(|(_, seq)| *seq));
            let (keys, refs) = split_refs(t, keys, true);
            let mut n = 0u64;
            for seq in keys {
                if t.queue()?.remove(seq).map_err(backend)?.is_some() {
                    n += 1;
                    t.removed.push((a.clone(), seq));
                }
            }
            *t.depth_delta -= n as i64;
            Ok(n + remove_refs(t, &a, refs)?)
        })
        .await
    }

    async fn expire(&self, limit: usize) -> Result<u64> {
        let limit = limit.min(MAX_EXPIRE_BATCH);
        if limit == 0 {
            return Ok(0);
        }
        let now = crate::now_ms();
        self.write(move |t| {
            let policy = *t.policy;
            // Both tables are keyed by the global sequence number, so their left edges hold the
            // oldest envelopes: read from there up to the first one still within the retention.
            let mut plain: Vec<(u64, DeviceAddress)> = Vec::new();
            for item in t.queue()?.iter().map_err(backend)? {
                if plain.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(backend)?;
                let (addr, env): (DeviceAddress, Envelope) = crate::records::decode_stored(v.value())?;
                if !policy.expired(&env, now) {
                    break;
                }
                plain.push((k.value(), addr));
            }
            let budget = limit - plain.len();
            let mut refs: HashMap<DeviceAddress, Vec<(u64, u64)>> = HashMap::new();
            let mut found = 0usize;
            if budget > 0 {
                let tables = t.shared()?;
                for item in tables.refs.iter().map_err(backend)? {
                    if found >= budget {
                        break;
                    }
                    let (k, v) = item.map_err(backend)?;
                    let ((addr, blob), env): ((DeviceAddress, u64), Envelope) =
                        crate::records::decode_stored(v.value())?;
                    if !policy.expired(&env, now) {
                        break;
                    }
                    refs.entry(addr).or_default().push((k.value(), blob));
                    found += 1;
                }
            }
            let mut n = 0u64;
            for (seq, addr) in plain {
                if t.queue()?.remove(seq).map_err(backend)?.is_some() {
                    n += 1;
                    t.removed.push((addr, seq));
                }
            }
            *t.depth_delta -= n as i64;
            // Each reference releases its shared content; the last one deletes it.
            for (addr, r) in refs {
                n += remove_refs(t, &addr, r)?;
            }
            Ok(n)
        })
        .await
    }

    fn depth(&self) -> u64 {
        self.shared.depth.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl StoreStats for EmbeddedStore {
    async fn health(&self) -> StoreHealth {
        EmbeddedStore::health(self).await
    }

    async fn close(&self) {
        EmbeddedStore::close(self).await
    }

    fn commit_stats(&self) -> CommitStats {
        let s = &self.shared;
        let mut buckets = [0u64; 11];
        let mut acc = 0;
        for (i, b) in s.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            buckets[i] = acc;
        }
        CommitStats {
            commits: s.commits.load(Ordering::Relaxed),
            jobs: s.jobs.load(Ordering::Relaxed),
            sum_us: s.sum_us.load(Ordering::Relaxed),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("hush.redb")).unwrap();
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_retention_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open_with(&dir.path().join("hush.redb"), crate::conformance::RETENTION_POLICY)
                .unwrap();
        crate::conformance::retention_and_bound(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn schema_1_queue_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        let addr = crate::conformance::addr("t1", "bob", 2);
        let mut env = crate::conformance::envelopes(&addr, 1).remove(0).envelope;
        env.seq = 7;
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut old = txn.open_table(QUEUE_V1).unwrap();
                old.insert(("t1", "bob", 2u8, 7u64), enc(&env).unwrap().as_slice()).unwrap();
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("schema_version", 1).unwrap();
                meta.insert("next_seq", 8).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(store.depth(), 1);
        assert_eq!(store.fetch(&addr, 0, 10).await.unwrap(), vec![env]);
        let other = crate::conformance::addr("t1", "bob", 1);
        assert_eq!(store.ack(&other, vec![7]).await.unwrap(), 0, "another device cannot ack it");
        assert_eq!(store.ack(&addr, vec![7]).await.unwrap(), 1);
        assert!(store.fetch(&addr, 0, 10).await.unwrap().is_empty());
        let more = store.enqueue(crate::conformance::envelopes(&addr, 1)).await.unwrap();
        assert_eq!(more[0].seq, 8);
    }

    /// An ack waits for another write to commit with (or for its bound), and a graceful close
    /// commits the one still waiting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acks_ride_on_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        let addr = crate::conformance::addr("t1", "bob", 1);
        let hour = Duration::from_secs(3600);
        let store = EmbeddedStore::open_inner(&path, QueuePolicy::default(), hour).unwrap();
        let queued = store.enqueue(crate::conformance::envelopes(&addr, 3)).await.unwrap();
        let commits = store.commit_stats().commits;
        let ack = tokio::spawn({
            let (store, a, seq) = (store.clone(), addr.clone(), queued[0].seq);
            async move { store.ack(&a, vec![seq]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!ack.is_finished(), "an ack alone waits for a commit to ride on");
        assert_eq!(store.commit_stats().commits, commits);
        assert_eq!(store.fetch(&addr, 0, 10).await.unwrap().len(), 3, "not deleted before its commit");
        store.enqueue(crate::conformance::envelopes(&addr, 1)).await.unwrap();
        assert_eq!(ack.await.unwrap().unwrap(), 1);
        assert_eq!(store.commit_stats().commits, commits + 1, "one commit carried both");
        assert_eq!(store.fetch(&addr, 0, 10).await.unwrap().len(), 3);

        // A graceful close commits an ack still waiting.
        let ack = tokio::spawn({
            let (store, a, seq) = (store.clone(), addr.clone(), queued[1].seq);
            async move { store.ack(&a, vec![seq]).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.close().await;
        assert_eq!(ack.await.unwrap().unwrap(), 1);
        drop(store);
        let store =
            EmbeddedStore::open_inner(&path, QueuePolicy::default(), Duration::from_millis(20)).unwrap();
        let left: Vec<u64> = store.fetch(&addr, 0, 10).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(left.len(), 2, "both acks survived the close: {left:?}");
        assert!(!left.contains(&queued[0].seq) && !left.contains(&queued[1].seq));

        // Idle: the bound commits an ack alone.
        let acked =
            tokio::time::timeout(Duration::from_secs(10), store.ack(&addr, vec![queued[2].seq])).await;
        assert_eq!(acked.expect("the bound commits a waiting ack").unwrap(), 1);
        assert_eq!(store.fetch(&addr, 0, 10).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sequence_and_queue_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        let addr = crate::conformance::addr("t1", "bob", 1);
        let first = {
            let store = EmbeddedStore::open(&path).unwrap();
            let out = store.enqueue(crate::conformance::envelopes(&addr, 3)).await.unwrap();
            out.last().unwrap().seq
        };
        // Give the writer thread a moment to notice the channel closed and drop the database.
        for _ in 0..100 {
            if let Ok(store) = EmbeddedStore::open(&path) {
                assert_eq!(store.depth(), 3);
                let more = store.enqueue(crate::conformance::envelopes(&addr, 1)).await.unwrap();
                assert!(more[0].seq > first, "sequence numbers never repeat after reopen");
                assert_eq!(store.fetch(&addr, 0, 10).await.unwrap().len(), 4);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("store did not reopen");
    }

    #[tokio::test]
    async fn shared_references_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        let a = crate::conformance::addr("t1", "bob", 1);
        let b = crate::conformance::addr("t1", "amy", 1);
        let template = crate::conformance::envelopes(&a, 1).remove(0).envelope;
        let seqs = {
            let store = EmbeddedStore::open(&path).unwrap();
            let to = vec![a.clone(), b.clone()];
            store.enqueue_shared(SharedEnvelope { to, envelope: template.clone() }).await.unwrap()
        };
        for _ in 0..100 {
            if let Ok(store) = EmbeddedStore::open(&path) {
                assert_eq!(store.depth(), 2);
                let got = store.fetch(&b, 0, 10).await.unwrap();
                assert_eq!((got[0].seq, &got[0].content), (seqs[1], &template.content));
                assert_eq!(store.ack(&a, vec![seqs[0]]).await.unwrap(), 1);
                assert_eq!(store.shared_contents().await.unwrap(), 1);
                assert_eq!(store.ack(&b, vec![seqs[1]]).await.unwrap(), 1, "the reopened map knows refs");
                assert_eq!(store.shared_contents().await.unwrap(), 0);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("store did not reopen");
    }

    /// A queue written before content types (redb schema 3: `Envelope` without its last
    /// field) reads after the upgrade, 1:1 entries and shared-content references alike.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn envelopes_written_before_content_types_are_still_read() {
        use crate::records::EnvelopeV3;
        use hush_protocol::wire::{ContentType, GroupStamp};
        let old = |e: &Envelope| EnvelopeV3 {
            seq: e.seq,
            id: e.id,
            from: e.from.clone(),
            from_device: e.from_device,
            timestamp_ms: e.timestamp_ms,
            sync: e.sync,
            content: e.content.clone(),
            event: e.event.clone(),
            group: e.group.clone(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        let a = crate::conformance::addr("t1", "bob", 1);
        let b = crate::conformance::addr("t1", "amy", 1);
        let mut group = crate::conformance::envelopes(&a, 1).remove(0).envelope;
        group.id = uuid::Uuid::from_u128(0xbeef);
        group.group = Some(GroupStamp { group: hush_protocol::ids::GroupId::random(), epoch: 2 });
        group.content_type = ContentType::SenderKey;
        let (plain, shared) = {
            let store = EmbeddedStore::open(&path).unwrap();
            let plain = store.enqueue(crate::conformance::envelopes(&a, 1)).await.unwrap().remove(0);
            let shared = store
                .enqueue_shared(SharedEnvelope { to: vec![a.clone(), b.clone()], envelope: group.clone() });
            (plain, shared.await.unwrap())
        };
        // Rewrite every queued row as the previous build wrote it.
        let mut rewritten = 0;
        for _ in 0..100 {
            let Ok(db) = Database::open(&path) else {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            };
            let txn = db.begin_write().unwrap();
            {
                let mut q = txn.open_table(QUEUE).unwrap();
                let rows: Vec<(u64, Vec<u8>)> = q
                    .iter()
                    .unwrap()
                    .map(|r| r.unwrap())
                    .map(|(k, v)| (k.value(), v.value().to_vec()))
                    .collect();
                for (k, v) in rows {
                    let (addr, env): (DeviceAddress, Envelope) = crate::records::decode_stored(&v).unwrap();
                    q.insert(k, enc(&(&addr, &old(&env))).unwrap().as_slice()).unwrap();
                    rewritten += 1;
                }
                let mut refs = txn.open_table(QUEUE_REFS).unwrap();
                let rows: Vec<(u64, Vec<u8>)> = refs
                    .iter()
                    .unwrap()
                    .map(|r| r.unwrap())
                    .map(|(k, v)| (k.value(), v.value().to_vec()))
                    .collect();
                for (k, v) in rows {
                    let ((addr, blob), env): ((DeviceAddress, u64), Envelope) =
                        crate::records::decode_stored(&v).unwrap();
                    refs.insert(k, enc(&(&addr, blob, &old(&env))).unwrap().as_slice()).unwrap();
                    rewritten += 1;
                }
            }
            txn.commit().unwrap();
            break;
        }
        assert_eq!(rewritten, 3);
        let store = EmbeddedStore::open(&path).unwrap();
        let got = store.fetch(&a, 0, 10).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].id, got[0].content_type), (plain.id, ContentType::Unknown), "1:1: unknown");
        assert_eq!(&got[0].content, &plain.content);
        assert_eq!(
            (got[1].seq, got[1].content_type),
            (shared[0], ContentType::SenderKey),
            "group: sender_key"
        );
        assert_eq!((&got[1].content, &got[1].group), (&group.content, &group.group));
        assert_eq!(store.fetch(&b, 0, 10).await.unwrap()[0].content_type, ContentType::SenderKey);
        // New envelopes keep their type next to the old ones; old ones ack as before.
        let new = store.enqueue(crate::conformance::envelopes(&a, 1)).await.unwrap().remove(0);
        assert_eq!(store.fetch(&a, shared[0], 10).await.unwrap(), vec![new.clone()]);
        assert_eq!(new.content_type, ContentType::PreKey);
        assert_eq!(store.ack(&a, vec![plain.seq, shared[0]]).await.unwrap(), 2);
    }
}
