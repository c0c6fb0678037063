//! The MongoDB backend: the store shared by the nodes of a cluster (feature `mongo`).
//!
//! It keeps to what a plain MongoDB deployment and the MongoDB-wire test server (`nx-27017`)
//! both support: single-document CRUD, `findOneAndUpdate`, `$inc`/`$set`/`$push`/`$pull`, and
//! unique indexes. No multi-document transactions, no change streams. Every write uses write
//! concern `w: majority, j: true`, so a write the store reports done is durable on a real
//! deployment.
//!
//! # Layout
//!
//! | collection | document | unique indexes |
//! |---|---|---|
//! | `meta` | `{_id: "schema", version}`, `{_id: "seq", next, pending: [string]}`, `{_id: "audit", next}` | |
//! | `tenants` | `{name, created_ms, rec}` | `name` |
//! | `users` | `{t, u, admin, created_ms, rec}` | `(t, u)` |
//! | `devices` | `{t, u, version, rec}` | `(t, u)` |
//! | `sessions` | `{sid, th, t, u, d, c, revoked, rec, rv_at?, rv_reason?, rv_by?}` | `sid`, `th` (plus non-unique `(t, u, c, sid)`, `(t, revoked, sid)`, `rv_by`) |
//! | `queue` | `{seq, t, u, d, env}` | `(t, u, d, seq)`, `seq` |
//! | `audit` | `{t, id, actor, action, rec}` | `(t, id)` |
//! | `blobs` | `{_id: blob, refs, c}`: content shared by queued envelopes (`queue` docs with `blob`) | |
//! | `kv` | `{ns, k, v, val}` (generic key-value: version `v`, opaque bytes `val`) | `(ns, k)` |
//!
//! `rec`/`env` hold the postcard encoding of the record (the source of truth when read back);
//! the plain fields next to it are what the indexes and filters use. `th` is the token hash in
//! lower-case hex (the test server cannot match binary values in a filter). `c` is the session's
//! `created_ms`; sessions written before it existed lack it and sort first in a user's list
//! (the list is re-sorted by the decoded `created_ms` before it is returned, so only which
//! sessions make the [`crate::MAX_SESSIONS_PER_USER_LISTED`] cut can differ for such users).
//! `actor` is the audit record's actor name, or null.
//!
//! # What replaces transactions
//!
//! - **Sequence numbers.** `enqueue` takes a block of `n` numbers with one `findOneAndUpdate`
//!   `$inc` of the counter document, then writes the envelopes with one ordered `insert_many`.
//!   If the insert fails part-way, the envelopes already written are deleted (by the block's
//!   range) before the error is returned. Residual window: between the partial insert and that
//!   delete (or forever, if this process dies in between or the delete fails too), a reader
//!   can see part of a batch whose sender is told it failed. Delivery is at-least-once and
//!   clients dedupe by envelope id, so a retried send is not shown twice.
//! - **Reading in order.** Two enqueues can finish in the other order than they took their
//!   numbers, so a reader that pages with "after the last seq I saw" (what a device's drain
//!   does) could skip a lower number that becomes visible later. So that this cannot happen,
//!   the same `findOneAndUpdate` that takes a block also `$push`es an in-flight entry naming
//!   the recipient devices and a lower bound of the block (the highest counter value this
//!   process has seen), and the entry is `$pull`ed once the insert has returned (or was rolled
//!   back). `fetch` reads the counter document first and returns nothing numbered above the
//!   counter (blocks taken later are left for the next call). If part of its page lies above
//!   the lower bound of an entry that was in flight for that device at that read, it waits
//!   for those entries only (a few milliseconds normally; later entries cannot be below the
//!   counter it read, so a steady stream of sends does not keep it waiting), then reads again.
//!   An entry left by a process that died mid-enqueue expires after [`PENDING_TTL_MS`] (by the
//!   writer's clock; node clocks are assumed NTP-synced), so such a death delays the affected
//!   devices' reads by at most that long. An enqueue slower than [`PENDING_TTL_MS`] is logged:
//!   a reader that already passed its numbers misses those envelopes until the device drains
//!   again from the start (reconnect).
//! - **Device sets.** `put_devices` is a compare-and-set: `insert_one` when the expected
//!   version is 0 (the unique `(t, u)` index lets one of two concurrent creators win), else
//!   `update_one` filtered on the expected version.
//! - **Revocation.** `revoke_session` reads the session and writes the revoked record with
//!   `update_one` filtered on `revoked: false`; a writer that loses re-reads and returns the
//!   first revocation. `revoke_sessions` (bulk) is one `update_many` per 1,000 ids, filtered on
//!   `revoked: false`, setting the plain fields `revoked`, `rv_at`, `rv_reason` and a per-call
//!   token `rv_by` (`rec` keeps `revoked: None`; every session read merges the plain fields into
//!   it), then one `find` on the token returns exactly what this call revoked.
//! - **Audit ids.** `append_audit` takes the next number of the `audit` counter document with
//!   one `findOneAndUpdate` `$inc` (one counter for all tenants, so ids increase within each),
//!   then inserts the record. Two concurrent appends may become visible in the other order than
//!   their ids; a reader paging with `before` at that instant can miss the lower one. A failed
//!   insert leaves a gap in the ids, never a duplicate.
//! - **Shared contents (group messages).** `enqueue_shared` takes a block like `enqueue`,
//!   inserts the content once in `blobs` (`_id` = the block's first number, `refs` = the block's
//!   size), then one `queue` document per device with `blob` set and no content; a failed
//!   insert removes both. `fetch` fills the content of such documents with one `find` per page
//!   (pages without them cost nothing more). `ack` first deletes the plain envelopes with one
//!   `delete_many`; only if it deleted fewer than asked does it look for references among the
//!   rest, deleting each with its own `delete_one` so that exactly the caller that removed a
//!   reference `$inc`s its blob's `refs` by -1; the one that reaches 0 deletes the blob
//!   (reference counting, no sweep). A process that dies between a reference's delete and the
//!   decrement leaks that blob (counted in `shared_contents`); nothing reads it again.
//! - **Queue depth.** [`QueueStore::depth`] is an in-process counter, initialized with
//!   `count_documents` at connect and moved by this process's enqueues, acks and purges. With
//!   several nodes it is this node's view: approximate (other nodes' writes are not counted).
//!
//! # Schema version
//!
//! `meta.schema` holds the version of the stored layout. [`MongoStore::connect`] applies every
//! entry of [`MIGRATIONS`] newer than the stored version, in order, advancing the stored version
//! after each with a compare-and-set; it refuses a database newer than this build. Nodes may
//! start together, so a migration may run twice concurrently and must be idempotent.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hush_protocol::ids::{DeviceAddress, TenantId, UserId};
use hush_protocol::wire::{Envelope, Payload};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, DatabaseOptions, IndexOptions, ReturnDocument, WriteConcern,
};
use mongodb::{BoxFuture, Client, Collection, Database, IndexModel};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{
    check_kv_key, check_kv_replace, check_kv_scope, kv_prefix_end, AccountStore, AuditQuery, AuditRecord,
    AuditStore, CommitStats, DeviceRecord, DeviceSet, DeviceStore, KvEntry, KvStore, NewEnvelope,
    QueuePolicy, QueueStore, Result, Revocation, SessionRecord, SessionStore, SharedEnvelope, StoreError,
    StoreStats, TenantRecord, TokenHash, UserRecord, COMMIT_BUCKETS_US, MAX_EXPIRE_BATCH, MAX_KV_SCAN,
    MAX_SESSIONS_PER_USER_LISTED,
};

/// Version of the stored layout this build writes (the last entry of [`MIGRATIONS`]).
pub const SCHEMA_VERSION: u64 = 1;
/// Envelopes returned by one `fetch` at most, whatever the caller asks.
pub const MAX_FETCH: usize = 1_024;
/// An in-flight enqueue entry older than this (ms) is treated as left by a dead process.
pub const PENDING_TTL_MS: u64 = 10_000;
/// Devices named in one in-flight entry at most; a larger batch holds back every device.
pub const MAX_PENDING_DEVICES: usize = 256;

const DUPLICATE_KEY: i32 = 11_000;
const META: &str = "meta";
const TENANTS: &str = "tenants";
const USERS: &str = "users";
const DEVICES: &str = "devices";
const SESSIONS: &str = "sessions";
const QUEUE: &str = "queue";
const AUDIT: &str = "audit";
const KV: &str = "kv";
const BLOBS: &str = "blobs";
const SCHEMA_ID: &str = "schema";
const SEQ_ID: &str = "seq";
const AUDIT_ID: &str = "audit";

/// A forward migration of the stored layout.
pub struct Migration {
    /// The version the database has once this migration ran.
    pub version: u64,
    /// What it changes.
    pub description: &'static str,
    /// Applies it; must be idempotent (two nodes may run it concurrently).
    pub run: for<'a> fn(&'a Database) -> BoxFuture<'a, Result<()>>,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Every migration, in version order; version 1 is the initial layout.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "initial layout (collections and indexes are created at every start)",
    run: migrate_initial,
}];

fn migrate_initial(_db: &Database) -> BoxFuture<'_, Result<()>> {
    Box::pin(async { Ok(()) })
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn enc<T: Serialize>(v: &T) -> Result<Bson> {
    let bytes = postcard::to_allocvec(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes }))
}

fn dec<T: DeserializeOwned>(d: &Document, field: &str) -> Result<T> {
    match d.get(field) {
        Some(Bson::Binary(b)) => {
            postcard::from_bytes(&b.bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        _ => Err(StoreError::Corrupt(format!("field `{field}` is not binary"))),
    }
}

/// Reads an integer field whatever width the server chose.
fn get_u64(d: &Document, field: &str) -> Result<u64> {
    let v = match d.get(field) {
        Some(Bson::Int64(v)) => u64::try_from(*v).ok(),
        Some(Bson::Int32(v)) => u64::try_from(*v).ok(),
        Some(Bson::Double(v)) if v.fract() == 0.0 && *v >= 0.0 => Some(*v as u64),
        _ => None,
    };
    v.ok_or_else(|| StoreError::Corrupt(format!("field `{field}` is not a count")))
}

fn int(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{v} does not fit a BSON int64")))
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(i) => {
            i.write_errors.as_ref().is_some_and(|w| w.iter().any(|w| w.code == DUPLICATE_KEY))
        }
        _ => false,
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn token_key(h: &TokenHash) -> String {
    hex(&h.0)
}

/// The filter of one device's queue.
fn device_filter(a: &DeviceAddress) -> Document {
    doc! { "t": a.tenant.as_str(), "u": a.user.as_str(), "d": a.device.get() as i32 }
}

/// How an in-flight entry names a device (names never contain `/`, `,` or `|`).
fn device_key(a: &DeviceAddress) -> String {
    format!("{}/{}/{}", a.tenant, a.user, a.device)
}

/// An in-flight enqueue, as stored in the counter document's `pending` array:
/// `"{floor}|{at_ms}|{token}|{devices or *}"`. Its block's numbers are all above `floor`.
struct Pending<'a> {
    floor: u64,
    at_ms: u64,
    devices: &'a str,
}

impl<'a> Pending<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let mut it = s.splitn(4, '|');
        let floor = it.next()?.parse().ok()?;
        let at_ms = it.next()?.parse().ok()?;
        let _token = it.next()?;
        let devices = it.next()?;
        Some(Self { floor, at_ms, devices })
    }

    fn concerns(&self, key: &str) -> bool {
        self.devices == "*" || self.devices.split(',').any(|d| d == key)
    }
}

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    jobs: AtomicU64,
    sum_us: AtomicU64,
    buckets: [AtomicU64; 11],
}

impl Stats {
    fn record(&self, started: Instant) {
        let us = started.elapsed().as_micros() as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        let idx = COMMIT_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(COMMIT_BUCKETS_US.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
    }
}

struct Inner {
    db: Database,
    meta: Collection<Document>,
    tenants: Collection<Document>,
    users: Collection<Document>,
    devices: Collection<Document>,
    sessions: Collection<Document>,
    queue: Collection<Document>,
    audit: Collection<Document>,
    kv: Collection<Document>,
    blobs: Collection<Document>,
    policy: QueuePolicy,
    depth: AtomicU64,
    /// Highest counter value this process has seen (a lower bound of the next block).
    seen_seq: AtomicU64,
    stats: Stats,
}

/// The MongoDB store. Cheap to clone (the driver pools connections).
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore").field("database", &self.inner.db.name()).finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects to `url` (`mongodb://host:port/...`; TLS and `mongodb+srv` are not built in),
    /// migrates database `database` to [`SCHEMA_VERSION`], creates the indexes and counters,
    /// and reads the queue depth; the default [`QueuePolicy`].
    pub async fn connect(url: &str, database: &str) -> Result<Self> {
        Self::connect_with(url, database, QueuePolicy::default()).await
    }

    /// [`MongoStore::connect`], enforcing `policy` on every queue.
    pub async fn connect_with(url: &str, database: &str, policy: QueuePolicy) -> Result<Self> {
        let mut opts = ClientOptions::parse(url).await.map_err(backend)?;
        if opts.app_name.is_none() {
            opts.app_name = Some("hushd".into());
        }
        let client = Client::with_options(opts).map_err(backend)?;
        let wc = WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build();
        let db = client.database_with_options(database, DatabaseOptions::builder().write_concern(wc).build());
        db.run_command(doc! { "ping": 1 }).await.map_err(backend)?;
        migrate(&db).await?;
        create_indexes(&db).await?;
        let meta = db.collection::<Document>(META);
        for counter in
            [doc! { "_id": SEQ_ID, "next": 0i64, "pending": [] }, doc! { "_id": AUDIT_ID, "next": 0i64 }]
        {
            match meta.insert_one(counter).await {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        let queue = db.collection::<Document>(QUEUE);
        let depth = queue.count_documents(doc! {}).await.map_err(backend)?;
        let counter = meta
            .find_one(doc! { "_id": SEQ_ID })
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt("sequence counter missing".into()))?;
        let seen_seq = get_u64(&counter, "next")?;
        let inner = Inner {
            meta,
            tenants: db.collection(TENANTS),
            users: db.collection(USERS),
            devices: db.collection(DEVICES),
            sessions: db.collection(SESSIONS),
            queue,
            audit: db.collection(AUDIT),
            kv: db.collection(KV),
            blobs: db.collection(BLOBS),
            policy,
            db,
            depth: AtomicU64::new(depth),
            seen_seq: AtomicU64::new(seen_seq),
            stats: Stats::default(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The database this store uses.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// Runs a write and records its latency in the commit statistics.
    async fn timed<T>(&self, fut: impl std::future::IntoFuture<Output = T>) -> T {
        let started = Instant::now();
        let out = fut.await;
        self.inner.stats.record(started);
        out
    }

    fn saw_seq(&self, v: u64) {
        self.inner.seen_seq.fetch_max(v, Ordering::Relaxed);
    }

    /// Takes a block of `n` sequence numbers and registers it in flight for `devices`.
    /// Returns the block's first number.
    async fn take_block(&self, n: u64, entry: &str) -> Result<u64> {
        let after = self
            .inner
            .meta
            .find_one_and_update(
                doc! { "_id": SEQ_ID },
                doc! { "$inc": { "next": int(n)? }, "$push": { "pending": entry } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt("sequence counter missing".into()))?;
        let last = get_u64(&after, "next")?;
        self.saw_seq(last);
        last.checked_sub(n - 1)
            .filter(|lo| *lo > 0)
            .ok_or_else(|| StoreError::Corrupt("sequence counter went backwards".into()))
    }

    async fn clear_pending(&self, entries: Vec<String>) -> Result<()> {
        self.inner
            .meta
            .update_one(doc! { "_id": SEQ_ID }, doc! { "$pull": { "pending": { "$in": entries } } })
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Reads the counter and the in-flight entries: returns the highest number taken and the
    /// live entries concerning `key`, each with the lowest number its block may have. Drops
    /// expired entries.
    async fn in_flight(&self, key: &str) -> Result<(u64, Vec<(String, u64)>)> {
        let d = self
            .inner
            .meta
            .find_one(doc! { "_id": SEQ_ID })
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt("sequence counter missing".into()))?;
        let next = get_u64(&d, "next")?;
        self.saw_seq(next);
        let now = now_ms();
        let mut live = Vec::new();
        let mut expired = Vec::new();
        if let Ok(pending) = d.get_array("pending") {
            for s in pending.iter().filter_map(Bson::as_str) {
                let Some(p) = Pending::parse(s) else {
                    tracing::warn!(entry = s, "unreadable in-flight enqueue entry ignored");
                    continue;
                };
                if p.at_ms.saturating_add(PENDING_TTL_MS) <= now {
                    expired.push(s.to_owned());
                } else if p.concerns(key) {
                    live.push((s.to_owned(), p.floor.saturating_add(1)));
                }
            }
        }
        if !expired.is_empty() {
            tracing::warn!(
                entries = expired.len(),
                "dropping in-flight enqueue entries older than {PENDING_TTL_MS} ms (writer died?)"
            );
            if let Err(e) = self.timed(self.clear_pending(expired)).await {
                tracing::warn!(error = %e, "could not drop expired in-flight entries");
            }
        }
        Ok((next, live))
    }

    /// The in-flight entry of an enqueue to these devices: `"{floor}|{at_ms}|{token}|{devices}"`.
    fn pending_entry(&self, to: &[DeviceAddress]) -> String {
        let keys: BTreeSet<String> = to.iter().map(device_key).collect();
        let devices = if keys.len() > MAX_PENDING_DEVICES {
            "*".to_owned()
        } else {
            keys.into_iter().collect::<Vec<_>>().join(",")
        };
        let floor = self.inner.seen_seq.load(Ordering::Relaxed);
        format!("{floor}|{}|{}|{devices}", now_ms(), ObjectId::new().to_hex())
    }

    /// The devices whose queues would exceed the bound with `added` (device, envelopes) more.
    /// One `count_documents` per device, capped at the bound (an index range count that stops
    /// there). Not atomic with the insert that follows:
    /// concurrent sends to one device (from several nodes) can each pass the check, so a queue
    /// can exceed the bound by the envelopes of those concurrent sends.
    async fn over_bound(&self, added: Vec<(DeviceAddress, u64)>) -> Result<Vec<DeviceAddress>> {
        let max = self.inner.policy.max_per_device;
        let mut full = Vec::new();
        for (addr, k) in added {
            if k > max {
                full.push(addr);
                continue;
            }
            let room = max - k;
            let n = self
                .inner
                .queue
                .count_documents(device_filter(&addr))
                .limit(room + 1)
                .await
                .map_err(backend)?;
            if n > room {
                full.push(addr);
            }
        }
        Ok(full)
    }

    /// Counts envelopes per device.
    fn per_device<'d>(to: impl Iterator<Item = &'d DeviceAddress>) -> Vec<(DeviceAddress, u64)> {
        let mut counts: std::collections::BTreeMap<&DeviceAddress, u64> = std::collections::BTreeMap::new();
        for a in to {
            *counts.entry(a).or_default() += 1;
        }
        counts.into_iter().map(|(a, n)| (a.clone(), n)).collect()
    }

    /// Reads one page of `fetch` (expired envelopes included), waiting for in-flight blocks.
    async fn fetch_page(&self, device: &DeviceAddress, after: u64, limit: usize) -> Result<Vec<Envelope>> {
        let key = device_key(device);
        // The counter first: every number at or below it was taken before this read, so its
        // envelope is either written already or its block is listed in flight right now.
        // Blocks taken later are numbered above it and are left for the next call.
        let (next, entries) = self.in_flight(&key).await?;
        let page = self.read_queue(device, after, next, limit).await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            return Ok(page);
        };
        let mut blocking: Vec<(String, u64)> = entries.into_iter().filter(|(_, low)| *low <= last).collect();
        if blocking.is_empty() {
            return Ok(page);
        }
        // Part of the page may sit above a block still being written to this device, whose
        // lower numbers could appear after we return: wait for those blocks (milliseconds,
        // unless their writer died, then until their entries expire), then read again.
        let deadline = Instant::now() + Duration::from_millis(PENDING_TTL_MS + 1_000);
        let mut pause = Duration::from_millis(1);
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            let (_, live) = self.in_flight(&key).await?;
            blocking.retain(|(s, _)| live.iter().any(|(l, _)| l == s));
            if blocking.is_empty() {
                return self.read_queue(device, after, next, limit).await;
            }
            if Instant::now() >= deadline {
                let low = blocking.iter().map(|(_, low)| *low).min().unwrap_or(u64::MAX);
                let mut page = page;
                page.retain(|e| e.seq < low);
                return Ok(page);
            }
        }
    }

    /// Deletes the queued references to shared content that `filter` matches, each with its own
    /// `delete_one` so that only the caller that removed it releases its blob; returns how many.
    async fn remove_refs(&self, mut filter: Document) -> Result<u64> {
        filter.insert("blob", doc! { "$exists": true });
        let mut cursor =
            self.inner.queue.find(filter).projection(doc! { "_id": 1, "blob": 1 }).await.map_err(backend)?;
        let mut found = Vec::new();
        while cursor.advance().await.map_err(backend)? {
            let d = cursor.deserialize_current().map_err(backend)?;
            let id = d
                .get("_id")
                .cloned()
                .ok_or_else(|| StoreError::Corrupt("queue document without _id".into()))?;
            found.push((id, get_u64(&d, "blob")?));
        }
        let mut n = 0u64;
        for (id, blob) in found {
            let r = self.timed(self.inner.queue.delete_one(doc! { "_id": id })).await.map_err(backend)?;
            if r.deleted_count == 0 {
                continue;
            }
            n += 1;
            let left = self
                .inner
                .blobs
                .find_one_and_update(doc! { "_id": int(blob)? }, doc! { "$inc": { "refs": -1i64 } })
                .return_document(ReturnDocument::After)
                .await
                .map_err(backend)?;
            let done = match left.as_ref().map(|d| d.get("refs")) {
                Some(Some(Bson::Int64(v))) => *v <= 0,
                Some(Some(Bson::Int32(v))) => *v <= 0,
                Some(Some(Bson::Double(v))) => *v <= 0.0,
                _ => false,
            };
            if done {
                self.inner.blobs.delete_one(doc! { "_id": int(blob)? }).await.map_err(backend)?;
            }
        }
        Ok(n)
    }

    async fn read_queue(
        &self,
        device: &DeviceAddress,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Envelope>> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let mut filter = device_filter(device);
        filter.insert("seq", doc! { "$gt": int(after)?, "$lte": int(upto)? });
        let mut cursor = self
            .inner
            .queue
            .find(filter)
            .sort(doc! { "seq": 1 })
            .limit(int(limit as u64)?)
            .await
            .map_err(backend)?;
        let mut out: Vec<Envelope> = Vec::new();
        let mut shared: Vec<(usize, u64)> = Vec::new();
        while cursor.advance().await.map_err(backend)? {
            let d = cursor.deserialize_current().map_err(backend)?;
            if d.contains_key("blob") {
                shared.push((out.len(), get_u64(&d, "blob")?));
            }
            let env = match d.get("env") {
                Some(Bson::Binary(b)) => crate::records::decode_stored::<()>(&b.bytes)?.1,
                _ => return Err(StoreError::Corrupt("field `env` is not binary".into())),
            };
            out.push(env);
        }
        if shared.is_empty() {
            return Ok(out);
        }
        // References to shared content: one read for the page's blobs.
        let ids: BTreeSet<u64> = shared.iter().map(|(_, b)| *b).collect();
        let ids = ids.into_iter().map(int).collect::<Result<Vec<i64>>>()?;
        let mut cursor = self.inner.blobs.find(doc! { "_id": { "$in": ids } }).await.map_err(backend)?;
        let mut contents = std::collections::HashMap::new();
        while cursor.advance().await.map_err(backend)? {
            let d = cursor.deserialize_current().map_err(backend)?;
            let bytes = match d.get("c") {
                Some(Bson::Binary(b)) => b.bytes.clone(),
                _ => return Err(StoreError::Corrupt("shared content without bytes".into())),
            };
            contents.insert(get_u64(&d, "_id")?, bytes);
        }
        let mut gone = Vec::new();
        for (i, blob) in shared {
            match contents.get(&blob) {
                Some(c) => out[i].content = Payload(c.clone()),
                // Acked (and its blob released) between the two reads: not queued any more.
                None => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            out.remove(i);
        }
        Ok(out)
    }
}

async fn migrate(db: &Database) -> Result<()> {
    let meta = db.collection::<Document>(META);
    match meta.insert_one(doc! { "_id": SCHEMA_ID, "version": 0i64 }).await {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => {}
        Err(e) => return Err(backend(e)),
    }
    // Bounded: every pass either applies a migration or sees another node apply one.
    for _ in 0..=MIGRATIONS.len() * 4 {
        let d = meta
            .find_one(doc! { "_id": SCHEMA_ID })
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt("schema version missing".into()))?;
        let stored = get_u64(&d, "version")?;
        if stored > SCHEMA_VERSION {
            return Err(StoreError::Backend(format!(
                "store schema version {stored} is newer than this build ({SCHEMA_VERSION})"
            )));
        }
        let Some(m) = MIGRATIONS.iter().find(|m| m.version > stored) else {
            return Ok(());
        };
        tracing::info!(from = stored, to = m.version, "migrating store: {}", m.description);
        (m.run)(db).await?;
        meta.update_one(
            doc! { "_id": SCHEMA_ID, "version": int(stored)? },
            doc! { "$set": { "version": int(m.version)? } },
        )
        .await
        .map_err(backend)?;
    }
    Err(StoreError::Backend("schema migration did not settle (another node keeps changing it)".into()))
}

async fn create_indexes(db: &Database) -> Result<()> {
    let unique = |name: &str| IndexOptions::builder().unique(true).name(name.to_owned()).build();
    let plan: [(&str, Document, &str); 9] = [
        (TENANTS, doc! { "name": 1 }, "name"),
        (USERS, doc! { "t": 1, "u": 1 }, "tenant_user"),
        (DEVICES, doc! { "t": 1, "u": 1 }, "tenant_user"),
        (SESSIONS, doc! { "sid": 1 }, "session_id"),
        (SESSIONS, doc! { "th": 1 }, "token_hash"),
        (QUEUE, doc! { "t": 1, "u": 1, "d": 1, "seq": 1 }, "device_seq"),
        (QUEUE, doc! { "seq": 1 }, "seq"),
        (AUDIT, doc! { "t": 1, "id": 1 }, "tenant_id"),
        (KV, doc! { "ns": 1, "k": 1 }, "ns_key"),
    ];
    for (coll, keys, name) in plan {
        db.collection::<Document>(coll)
            .create_index(IndexModel::builder().keys(keys).options(unique(name)).build())
            .await
            .map_err(backend)?;
    }
    // Listing indexes (not unique: they only serve the sorts of the session listings).
    let listing: [(&str, Document, &str); 3] = [
        (SESSIONS, doc! { "t": 1, "u": 1, "c": 1, "sid": 1 }, "user_created"),
        (SESSIONS, doc! { "t": 1, "revoked": 1, "sid": 1 }, "tenant_active"),
        (SESSIONS, doc! { "rv_by": 1 }, "bulk_revocation"),
    ];
    for (coll, keys, name) in listing {
        let opts = IndexOptions::builder().name(name.to_owned()).build();
        db.collection::<Document>(coll)
            .create_index(IndexModel::builder().keys(keys).options(opts).build())
            .await
            .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for MongoStore {
    async fn create_tenant(&self, tenant: TenantRecord) -> Result<()> {
        let d = doc! {
            "name": tenant.name.as_str(),
            "created_ms": int(tenant.created_ms)?,
            "rec": enc(&tenant)?,
        };
        match self.timed(self.inner.tenants.insert_one(d)).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list_tenants(&self, limit: usize) -> Result<Vec<TenantRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cursor = self
            .inner
            .tenants
            .find(doc! {})
            .sort(doc! { "name": 1 })
            .limit(int(limit as u64)?)
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(backend)? {
            let d = cursor.deserialize_current().map_err(backend)?;
            out.push(dec(&d, "rec")?);
        }
        Ok(out)
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<TenantRecord>> {
        let d = self.inner.tenants.find_one(doc! { "name": tenant.as_str() }).await.map_err(backend)?;
        d.map(|d| dec(&d, "rec")).transpose()
    }

    async fn create_user(&self, user: UserRecord) -> Result<()> {
        let d = doc! {
            "t": user.tenant.as_str(),
            "u": user.user.as_str(),
            "admin": user.admin,
            "created_ms": int(user.created_ms)?,
            "rec": enc(&user)?,
        };
        match self.timed(self.inner.users.insert_one(d)).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get_user(&self, tenant: &TenantId, user: &UserId) -> Result<Option<UserRecord>> {
        let d = self
            .inner
            .users
            .find_one(doc! { "t": tenant.as_str(), "u": user.as_str() })
            .await
            .map_err(backend)?;
        d.map(|d| dec(&d, "rec")).transpose()
    }

    async fn list_users(
        &self,
        tenant: &TenantId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "t": tenant.as_str() };
        if let Some(after) = after {
            filter.insert("u", doc! { "$gt": after.as_str() });
        }
        let mut cursor = self
            .inner
            .users
            .find(filter)
            .sort(doc! { "u": 1 })
            .limit(int(limit as u64)?)
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(backend)? {
            let d = cursor.deserialize_current().map_err(backend)?;
            out.push(dec(&d, "rec")?);
        }
        Ok(out)
    }
}

#[async_trait]
impl DeviceStore for MongoStore {
    async fn get_devices(&self, tenant: &TenantId, user: &UserId) -> Result<DeviceSet> {
        let d = self
            .inner
            .devices
            .find_one(doc! { "t": tenant.as_str(), "u": user.as_str() })
            .await
            .map_err(backend)?;
        Ok(d.map(|d| dec(&d, "rec")).transpose()?.unwrap_or_default())
    }

    async fn put_devices(
        &self,
        tenant: &TenantId,
        user: &UserId,
        expected_version: u64,
        mut devices: Vec<DeviceRecord>,
    ) -> Result<DeviceSet> {
        devices.sort_by_key(|d| d.id);
        let set = DeviceSet { version: expected_version + 1, devices };
        let rec = enc(&set)?;
        let version = int(set.version)?;
        if expected_version == 0 {
            // First write: the unique (t, u) index makes one of two concurrent creators lose.
            let d = doc! { "t": tenant.as_str(), "u": user.as_str(), "version": version, "rec": rec };
            return match self.timed(self.inner.devices.insert_one(d)).await {
                Ok(_) => Ok(set),
                Err(e) if is_duplicate_key(&e) => Err(StoreError::VersionConflict),
                Err(e) => Err(backend(e)),
            };
        }
        let filter = doc! {
            "t": tenant.as_str(),
            "u": user.as_str(),
            "version": int(expected_version)?,
        };
        let update = doc! { "$set": { "version": version, "rec": rec } };
        let r = self.timed(self.inner.devices.update_one(filter, update)).await.map_err(backend)?;
        if r.matched_count == 1 {
            Ok(set)
        } else {
            Err(StoreError::VersionConflict)
        }
    }
}

#[async_trait]
impl SessionStore for MongoStore {
    async fn create_session(&self, session: SessionRecord) -> Result<()> {
        let d = doc! {
            "sid": session.id.as_str(),
            "th": token_key(&session.token_hash),
            "t": session.device.tenant.as_str(),
            "u": session.device.user.as_str(),
            "d": session.device.device.get() as i32,
            "c": int(session.created_ms)?,
            "revoked": session.revoked.is_some(),
            "rec": enc(&session)?,
        };
        match self.timed(self.inner.sessions.insert_one(d)).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict),
            Err(e) => Err(backend(e)),
        }
    }

    async fn session_by_token(&self, token_hash: &TokenHash) -> Result<Option<SessionRecord>> {
        let d = self.inner.sessions.find_one(doc! { "th": token_key(token_hash) }).await.map_err(backend)?;
        d.map(|d| session_doc(&d)).transpose()
    }

    async fn session_by_id(&self, id: &str) -> Result<Option<SessionRecord>> {
        let d = self.inner.sessions.find_one(doc! { "sid": id }).await.map_err(backend)?;
        d.map(|d| session_doc(&d)).transpose()
    }

    async fn revoke_session(&self, id: &str, revocation: Revocation) -> Result<Option<SessionRecord>> {
        // Revocation only ever goes from "no" to "yes", so one lost race is the most a writer
        // can see: the re-read then shows the winner's revocation.
        for _ in 0..3 {
            let Some(mut s) = self.session_by_id(id).await? else {
                return Ok(None);
            };
            if s.revoked.is_some() {
                return Ok(Some(s));
            }
            s.revoked = Some(revocation.clone());
            let update = doc! { "$set": { "revoked": true, "rec": enc(&s)? } };
            let r = self
                .timed(self.inner.sessions.update_one(doc! { "sid": id, "revoked": false }, update))
                .await
                .map_err(backend)?;
            if r.matched_count == 1 {
                return Ok(Some(s));
            }
        }
        Err(StoreError::Backend(format!("session {id} changed under every revocation attempt")))
    }

    async fn revoke_sessions(
        &self,
        tenant: &TenantId,
        ids: Vec<String>,
        revocation: Revocation,
    ) -> Result<Vec<SessionRecord>> {
        // One `update_many` per chunk marks the sessions revoked in their plain fields (`rec`
        // cannot be rewritten per document by one update; readers merge `rv_*` into it, see
        // `session_doc`), tagged with this call's token; one `find` on the token then returns
        // exactly the sessions this call revoked (a concurrent revoker's are filtered out by
        // `revoked: false`).
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        let token = ObjectId::new().to_hex();
        for chunk in ids.chunks(1_000) {
            let filter = doc! { "t": tenant.as_str(), "sid": { "$in": chunk.to_vec() }, "revoked": false };
            let update = doc! { "$set": {
                "revoked": true,
                "rv_at": int(revocation.at_ms)?,
                "rv_reason": revocation.reason.as_str(),
                "rv_by": token.as_str(),
            } };
            self.timed(self.inner.sessions.update_many(filter, update)).await.map_err(backend)?;
        }
        let mut cursor = self.inner.sessions.find(doc! { "rv_by": token.as_str() }).await.map_err(backend)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(backend)? {
            out.push(session_doc(&cursor.deserialize_current().map_err(backend)?)?);
        }
        Ok(out)
    }

    async fn sessions_of_user(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<SessionRecord>> {
        let cursor = self
            .inner
            .sessions
            .find(doc! { "t": tenant.as_str(), "u": user.as_str() })
            .sort(doc! { "c": 1, "sid": 1 })
            .limit(int(MAX_SESSIONS_PER_USER_LISTED as u64)?)
            .await
            .map_err(backend)?;
        let mut out = read_sessions(cursor).await?;
        // The decoded record is the source of truth (documents written before `c` lack it).
        out.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn active_sessions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "t": tenant.as_str(), "revoked": false };
        if let Some(after) = after {
            filter.insert("sid", doc! { "$gt": after });
        }
        let cursor = self
            .inner
            .sessions
            .find(filter)
            .sort(doc! { "sid": 1 })
            .limit(int(limit as u64)?)
            .await
            .map_err(backend)?;
        read_sessions(cursor).await
    }
}

/// Decodes a session document: `rec`, plus a revocation written by `revoke_sessions` in the
/// plain fields only (`revoked: true` with `rv_at`/`rv_reason`).
fn session_doc(d: &Document) -> Result<SessionRecord> {
    let mut s: SessionRecord = dec(d, "rec")?;
    // The test server may hand booleans back as integers.
    let flagged =
        matches!(d.get("revoked"), Some(Bson::Boolean(true)) | Some(Bson::Int32(1)) | Some(Bson::Int64(1)));
    if s.revoked.is_none() && flagged {
        let at_ms = get_u64(d, "rv_at").unwrap_or(0);
        let reason = d.get_str("rv_reason").unwrap_or("revoked").to_owned();
        s.revoked = Some(Revocation { at_ms, reason });
    }
    Ok(s)
}

async fn read_sessions(mut cursor: mongodb::Cursor<Document>) -> Result<Vec<SessionRecord>> {
    let mut out = Vec::new();
    while cursor.advance().await.map_err(backend)? {
        out.push(session_doc(&cursor.deserialize_current().map_err(backend)?)?);
    }
    Ok(out)
}

fn kv_entry(d: &Document) -> Result<KvEntry> {
    let key = d.get_str("k").map_err(|_| StoreError::Corrupt("kv entry without key".into()))?.to_owned();
    let version = get_u64(d, "v")?;
    let value = match d.get("val") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => return Err(StoreError::Corrupt(format!("kv entry {key} without value"))),
    };
    Ok(KvEntry { key, version, value })
}

fn kv_val(value: Vec<u8>) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: value })
}

/// The filter of every key of `ns` under `prefix` (keys are printable ASCII: see
/// [`crate::kv_prefix_end`]), with keys above `after` if given.
fn kv_range(ns: &str, prefix: &str, after: Option<&str>) -> Document {
    let mut range = Document::new();
    match after {
        Some(a) if a >= prefix => range.insert("$gt", a),
        _ => range.insert("$gte", prefix),
    };
    if let Some(end) = kv_prefix_end(prefix) {
        range.insert("$lt", end);
    }
    doc! { "ns": ns, "k": range }
}

#[async_trait]
impl KvStore for MongoStore {
    async fn kv_get(&self, ns: &str, key: &str) -> Result<Option<KvEntry>> {
        check_kv_key(ns)?;
        check_kv_key(key)?;
        let found = self.inner.kv.find_one(doc! { "ns": ns, "k": key }).await.map_err(backend)?;
        found.as_ref().map(kv_entry).transpose()
    }

    async fn kv_put(&self, ns: &str, key: &str, expected: u64, value: Vec<u8>) -> Result<u64> {
        check_kv_key(ns)?;
        check_kv_key(key)?;
        let version = expected + 1;
        if expected == 0 {
            let d = doc! { "ns": ns, "k": key, "v": int(version)?, "val": kv_val(value) };
            return match self.timed(self.inner.kv.insert_one(d)).await {
                Ok(_) => Ok(version),
                Err(e) if is_duplicate_key(&e) => Err(StoreError::VersionConflict),
                Err(e) => Err(backend(e)),
            };
        }
        let filter = doc! { "ns": ns, "k": key, "v": int(expected)? };
        let update = doc! { "$set": { "v": int(version)?, "val": kv_val(value) } };
        let res = self.timed(self.inner.kv.update_one(filter, update)).await.map_err(backend)?;
        if res.matched_count == 0 {
            return Err(StoreError::VersionConflict);
        }
        Ok(version)
    }

    async fn kv_set(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<u64> {
        // A compare-and-set loop: plain CRUD only (no upsert semantics to rely on).
        loop {
            let current = self.kv_get(ns, key).await?.map_or(0, |e| e.version);
            match self.kv_put(ns, key, current, value.clone()).await {
                Err(StoreError::VersionConflict) => continue,
                other => return other,
            }
        }
    }

    async fn kv_delete(&self, ns: &str, key: &str, expected: Option<u64>) -> Result<bool> {
        check_kv_key(ns)?;
        check_kv_key(key)?;
        let mut filter = doc! { "ns": ns, "k": key };
        if let Some(v) = expected {
            filter.insert("v", int(v)?);
        }
        let res = self.timed(self.inner.kv.delete_one(filter)).await.map_err(backend)?;
        Ok(res.deleted_count > 0)
    }

    async fn kv_set_many(&self, ns: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        crate::check_kv_batch(ns, entries.iter().map(|(k, _)| k.as_str()))?;
        // Each upsert is its own compare-and-set loop; they run side by side.
        let sets = entries.into_iter().map(|(k, v)| async move { self.kv_set(ns, &k, v).await });
        for r in futures_util::future::join_all(sets).await {
            r?;
        }
        Ok(())
    }

    async fn kv_delete_many(&self, ns: &str, keys: Vec<String>) -> Result<u64> {
        crate::check_kv_batch(ns, keys.iter().map(String::as_str))?;
        if keys.is_empty() {
            return Ok(0);
        }
        let filter = doc! { "ns": ns, "k": { "$in": keys } };
        let res = self.timed(self.inner.kv.delete_many(filter)).await.map_err(backend)?;
        Ok(res.deleted_count)
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cursor = self
            .inner
            .kv
            .find(kv_range(ns, prefix, after))
            .sort(doc! { "k": 1 })
            .limit(int(limit as u64)?)
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(backend)? {
            let d = cursor.deserialize_current().map_err(backend)?;
            out.push(kv_entry(&d)?);
        }
        Ok(out)
    }

    async fn kv_count(&self, ns: &str, prefix: &str) -> Result<u64> {
        check_kv_scope(ns, prefix)?;
        self.inner.kv.count_documents(kv_range(ns, prefix, None)).await.map_err(backend)
    }

    async fn kv_take_first(&self, ns: &str, prefix: &str) -> Result<Option<KvEntry>> {
        check_kv_key(ns)?;
        check_kv_key(prefix)?;
        // findAndModify with `remove`: the server deletes and returns one document atomically,
        // so concurrent takers on any node never get the same entry.
        let taken = self
            .timed(self.inner.kv.find_one_and_delete(kv_range(ns, prefix, None)).sort(doc! { "k": 1 }))
            .await
            .map_err(backend)?;
        taken.as_ref().map(kv_entry).transpose()
    }

    async fn kv_replace_prefix(&self, ns: &str, prefix: &str, entries: Vec<(String, Vec<u8>)>) -> Result<()> {
        check_kv_replace(ns, prefix, &entries)?;
        // Versions continue across a replace for keys that existed before (no ABA for a
        // compare-and-set holding an old version).
        let mut old = std::collections::HashMap::new();
        let mut cursor = self.inner.kv.find(kv_range(ns, prefix, None)).await.map_err(backend)?;
        while cursor.advance().await.map_err(backend)? {
            let e = kv_entry(&cursor.deserialize_current().map_err(backend)?)?;
            old.insert(e.key, e.version);
        }
        self.timed(self.inner.kv.delete_many(kv_range(ns, prefix, None))).await.map_err(backend)?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut docs = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let version = old.get(&key).copied().unwrap_or(0) + 1;
            docs.push(doc! { "ns": ns, "k": key, "v": int(version)?, "val": kv_val(value) });
        }
        self.timed(self.inner.kv.insert_many(docs)).await.map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl AuditStore for MongoStore {
    async fn append_audits(&self, records: Vec<AuditRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let n = records.len() as u64;
        // One counter step for the batch: ids `last - n + 1 ..= last`, in the records' order.
        let counter = self
            .inner
            .meta
            .find_one_and_update(doc! { "_id": AUDIT_ID }, doc! { "$inc": { "next": int(n)? } })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt("audit counter missing".into()))?;
        let last = get_u64(&counter, "next")?;
        let first = last
            .checked_sub(n - 1)
            .ok_or_else(|| StoreError::Corrupt("audit counter went backwards".into()))?;
        let mut docs = Vec::with_capacity(records.len());
        for (i, mut record) in records.into_iter().enumerate() {
            let id = first + i as u64;
            record.id = id;
            docs.push(audit_doc(&record, id)?);
        }
        let r = self.inner.audit.insert_many(docs).await;
        self.inner.stats.record(started);
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Corrupt(format!(
                "audit ids {first}..={last} taken twice (counter went backwards)"
            ))),
            Err(e) => Err(backend(e)),
        }
    }

    async fn append_audit(&self, mut record: AuditRecord) -> Result<u64> {
        let started = Instant::now();
        let counter = self
            .inner
            .meta
            .find_one_and_update(doc! { "_id": AUDIT_ID }, doc! { "$inc": { "next": 1i64 } })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::Corrupt("audit counter missing".into()))?;
        let id = get_u64(&counter, "next")?;
        record.id = id;
        let d = audit_doc(&record, id)?;
        let r = self.inner.audit.insert_one(d).await;
        self.inner.stats.record(started);
        match r {
            Ok(_) => Ok(id),
            Err(e) if is_duplicate_key(&e) => {
                Err(StoreError::Corrupt(format!("audit id {id} taken twice (counter went backwards)")))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn audit(&self, tenant: &TenantId, query: &AuditQuery) -> Result<Vec<AuditRecord>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "t": tenant.as_str() };
        if let Some(before) = query.before {
            // Ids above i64::MAX are never assigned: every stored id is below such a bound.
            if let Ok(before) = i64::try_from(before) {
                filter.insert("id", doc! { "$lt": before });
            }
        }
        if let Some(actor) = &query.actor {
            filter.insert("actor", actor.as_str());
        }
        if let Some(action) = &query.action {
            filter.insert("action", action.as_str());
        }
        let cursor = self
            .inner
            .audit
            .find(filter)
            .sort(doc! { "id": -1 })
            .limit(int(query.limit as u64)?)
            .await
            .map_err(backend)?;
        read_all(cursor, "rec").await
    }
}

/// Decodes the postcard `field` of every document a cursor yields, in order.
async fn read_all<T: DeserializeOwned>(mut cursor: mongodb::Cursor<Document>, field: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while cursor.advance().await.map_err(backend)? {
        let d = cursor.deserialize_current().map_err(backend)?;
        out.push(dec(&d, field)?);
    }
    Ok(out)
}

#[async_trait]
impl QueueStore for MongoStore {
    async fn enqueue(&self, items: Vec<NewEnvelope>) -> Result<Vec<Envelope>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let full = self.over_bound(Self::per_device(items.iter().map(|i| &i.to))).await?;
        if !full.is_empty() {
            return Err(StoreError::QueueFull(full));
        }
        let started = Instant::now();
        let n = items.len() as u64;
        let keys: BTreeSet<String> = items.iter().map(|i| device_key(&i.to)).collect();
        let devices = if keys.len() > MAX_PENDING_DEVICES {
            "*".to_owned()
        } else {
            keys.into_iter().collect::<Vec<_>>().join(",")
        };
        let floor = self.inner.seen_seq.load(Ordering::Relaxed);
        let entry = format!("{floor}|{}|{}|{devices}", now_ms(), ObjectId::new().to_hex());
        let result = async {
            let lo = self.take_block(n, &entry).await?;
            let mut docs = Vec::with_capacity(items.len());
            let mut out = Vec::with_capacity(items.len());
            for (i, mut item) in items.into_iter().enumerate() {
                let seq = lo + i as u64;
                item.envelope.seq = seq;
                let mut d = device_filter(&item.to);
                d.insert("seq", int(seq)?);
                d.insert("env", enc(&item.envelope)?);
                docs.push(d);
                out.push(item.envelope);
            }
            if let Err(e) = self.inner.queue.insert_many(docs).ordered(true).await {
                // No transaction: undo what part of the block was written.
                let hi = lo + n - 1;
                let range = doc! { "seq": { "$gte": int(lo)?, "$lte": int(hi)? } };
                if let Err(undo) = self.inner.queue.delete_many(range).await {
                    tracing::error!(
                        error = %undo, lo, hi,
                        "enqueue failed and its partial batch could not be removed"
                    );
                }
                return Err(backend(e));
            }
            Ok(out)
        }
        .await;
        // Whatever happened, the block is no longer in flight.
        if let Err(e) = self.clear_pending(vec![entry]).await {
            tracing::warn!(error = %e, "in-flight enqueue entry left to expire");
        }
        self.inner.stats.record(started);
        let elapsed = started.elapsed();
        if elapsed > Duration::from_millis(PENDING_TTL_MS / 2) {
            tracing::warn!(
                ms = elapsed.as_millis() as u64,
                "slow enqueue: readers may have passed its numbers"
            );
        }
        if result.is_ok() {
            self.inner.depth.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    async fn enqueue_shared(&self, item: SharedEnvelope) -> Result<Vec<u64>> {
        if item.to.is_empty() {
            return Ok(Vec::new());
        }
        let full = self.over_bound(Self::per_device(item.to.iter())).await?;
        if !full.is_empty() {
            return Err(StoreError::QueueFull(full));
        }
        let started = Instant::now();
        let SharedEnvelope { to, mut envelope } = item;
        let n = to.len() as u64;
        let entry = self.pending_entry(&to);
        let content = std::mem::take(&mut envelope.content.0);
        let result = async {
            let lo = self.take_block(n, &entry).await?;
            let mut docs = Vec::with_capacity(to.len());
            for (i, addr) in to.iter().enumerate() {
                envelope.seq = lo + i as u64;
                envelope.sync = addr.user == envelope.from;
                let mut d = device_filter(addr);
                d.insert("seq", int(envelope.seq)?);
                d.insert("blob", int(lo)?);
                d.insert("env", enc(&envelope)?);
                docs.push(d);
            }
            let blob = doc! {
                "_id": int(lo)?,
                "refs": int(n)?,
                "c": Binary { subtype: BinarySubtype::Generic, bytes: content },
            };
            self.inner.blobs.insert_one(blob).await.map_err(backend)?;
            if let Err(e) = self.inner.queue.insert_many(docs).ordered(true).await {
                let hi = lo + n - 1;
                let range = doc! { "seq": { "$gte": int(lo)?, "$lte": int(hi)? } };
                if let Err(undo) = self.inner.queue.delete_many(range).await {
                    tracing::error!(error = %undo, lo, hi, "shared enqueue failed and its partial batch could not be removed");
                } else if let Err(undo) = self.inner.blobs.delete_one(doc! { "_id": int(lo)? }).await {
                    tracing::error!(error = %undo, lo, "shared enqueue failed and its content could not be removed");
                }
                return Err(backend(e));
            }
            Ok((lo..lo + n).collect::<Vec<u64>>())
        }
        .await;
        if let Err(e) = self.clear_pending(vec![entry]).await {
            tracing::warn!(error = %e, "in-flight enqueue entry left to expire");
        }
        self.inner.stats.record(started);
        if result.is_ok() {
            self.inner.depth.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    async fn shared_contents(&self) -> Result<u64> {
        self.inner.blobs.count_documents(doc! {}).await.map_err(backend)
    }

    async fn fetch(&self, device: &DeviceAddress, after: u64, limit: usize) -> Result<Vec<Envelope>> {
        let limit = limit.min(MAX_FETCH);
        let policy = self.inner.policy;
        let mut out = Vec::new();
        let mut cursor = after;
        // Envelopes past the retention are left out (never delivered, even before the sweep
        // deletes them); a page they emptied is followed by the next one, so an empty answer
        // still means "nothing more queued". Bounded: the queue holds at most its bound.
        while out.len() < limit {
            let want = limit - out.len();
            let page = self.fetch_page(device, cursor, want).await?;
            let full = page.len() == want;
            let Some(last) = page.last().map(|e| e.seq) else { break };
            let now = crate::now_ms();
            out.extend(page.into_iter().filter(|e| !policy.expired(e, now)));
            if !full {
                break;
            }
            cursor = last;
        }
        Ok(out)
    }

    async fn ack(&self, device: &DeviceAddress, seqs: Vec<u64>) -> Result<u64> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let seqs: Vec<i64> = seqs.into_iter().filter_map(|s| i64::try_from(s).ok()).collect();
        let asked = seqs.len() as u64;
        let mut filter = device_filter(device);
        filter.insert("seq", doc! { "$in": seqs.clone() });
        filter.insert("blob", doc! { "$exists": false });
        let r = self.timed(self.inner.queue.delete_many(filter)).await.map_err(backend)?;
        let mut n = r.deleted_count;
        if n < asked {
            // Some were references to shared content (or unknown): release them one by one.
            let mut refs = device_filter(device);
            refs.insert("seq", doc! { "$in": seqs });
            n += self.remove_refs(refs).await?;
        }
        sub_depth(&self.inner.depth, n);
        Ok(n)
    }

    async fn purge(&self, device: &DeviceAddress) -> Result<u64> {
        let refs = self.remove_refs(device_filter(device)).await?;
        let r = self.timed(self.inner.queue.delete_many(device_filter(device))).await.map_err(backend)?;
        sub_depth(&self.inner.depth, r.deleted_count + refs);
        Ok(r.deleted_count + refs)
    }

    async fn expire(&self, limit: usize) -> Result<u64> {
        let limit = limit.min(MAX_EXPIRE_BATCH);
        if limit == 0 {
            return Ok(0);
        }
        let now = crate::now_ms();
        let policy = self.inner.policy;
        // Oldest first by the global sequence number (the `seq` index), up to the first
        // envelope still within the retention.
        let mut cursor = self
            .inner
            .queue
            .find(doc! {})
            .sort(doc! { "seq": 1 })
            .limit(int(limit as u64)?)
            .await
            .map_err(backend)?;
        let mut plain: Vec<i64> = Vec::new();
        let mut refs: Vec<i64> = Vec::new();
        while cursor.advance().await.map_err(backend)? {
            let d = cursor.deserialize_current().map_err(backend)?;
            let env: Envelope = match d.get("env") {
                Some(Bson::Binary(b)) => crate::records::decode_stored::<()>(&b.bytes)?.1,
                _ => return Err(StoreError::Corrupt("field `env` is not binary".into())),
            };
            if !policy.expired(&env, now) {
                break;
            }
            let seq = int(env.seq)?;
            if d.contains_key("blob") {
                refs.push(seq);
            } else {
                plain.push(seq);
            }
        }
        let mut n = 0u64;
        if !plain.is_empty() {
            let filter = doc! { "seq": { "$in": plain }, "blob": { "$exists": false } };
            n += self.timed(self.inner.queue.delete_many(filter)).await.map_err(backend)?.deleted_count;
        }
        if !refs.is_empty() {
            // One by one, so that exactly one caller releases each reference's shared content.
            n += self.remove_refs(doc! { "seq": { "$in": refs } }).await?;
        }
        sub_depth(&self.inner.depth, n);
        Ok(n)
    }

    fn depth(&self) -> u64 {
        self.inner.depth.load(Ordering::Relaxed)
    }
}

fn sub_depth(depth: &AtomicU64, n: u64) {
    let _ = depth.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
}

#[async_trait]
impl StoreStats for MongoStore {
    /// A read of the tenants collection: MongoDB reports a failing write concern on the write
    /// itself, so the read only proves the server answers.
    async fn health(&self) -> crate::StoreHealth {
        match self.list_tenants(1).await {
            Ok(_) => crate::StoreHealth::Ok,
            Err(e) => crate::StoreHealth::Failing(crate::failure::Failure {
                cause: e.cause().unwrap_or(crate::failure::Cause::Io),
                detail: e.to_string(),
            }),
        }
    }

    fn commit_stats(&self) -> CommitStats {
        let s = &self.inner.stats;
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

/// The document of one audit record with id `id`.
fn audit_doc(record: &AuditRecord, id: u64) -> Result<Document> {
    let actor = record.actor.as_ref().map_or(Bson::Null, |a| Bson::String(a.as_str().to_owned()));
    Ok(doc! {
        "t": record.tenant.as_str(),
        "id": int(id)?,
        "actor": actor,
        "action": record.action.as_str(),
        "rec": enc(record)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_the_last_migration() {
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    }

    #[test]
    fn pending_entries_parse() {
        let p = Pending::parse("41|1000|abc|acme/bob/1,acme/bob/2").unwrap();
        assert_eq!((p.floor, p.at_ms), (41, 1000));
        assert!(p.concerns("acme/bob/2"));
        assert!(!p.concerns("acme/bob/3"));
        assert!(Pending::parse("1|2|x|*").unwrap().concerns("any/one/1"));
        assert!(Pending::parse("garbage").is_none());
    }
}
