//! What every actor of a node shares.

use std::sync::Arc;

use hush_cluster::Bus;
use hush_store::Store;

use crate::delivery::registry::Registry;
use crate::directory::Directory;
use crate::groups::registry::Groups;
use crate::hashing::HashPool;
use crate::metrics::Metrics;
use crate::policy::KeyPolicy;
use crate::supervise::Tree;
use crate::tenant::Tenants;

/// Shared state of one node: cheap to clone through `Arc<Hub>`.
pub struct Hub {
    /// The store (embedded or MongoDB).
    pub store: Arc<dyn Store>,
    /// Devices connected to this node.
    pub registry: Registry,
    /// Cached device sets.
    pub directory: Directory,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The Argon2id threads.
    pub hashing: HashPool,
    /// The link to the other nodes (a local bus when alone).
    pub bus: Arc<dyn Bus>,
    /// Cached tenant settings and last-seen bookkeeping.
    pub tenants: Tenants,
    /// The key sealing TOTP secrets at rest, set once at start from the node's configuration.
    pub mfa_key: std::sync::OnceLock<crate::mfa::SealKey>,
    /// The pre-key policy (thresholds, fetch rate limit, rotation age).
    pub keys: KeyPolicy,
    /// The group actors of this node and the sender-key rotation policy.
    pub groups: Groups,
    /// The login throttling rules.
    pub throttle: crate::throttle::Throttle,
    /// The supervision tree (empty until [`Tree::start`]).
    pub tree: Tree,
    /// When this hub (the node) started, ms since the Unix epoch.
    pub started_ms: u64,
}

impl Hub {
    /// A hub over `store`, linked to other nodes by `bus`.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> std::io::Result<Arc<Self>> {
        Self::with_keys(store, bus, KeyPolicy::default())
    }

    /// A hub with the given pre-key policy.
    pub fn with_keys(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        keys: KeyPolicy,
    ) -> std::io::Result<Arc<Self>> {
        let hashing = HashPool::new()?;
        Ok(Arc::new(Self {
            directory: Directory::new(store.clone(), bus.clone()),
            bus,
            store,
            registry: Registry::default(),
            metrics: Arc::new(Metrics::default()),
            hashing,
            tenants: Tenants::default(),
            mfa_key: std::sync::OnceLock::new(),
            keys,
            groups: Groups::default(),
            throttle: crate::throttle::Throttle::default(),
            tree: Tree::default(),
            started_ms: crate::now_ms(),
        }))
    }
}

/// Writes the node's recorded last-seen times every [`crate::tenant::SEEN_FLUSH`], forever (the node's
/// graceful stop writes the rest).
pub async fn seen_writer(hub: Arc<Hub>) {
    loop {
        tokio::time::sleep(crate::tenant::SEEN_FLUSH).await;
        hub.tenants.flush_seen(&*hub.store).await;
    }
}
