//! What every actor of a node shares.

use std::sync::Arc;

use hush_store::Store;
use tokio::sync::Semaphore;

use crate::directory::Directory;
use crate::limits::PASSWORD_HASH_CONCURRENCY;
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Shared state of one node: cheap to clone through `Arc<Hub>`.
pub struct Hub {
    /// The store (embedded or MongoDB).
    pub store: Arc<dyn Store>,
    /// Devices connected to this node.
    pub registry: Registry,
    /// Cached device sets.
    pub directory: Directory,
    /// Counters.
    pub metrics: Metrics,
    /// Bounds concurrent Argon2id computations.
    pub hashing: Semaphore,
}

impl Hub {
    /// A hub over `store`.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            directory: Directory::new(store.clone()),
            store,
            registry: Registry::default(),
            metrics: Metrics::default(),
            hashing: Semaphore::new(PASSWORD_HASH_CONCURRENCY),
        })
    }
}
