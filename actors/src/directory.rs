//! Cached device sets. The store is the truth; every change made through this node goes
//! through [`Directory::update`], which writes with compare-and-set and refreshes the cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use hush_cluster::{Bus, BusMessage};
use hush_protocol::ids::{TenantId, UserId};
use hush_store::{DeviceRecord, DeviceSet, Store, StoreError};

use crate::limits::{DIRECTORY_TTL, MAX_CACHED_DEVICE_SETS};

type Key = (TenantId, UserId);

/// Device sets by user, cached for at most [`DIRECTORY_TTL`]. A change made on any node is
/// broadcast so the other nodes drop their copy at once; the time-to-live bounds staleness
/// when a broadcast was missed (bus down).
pub struct Directory {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    cache: RwLock<HashMap<Key, (Arc<DeviceSet>, Instant)>>,
}

impl Directory {
    /// A directory over `store`, announcing changes on `bus`.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        Self { store, bus, cache: RwLock::new(HashMap::new()) }
    }

    /// A user's devices (from the cache, or read and cached).
    pub async fn get(&self, tenant: &TenantId, user: &UserId) -> Result<Arc<DeviceSet>, StoreError> {
        let key = (tenant.clone(), user.clone());
        if let Some(set) = self.cached(&key) {
            return Ok(set);
        }
        let set = Arc::new(self.store.get_devices(tenant, user).await?);
        self.insert(key, set.clone());
        Ok(set)
    }

    fn cached(&self, key: &Key) -> Option<Arc<DeviceSet>> {
        let c = match self.cache.read() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        c.get(key).filter(|(_, at)| at.elapsed() < DIRECTORY_TTL).map(|(s, _)| s.clone())
    }

    fn insert(&self, key: Key, set: Arc<DeviceSet>) {
        let mut c = match self.cache.write() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if c.len() >= MAX_CACHED_DEVICE_SETS {
            c.clear();
        }
        // Never replace a newer version by an older one read concurrently.
        match c.get(&key) {
            Some((old, at)) if old.version > set.version && at.elapsed() < DIRECTORY_TTL => {}
            _ => {
                c.insert(key, (set, Instant::now()));
            }
        }
    }

    /// Forgets a cached set (another node changed it).
    pub fn invalidate(&self, tenant: &TenantId, user: &UserId) {
        let mut c = match self.cache.write() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        c.remove(&(tenant.clone(), user.clone()));
    }

    /// Applies `change` to the current set with compare-and-set, retrying on conflicts.
    /// `change` returns the new device list, or an error that aborts without writing.
    pub async fn update<E, F>(
        &self,
        tenant: &TenantId,
        user: &UserId,
        mut change: F,
    ) -> Result<Arc<DeviceSet>, E>
    where
        E: From<StoreError>,
        F: FnMut(&DeviceSet) -> Result<Vec<DeviceRecord>, E>,
    {
        for _ in 0..16 {
            let current = self.store.get_devices(tenant, user).await?;
            let next = change(&current)?;
            match self.store.put_devices(tenant, user, current.version, next).await {
                Ok(set) => {
                    let set = Arc::new(set);
                    self.insert((tenant.clone(), user.clone()), set.clone());
                    let msg = BusMessage::DevicesChanged { tenant: tenant.clone(), user: user.clone() };
                    if let Err(e) = self.bus.broadcast(&msg).await {
                        tracing::warn!(error = %e, "device change not broadcast; other nodes refresh within the cache TTL");
                    }
                    return Ok(set);
                }
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::VersionConflict.into())
    }
}
