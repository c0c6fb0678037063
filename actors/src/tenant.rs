//! Per-tenant settings and session lifetimes.
//!
//! Settings are one JSON document per tenant in the key-value store (namespace
//! [`SETTINGS_NS`], key = tenant name): JSON so that fields added later read back from older
//! records with their defaults. Each node caches them for [`SETTINGS_TTL`]; a change made on
//! one node is seen by the others within that time (and by live sessions at their next tick).
//!
//! Last activity of a session ("last seen") is kept in namespace [`SEEN_NS`] (key = session
//! id, value = ms since the Unix epoch, 8 bytes big-endian). Each node records it at most once
//! per [`seen_granularity_ms`] per session, in memory, and writes what it recorded in one
//! batch every [`SEEN_FLUSH`] ([`crate::hub::seen_writer`]) and at a graceful stop: an authenticated
//! request or a new connection never waits for a store commit. The node's own checks read its
//! memory first, so only another node can see a time up to [`SEEN_FLUSH`] older than the
//! truth, and a node killed without a stop forgets at most that much activity: either way a
//! session can only look a little more idle, never less.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hush_protocol::api::SessionPolicy;
use hush_protocol::ids::TenantId;
use hush_store::{SessionRecord, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Key-value namespace of tenant settings.
pub const SETTINGS_NS: &str = "tenant_settings";
/// Key-value namespace of sessions' last activity.
pub const SEEN_NS: &str = "session_seen";
/// How long a node trusts its cached copy of a tenant's settings.
pub const SETTINGS_TTL: Duration = Duration::from_secs(5);
/// Last-seen times are written at most this often per session (and more often when the
/// tenant's idle limit is short: a quarter of it).
pub const SEEN_GRANULARITY_MS: u64 = 60_000;
/// Sessions whose last write this node remembers, at most (older entries are dropped first).
const MAX_SEEN_TRACKED: usize = 200_000;
/// How often recorded last-seen times are written to the store.
pub const SEEN_FLUSH: Duration = Duration::from_secs(1);

/// Everything a tenant configures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSettings {
    /// Session lifetimes.
    #[serde(default)]
    pub sessions: SessionPolicy,
}

/// Why a session is no longer valid under its tenant's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Idle longer than the idle limit.
    Idle,
    /// Older than the absolute limit.
    Absolute,
}

/// How often to record activity for a session under `policy`.
pub fn seen_granularity_ms(policy: &SessionPolicy, admin: bool) -> u64 {
    match policy.limits_ms(admin).0 {
        Some(idle) => (idle / 4).clamp(250, SEEN_GRANULARITY_MS),
        None => SEEN_GRANULARITY_MS,
    }
}

/// Whether `session` (last active at `last_seen_ms`) has expired at `now_ms`.
pub fn expiry(
    policy: &SessionPolicy,
    admin: bool,
    session: &SessionRecord,
    last_seen_ms: u64,
    now_ms: u64,
) -> Option<Expiry> {
    let (idle, absolute) = policy.limits_ms(admin);
    if absolute.is_some_and(|a| now_ms >= session.created_ms.saturating_add(a)) {
        return Some(Expiry::Absolute);
    }
    if idle.is_some_and(|i| now_ms >= last_seen_ms.max(session.created_ms).saturating_add(i)) {
        return Some(Expiry::Idle);
    }
    None
}

/// When `session` expires if it stays idle from `last_seen_ms` on (`None`: never).
pub fn expires_at(
    policy: &SessionPolicy,
    admin: bool,
    session: &SessionRecord,
    last_seen_ms: u64,
) -> Option<u64> {
    let (idle, absolute) = policy.limits_ms(admin);
    let a = absolute.map(|a| session.created_ms.saturating_add(a));
    let i = idle.map(|i| last_seen_ms.max(session.created_ms).saturating_add(i));
    match (a, i) {
        (Some(a), Some(i)) => Some(a.min(i)),
        (a, i) => a.or(i),
    }
}

/// The node's cache of tenant settings and of the last-seen times it wrote.
#[derive(Default)]
pub struct Tenants {
    settings: Mutex<HashMap<TenantId, (Instant, Arc<TenantSettings>)>>,
    seen: Mutex<HashMap<String, u64>>,
    /// Times recorded since the last [`Tenants::flush_seen`] (session id -> ms).
    unwritten: Mutex<HashMap<String, u64>>,
}

impl Tenants {
    /// A tenant's settings (defaults if it never changed them).
    pub async fn settings(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
    ) -> Result<Arc<TenantSettings>, StoreError> {
        if let Some((at, s)) = lock(&self.settings).get(tenant) {
            if at.elapsed() < SETTINGS_TTL {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(read_settings(store, tenant).await?.0);
        lock(&self.settings).insert(tenant.clone(), (Instant::now(), s.clone()));
        Ok(s)
    }

    /// Changes a tenant's settings with `f` (compare-and-set, retried on a concurrent change);
    /// returns the stored result.
    pub async fn update<E: From<StoreError>>(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        f: impl Fn(&mut TenantSettings) -> Result<(), E>,
    ) -> Result<Arc<TenantSettings>, E> {
        // The store's retry policy (bounded, with jitter): settings are JSON, not a postcard
        // record, so `typed::update` does not apply, but its policy does.
        let retry = hush_store::typed::RETRY;
        for attempt in 0..retry.attempts {
            let (mut s, version) = read_settings(store, tenant).await?;
            f(&mut s)?;
            let bytes = serde_json::to_vec(&s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            match store.kv_put(SETTINGS_NS, tenant.as_str(), version, bytes).await {
                Ok(_) => {
                    let s = Arc::new(s);
                    lock(&self.settings).insert(tenant.clone(), (Instant::now(), s.clone()));
                    return Ok(s);
                }
                Err(StoreError::VersionConflict) => tokio::time::sleep(retry.pause(attempt)).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::VersionConflict.into())
    }

    /// The last activity of a session: what this node wrote, else the store, else its login.
    /// With `recent_enough_ms`, a time this node wrote less than that long ago is returned
    /// without reading the store (a later write by another node cannot make the session more
    /// idle): the authentication path's idle check.
    pub async fn last_seen(
        &self,
        store: &dyn Store,
        session: &SessionRecord,
        recent_enough_ms: Option<u64>,
    ) -> Result<u64, StoreError> {
        let local = lock(&self.seen).get(&session.id).copied();
        if let (Some(t), Some(window)) = (local, recent_enough_ms) {
            if crate::now_ms() < t.saturating_add(window) {
                return Ok(t.max(session.created_ms));
            }
        }
        let stored = match store.kv_get(SEEN_NS, &session.id).await? {
            Some(e) => decode_ms(&e.value),
            None => None,
        };
        Ok(local.max(stored).unwrap_or(0).max(session.created_ms))
    }

    /// Records activity at `now` if this node last recorded it more than `granularity_ms`
    /// ago. The store gets it at the next [`Self::flush_seen`].
    pub fn touch(&self, session_id: &str, now: u64, granularity_ms: u64) {
        {
            let mut seen = lock(&self.seen);
            if seen.get(session_id).is_some_and(|t| now < t.saturating_add(granularity_ms)) {
                return;
            }
            if seen.len() >= MAX_SEEN_TRACKED {
                // Forget the oldest half: at worst those sessions get one extra write.
                let mut times: Vec<u64> = seen.values().copied().collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                seen.retain(|_, t| *t > cut);
            }
            seen.insert(session_id.to_owned(), now);
        }
        lock(&self.unwritten).insert(session_id.to_owned(), now);
    }

    /// Writes the last-seen times recorded since the last call, in batches of
    /// [`hush_store::MAX_KV_REPLACE`] (one commit each in the embedded store). A batch that
    /// fails is kept for the next call (unless a newer time was recorded meanwhile). Returns how
    /// many times were written.
    pub async fn flush_seen(&self, store: &dyn Store) -> usize {
        let all: Vec<(String, u64)> = std::mem::take(&mut *lock(&self.unwritten)).into_iter().collect();
        let mut written = 0;
        for chunk in all.chunks(hush_store::MAX_KV_REPLACE) {
            let entries = chunk.iter().map(|(id, t)| (id.clone(), t.to_be_bytes().to_vec())).collect();
            match store.kv_set_many(SEEN_NS, entries).await {
                Ok(()) => written += chunk.len(),
                Err(e) => {
                    tracing::warn!(error = %e, sessions = chunk.len(), "last-seen times not recorded; retrying");
                    let mut unwritten = lock(&self.unwritten);
                    for (id, t) in chunk {
                        unwritten.entry(id.clone()).or_insert(*t);
                    }
                }
            }
        }
        written
    }

    /// Forgets a session's last-seen time (it was revoked).
    pub async fn forget(&self, store: &dyn Store, session_id: &str) {
        self.forget_many(store, std::slice::from_ref(&session_id.to_owned())).await;
    }

    /// Forgets the last-seen times of many sessions (they were revoked), in batches.
    pub async fn forget_many(&self, store: &dyn Store, session_ids: &[String]) {
        {
            let (mut seen, mut unwritten) = (lock(&self.seen), lock(&self.unwritten));
            for id in session_ids {
                seen.remove(id);
                unwritten.remove(id);
            }
        }
        // A flush that took a time before this call may still write it after the delete: the
        // record of a revoked session is then left behind, 8 bytes no check reads again.
        for chunk in session_ids.chunks(hush_store::MAX_KV_REPLACE) {
            if let Err(e) = store.kv_delete_many(SEEN_NS, chunk.to_vec()).await {
                tracing::warn!(error = %e, "last-seen times not deleted");
            }
        }
    }
}

fn decode_ms(b: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

async fn read_settings(store: &dyn Store, tenant: &TenantId) -> Result<(TenantSettings, u64), StoreError> {
    match store.kv_get(SETTINGS_NS, tenant.as_str()).await? {
        Some(e) => {
            let s = serde_json::from_slice(&e.value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((s, e.version))
        }
        None => Ok((TenantSettings::default(), 0)),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
